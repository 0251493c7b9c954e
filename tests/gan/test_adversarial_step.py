"""The two-player step against a plain Python reference of Goodfellow et al.'s Algorithm 1.

The players are tiny linear models with data- and key-dependent losses, so a wrong
minibatch split, key, update order or optimizer state shows up in the parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from jaxgen.engine import sharding
from jaxgen.engine.adversarial_step import (
    make_adversarial_train_step,
    merge_state_updates,
    split_minibatches,
)
from jaxgen.engine.ema import ema_decay_at, ema_update
from jaxgen.engine.step import init_train_state

K = 3
B = 8
DIM = 4
EMA = 0.9


def d_loss(params, batch, key, step):
    """A critic ``v . x`` pulled toward the data and away from ``w``-shifted noise."""
    v, w = params["discriminator"]["v"], params["generator"]["w"]
    x = batch["x"]
    noise = jax.random.normal(key, x.shape)
    fake = noise + w[None, :]
    per_example = jnp.tanh(fake @ v) - jnp.tanh(x @ v) + 0.1 * jnp.sum(v * v)
    updates = {"discriminator": {"u": jnp.mean(x, axis=0) + v}}
    return per_example, {"d_score": jnp.tanh(x @ v)}, updates


def g_loss(params, batch, key, step):
    v, w = params["discriminator"]["v"], params["generator"]["w"]
    fake = jax.random.normal(key, batch["x"].shape) + w[None, :]
    return -jnp.tanh(fake @ v) + 0.01 * jnp.sum(w**2), {"g_score": fake @ v}, {}


def optimizers():
    # SGD for the generator: its step is sensitive to the gradient's size (Adam's first is not).
    return {"generator": optax.sgd(0.05, momentum=0.5), "discriminator": optax.adam(0.1, b1=0.5)}


def init(key):
    kv, kw = jax.random.split(key)
    return {
        "generator": {"w": jax.random.normal(kw, (DIM,))},
        "discriminator": {"v": jax.random.normal(kv, (DIM,)), "u": jnp.zeros(DIM)},
    }


def make_state():
    return init_train_state(init, optimizers(), seed=3)


def make_batch(seed=0):
    x = np.random.default_rng(seed).normal(size=(K * B, DIM)).astype(np.float32) + 1.0
    return {"x": jnp.asarray(x)}


def reference_round(state, batch, *, interleaved=True, generator_sees_new_d=True):
    """Algorithm 1 by hand: k discriminator steps on minibatches, then one generator step."""
    tx = optimizers()
    key = state.step_key()
    d_key, g_key = jax.random.split(key)
    d_keys = jax.random.split(d_key, K)
    params = jax.tree.map(jnp.asarray, state.params)
    d_state = state.opt_state["discriminator"]
    x = np.asarray(batch["x"])
    for j in range(K):
        rows = x[j::K] if interleaved else x[j * B : (j + 1) * B]

        def objective(own, rows=rows, j=j, params=params):
            full = {**params, "discriminator": own}
            per_example, _, updates = d_loss(full, {"x": rows}, d_keys[j], state.step)
            return jnp.mean(per_example), updates

        grads, updates = jax.grad(objective, has_aux=True)(params["discriminator"])
        step_updates, d_state = tx["discriminator"].update(grads, d_state, params["discriminator"])
        own = optax.apply_updates(params["discriminator"], step_updates)
        own = {**own, "u": updates["discriminator"]["u"]}
        params = {**params, "discriminator": own}
    critic_params = (
        params
        if generator_sees_new_d
        else {**params, "discriminator": state.params["discriminator"]}
    )
    rows = x[K - 1 :: K] if interleaved else x[(K - 1) * B :]

    def g_objective(w_tree):
        full = {**critic_params, "generator": w_tree}
        return jnp.mean(g_loss(full, {"x": rows}, g_key, state.step)[0])

    grads = jax.grad(g_objective)(params["generator"])
    step_updates, _ = tx["generator"].update(
        grads, state.opt_state["generator"], params["generator"]
    )
    params = {**params, "generator": optax.apply_updates(params["generator"], step_updates)}
    return params


def max_diff(a, b):
    return max(
        float(jnp.max(jnp.abs(x - y)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_split_minibatches_interleaves_rows():
    x = jnp.arange(12).reshape(12, 1)
    parts = split_minibatches({"x": x}, 3)["x"]
    np.testing.assert_array_equal(parts[:, :, 0], [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]])
    with pytest.raises(ValueError, match="does not split"):
        split_minibatches({"x": jnp.zeros((10, 1))}, 3)


def test_step_matches_algorithm_1_by_hand():
    step = jax.jit(
        make_adversarial_train_step(
            d_loss, g_loss, optimizers(), discriminator_steps=K, ema_decay=EMA
        )
    )
    state = make_state()
    batch = make_batch()
    new_state, metrics = step(state, batch)
    expected = reference_round(state, batch)
    assert max_diff(new_state.params, expected) < 1e-6
    # The optimizer's value of the non-gradient leaf "u" was replaced by the loss's update.
    assert float(jnp.max(jnp.abs(new_state.params["discriminator"]["u"]))) > 0.1
    # Negative controls: contiguous minibatches, or a generator against the old critic.
    assert max_diff(new_state.params, reference_round(state, batch, interleaved=False)) > 1e-3
    stale = reference_round(state, batch, generator_sees_new_d=False)
    assert max_diff(new_state.params["generator"], stale["generator"]) > 1e-4
    # EMA of both players, with the engine's warm-up decay.
    decay = ema_decay_at(state.step, decay=EMA)
    assert (
        max_diff(new_state.ema_params, ema_update(state.ema_params, new_state.params, decay=decay))
        < 1e-7
    )
    assert int(new_state.step) == 1
    for name in ("discriminator_loss", "generator_loss", "d_score", "g_score", "loss", "grad_norm"):
        assert np.isfinite(float(metrics[name])), name
    assert float(metrics["finite"]) == 1.0
    # A second round continues from the carried optimizer states.
    state2, _ = step(new_state, make_batch(1))
    assert max_diff(state2.params, reference_round(new_state, make_batch(1))) < 1e-6


def test_constraint_after_every_discriminator_update():
    clip = 0.05
    step = jax.jit(
        make_adversarial_train_step(
            d_loss,
            g_loss,
            optimizers(),
            discriminator_steps=K,
            ema_decay=EMA,
            discriminator_constraint=lambda p: jax.tree.map(lambda a: jnp.clip(a, -clip, clip), p),
        )
    )
    new_state, _ = step(make_state(), make_batch())
    assert float(jnp.max(jnp.abs(new_state.params["discriminator"]["v"]))) <= np.float32(clip)
    assert float(jnp.max(jnp.abs(new_state.params["generator"]["w"]))) > clip  # G unclipped


def test_eight_devices_match_one():
    mesh = sharding.make_mesh()
    assert mesh.size == 8
    fn = make_adversarial_train_step(
        d_loss, g_loss, optimizers(), discriminator_steps=K, ema_decay=EMA
    )
    state, batch = make_state(), make_batch()
    one, _ = jax.jit(fn)(state, batch)
    sharded_batch = jax.device_put(batch, NamedSharding(mesh, PartitionSpec("data")))
    many, _ = jax.jit(fn, in_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh)))(
        state, sharded_batch
    )
    assert max_diff(one.params, many.params) < 1e-6


def test_bad_inputs_named():
    with pytest.raises(ValueError, match="discriminator_steps"):
        make_adversarial_train_step(
            d_loss, g_loss, optimizers(), discriminator_steps=0, ema_decay=EMA
        )
    with pytest.raises(ValueError, match="generator"):
        make_adversarial_train_step(
            d_loss, g_loss, {"discriminator": optax.sgd(1.0)}, ema_decay=EMA
        )
    params = {"a": {"b": jnp.zeros(3)}}
    assert float(merge_state_updates(params, {"a": {"b": jnp.ones(3)}})["a"]["b"][0]) == 1.0
    with pytest.raises(ValueError, match="name no parameter"):
        merge_state_updates(params, {"a": {"c": jnp.ones(3)}})
    with pytest.raises(ValueError, match="shape"):
        merge_state_updates(params, {"a": {"b": jnp.ones(4)}})
