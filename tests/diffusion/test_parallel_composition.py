"""The pure functions compose with the legacy ``jax.pmap`` and with ``jax.shard_map``:
per-device results equal the same computation vmapped on one device, and gradients of
the pmean-reduced loss equal the single-device gradient."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxgen import diffusion

N_DEV = 8
SCHEDULE = diffusion.linear_schedule(100)


def _data():
    x0 = jax.random.normal(jax.random.key(0), (N_DEV, 2, 3))
    keys = jax.random.split(jax.random.key(1), N_DEV)
    return x0, keys


def _loss(w, x, key):
    return diffusion.ddpm_loss(lambda xt, t: w * xt, SCHEDULE, x, key)[0]


def test_loss_and_sampler_under_pmap_match_vmap():
    assert jax.device_count() >= N_DEV
    x0, keys = _data()
    w = jnp.float32(0.3)
    by_pmap = jax.pmap(lambda x, k: _loss(w, x, k))(x0, keys)
    by_vmap = jax.jit(jax.vmap(lambda x, k: _loss(w, x, k)))(x0, keys)  # (jit: one compile)
    np.testing.assert_allclose(by_pmap, by_vmap, rtol=1e-5, atol=1e-7)

    def sample(k):
        return diffusion.ddim_sample(
            lambda xt, t: w * xt, SCHEDULE, k, (2, 3), num_steps=10
        ).samples

    by_vmap = jax.jit(jax.vmap(sample))(keys)
    np.testing.assert_allclose(jax.pmap(sample)(keys), by_vmap, rtol=1e-5, atol=1e-6)


def test_shard_map_loss_and_gradient_match_one_device():
    x0, keys = _data()
    mesh = jax.make_mesh((N_DEV,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))

    def sharded_mean_loss(w):
        def per_device(x, k):
            return jax.lax.pmean(jnp.mean(_loss(w, x[0], k[0])), "data")

        return jax.shard_map(per_device, mesh=mesh, in_specs=(P("data"), P("data")), out_specs=P())(
            x0, keys
        )

    def reference_mean_loss(w):
        return jnp.mean(jax.vmap(lambda x, k: _loss(w, x, k))(x0, keys))

    w = jnp.float32(0.3)
    # (jitted: one compile each, where op-by-op dispatch compiled every primitive)
    loss_sharded, g_sharded = jax.jit(jax.value_and_grad(sharded_mean_loss))(w)
    loss_ref, g_ref = jax.jit(jax.value_and_grad(reference_mean_loss))(w)
    np.testing.assert_allclose(loss_sharded, loss_ref, rtol=1e-5)
    np.testing.assert_allclose(g_sharded, g_ref, rtol=1e-4)
    assert abs(float(g_ref)) > 1e-3  # a real gradient, not a vacuous 0 == 0
