"""Factorized code prior and the VQ-VAE bound (``jaxgen.vae.code_prior``) against oracles.

* Normalization: over all ``K^P`` code grids of a small grid, ``logsumexp log p = 0``, and each
  value is the sum of hand-computed log-softmax entries; the raw logits are not normalized.
* Maximum likelihood: at ``logits = log(freq)`` (closed form) the gradient of the mean
  ``factorized_prior_loss`` vanishes and the loss is the empirical entropy; a few hundred
  Adam steps from zero reach the empirical per-position frequencies. Control: the
  generating distribution's logits are not a stationary point.
* Sampling: per-position code frequencies match ``softmax(logits / T)`` (z-scores with the
  binomial standard error, Bonferroni threshold); control: they do not match ``T = 1``'s.
  ``T -> 0`` and ``T = 0`` give the argmax.
* ``vq_negative_elbo`` with the uniform prior adds exactly ``P log K``, the KL of the one-hot
  posterior computed from its definition; a non-uniform prior adds something else.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import log_softmax, logsumexp, softmax

from jaxgen.core import SamplerOutput
from jaxgen.vae.code_prior import (
    factorized_prior_log_prob,
    factorized_prior_loss,
    factorized_prior_sample,
    uniform_prior_log_prob,
    vq_negative_elbo,
)
from tests.diffusion.stats import bonferroni_z

log_prob_jit = jax.jit(factorized_prior_log_prob)
sample_jit = jax.jit(factorized_prior_sample, static_argnums=2)


def test_log_prob_normalizes_over_all_code_grids(x64):
    grid, k = (2, 2), 3
    logits = 2.0 * np.random.default_rng(0).standard_normal((*grid, k))
    every = np.array(list(itertools.product(range(k), repeat=4))).reshape(-1, *grid)  # (81, 2, 2)
    log_p = np.asarray(log_prob_jit(jnp.asarray(logits), jnp.asarray(every)))
    assert log_p.shape == (k**4,)
    assert abs(logsumexp(log_p)) < 1e-12
    # Each value is the sum of the per-position log-softmax entries.
    table = log_softmax(logits, axis=-1).reshape(4, k)
    by_hand = table[np.arange(4)[None, :], every.reshape(-1, 4)].sum(axis=1)
    np.testing.assert_allclose(log_p, by_hand, rtol=1e-12)
    # Negative control: the raw logits summed the same way are not normalized.
    raw = logits.reshape(4, k)[np.arange(4)[None, :], every.reshape(-1, 4)].sum(axis=1)
    assert abs(logsumexp(raw)) > 0.1


def test_maximum_likelihood_logits_recover_the_frequencies(x64):
    grid, k, batch = (2, 3), 4, 400
    rng = np.random.default_rng(1)
    true_p = rng.dirichlet(np.full(k, 2.0), size=grid)  # (2, 3, 4)
    cum = np.cumsum(true_p, axis=-1)
    u = rng.uniform(size=(batch, *grid, 1))
    data = np.minimum(np.sum(u > cum, axis=-1), k - 1)  # (B, 2, 3) categorical draws
    freq = np.stack([np.mean(data == i, axis=0) for i in range(k)], axis=-1)
    assert freq.min() > 0  # every code occurs at every position: the optimum is finite
    indices = jnp.asarray(data, jnp.int32)

    def mean_loss(logits):
        loss, terms = factorized_prior_loss(logits, indices)
        return jnp.mean(loss), (loss, terms)

    grad_fn = jax.jit(jax.value_and_grad(mean_loss, has_aux=True))
    (value, (loss, terms)), grad = grad_fn(jnp.log(jnp.asarray(freq)))
    assert loss.shape == (batch,) and set(terms) == {"prior_nll"}
    np.testing.assert_array_equal(np.asarray(terms["prior_nll"]), np.asarray(loss))
    entropy = -np.sum(freq * np.log(freq))
    np.testing.assert_allclose(value, entropy, rtol=1e-12)
    assert np.max(np.abs(np.asarray(grad))) < 1e-12
    # The gradient of the mean loss is softmax(logits) - freq; the generating
    # distribution's logits are not stationary for this finite sample.
    (_, _), grad_true = grad_fn(jnp.log(jnp.asarray(true_p)))
    np.testing.assert_allclose(grad_true, true_p - freq, atol=1e-12)
    assert np.max(np.abs(np.asarray(grad_true))) > 1e-2

    # A few hundred Adam steps from zero logits reach the same frequencies.
    tx = optax.adam(0.1)

    @jax.jit
    def fit(logits):
        def step(carry, _):
            logits, opt_state = carry
            g = jax.grad(lambda lg: mean_loss(lg)[0])(logits)
            updates, opt_state = tx.update(g, opt_state)
            return (optax.apply_updates(logits, updates), opt_state), None

        (logits, _), _ = jax.lax.scan(step, (logits, tx.init(logits)), None, length=400)
        return logits

    fitted = np.asarray(jax.nn.softmax(fit(jnp.zeros((*grid, k))), axis=-1))
    err = np.max(np.abs(fitted - freq))
    assert err < 1e-6, err
    assert np.max(np.abs(fitted - true_p)) > 1e-2  # control: freq, not true_p, is the target


# One compiled sampler shape for all the sampling tests (the temperature is traced).
NUM_SAMPLES = 4000
LOGITS = np.array([[2.0, 0.0, -1.0, 1.0], [0.0, 1.5, 0.5, -2.0], [-1.0, -1.0, 1.0, 0.0]])


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sampling_frequencies_match_the_tempered_softmax(temperature):
    n, k = NUM_SAMPLES, LOGITS.shape[-1]
    samples = np.asarray(
        sample_jit(jnp.asarray(LOGITS), jax.random.key(2), (n, 3), temperature=temperature).samples
    )
    assert samples.shape == (n, 3) and samples.dtype == np.int32
    counts = np.stack([np.sum(samples == i, axis=0) for i in range(k)], axis=-1)  # (3, K)
    threshold = bonferroni_z(counts.size)

    def max_z(probs):
        return float(np.max(np.abs(counts - n * probs) / np.sqrt(n * probs * (1 - probs))))

    z = max_z(softmax(LOGITS / temperature, axis=-1))
    assert z < threshold, (z, threshold)
    # Negative control: the untempered softmax is rejected.
    z_wrong = max_z(softmax(LOGITS, axis=-1))
    assert z_wrong > threshold, (z_wrong, threshold)


def test_temperature_to_zero_gives_the_argmax():
    mode = np.argmax(LOGITS, axis=-1)  # every row's maximum leads by >= 0.5
    key = jax.random.key(3)
    shape = (NUM_SAMPLES, 3)
    cold = np.asarray(sample_jit(jnp.asarray(LOGITS), key, shape, temperature=1e-3).samples)
    np.testing.assert_array_equal(cold, np.broadcast_to(mode, cold.shape))
    # Negative control: at T = 1 the samples are not all the argmax.
    warm = np.asarray(sample_jit(jnp.asarray(LOGITS), key, shape, temperature=1.0).samples)
    assert np.mean(warm != mode) > 0.2
    # T = 0 exactly: the argmax for every sample, on a 2-D grid.
    grid_logits = jnp.array(
        [[[2.0, 0.0, 1.0], [0.0, 0.5, -1.0]], [[-1.0, 1.0, 0.0], [0.3, 0.0, -0.2]]]
    )
    zero_out = factorized_prior_sample(grid_logits, key, (5, 2, 2), temperature=0.0)
    assert isinstance(zero_out, SamplerOutput) and zero_out.nfe == 1
    zero = np.asarray(zero_out.samples)
    assert zero.shape == (5, 2, 2) and zero.dtype == np.int32
    np.testing.assert_array_equal(zero, np.broadcast_to(np.argmax(grid_logits, -1), zero.shape))


def test_vq_negative_elbo_adds_the_one_hot_kl(x64):
    batch, grid, k = 5, (4, 4), 16
    rng = np.random.default_rng(4)
    indices = jnp.asarray(rng.integers(0, k, size=(batch, *grid)), jnp.int32)
    recon = jnp.asarray(rng.uniform(100.0, 200.0, size=batch))
    uniform = uniform_prior_log_prob(indices, k)
    added = np.asarray(jax.jit(vq_negative_elbo)(recon, uniform) - recon)
    np.testing.assert_allclose(added, 16 * math.log(16), rtol=1e-14)
    # The same number from the definition KL(q || p) = sum_k q_k log(q_k / p_k) per position,
    # q one-hot at the chosen code and p uniform.
    q = np.eye(k)[np.asarray(indices)]  # (B, 4, 4, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(q > 0, q * (np.log(q) - np.log(1.0 / k)), 0.0)
    np.testing.assert_allclose(added, kl.sum(axis=(1, 2, 3)), rtol=1e-14)
    # The factorized prior with zero logits is the uniform prior.
    flat_logits = jnp.zeros((*grid, k))
    np.testing.assert_allclose(log_prob_jit(flat_logits, indices), uniform, rtol=1e-14)
    # Negative control: a non-uniform prior adds a different, example-dependent amount.
    logits = jnp.asarray(rng.standard_normal((*grid, k)))
    other = np.asarray(vq_negative_elbo(recon, log_prob_jit(logits, indices)) - recon)
    assert np.min(np.abs(other - 16 * math.log(16))) > 1e-3
    assert np.ptp(other) > 1e-3


def test_errors():
    logits = jnp.zeros((2, 3, 4))
    idx = jnp.zeros((5, 2, 3), jnp.int32)
    with pytest.raises(ValueError, match="grid"):
        factorized_prior_log_prob(logits, jnp.zeros((5, 3, 2), jnp.int32))
    with pytest.raises(ValueError, match="integer"):
        factorized_prior_log_prob(logits, idx.astype(jnp.float32))
    with pytest.raises(ValueError, match="float"):
        factorized_prior_log_prob(logits.astype(jnp.int32), idx)
    with pytest.raises(ValueError, match="shape must be a non-empty tuple of positive ints"):
        factorized_prior_sample(logits, jax.random.key(0), (0, 2, 3))
    with pytest.raises(ValueError, match=r"shape must be \(B, \*grid\) .* \(2, 3\)"):
        factorized_prior_sample(logits, jax.random.key(0), (4, 3, 2))
    with pytest.raises(ValueError, match="temperature"):
        factorized_prior_sample(logits, jax.random.key(0), (2, 2, 3), temperature=-1.0)
    with pytest.raises(ValueError, match="num_codes"):
        uniform_prior_log_prob(idx, 0)
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        vq_negative_elbo(jnp.zeros(5), jnp.zeros((5, 1)))
