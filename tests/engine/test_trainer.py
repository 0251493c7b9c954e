"""The training engine end to end on the built-in digits.

The engine does not depend on the model family, so these tests train the cheapest model
the library has (an MLP VAE with one hidden layer of 16 units and 4 latents: it compiles
in a few seconds, where a tiny U-Net takes tens). The DDPM paper config keeps its own
end-to-end test (in tests/test_cli.py) with a small U-Net.

* 8 simulated devices (data parallel, and FSDP) give the same loss and parameters as one;
* a run interrupted and resumed ends exactly where an uninterrupted run ends;
* a non-finite loss stops the run, naming the step, with the last checkpoint intact;
* metrics, TensorBoard events and sample grids are written.
"""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
import pytest

from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.data.digits import load_digits
from jaxgen.engine import sharding
from jaxgen.engine.checkpointing import Checkpointer
from jaxgen.engine.step import make_train_step
from jaxgen.engine.trainer import abstract_train_state
from jaxgen.run import NonFiniteLossError, build_recipe, load_train_dataset, train

ROOT = pathlib.Path(__file__).resolve().parents[2]

EXPERIMENT = ROOT / "experiments" / "vae_digits.py"
TINY = [
    "model.hidden=(16,)",
    "model.latent_dim=4",
    "model.eval_importance_samples=8",
    "model.eval_chunk_size=8",
    "data.batch_size=16",
    "train.log_every=2",
    "train.checkpoint_every=3",
    "train.sample_every=0",
    "train.num_grid_samples=4",
    "train.progress_bar=false",
    "train.async_checkpoints=false",
    "optim.warmup_steps=2",
]


def tiny_config(*extra: str):
    return apply_overrides(load_experiment(str(EXPERIMENT)), [*TINY, *extra])


def leaves_close(a, b, **tol) -> bool:
    return all(
        np.allclose(x, y, **tol)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def _run_steps(config, mesh, num_steps: int):
    dataset = load_train_dataset(config)
    recipe = build_recipe(config, dataset)
    tx, init_fn, _, shardings = abstract_train_state(recipe, config, mesh)
    state = jax.jit(init_fn, out_shardings=shardings)()
    step = jax.jit(
        make_train_step(
            recipe.training_loss,
            tx,
            ema_decay=config.optim.ema_decay,
            state_collections=recipe.state_collections,
        ),
        in_shardings=(shardings, sharding.batch_sharding(mesh)),
        out_shardings=(shardings, sharding.replicated(mesh)),
    )
    images, _ = load_digits("train")
    losses = []
    for s in range(num_steps):
        batch = {
            "image": jax.device_put(images[s * 16 : (s + 1) * 16], sharding.batch_sharding(mesh))
        }
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    return state, np.array(losses)


def _sharding_config(shard_params: bool):
    return tiny_config(f"train.shard_params={shard_params}", "train.shard_params_min_size=64")


@pytest.fixture(scope="module")
def single_device_run():
    """Three steps on one device: the reference for both layouts below (on one device
    ``shard_params`` changes nothing: every leaf is replicated, so the run is computed once)."""
    config = _sharding_config(True)
    shapes = jax.eval_shape(
        build_recipe(config, load_train_dataset(config)).init_params, jax.random.key(0)
    )
    mesh = sharding.make_mesh(1)
    assert sharding.state_shardings(shapes, mesh, shard_params=True, min_size=64) == (
        sharding.state_shardings(shapes, mesh, shard_params=False)
    )
    return _run_steps(config, mesh, 3)


def _split_axes(tree) -> set:
    """The mesh axes some leaf of ``tree`` is split over."""
    axes = set()
    for x in jax.tree.leaves(tree):
        for entry in x.sharding.spec:
            axes.update((entry,) if isinstance(entry, str) else (entry or ()))
    return axes


@pytest.mark.parametrize(
    "shard_params, fsdp, split_over",
    [(False, 1, set()), (True, 1, {"data", "fsdp"}), (True, 4, {"fsdp"})],
    ids=["replicated", "fsdp-all-devices", "data2-x-fsdp4"],
)
def test_sharded_step_matches_single_device(shard_params, fsdp, split_over, single_device_run):
    """Data parallel, FSDP over all 8 devices, and a 2 x 4 (data x fsdp) mesh whose
    parameters are split over the fsdp axis only: the same steps as one device."""
    single, losses_1 = single_device_run
    mesh = sharding.make_mesh(8, fsdp=fsdp)
    multi, losses_8 = _run_steps(_sharding_config(shard_params), mesh, 3)
    np.testing.assert_allclose(losses_8, losses_1, rtol=2e-5)
    assert leaves_close(multi.params, single.params, rtol=1e-4, atol=1e-6)
    assert leaves_close(multi.ema_params, single.ema_params, rtol=1e-4, atol=1e-6)
    assert _split_axes(multi.params) == split_over
    assert _split_axes(multi.opt_state) == split_over
    assert not np.allclose(losses_1[0], losses_1[1])  # the steps do change the model


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path):
    config = tiny_config("train.num_steps=6")
    straight = train(config, tmp_path / "straight")
    first = train(config, tmp_path / "resumed", stop_at_step=4)
    assert first.stopped_early and first.step == 4
    resumed = train(config, tmp_path / "resumed")
    assert resumed.step == 6
    assert leaves_close(resumed.state.params, straight.state.params, rtol=0, atol=0)
    assert leaves_close(resumed.state.ema_params, straight.state.ema_params, rtol=0, atol=0)
    # A different seed gives a different run (the comparison above can fail).
    other = train(apply_overrides(config, ["train.seed=1"]), tmp_path / "other")
    assert not leaves_close(other.state.params, straight.state.params)


