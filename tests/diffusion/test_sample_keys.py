"""Samples depend only on the seed and the example's index (issue 12, core.sampling).

For ancestral sampling and DDIM (eta = 0 and eta = 1) with the exact eps of the 2-D test
mixture: a draw of 16 with one key equals the first 16 rows of a draw of 64 with the same
key, and a draw with the per-example keys ``core.example_keys(key, 16, start=16)`` equals
rows 16..31. The comparison is exact (``assert_array_equal``): every random number of an
example comes from its own key, and on this backend the oracle's batched arithmetic gives
each row the same bits whatever the batch size (measured; a backend whose reductions
depended on the batch size would need ``allclose(1e-6)``). Negative control: the same
assertion fails for a draw with another key.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from jaxgen import core, diffusion
from jaxgen.distributions import ddpm_eps_oracle
from tests.diffusion.mixture_oracle import MIXTURE

SCHEDULE = diffusion.cosine_schedule(40)

SAMPLERS = {
    "ancestral": functools.partial(diffusion.ancestral_sample, model_variance="beta"),
    "ddim_eta0": functools.partial(diffusion.ddim_sample, num_steps=10, eta=0.0),
    "ddim_eta1": functools.partial(diffusion.ddim_sample, num_steps=10, eta=1.0),
}


@functools.partial(jax.jit, static_argnames=("name", "shape"))
def _draw(key, *, name, shape):
    return SAMPLERS[name](ddpm_eps_oracle(MIXTURE, SCHEDULE), SCHEDULE, key, shape)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sample_depends_only_on_seed_and_index(name):
    key = jax.random.key(11)
    big = _draw(key, name=name, shape=(64, 2))
    small = _draw(key, name=name, shape=(16, 2))
    assert big.nfe == small.nfe
    np.testing.assert_array_equal(small.samples, big.samples[:16])
    chunk = _draw(core.example_keys(key, 16, start=16), name=name, shape=(16, 2))
    np.testing.assert_array_equal(chunk.samples, big.samples[16:32])
    other = _draw(jax.random.key(12), name=name, shape=(16, 2))
    assert not np.allclose(other.samples, big.samples[:16], rtol=1e-6, atol=1e-6)


def test_per_example_keys_must_match_the_batch():
    keys = core.example_keys(jax.random.key(0), 8)
    with pytest.raises(ValueError, match="8 per-example keys for a batch of 16"):
        diffusion.ancestral_sample(lambda x, t: x, SCHEDULE, keys, (16, 2))


def test_sample_is_the_same_on_one_and_eight_devices():
    """The per-example keys sharded over 8 devices (each device draws its slice of the
    batch) give the one-device draw: nothing couples the examples."""
    devices = jax.devices()
    assert len(devices) >= 8
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    keys = core.example_keys(jax.random.key(11), 64)
    one = _draw(keys, name="ddim_eta1", shape=(64, 2)).samples
    sharded_draw = jax.jit(
        lambda k: _draw(k, name="ddim_eta1", shape=(64, 2)).samples, out_shardings=batch
    )
    eight = sharded_draw(jax.device_put(keys, batch))
    assert len(eight.sharding.device_set) == 8
    np.testing.assert_array_equal(np.asarray(eight), np.asarray(one))
