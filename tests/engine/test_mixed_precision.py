"""Mixed precision (issue 19): ``train.compute_dtype=bfloat16`` computes the networks in bf16
while parameters, optimizer state, EMA and the loss reductions stay float32.

* a bf16 step of a tiny DDPM U-Net keeps every parameter, optimizer-state and EMA leaf
  float32 and its loss float32, and its program (the traced jaxpr) has matmuls and
  convolutions on bf16 operands; the float32 config's program has none (negative control);
* the per-example loss is reduced in float32: bf16 values whose bf16 mean rounds elsewhere
  give the float32 mean, in the single-objective and in the two-player step;
* bf16 and float32 agree on the same state and batch: loss to 1e-2 relative, gradient
  (SGD's update) direction to cosine > 0.99;
* one bf16 step is finite, with bf16 matmuls or convolutions, for a GAN and a VAE;
* the compute-dtype scope, its parser and the floating cast do what they say.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.core import precision
from jaxgen.data.digits import load_digits
from jaxgen.engine.adversarial_step import make_adversarial_train_step
from jaxgen.engine.step import init_train_state, make_train_step
from jaxgen.run import build_recipe, load_train_dataset

ROOT = pathlib.Path(__file__).resolve().parents[2]
BF16 = "train.compute_dtype=bfloat16"
HEAVY_OPS = ("dot_general", "conv_general_dilated")

DDPM_TINY = [
    "model.unet.channels=8",
    "model.unet.channel_mult=(1,)",
    "model.unet.num_res_blocks=1",
    "model.unet.attention_resolutions=()",
    "model.unet.num_groups=4",
    "model.unet.dropout=0.0",
    "model.num_timesteps=10",
    "data.batch_size=8",
]


def _config(name: str, *overrides: str):
    return apply_overrides(load_experiment(str(ROOT / "experiments" / f"{name}.py")), overrides)


def _batch(n: int) -> dict[str, jax.Array]:
    images, labels = load_digits("train")
    return {"image": jnp.asarray(images[:n]), "label": jnp.asarray(labels[:n])}


def _heavy_operand_dtypes(jaxpr) -> list[str]:
    """The operand dtypes of every matmul and convolution in ``jaxpr``, sub-jaxprs included
    (``pjit``, ``custom_vjp``, ``scan`` bodies)."""
    found: list[str] = []

    def walk(jp) -> None:
        for eqn in jp.eqns:
            if eqn.primitive.name in HEAVY_OPS:
                found.extend(str(v.aval.dtype) for v in eqn.invars)
            for param in eqn.params.values():
                for sub in param if isinstance(param, (list, tuple)) else (param,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(jaxpr.jaxpr if hasattr(jaxpr, "jaxpr") else jaxpr)
    return found


def _floating_dtypes(tree) -> set[str]:
    return {str(x.dtype) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


# ----------------------------------------------------------------------------- DDPM U-Net


@pytest.fixture(scope="module")
def ddpm_steps():
    """One SGD-with-momentum step of a tiny DDPM U-Net in float32 and in bf16, from the same
    state and batch: ``{dtype: (jaxpr, new_state, metrics)}`` and the state. The U-Net's
    output layer starts at zero (every other gradient would be zero): it is perturbed."""
    f32 = _config("ddpm_digits", *DDPM_TINY)
    bf16 = dataclasses.replace(f32, train=dataclasses.replace(f32.train, compute_dtype="bfloat16"))
    dataset = load_train_dataset(f32)
    recipe = build_recipe(f32, dataset)
    tx = optax.sgd(1.0, momentum=0.9)  # first update = -gradient; a float32 trace state
    state = jax.jit(lambda: init_train_state(recipe.init_params, tx, seed=0))()
    noise = jax.random.normal(jax.random.key(1), state.params["conv_out"]["kernel"].shape)
    params = {**state.params, "conv_out": {**state.params["conv_out"], "kernel": 0.1 * noise}}
    state = dataclasses.replace(state, params=params, ema_params=params)
    batch = {"image": _batch(8)["image"]}
    out = {}
    for name, config in (("float32", f32), ("bfloat16", bf16)):
        # each config's own recipe: the step takes its precision from train.compute_dtype
        step = build_recipe(config, dataset).make_train_step(tx)
        traced = jax.jit(step).trace(state, batch)
        new_state, metrics = traced.lower().compile()(state, batch)
        out[name] = (traced.jaxpr, new_state, metrics)
    return state, out


def test_bf16_step_keeps_state_and_loss_float32(ddpm_steps):
    _, out = ddpm_steps
    _, new_state, metrics = out["bfloat16"]
    for part in ("params", "opt_state", "ema_params"):
        tree = getattr(new_state, part)
        assert _floating_dtypes(tree) == {"float32"}, part
    assert metrics["loss"].dtype == jnp.float32 and metrics["mse"].dtype == jnp.float32
    assert float(metrics["finite"]) == 1.0
    # float32 in value too, not bf16 numbers stored as float32 (a bf16 master copy)
    for tree in (new_state.params, new_state.ema_params):
        leaves = [np.asarray(x) for x in jax.tree.leaves(tree)]  # NumPy: no compiles
        assert any(np.any(x != x.astype(jnp.bfloat16).astype(x.dtype)) for x in leaves)


def test_bf16_step_computes_in_bf16_and_float32_step_does_not(ddpm_steps):
    _, out = ddpm_steps
    bf16_ops = _heavy_operand_dtypes(out["bfloat16"][0])
    f32_ops = _heavy_operand_dtypes(out["float32"][0])
    assert f32_ops and bf16_ops  # the walk sees the U-Net's convolutions
    assert set(bf16_ops) == {"bfloat16"}  # every U-Net layer, forward and backward
    assert "bfloat16" not in f32_ops  # negative control: the float32 config is untouched


def test_bf16_and_float32_losses_and_updates_agree(ddpm_steps):
    state, out = ddpm_steps
    loss = {k: float(v[2]["loss"]) for k, v in out.items()}
    assert loss["bfloat16"] != loss["float32"]  # it did compute in another precision
    np.testing.assert_allclose(loss["bfloat16"], loss["float32"], rtol=1e-2)

    def update(new_state):  # in NumPy: eager JAX would compile each op
        diffs = jax.tree.map(
            lambda a, b: np.ravel(np.asarray(a, np.float64) - np.asarray(b, np.float64)),
            new_state.params,
            state.params,
        )
        return np.concatenate(jax.tree.leaves(diffs))

    u32, u16 = update(out["float32"][1]), update(out["bfloat16"][1])
    cosine = float(u32 @ u16 / (np.linalg.norm(u32) * np.linalg.norm(u16)))
    assert cosine > 0.99, cosine


# ----------------------------------------------------------------------------- reductions

# bf16 holds 1 and 1 + 2^-7 exactly; their mean 1 + 2^-8 is not a bf16 number (a bf16 mean
# rounds it to 1.0), and it is exact in float32.
VALUES = np.array([1.0, 1.0 + 2.0**-7], np.float32)
F32_MEAN = 1.0 + 2.0**-8


def _standin_loss(seen: list):
    """A loss computing in bf16 whatever the scope says; it records the scope it is traced
    in. Its per-example values are ``w * x`` in bf16, its term half of them."""

    def loss_fn(params, batch, key, step):
        del key, step
        seen.append(precision.current_compute_dtype())
        w = next(iter(jax.tree.leaves(params))).astype(jnp.bfloat16)
        per_example = w * batch["x"].astype(jnp.bfloat16)
        return per_example, {"half": per_example / 2}, {}

    return loss_fn


def _scalar_state(params):
    return init_train_state(lambda key: params, optax.sgd(1.0), seed=0)


def test_single_objective_reduction_is_float32():
    seen: list = []
    step = make_train_step(
        _standin_loss(seen), optax.sgd(1.0), ema_decay=0.5, compute_dtype="bfloat16"
    )
    new_state, metrics = jax.jit(step)(_scalar_state({"w": jnp.ones(())}), {"x": VALUES})
    assert seen == [jnp.bfloat16]  # traced once, inside the bf16 scope
    assert metrics["loss"].dtype == jnp.float32 and float(metrics["loss"]) == F32_MEAN
    assert float(metrics["half"]) == F32_MEAN / 2
    # negative control: the same values reduced in bf16 lose the 2^-8
    assert float(jnp.mean(jnp.asarray(VALUES, jnp.bfloat16))) != F32_MEAN
    assert _floating_dtypes((new_state.params, new_state.ema_params)) == {"float32"}


def test_float32_step_traces_without_a_scope():
    seen: list = []
    step = make_train_step(_standin_loss(seen), optax.sgd(1.0), ema_decay=0.5)
    with precision.compute_dtype_scope("bfloat16"):  # a caller's scope does not leak in
        jax.eval_shape(step, _scalar_state({"w": jnp.ones(())}), {"x": VALUES})
    assert seen == [None]


def test_adversarial_reductions_are_float32():
    seen: list = []
    loss = _standin_loss(seen)
    params = {"generator": {"w": jnp.ones(())}, "discriminator": {"w": jnp.ones(())}}
    txs = {"generator": optax.sgd(1.0), "discriminator": optax.sgd(1.0)}
    state = init_train_state(lambda key: params, txs, seed=0)

    def d_loss(p, b, k, s):
        per_example, terms, updates = loss(p["discriminator"], b, k, s)
        return per_example, {"d_half": terms["half"]}, updates

    def g_loss(p, b, k, s):
        return loss(p["generator"], b, k, s)

    step = make_adversarial_train_step(d_loss, g_loss, txs, ema_decay=0.5, compute_dtype="bfloat16")
    new_state, metrics = jax.jit(step)(state, {"x": VALUES})
    assert seen == [jnp.bfloat16, jnp.bfloat16]
    for name in ("discriminator_loss", "generator_loss"):
        assert metrics[name].dtype == jnp.float32 and float(metrics[name]) == F32_MEAN, name
    assert float(metrics["d_half"]) == float(metrics["half"]) == F32_MEAN / 2
    assert _floating_dtypes((new_state.params, new_state.ema_params)) == {"float32"}


# ----------------------------------------------------------------------------- other kinds

OTHER_KINDS = {
    "gan": (
        "gan_digits",
        ["model.generator_features=4", "model.discriminator_features=4", "model.latent_dim=4"],
    ),
    "vae": ("vae_digits", ["model.hidden=(16,)", "model.latent_dim=4"]),
    "spectral-norm gan": (  # hand-written lax convolutions: they must cast their inputs
        "sngan_digits",
        ["model.generator_features=4", "model.discriminator_features=4", "model.latent_dim=4"],
    ),
    "pixelcnn": ("pixelcnn_digits", ["model.hidden_channels=8", "model.num_layers=2"]),
}


@pytest.mark.parametrize("kind", sorted(OTHER_KINDS))
def test_one_bf16_step_is_finite(kind):
    name, overrides = OTHER_KINDS[kind]
    config = _config(name, *overrides, "data.batch_size=8", BF16)
    recipe = build_recipe(config, load_train_dataset(config))
    tx = recipe.make_optimizer(10)
    state = jax.jit(lambda: init_train_state(recipe.init_params, tx, seed=0))()
    batch = _batch(8 * recipe.minibatches_per_step)
    traced = jax.jit(recipe.make_train_step(tx)).trace(state, batch)
    assert "bfloat16" in _heavy_operand_dtypes(traced.jaxpr)
    new_state, metrics = traced.lower().compile()(state, batch)
    assert float(metrics["finite"]) == 1.0
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert _floating_dtypes((new_state.params, new_state.opt_state, new_state.ema_params)) == {
        "float32"
    }


# ----------------------------------------------------------------------------- the helpers


def test_scope_parser_and_cast():
    assert precision.current_compute_dtype() is None
    with precision.compute_dtype_scope("bfloat16"):
        assert precision.current_compute_dtype() == jnp.bfloat16
        with precision.compute_dtype_scope("float32"):  # float32 switches a scope off
            assert precision.current_compute_dtype() is None
        assert precision.current_compute_dtype() == jnp.bfloat16
    assert precision.current_compute_dtype() is None
    with pytest.raises(ValueError, match="float32, bfloat16, got 'float16'"):
        precision.parse_compute_dtype("float16")
    tree = {"x": jnp.ones(2), "n": jnp.arange(2), "k": jax.random.key(0)}
    cast = precision.cast_floating(tree, jnp.bfloat16)
    assert cast["x"].dtype == jnp.bfloat16 and cast["n"].dtype == tree["n"].dtype
    assert cast["k"].dtype == tree["k"].dtype


def test_an_unknown_compute_dtype_override_is_refused_by_name():
    with pytest.raises(ConfigError, match="train.compute_dtype must be one of .* got 'bf16'"):
        _config("gan_digits", "train.compute_dtype=bf16")
