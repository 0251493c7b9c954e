"""ActNorm (``jaxgen.flows.actnorm``): bijector maths and the data-dependent init.

* Round trip (x64, 1e-12) and ``log_det == slogdet(jacfwd)`` = ``H W sum(log_scale)``
  (1e-10) on images and flat data; negative control: dropping the ``H W`` factor.
* ``actnorm_data_init`` gives outputs with mean 0 and standard deviation 1 per channel
  (1e-5) on data far from that; negative control: the raw data are far from it.
* A batch sharded over the 8 simulated devices through ``jax.shard_map`` with ``axis_name``
  gets the same init as the whole batch on one device; negative control: without
  ``axis_name`` each device's statistics are its own and differ from the global ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxgen.flows import actnorm_data_init, actnorm_forward, actnorm_inverse
from tests.flows.jacobians import per_example_log_abs_det

N_DEV = 8


@pytest.mark.parametrize("shape", [(2, 3, 2), (3,)])
def test_actnorm_inverse_and_log_det(x64, shape):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, *shape)))
    c = shape[-1]
    log_scale, bias = jnp.asarray(rng.normal(size=c)), jnp.asarray(rng.normal(size=c))
    y, log_det = actnorm_forward(x, log_scale, bias)
    x_back, log_det_inv = actnorm_inverse(y, log_scale, bias)
    assert float(jnp.max(jnp.abs(x_back - x))) < 1e-12
    positions = int(np.prod(shape[:-1]))
    np.testing.assert_allclose(log_det, positions * float(jnp.sum(log_scale)) * np.ones(3))
    np.testing.assert_allclose(log_det_inv, -log_det, atol=1e-14)
    ref = per_example_log_abs_det(lambda v: actnorm_forward(v, log_scale, bias)[0], x)
    err = float(jnp.max(jnp.abs(log_det - ref)))
    assert err < 1e-10, err
    if positions > 1:  # Negative control: forgetting the number of positions.
        assert float(jnp.min(jnp.abs(jnp.sum(log_scale) - ref))) > 0.1


def test_data_init_standardizes_each_channel():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(16, 3, 3, 2)) * [3.0, 0.2] + [5.0, -1.0], jnp.float32)
    log_scale, bias = actnorm_data_init(x)
    y = actnorm_forward(x, log_scale, bias)[0]
    mean, std = jnp.mean(y, axis=(0, 1, 2)), jnp.std(y, axis=(0, 1, 2))
    print(f"after init: mean {np.asarray(mean)}, std {np.asarray(std)}")
    assert float(jnp.max(jnp.abs(mean))) < 1e-5
    assert float(jnp.max(jnp.abs(std - 1.0))) < 1e-5
    # Negative control: the raw data are far from standardized.
    assert float(jnp.max(jnp.abs(jnp.std(x, axis=(0, 1, 2)) - 1.0))) > 0.5
    with pytest.raises(ValueError, match="log_scale and bias must have shape \\(2,\\)"):
        actnorm_forward(x, log_scale[:1], bias)


def test_data_init_over_sharded_batch_is_global():
    assert jax.device_count() >= N_DEV
    rng = np.random.default_rng(2)
    # Shards with different statistics: device d's examples are shifted by d.
    x = rng.normal(size=(N_DEV * 2, 2, 2, 3)) + np.arange(N_DEV).repeat(2)[:, None, None, None]
    x = jnp.asarray(x, jnp.float32)
    mesh = jax.make_mesh((N_DEV,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))

    def sharded(axis_name):
        return jax.shard_map(
            lambda v: actnorm_data_init(v, axis_name=axis_name),
            mesh=mesh,
            in_specs=P("data"),
            out_specs=P() if axis_name else P("data"),
        )

    glob = actnorm_data_init(x)
    got = sharded("data")(x)
    for a, b in zip(got, glob, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Negative control: per-device statistics (no axis_name) differ from the global ones.
    local_log_scale, _ = sharded(None)(x)  # (N_DEV * 3,): one init per device
    local = np.asarray(local_log_scale).reshape(N_DEV, 3)
    gap = float(np.max(np.abs(local - np.asarray(glob[0])[None, :])))
    print(f"global log_scale {np.asarray(glob[0])}; max per-device gap {gap:.2f}")
    assert gap > 0.5
