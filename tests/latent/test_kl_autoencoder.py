"""Latent diffusion's KL-regularised first stage and the first-stage protocol on VQ-VAE.

* :func:`jaxgen.vae.kl_autoencoder_loss`: the KL term is the closed-form Gaussian KL, the
  reconstruction term is the decoder's ``-log p(x | z)`` at the reparameterised ``z`` (both
  computed by hand from the pure function's parts), and ``kl_weight`` scales only the KL;
* the recipe: ``encode_latents`` is the deterministic posterior mean, ``decode_latents``
  of it is the recipe's reconstruction, latents of the wrong shape are refused by name,
  and the evaluation's PSNR / latent spread agree with their definitions;
* VQ-VAE: ``encode_latents`` is ``z_e``, ``decode_latents`` of a grid of codebook rows is
  ``decode_codes`` of those codes, ``encode_codes`` is the quantiser's indices of ``z_e``,
  ``decode_codes(encode_codes(x))`` is the reconstruction, bad codes are refused.
"""

from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.data.digits import load_digits
from jaxgen.recipes.kl_autoencoder import KLAutoencoderRecipe, psnr
from jaxgen.recipes.vqvae import VQVAERecipe
from jaxgen.vae import likelihoods
from jaxgen.vae import vector_quantization as vq
from jaxgen.vae.gaussian import DiagonalGaussian
from jaxgen.vae.kl_autoencoder import kl_autoencoder_loss, posterior_mean_std

ROOT = pathlib.Path(__file__).resolve().parents[2]
EVAL = ["eval.batch_size=8", "eval.max_examples=16"]


def _config(name: str, *overrides: str):
    config = load_experiment(str(ROOT / "experiments" / f"{name}.py"))
    return apply_overrides(config, list(overrides))


@pytest.fixture(scope="module")
def images():
    return jnp.asarray(load_digits("test")[0][:16], jnp.float32)


# ----------------------------------------------------------------------------- pure loss

MEAN = np.array([[[0.5, -1.0], [2.0, 0.0]], [[0.0, 0.3], [-0.7, 1.2]]])  # (B=2, 2, 2)
LOG_STD = np.array([[[-0.5, 0.2], [0.0, -1.0]], [[0.1, -0.3], [0.4, -2.0]]])
X = np.array([[[0.1, 0.2], [0.3, -0.4]], [[-1.0, 0.5], [0.0, 0.7]]])
FIXED_STD = 0.5
LOG_LIK = lambda out, x: likelihoods.log_likelihood(  # noqa: E731
    "gaussian_fixed", out, x, fixed_std=FIXED_STD
)


def _loss(kl_weight, key=None):
    key = jax.random.key(3) if key is None else key
    posterior = DiagonalGaussian(jnp.asarray(MEAN), jnp.asarray(LOG_STD))  # float64 under x64
    encoder = lambda x: posterior  # noqa: E731
    decoder = lambda z: 2.0 * z  # noqa: E731
    return kl_autoencoder_loss(encoder, decoder, LOG_LIK, jnp.asarray(X), key, kl_weight=kl_weight)


def test_terms_are_the_closed_form_kl_and_the_decoder_likelihood(x64):
    key = jax.random.key(3)
    loss, terms = _loss(1e-6, key)
    assert terms["kl"].dtype == jnp.float64
    s2 = np.exp(2 * LOG_STD)
    m = MEAN
    kl = 0.5 * np.sum(s2 + m**2 - 1.0 - np.log(s2), axis=(1, 2))  # KL(N(m, s^2) || N(0, 1))
    np.testing.assert_allclose(terms["kl"], kl, rtol=1e-12)
    eps = jax.random.normal(key, MEAN.shape, jnp.float64)  # DiagonalGaussian.sample's draw
    z = MEAN + np.sqrt(s2) * np.asarray(eps)
    u = (X - 2.0 * z) / FIXED_STD
    rec = np.sum(0.5 * u**2 + math.log(FIXED_STD) + 0.5 * math.log(2 * math.pi), axis=(1, 2))
    np.testing.assert_allclose(terms["reconstruction"], rec, rtol=1e-12)
    np.testing.assert_allclose(loss, rec + 1e-6 * kl, rtol=1e-12)
    np.testing.assert_allclose(terms["elbo"], -(rec + kl), rtol=1e-12)
    assert not np.allclose(terms["reconstruction"], terms["kl"])  # distinct terms