def test_outputs_metrics_tensorboard_and_samples(tmp_path, monkeypatch):
    from jaxgen.recipes.vae import VAERecipe

    traces = []
    original = VAERecipe.training_loss

    def counting_loss(self, *args):
        traces.append(1)  # runs only while jax traces the step
        return original(self, *args)

    monkeypatch.setattr(VAERecipe, "training_loss", counting_loss)
    config = tiny_config("train.num_steps=4", "train.sample_every=4")
    result = train(config, tmp_path, mesh=sharding.make_mesh(1))
    assert len(traces) == 1, "the train step was traced more than once (a silent recompile)"
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4]
    assert all(np.isfinite(r["loss"]) and r["images_per_sec"] > 0 for r in lines)
    assert any((tmp_path / "tensorboard").iterdir())
    assert (tmp_path / "samples" / "latest.png").exists()
    assert (tmp_path / "samples" / "step_0000004.png").exists()
    assert json.loads((tmp_path / "config.json").read_text())["model"]["hidden"] == [16]
    assert result.metrics["loss"] > 0


def test_nonfinite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    config = tiny_config(
        "train.num_steps=12",
        "train.checkpoint_every=1",
        "optim.learning_rate=1e10",  # finite first updates, then the loss overflows
        "optim.warmup_steps=0",
    )
    pattern = r"non-finite training loss, gradient or update at step (\d+)"
    with pytest.raises(NonFiniteLossError, match=pattern) as info:
        train(config, tmp_path, mesh=sharding.make_mesh(1))
    bad_step = int(info.value.args[0].split("at step ")[1].split()[0])
    ckpt = Checkpointer(tmp_path / "checkpoints")
    assert ckpt.latest_step() == bad_step - 1
    dataset = load_train_dataset(config)
    _, _, abstract, _ = abstract_train_state(
        build_recipe(config, dataset), config, sharding.make_mesh()
    )
    state, step = ckpt.restore_latest(abstract)  # the last good one restores
    ckpt.close()
    assert step == bad_step - 1 and int(state.step) == step


def test_resuming_with_a_different_model_is_refused(tmp_path):
    # (the step of the outputs test's run: after that test, it comes from the compile cache)
    train(tiny_config("train.num_steps=4"), tmp_path, mesh=sharding.make_mesh(1))
    with pytest.raises(ConfigError, match="model.hidden changed"):
        train(tiny_config("train.num_steps=5", "model.hidden=(32,)"), tmp_path)
    with pytest.raises(
        ConfigError, match="optim.decay='cosine', whose learning rate depends on num_steps"
    ):
        train(tiny_config("train.num_steps=5"), tmp_path)


def test_train_and_evaluate_returns_both(tmp_path):
    from jaxgen.run import train_and_evaluate

    config = tiny_config("train.num_steps=2", "eval.max_examples=16", "eval.batch_size=8")
    out = train_and_evaluate(config, tmp_path, num_samples=16)
    assert out.train.step == 2 and out.eval["step"] == 2.0
    assert out.eval["num_examples"] == 16 and np.isfinite(out.eval["bits_per_dim"])
    assert out.eval["digit_fd_num_samples"] == 16  # the digits' sample metric was chosen
    assert (tmp_path / "eval_test_step2.json").exists()
