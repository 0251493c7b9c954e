"""Fault injection on a real (tiny) training run: every fault ends in an exact resume from
the newest intact step, or a clear refusal, with nothing lost that had been saved intact.

* a flipped bit in the newest checkpoint: caught by its checksums, the step quarantined,
  the previous one resumed, ending bit-identical to an uninterrupted run;
* evaluation and sampling (``load_run``) never write or rename inside ``checkpoints/``;
* every checkpoint damaged: refused (twice: the second run does not start over silently)
  until ``restart=True``;
* a failed start leaves nothing that blocks the corrected command;
* a diverging learning rate stops the run naming the step, with finite saved parameters
  and a ``metrics.jsonl`` that strict JSON parsers read.

(kill -9 during an asynchronous save is tested end to end in tests/test_cli.py.)
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.config import apply_overrides
from jaxgen.engine import sharding
from jaxgen.engine.checkpointing import Checkpointer, CheckpointError
from jaxgen.engine.trainer import _check_finite_state, _StopRequest
from jaxgen.run import NonFiniteLossError, load_run, load_train_dataset, train
from tests.engine.test_trainer import leaves_close, tiny_config


def _config(*extra: str):
    return tiny_config("train.num_steps=9", *extra)


def _flip_bit(step_dir: pathlib.Path) -> pathlib.Path:
    """Flip one bit in the middle of the step's largest array-data file."""
    data = [p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
    target = max(data, key=lambda p: p.stat().st_size)
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    target.write_bytes(bytes(raw))
    return target


def _tree_digest(root: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
    }


def _same(a, b) -> bool:
    return leaves_close(a.params, b.params, rtol=0, atol=0) and leaves_close(
        a.ema_params, b.ema_params, rtol=0, atol=0
    )


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted 9-step run; its workdir first saw a start that failed (a batch
    larger than the dataset), which must not block this corrected command."""
    workdir = tmp_path_factory.mktemp("straight")
    with pytest.raises(ValueError, match="fewer than one global batch of 5000"):
        train(_config("data.batch_size=5000"), workdir)
    assert not (workdir / "config.json").exists()
    return train(_config(), workdir)


def test_failed_start_does_not_lock_the_workdir(straight):
    assert straight.step == 9 and not straight.stopped_early
    saved = json.loads((straight.workdir / "config.json").read_text())
    assert saved["data"]["batch_size"] == 16


def test_flipped_bit_falls_back_and_eval_is_read_only(tmp_path, straight):
    config = _config()
    first = train(config, tmp_path, stop_at_step=6)
    assert first.step == 6 and (tmp_path / "checkpoints" / "6.sha256.json").exists()
    _flip_bit(tmp_path / "checkpoints" / "6")

    # Evaluation and sampling: the damaged step is skipped, and nothing changes on disk.
    before = _tree_digest(tmp_path / "checkpoints")
    with pytest.warns(RuntimeWarning, match="step 6 .*checksum mismatch.*skipped it"):
        run = load_run(tmp_path)
    assert run.step == 3
    with pytest.raises(CheckpointError, match="step 6 .* is damaged .*checksum mismatch"):
        load_run(tmp_path, step=6)
    assert _tree_digest(tmp_path / "checkpoints") == before

    # Training: quarantined with a warning, resumed from step 3, exact.
    with pytest.warns(RuntimeWarning, match="step 6 .*checksum mismatch.*moved it to 6.corrupt"):
        resumed = train(config, tmp_path)
    assert resumed.step == 9 and _same(resumed.state, straight.state)
    assert (tmp_path / "checkpoints" / "6.corrupt").is_dir()
    assert (tmp_path / "checkpoints" / "6.corrupt.sha256.json").exists()  # kept with it


def test_all_checkpoints_damaged_refuses_until_restart(tmp_path, straight):
    config = _config()
    train(config, tmp_path, stop_at_step=3)
    _flip_bit(tmp_path / "checkpoints" / "3")
    with (
        pytest.warns(RuntimeWarning, match="checksum mismatch"),
        pytest.raises(CheckpointError, match="no checkpoint .* could be restored.*--restart"),
    ):
        train(config, tmp_path)
    # The same command again: still refused, naming the quarantined step.
    with pytest.raises(CheckpointError, match=r"quarantined \(3\.corrupt\).*--restart"):
        train(config, tmp_path)
    with pytest.warns(RuntimeWarning, match="starting over from step 0"):
        again = train(config, tmp_path, restart=True)
    assert again.step == 9 and _same(again.state, straight.state)
    assert (tmp_path / "checkpoints" / "3.corrupt").is_dir()  # left aside, not deleted


def test_diverging_learning_rate_stops_before_anything_is_saved(tmp_path):
    # lr = 1e30: the first Adam update is about 1e30 per parameter, finite values whose norm
    # overflows. The step counts as non-finite, so no checkpoint ever holds such parameters
    # (before, the "last good" checkpoint held parameters near 1e30).
    config = tiny_config(
        "train.num_steps=6",
        "train.checkpoint_every=1",
        "train.log_every=1",
        "optim.learning_rate=1e30",
        "optim.warmup_steps=0",
    )
    with pytest.raises(NonFiniteLossError, match=r"at step 1 .*update_norm=inf") as info:
        train(config, tmp_path, mesh=sharding.make_mesh(1))
    assert "none saved yet" in str(info.value)

    def strict(token):
        raise AssertionError(f"metrics.jsonl holds {token}")

    metrics = tmp_path / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    assert [json.loads(x, parse_constant=strict) for x in lines] == []
    ckpt = Checkpointer(tmp_path / "checkpoints", read_only=True)
    assert ckpt.all_steps() == []
    ckpt.close()
    # the same learning rate scaled down to 1e-3 trains: the stop came from the divergence
    ok = train(
        apply_overrides(config, ["optim.learning_rate=1e-3", "train.num_steps=2"]),
        tmp_path / "ok",
        mesh=sharding.make_mesh(1),
    )
    assert ok.step == 2


def test_nonfinite_parameters_are_never_saved(tmp_path):
    ckpt = Checkpointer(tmp_path / "checkpoints", use_async=False)
    state = {"w": jnp.array([1.0, np.inf]), "count": jnp.array(3)}
    with pytest.raises(NonFiniteLossError, match="non-finite parameters .* at step 7"):
        _check_finite_state(7, state, ckpt)
    _check_finite_state(7, {"w": jnp.ones(2), "count": jnp.array(3)}, ckpt)  # finite: fine
    # Checked shard by shard on the host: a NaN in the last of 8 shards is found.
    mesh = sharding.make_mesh(8)
    split = jax.device_put(jnp.arange(8.0).at[7].set(jnp.nan), sharding.batch_sharding(mesh))
    with pytest.raises(NonFiniteLossError, match="at step 7"):
        _check_finite_state(7, {"w": split}, ckpt)
    ckpt.close()


def test_second_interrupt_during_the_final_save_does_not_abandon_it():
    with _StopRequest() as stop:
        handler = signal.getsignal(signal.SIGINT)
        handler(signal.SIGINT, None)
        assert stop.requested
        stop.finishing = True
        handler(signal.SIGINT, None)  # no KeyboardInterrupt: the save is finished first
    with _StopRequest() as stop:
        handler = signal.getsignal(signal.SIGINT)
        handler(signal.SIGINT, None)
        with pytest.raises(KeyboardInterrupt):  # outside the final save: stop now
            handler(signal.SIGINT, None)


def test_a_nan_in_the_data_stops_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path):
    # A training example turns to NaN (which the VAE's rounding to levels would hide): the
    # step whose batch holds it stops the run with its number, nothing from that step is
    # saved, and the newest checkpoint is the step before.
    import dataclasses

    from jaxgen.engine.trainer import train_loop
    from jaxgen.run.data import transform_for
    from jaxgen.run.train import build_recipe as build

    config = tiny_config("train.num_steps=8", "train.checkpoint_every=1")
    dataset = load_train_dataset(config)

    class PoisonedSource:  # from its fourth batch on, one example is NaN
        calls = 0

        def __len__(self):
            return len(dataset.source)

        def get(self, indices):
            PoisonedSource.calls += 1
            rows = dict(dataset.source.get(indices))
            image = np.array(rows[dataset.data_key], dtype=np.float32)
            if PoisonedSource.calls > 3:
                image[0, 0, 0, 0] = np.nan
            return {**rows, dataset.data_key: image}

    poisoned = dataclasses.replace(dataset, source=PoisonedSource())
    pattern = r"non-finite training data \(a NaN or Inf in the batch\) at step (\d+)"
    with pytest.raises(NonFiniteLossError, match=pattern) as info:
        train_loop(
            config,
            tmp_path,
            recipe=build(config, poisoned),
            dataset=poisoned,
            mesh=sharding.make_mesh(1),
            transform=transform_for(config),
        )
    bad = int(info.value.args[0].split("at step ")[1].split()[0].rstrip(";"))
    assert bad >= 2
    ckpt = Checkpointer(tmp_path / "checkpoints", read_only=True)
    assert ckpt.latest_step() == bad - 1
    ckpt.close()
