"""Glow's data-dependent ActNorm initialization (``Glow.data_init``, ``data_init_params``).

A tiny Glow (4x4x1, two levels of two steps, random parameters) initialized on a batch:

* layer by layer: the first ActNorm gets ``actnorm_data_init`` of the squeezed,
  preprocessed batch, and the second gets that of the output of the first step *after* its
  own init (1e-5), whose ActNorm output then has mean 0 and standard deviation 1 per
  channel (1e-5); negative control: the statistics of the first step's output before its
  init give a different second ActNorm;
* over the 8 simulated devices (``jax.shard_map`` with ``axis_name``) the pure
  ``data_init_params`` gives the same parameters as on the whole batch (1e-5); negative
  control: without ``axis_name`` each device initializes from its own shard.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxgen.flows import actnorm_data_init, actnorm_forward, squeeze
from jaxgen.nets.flow_nets import Glow, data_init_params
from tests.flows.flow_params import random_params

N_DEV = 8


def _glow(rngs):
    return Glow((4, 4, 1), num_levels=2, num_steps=2, hidden_channels=4, rngs=rngs)


def _batch(n):
    # Examples of different brightness: shards then have different statistics.
    rng = np.random.default_rng(0)
    base = np.linspace(0.2, 0.8, n)[:, None, None, None]
    return jnp.asarray(np.clip(base + 0.1 * rng.normal(size=(n, 4, 4, 1)), 0.01, 0.99), jnp.float32)


GRAPHDEF, PARAMS = random_params(_glow, 0, dtype=np.float32)
BATCH = 2 * N_DEV


@jax.jit
def _init(params, x):
    """The pure init, compiled once for the batch size ``BATCH``."""
    return data_init_params(GRAPHDEF, params, x)


def _actnorm(params, level, step):
    p = params["levels"][level][step]
    return np.asarray(p["actnorm_log_scale"]), np.asarray(p["actnorm_bias"])


def test_data_init_goes_layer_by_layer():
    x = _batch(BATCH)
    new = _init(PARAMS, x)
    flow = nnx.merge(GRAPHDEF, new)
    before = nnx.merge(GRAPHDEF, PARAMS).levels[0][0]  # the first step, not initialized

    h0 = squeeze(x - 0.5)  # Glow's default preprocessing is the shift y - 1/2
    for got, ref in zip(_actnorm(new, 0, 0), actnorm_data_init(h0), strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    h1 = flow.levels[0][0].forward(h0)[0]  # the first step with its new ActNorm
    ref1 = actnorm_data_init(h1)
    for got, ref in zip(_actnorm(new, 0, 1), ref1, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    out = actnorm_forward(h1, *ref1)[0]
    np.testing.assert_allclose(jnp.mean(out, axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.std(out, axis=(0, 1, 2)), 1.0, atol=1e-5)
    # Negative control: initializing from the first step's output before its init.
    stale = actnorm_data_init(before.forward(h0)[0])[0]
    gap = float(np.max(np.abs(np.asarray(stale) - _actnorm(new, 0, 1)[0])))
    print(f"second ActNorm log-scale: layer-by-layer vs stale input differ by {gap:.3f}")
    assert gap > 0.05
    # Every ActNorm changed (the deepest level included).
    for level in (0, 1):
        for step in (0, 1):
            moved = _actnorm(new, level, step)[0] - _actnorm(PARAMS, level, step)[0]
            assert np.max(np.abs(moved)) > 1e-2


def test_data_init_over_devices_is_global():
    x = _batch(BATCH)
    mesh = jax.make_mesh((N_DEV,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    reference = _init(PARAMS, x)
    sharded = jax.jit(
        jax.shard_map(
            lambda p, v: data_init_params(GRAPHDEF, p, v, axis_name="data"),
            mesh=mesh,
            in_specs=(P(), P("data")),
            out_specs=P(),
        )
    )(PARAMS, x)
    errors = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), sharded, reference)
    worst = max(jax.tree.leaves(errors))
    print(f"sharded vs global init: max difference {worst:.1e}")
    assert worst < 1e-5
    # Negative control: one device's own statistics (its shard alone, tiled to the batch
    # size, which leaves every mean unchanged) differ.
    local = _init(PARAMS, jnp.tile(x[:2], (N_DEV, 1, 1, 1)))
    gap = float(np.max(np.abs(_actnorm(local, 1, 1)[0] - _actnorm(reference, 1, 1)[0])))
    assert gap > 0.05, gap