def test_kl_weight_scales_only_the_kl():
    base, base_terms = _loss(0.0)
    loss, terms = _loss(2.5)
    np.testing.assert_allclose(base, base_terms["reconstruction"], rtol=1e-6)
    for name in ("reconstruction", "kl", "elbo"):
        np.testing.assert_allclose(terms[name], base_terms[name], rtol=1e-6)
    np.testing.assert_allclose(terms["weighted_kl"], 2.5 * terms["kl"], rtol=1e-6)
    np.testing.assert_allclose(loss - base, 2.5 * base_terms["kl"], rtol=1e-5)
    with pytest.raises(ValueError, match="kl_weight"):
        _loss(-1.0)


def test_posterior_mean_std_pools_all_latent_elements():
    means = np.array([[[1.0, 3.0]], [[-1.0, 1.0]]])  # elements 1, 3, -1, 1: mean 1, var 2
    assert posterior_mean_std(means) == pytest.approx(math.sqrt(2.0))
    with pytest.raises(ValueError, match="N >= 2"):
        posterior_mean_std(means[:1])


# ----------------------------------------------------------------------------- KL recipe

TINY_KL = [
    "model.channels=8",
    "model.residual_channels=4",
    "model.num_residual_blocks=1",
    "model.latent_channels=2",
    *EVAL,
]


@pytest.fixture(scope="module")
def kl_recipe():
    config = _config("kl_autoencoder_digits", *TINY_KL)
    recipe = KLAutoencoderRecipe(config, data_shape=(8, 8, 1), num_levels=17)
    return recipe, recipe.init_params(jax.random.key(0))


def test_encode_latents_is_the_deterministic_posterior_mean(kl_recipe, images):
    recipe, params = kl_recipe
    assert recipe.latent_shape == (4, 4, 2)
    encode = jax.jit(recipe.encode_latents)
    z = encode(params, images)
    assert z.shape == (16, 4, 4, 2)
    np.testing.assert_array_equal(z, encode(params, images))
    posterior = recipe.encoder_fn(params)(images)
    np.testing.assert_allclose(z, posterior.mean, atol=1e-6)
    assert not np.allclose(z, posterior.sample(jax.random.key(1)), atol=1e-3)  # not a draw


def test_decode_of_encode_is_the_reconstruction(kl_recipe, images):
    recipe, params = kl_recipe
    pictures = jax.jit(recipe.decode_latents)(params, recipe.encode_latents(params, images))
    np.testing.assert_allclose(pictures, recipe.reconstruct(params, images), atol=1e-6)
    out = recipe.decoder_fn(params)(recipe.encoder_fn(params)(images).mean)
    np.testing.assert_allclose(pictures, jnp.clip(out[..., :1], -1, 1), atol=1e-6)
    assert pictures.shape == images.shape and float(jnp.max(jnp.abs(pictures))) <= 1.0


def test_latents_of_the_wrong_shape_are_refused(kl_recipe, images):
    recipe, params = kl_recipe
    with pytest.raises(ValueError, match=r"\(4, 4, 2\).*got \(2, 4, 4, 3\)"):
        recipe.decode_latents(params, jnp.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"got \(4, 4, 2\)"):
        recipe.decode_latents(params, jnp.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match=r"images.*\(8, 8, 1\)"):
        recipe.encode_latents(params, jnp.zeros((2, 4, 4, 1)))


