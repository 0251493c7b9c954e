"""Checkpoints: exact round trip, fallback past damaged steps (checksums catch flipped bits),
nothing deleted, nothing written when read-only."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgen.engine import sharding
from jaxgen.engine.checkpointing import Checkpointer, CheckpointError
from jaxgen.engine.step import init_train_state


def _state(seed: int):
    tx = optax.adam(1e-3)
    init = lambda key: {"w": jax.random.normal(key, (4, 3)), "b": jnp.zeros(3)}  # noqa: E731
    return init_train_state(init, tx, seed=seed)


def _abstract(state, mesh):
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.replicated(mesh)), state
    )


def _damage(step_dir: pathlib.Path, how: str) -> None:
    files = sorted(p for p in step_dir.rglob("*") if p.is_file() and p.stat().st_size > 0)
    assert files
    for path in files:
        if how == "truncate":
            path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])
        elif how == "zero":
            path.write_bytes(b"\0" * path.stat().st_size)
        elif how == "delete":
            path.unlink()


def _same(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


def test_round_trip_is_exact(tmp_path):
    mesh = sharding.make_mesh(1)
    ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=3)
    state = _state(0)
    ckpt.save(7, state)
    restored, step = ckpt.restore_latest(_abstract(state, mesh))
    ckpt.close()
    assert step == 7 and _same(restored, state)


def test_no_checkpoint_returns_none(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    assert ckpt.restore_latest(_abstract(_state(0), sharding.make_mesh(1))) is None
    ckpt.close()


@pytest.mark.parametrize("how", ["truncate", "zero", "delete"])
def test_damaged_latest_falls_back_to_previous(tmp_path, how):
    mesh = sharding.make_mesh(1)
    ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=3, use_async=False)
    states = {s: _state(s) for s in (1, 2, 3)}
    for s, st in states.items():
        ckpt.save(s, st)
    ckpt.close()
    _damage(tmp_path / "ckpt" / "3", how)

    ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=3)
    with pytest.warns(RuntimeWarning, match="checkpoint step 3 .* could not be restored"):
        restored, step = ckpt.restore_latest(_abstract(states[1], mesh))
    assert step == 2 and _same(restored, states[2])
    assert (tmp_path / "ckpt" / "3.corrupt").is_dir()  # quarantined, not deleted
    # The manager keeps working after the failure: a new save lands as step 3 again.
    ckpt.save(3, states[3])
    ckpt.wait()
    restored, step = ckpt.restore_latest(_abstract(states[1], mesh))
    assert step == 3 and _same(restored, states[3])
    ckpt.close()


def test_all_damaged_raises_and_keeps_files(tmp_path):
    mesh = sharding.make_mesh(1)
    ckpt = Checkpointer(tmp_path / "ckpt", use_async=False)
    ckpt.save(1, _state(1))
    ckpt.close()
    _damage(tmp_path / "ckpt" / "1", "zero")
    ckpt = Checkpointer(tmp_path / "ckpt")
    with (
        pytest.warns(RuntimeWarning),
        pytest.raises(CheckpointError, match="no checkpoint .* could be restored"),
    ):
        ckpt.restore_latest(_abstract(_state(0), mesh))
    assert (tmp_path / "ckpt" / "1.corrupt").is_dir()


def test_restore_onto_a_different_mesh(tmp_path):
    """Saved from one device, restored replicated over 8 (shardings come from the target)."""
    ckpt = Checkpointer(tmp_path / "ckpt")
    state = _state(3)
    ckpt.save(1, state)
    mesh = sharding.make_mesh(8)
    restored, _ = ckpt.restore_latest(_abstract(state, mesh))
    ckpt.close()
    assert _same(restored, state)
    assert len(restored.params["w"].sharding.device_set) == 8


# ----------------------------------------------------------------------------- checksums


def _flip(step_dir: pathlib.Path) -> None:
    data = [p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
    target = max(data, key=lambda p: p.stat().st_size)
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 1
    target.write_bytes(bytes(raw))


def _saved(tmp_path, steps=(1, 2, 3), **kw):
    ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=3, **kw)
    states = {s: _state(s) for s in steps}
    for s, st in states.items():
        ckpt.save(s, st)
    ckpt.close()
    return states


def test_checksums_written_after_commit_and_pruned_with_their_step(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=2, use_async=True)
    ckpt.save(1, _state(1))
    assert not (tmp_path / "ckpt" / "1.sha256.json").exists()  # not before Orbax commits
    ckpt.wait()
    manifest = json.loads((tmp_path / "ckpt" / "1.sha256.json").read_text())
    assert manifest["step"] == 1 and manifest["sha256"]
    assert not any(".tmp" in p.name for p in (tmp_path / "ckpt").iterdir())
    for s in (2, 3):
        ckpt.save(s, _state(s))
    ckpt.close()
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["2", "2.sha256.json", "3", "3.sha256.json", "checksums.json"]


def test_flipped_bit_is_caught_by_the_checksums(tmp_path):
    states = _saved(tmp_path, use_async=False)
    _flip(tmp_path / "ckpt" / "3")
    ckpt = Checkpointer(tmp_path / "ckpt")
    with pytest.warns(RuntimeWarning, match="step 3 .*checksum mismatch .*moved it to 3.corrupt"):
        restored, step = ckpt.restore_latest(_abstract(states[1], sharding.make_mesh(1)))
    ckpt.close()
    assert step == 2 and _same(restored, states[2])
    assert (tmp_path / "ckpt" / "3.corrupt").is_dir()


def test_lost_checksums_of_an_older_step_are_damage(tmp_path):
    states = _saved(tmp_path, use_async=False)
    (tmp_path / "ckpt" / "2.sha256.json").unlink()
    _damage(tmp_path / "ckpt" / "3", "zero")
    ckpt = Checkpointer(tmp_path / "ckpt")
    with pytest.warns(RuntimeWarning) as record:
        restored, step = ckpt.restore_latest(_abstract(states[1], sharding.make_mesh(1)))
    ckpt.close()
    messages = [str(w.message) for w in record]
    assert any("step 3" in m and "moved it to 3.corrupt" in m for m in messages)
    assert any("step 2" in m and "lost its checksums" in m for m in messages)
    assert step == 1 and _same(restored, states[1])


def test_steps_without_checksums_restore_with_a_warning(tmp_path):
    """Older jaxgen versions (no checksums at all), or a run killed between the commit of its
    newest step and its checksums: restored unverified, then checksummed."""
    states = _saved(tmp_path, use_async=False)
    for name in ("checksums.json", "3.sha256.json", "2.sha256.json", "1.sha256.json"):
        (tmp_path / "ckpt" / name).unlink()
    ckpt = Checkpointer(tmp_path / "ckpt")
    with pytest.warns(RuntimeWarning, match="step 3 .* has no checksums"):
        restored, step = ckpt.restore_latest(_abstract(states[1], sharding.make_mesh(1)))
    ckpt.close()
    assert step == 3 and _same(restored, states[3])
    assert (tmp_path / "ckpt" / "3.sha256.json").exists()


def test_read_only_skips_damage_and_writes_nothing(tmp_path):
    states = _saved(tmp_path, use_async=False)
    _damage(tmp_path / "ckpt" / "3", "truncate")
    before = sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    ckpt = Checkpointer(tmp_path / "ckpt", read_only=True)
    with pytest.warns(RuntimeWarning, match="step 3 .*skipped it"):
        restored, step = ckpt.restore_latest(_abstract(states[1], sharding.make_mesh(1)))
    with pytest.raises(CheckpointError, match="read-only"):
        ckpt.save(4, states[1])
    ckpt.close()
    assert step == 2 and _same(restored, states[2])
    after = sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    assert after == before


# ----------------------------------------------------------------------------- every file


def _damage_one(path: pathlib.Path, how: str) -> None:
    raw = bytearray(path.read_bytes())
    if how == "flip":
        if not raw:
            raw = bytearray(b"\1")
        else:
            raw[len(raw) // 2] ^= 1
    elif how == "truncate":
        raw = raw[: len(raw) // 2]
    elif how == "garbage":
        raw = bytearray(np.random.default_rng(0).integers(0, 256, max(len(raw), 8), np.uint8))
    path.write_bytes(bytes(raw))
    if how == "delete":
        path.unlink()


@pytest.fixture(scope="module")
def saved_template(tmp_path_factory):
    directory = tmp_path_factory.mktemp("template")
    return directory, _saved(directory, use_async=False)


@pytest.mark.parametrize("how", ["flip", "truncate", "garbage", "delete"])
def test_damage_to_any_file_of_a_step_falls_back_exactly(tmp_path, saved_template, how):
    # Every kind of file a step holds (Orbax's metadata, its array index and data files,
    # the checksum manifest itself): damaged one at a time, each is caught, the step is set
    # aside and the previous one restores exactly. Nothing damaged is ever trusted.
    import shutil
    import warnings

    template, states = saved_template
    root = template / "ckpt"
    files = sorted(p.relative_to(root) for p in (root / "3").rglob("*") if p.is_file())
    files.append(pathlib.Path("3.sha256.json"))
    assert len(files) >= 4, files  # metadata, manifest, data, checksums at least
    mesh = sharding.make_mesh(1)
    for relative in files:
        work = tmp_path / how / str(relative).replace("/", "_")
        shutil.copytree(template / "ckpt", work)
        _damage_one(work / relative, how)
        ckpt = Checkpointer(work)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            restored, step = ckpt.restore_latest(_abstract(states[1], mesh))
        ckpt.close()
        messages = " ".join(str(w.message) for w in caught)
        assert "step 3" in messages, f"{how} {relative}: no warning"
        if how == "delete" and relative.name == "3.sha256.json":
            # Only the newest step's manifest is gone, its data intact: the same state as a
            # kill between Orbax's commit and the manifest, so it restores, with a warning.
            assert step == 3 and _same(restored, states[3])
            continue
        assert step == 2 and _same(restored, states[2]), f"{how} {relative}: restored step {step}"
        assert (work / "3.corrupt").is_dir(), f"{how} {relative}: step 3 was not set aside"
