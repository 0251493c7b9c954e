"""pix2pix's objectives and sampler (``jaxgen.gan.pix2pix``) with fixed linear networks.

``G(c) = a c + b`` and a per-pixel "PatchGAN" ``l(c, x) = alpha x + beta c`` (every pixel a
patch): the discriminator loss is the mean over pixels of ``softplus(-l(c, x)) +
softplus(l(c, G(c)))``, the generator's adversarial term the mean of ``softplus(-l(c,
G(c)))``, and its L1 term ``mean |G(c) - x|``; the generator loss is ``adversarial +
lambda * l1``. Noise maps of example ``b`` are ``normal(fold_in(key, b))``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core import SamplerOutput, example_keys
from jaxgen.gan import pix2pix

B, H, W, CH = 3, 4, 4, 2
A_, B_ = 0.7, -0.2
ALPHA, BETA = 1.3, -0.6


def generator(condition, noise):
    out = A_ * condition + B_
    return out if noise is None else out + noise[..., :CH]


def discriminator(condition, image):
    return (ALPHA * image + BETA * condition).sum(axis=-1)  # (B, H, W) patch logits


def softplus(x):
    return np.logaddexp(0.0, x)


def _data():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.uniform(-1, 1, (B, H, W, CH))), jnp.asarray(
        rng.uniform(-1, 1, (B, H, W, CH))
    )


def test_discriminator_objective_is_the_mean_patch_loss(x64):
    c, x = _data()
    per_example, terms, updates = pix2pix.discriminator_objective(
        generator, discriminator, c, x, jax.random.key(0)
    )
    c, x = np.asarray(c), np.asarray(x)
    real = (ALPHA * x + BETA * c).sum(-1)
    fake = (ALPHA * (A_ * c + B_) + BETA * c).sum(-1)
    expected = (softplus(-real) + softplus(fake)).reshape(B, -1).mean(1)
    np.testing.assert_allclose(per_example, expected, rtol=1e-10)
    np.testing.assert_allclose(terms["d_real"], (1 / (1 + np.exp(-real))).reshape(B, -1).mean(1))
    np.testing.assert_allclose(terms["d_fake"], (1 / (1 + np.exp(-fake))).reshape(B, -1).mean(1))
    assert updates == {}


@pytest.mark.parametrize("l1_weight", [0.0, 100.0])
def test_generator_objective_is_adversarial_plus_lambda_l1(l1_weight, x64):
    c, x = _data()
    per_example, terms, _ = pix2pix.generator_objective(
        generator, discriminator, c, x, jax.random.key(0), l1_weight=l1_weight
    )
    c, x = np.asarray(c), np.asarray(x)
    g = A_ * c + B_
    l1 = np.abs(g - x).reshape(B, -1).mean(1)
    adversarial = softplus(-(ALPHA * g + BETA * c).sum(-1)).reshape(B, -1).mean(1)
    np.testing.assert_allclose(terms["l1"], l1, rtol=1e-10)
    np.testing.assert_allclose(terms["adversarial"], adversarial, rtol=1e-10)
    np.testing.assert_allclose(per_example - terms["adversarial"], l1_weight * l1, rtol=1e-10)
    np.testing.assert_allclose(per_example, adversarial + l1_weight * l1, rtol=1e-10)


def test_noise_maps_and_samples_come_from_each_examples_key():
    c, _ = _data()
    key = jax.random.key(5)
    out = pix2pix.sample(generator, key, c.shape, condition=c, noise_channels=CH)
    assert isinstance(out, SamplerOutput) and out.nfe == 1
    for b in range(B):
        noise = jax.random.normal(jax.random.fold_in(key, b), (H, W, CH), c.dtype)
        np.testing.assert_allclose(out.samples[b], A_ * c[b] + B_ + noise, rtol=1e-6, atol=1e-6)
    # one example drawn alone with its own key equals its row of the batch
    alone = pix2pix.sample(
        generator,
        example_keys(key, 1, start=2),
        (1, H, W, CH),
        condition=c[2:],
        noise_channels=CH,
    )
    np.testing.assert_allclose(alone.samples[0], out.samples[2], rtol=1e-6)
    # without noise channels the sampler is the deterministic translation
    plain = pix2pix.sample(generator, key, c.shape, condition=c)
    np.testing.assert_allclose(plain.samples, A_ * c + B_, rtol=1e-6)


def test_sampler_refuses_mismatched_shapes():
    c, _ = _data()
    with pytest.raises(ValueError, match="condition holds 3 examples"):
        pix2pix.sample(generator, jax.random.key(0), (4, H, W, CH), condition=c)
    with pytest.raises(ValueError, match="expected"):
        pix2pix.sample(generator, jax.random.key(0), (B, H, W, 1), condition=c)
    with pytest.raises(ValueError, match="l1_weight"):
        pix2pix.generator_objective(
            generator, discriminator, c, c, jax.random.key(0), l1_weight=-1.0
        )


def test_reference_conditions_fix_the_statistics_of_a_batch_norm_generator():
    """A toy generator that centres by its batch mean: with a reference, the mean is the
    reference rows' (noise included, from the fixed key), so a row's output does not depend
    on its batch; without, it does."""

    def centring(condition, noise, num_reference=0):
        x = condition + noise[..., :CH]
        stats = x[:num_reference] if num_reference else x
        return x - stats.mean(axis=0, keepdims=True)

    c, ref = _data()
    key = jax.random.key(1)
    out = pix2pix.sample(centring, key, c.shape, condition=c, noise_channels=CH, reference=ref)
    ref_noise = jax.vmap(lambda k: jax.random.normal(k, (H, W, CH), c.dtype))(
        example_keys(jax.random.key(pix2pix.REFERENCE_SEED), B)
    )
    noise = jax.vmap(lambda k: jax.random.normal(k, (H, W, CH), c.dtype))(example_keys(key, B))
    expected = c + noise - (ref + ref_noise).mean(axis=0, keepdims=True)
    np.testing.assert_allclose(out.samples, expected, rtol=1e-5, atol=1e-6)
    one = pix2pix.sample(
        centring,
        example_keys(key, 1, start=1),
        (1, H, W, CH),
        condition=c[1:2],
        noise_channels=CH,
        reference=ref,
    )
    np.testing.assert_allclose(one.samples[0], out.samples[1], rtol=1e-5, atol=1e-6)
    own = pix2pix.sample(centring, key, c.shape, condition=c, noise_channels=CH)
    assert float(jnp.max(jnp.abs(own.samples - out.samples))) > 1e-3  # negative control
    with pytest.raises(ValueError, match="reference conditions"):
        pix2pix.sample(centring, key, c.shape, condition=c, reference=ref[..., :1])
