"""The generator's sampler (``jaxgen.gan.sample``): one latent per example key, reference
batch normalization, and samples that do not depend on the batch they are drawn in.

* latent ``b`` is ``normal(fold_in(key, b))`` (or ``2 uniform - 1``), by hand;
* with a reference batch the DCGAN generator's output for one example is the same in a
  batch of 16 and of 64 (and drawn alone); the negative control: with each batch's own
  statistics (``reference_size=0``) it is not;
* the reference rows are normalized with their own statistics: ``G([z_ref; z], R)[:R]``
  is the plain batch-statistics ``G(z_ref)`` (the reference batch is an ordinary batch);
* ``nfe = 1``; bad shapes and missing reference labels are refused.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgen import gan
from jaxgen.core import SamplerOutput, example_keys
from jaxgen.gan.sampling import REFERENCE_SEED, reference_latents
from jaxgen.nets.dcgan import DCGANGenerator

LATENT = 4


def _generator(num_classes: int = 0) -> DCGANGenerator:
    return DCGANGenerator(
        LATENT, (8, 8, 1), base_features=4, num_classes=num_classes, rngs=nnx.Rngs(0)
    )


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_latents_come_from_each_examples_key(distribution):
    keys = example_keys(jax.random.key(3), 5)
    z = gan.latents(keys, LATENT, distribution=distribution)
    for b in range(5):
        k = jax.random.fold_in(jax.random.key(3), b)
        if distribution == "normal":
            expected = jax.random.normal(k, (LATENT,))
        else:
            expected = 2.0 * jax.random.uniform(k, (LATENT,)) - 1.0
        np.testing.assert_allclose(z[b], expected, rtol=1e-6)
    if distribution == "uniform":
        assert float(jnp.max(jnp.abs(z))) <= 1.0


def test_sample_is_the_generator_of_the_per_example_latents():
    out = gan.sample(lambda z, labels: 2.0 * z, jax.random.key(1), (7, LATENT))
    assert isinstance(out, SamplerOutput) and out.nfe == 1
    z = gan.latents(example_keys(jax.random.key(1), 7), LATENT)
    np.testing.assert_allclose(out.samples, 2.0 * z)
    # a batch of per-example keys is used as it is
    keys = example_keys(jax.random.key(1), 7, start=3)
    np.testing.assert_allclose(
        gan.sample(lambda z, labels: z, keys, (7, LATENT)).samples, gan.latents(keys, LATENT)
    )


@pytest.mark.parametrize("num_classes", [0, 3])
def test_reference_batch_makes_dcgan_samples_batch_independent(num_classes):
    g = _generator(num_classes)
    key = jax.random.key(2)

    def draw(n, reference_size, first=0):
        labels = (jnp.arange(n) + first) % num_classes if num_classes else None
        ref_labels = jnp.arange(reference_size) % num_classes if num_classes else None
        return gan.sample(
            g,
            example_keys(key, n, start=first),
            (n, LATENT),
            labels=labels,
            reference_size=reference_size,
            reference_labels=ref_labels if reference_size else None,
        ).samples

    big, small = draw(64, 32), draw(16, 32)
    assert big.shape == (64, 8, 8, 1)
    np.testing.assert_allclose(small, big[:16], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(draw(16, 32, first=16), big[16:32], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(draw(1, 32, first=5), big[5:6], rtol=1e-5, atol=1e-6)
    # Negative control: with each batch's own statistics the samples depend on the batch.
    own_big, own_small = draw(64, 0), draw(16, 0)
    assert float(jnp.max(jnp.abs(own_small - own_big[:16]))) > 1e-3


def test_reference_rows_are_an_ordinary_batch():
    """``G([z_ref; z], num_reference=R)[:R] = G(z_ref)``: the reference rows are normalized
    with their own batch statistics, so the statistics applied to the samples are those of
    a training-mode pass of the reference batch (and the reference latents are fixed)."""
    g = _generator()
    z_ref = reference_latents(32, LATENT)
    keys = example_keys(jax.random.key(REFERENCE_SEED), 32)
    np.testing.assert_allclose(z_ref, gan.latents(keys, LATENT))
    z = jax.random.normal(jax.random.key(0), (8, LATENT))
    both = g(jnp.concatenate([z_ref, z]), num_reference=32)
    np.testing.assert_allclose(both[:32], g(z_ref), rtol=1e-5, atol=1e-6)
    # and the sampler's rows are the rest of that one pass
    out = gan.sample(g, jax.random.key(4), (8, LATENT), reference_size=32)
    z = gan.latents(example_keys(jax.random.key(4), 8), LATENT)
    expected = g(jnp.concatenate([z_ref, z]), num_reference=32)[32:]
    np.testing.assert_allclose(out.samples, expected, rtol=1e-5, atol=1e-6)
    assert out.nfe == 1


def test_sampler_refuses_bad_arguments():
    g = _generator(num_classes=3)
    with pytest.raises(ValueError, match=r"\(B, latent_dim\)"):
        gan.sample(g, jax.random.key(0), (4,))
    with pytest.raises(ValueError, match="reference_labels"):
        gan.sample(g, jax.random.key(0), (4, LATENT), labels=jnp.zeros(4, int), reference_size=8)
    with pytest.raises(ValueError, match="labels must have shape"):
        gan.sample(g, jax.random.key(0), (4, LATENT), labels=jnp.zeros(3, int))
    with pytest.raises(ValueError, match="latent distribution"):
        gan.sample(g, jax.random.key(0), (4, LATENT), latent_distribution="cauchy")
