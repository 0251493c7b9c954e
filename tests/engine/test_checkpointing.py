"""Checkpoints: exact round trip, fallback past damaged steps, nothing deleted."""

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
