"""Factoring out and base densities (``jaxgen.flows.multiscale``).

* ``split_channels`` / ``concat_channels`` and ``flatten_latents`` / ``unflatten_latents``
  are exact inverses, and the flat latent is the parts in order, finest first, each
  flattened per example (by hand in NumPy; negative control: the reversed order differs).
* The base log-densities equal ``scipy.stats.norm.logpdf`` summed per example (1e-12);
  negative control: swapping mean and log-std.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from jaxgen.flows import (
    concat_channels,
    flatten_latents,
    gaussian_log_prob,
    split_channels,
    standard_normal_log_prob,
    unflatten_latents,
)


def test_split_and_flatten_are_exact_inverses():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(2, 2, 2, 4)).astype(np.float32)
    kept, factored = split_channels(jnp.asarray(h))
    np.testing.assert_array_equal(kept, h[..., :2])
    np.testing.assert_array_equal(factored, h[..., 2:])
    np.testing.assert_array_equal(concat_channels(kept, factored), h)

    top = rng.normal(size=(2, 1, 1, 8)).astype(np.float32)
    z = np.asarray(flatten_latents([factored, jnp.asarray(top)]))
    by_hand = np.concatenate([h[..., 2:].reshape(2, -1), top.reshape(2, -1)], axis=1)
    np.testing.assert_array_equal(z, by_hand)
    back = unflatten_latents(jnp.asarray(z), [(2, 2, 2), (1, 1, 8)])
    np.testing.assert_array_equal(back[0], h[..., 2:])
    np.testing.assert_array_equal(back[1], top)
    # Negative control: the other order is a different latent.
    assert not np.array_equal(np.asarray(flatten_latents([jnp.asarray(top), factored])), z)
    with pytest.raises(ValueError, match="C even"):
        split_channels(jnp.ones((1, 2, 2, 3)))
    with pytest.raises(ValueError, match="\\(B, 16\\)"):
        unflatten_latents(jnp.ones((2, 15)), [(2, 2, 2), (1, 1, 8)])


def test_base_densities_match_scipy(x64):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3, 2, 2, 2))
    mean = rng.normal(size=z.shape)
    log_std = 0.5 * rng.normal(size=z.shape)
    np.testing.assert_allclose(
        standard_normal_log_prob(jnp.asarray(z)),
        norm.logpdf(z).reshape(3, -1).sum(1),
        rtol=1e-12,
    )
    ref = norm.logpdf(z, mean, np.exp(log_std)).reshape(3, -1).sum(1)
    got = gaussian_log_prob(jnp.asarray(z), jnp.asarray(mean), jnp.asarray(log_std))
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    swapped = gaussian_log_prob(jnp.asarray(z), jnp.asarray(log_std), jnp.asarray(mean))
    assert float(jnp.min(jnp.abs(swapped - ref))) > 0.5
    with pytest.raises(ValueError, match="z's shape"):
        gaussian_log_prob(jnp.asarray(z), jnp.asarray(mean[:1]), jnp.asarray(log_std))
