"""The VAE family's samplers follow the shared conventions (``jaxgen.core.sampling``).

* They return ``SamplerOutput`` with their counted network passes (ladder: ``L - 1``
  top-down passes and the decoder; factorized code prior: one).
* The size is ``shape = (B, *event)``; every example is drawn from its own key, so a batch
  of 16 is exactly the first 16 rows of a batch of 64 for the same key (bitwise: each
  example's computation does not depend on the others'), and per-example keys
  ``example_keys(key, 64, start=16)`` give rows 16..63.
* ``decoder_sample`` (a draw from a given decoder output, no network) draws per example too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core import SamplerOutput, example_keys
from jaxgen.vae.code_prior import factorized_prior_sample
from jaxgen.vae.gaussian import DiagonalGaussian
from jaxgen.vae.hierarchical import ladder_sample
from jaxgen.vae.likelihoods import LIKELIHOODS, decoder_sample, num_decoder_params

D = 3
_rng = np.random.default_rng(0)
W1, W2 = (jnp.asarray(_rng.standard_normal((D, D)), jnp.float32) for _ in range(2))


def _top_down(z):
    return DiagonalGaussian(jnp.tanh(z @ W1), 0.1 * (z @ W2) - 0.5)


def _decoder(z):
    return jnp.sin(z)


def _ladder(key, shape):
    return ladder_sample([_top_down, _top_down], _decoder, key, shape, temperature=0.8)


LOGITS = jnp.asarray(_rng.standard_normal((2, 3, 5)), jnp.float32)


def _prior(key, shape):
    return factorized_prior_sample(LOGITS, key, shape, temperature=1.3)


SAMPLERS = {
    "ladder_sample": (_ladder, (D,), 3),
    "factorized_prior_sample": (_prior, (2, 3), 1),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_batch_16_is_the_first_16_rows_of_batch_64(name):
    fn, event, nfe = SAMPLERS[name]
    key = jax.random.key(7)
    small = fn(key, (16, *event))
    large = fn(key, (64, *event))
    assert isinstance(small, SamplerOutput) and small.nfe == nfe == large.nfe
    assert small.samples.shape == (16, *event) and large.samples.shape == (64, *event)
    np.testing.assert_array_equal(small.samples, large.samples[:16])  # exact
    # A later chunk from per-example keys equals the same rows of the whole draw.
    tail = fn(example_keys(key, 48, start=16), (48, *event))
    np.testing.assert_array_equal(tail.samples, large.samples[16:])
    # Negative control: another seed draws other samples.
    assert not np.array_equal(fn(jax.random.key(8), (16, *event)).samples, small.samples)
    # jit keeps nfe static and the samples unchanged.
    jitted = jax.jit(fn, static_argnums=1)(key, (16, *event))
    assert jitted.nfe == nfe
    np.testing.assert_allclose(jitted.samples, small.samples, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", LIKELIHOODS)
def test_decoder_sample_draws_each_example_from_its_own_key(name):
    channels = 2
    out = jnp.asarray(
        _rng.standard_normal((64, 4, num_decoder_params(name) * channels)), jnp.float32
    )
    kwargs = {"num_levels": 9} if name == "discretized_logistic" else {}
    key = jax.random.key(3)
    large = decoder_sample(name, out, key, **kwargs)
    small = decoder_sample(name, out[:16], key, **kwargs)
    np.testing.assert_array_equal(small, large[:16])
    tail = decoder_sample(name, out[16:], example_keys(key, 48, start=16), **kwargs)
    np.testing.assert_array_equal(tail, large[16:])
    with pytest.raises(ValueError, match="got 48 per-example keys for a batch of 64"):
        decoder_sample(name, out, example_keys(key, 48), **kwargs)