def test_evaluation_reports_reconstruction_kl_and_latent_scale(kl_recipe, images):
    recipe, params = kl_recipe
    out = recipe.evaluate(params, np.asarray(images), jax.random.key(0))
    mse = float(np.mean((recipe.reconstruct(params, images) - images) ** 2))
    assert out["mean_squared_error"] == pytest.approx(mse, rel=1e-4)
    assert out["psnr"] == pytest.approx(10 * math.log10(4.0 / mse), rel=1e-4)
    std = float(np.asarray(recipe.encode_latents(params, images), np.float64).std())
    assert out["latent_std"] == pytest.approx(std, rel=1e-4)
    for key in ("reconstruction_bits_per_dim", "kl_nats", "neg_elbo_nats"):
        assert np.isfinite(out[key]) and out[key] > 0, key
    assert out["neg_elbo_nats"] > out["kl_nats"]
    assert psnr(0.04) == pytest.approx(20.0)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.num_downsamples=4", "divisible"),
        ("model.kl_weight=-1.0", "kl_weight"),
        ("model.latent_channels=0", "latent_channels"),
    ],
)
def test_bad_config_is_refused_by_name(override, message):
    config = _config("kl_autoencoder_digits", override)
    with pytest.raises(ConfigError, match=message):
        KLAutoencoderRecipe(config, data_shape=(8, 8, 1), num_levels=17)


# ----------------------------------------------------------------------------- VQ-VAE

TINY_VQ = [
    "model.channels=8",
    "model.residual_channels=4",
    "model.num_residual_blocks=1",
    "model.num_codes=8",
    "model.embedding_dim=4",
    *EVAL,
]


@pytest.fixture(scope="module")
def vq_recipe():
    config = _config("vqvae_digits", *TINY_VQ)
    recipe = VQVAERecipe(config, data_shape=(8, 8, 1), num_levels=17)
    return recipe, recipe.init_params(jax.random.key(0))


def test_vqvae_protocol_attributes(vq_recipe):
    recipe, _ = vq_recipe
    assert recipe.latent_shape == (4, 4, 4)
    assert recipe.code_shapes == ((4, 4),)
    assert recipe.code_vocab_sizes == (8,)


def test_vqvae_latents_are_z_e_and_decode_through_the_quantiser(vq_recipe, images):
    recipe, params = vq_recipe
    z_e = jax.jit(recipe.encode_latents)(params, images)
    np.testing.assert_allclose(z_e, recipe.encode(params, images)[0], atol=1e-6)
    (codes,) = jax.jit(recipe.encode_codes)(params, images)
    assert codes.dtype == jnp.int32 and codes.shape == (16, 4, 4)
    np.testing.assert_array_equal(codes, vq.quantize(z_e, recipe.codebook(params)).indices)
    decode_codes = jax.jit(recipe.decode_codes)
    recon = recipe.reconstruct(params, images)
    np.testing.assert_allclose(decode_codes(params, (codes,)), recon, atol=1e-6)
    np.testing.assert_allclose(recipe.decode_latents(params, z_e), recon, atol=1e-6)
    assert float(jnp.max(jnp.abs(recon))) <= 1.0
    # a grid of codebook rows decodes like those codes (and differs for other codes)
    grid = jax.random.randint(jax.random.key(5), (3, 4, 4), 0, 8, jnp.int32)
    rows = jnp.take(recipe.codebook(params), grid, axis=0)
    pictures = recipe.decode_latents(params, rows)
    np.testing.assert_allclose(pictures, decode_codes(params, (grid,)), atol=1e-6)
    assert not np.allclose(pictures, decode_codes(params, ((grid + 1) % 8,)), atol=1e-4)


def test_vqvae_bad_latents_and_codes_are_refused(vq_recipe):
    recipe, params = vq_recipe
    with pytest.raises(ValueError, match=r"\(4, 4, 4\).*got \(2, 4, 4, 3\)"):
        recipe.decode_latents(params, jnp.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"\(4, 4\).*got \(2, 2, 2\)"):
        recipe.decode_codes(params, (jnp.zeros((2, 2, 2), jnp.int32),))
    with pytest.raises(ValueError, match="integer.*float32"):
        recipe.decode_codes(params, (jnp.zeros((2, 4, 4), jnp.float32),))
    with pytest.raises(ValueError, match="tuple of 1 array"):
        recipe.decode_codes(params, jnp.zeros((2, 4, 4), jnp.int32))
    with pytest.raises(ValueError, match="tuple of 1 array.*2 arrays"):
        recipe.decode_codes(params, (jnp.zeros((2, 4, 4), jnp.int32),) * 2)
    with pytest.raises(ValueError, match=r"\[0, 7\].*got values in \[8, 8\]"):
        recipe.decode_codes(params, (jnp.full((2, 4, 4), 8, jnp.int32),))
