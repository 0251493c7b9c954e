"""GaussianMixture: densities against SciPy, closed-form scores against autodiff, sampling
and noising against Monte Carlo moments, and the DDPM eps oracle against its definition."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from jaxgen import diffusion
from jaxgen.distributions import GaussianMixture, ddpm_eps_oracle
from tests.diffusion.stats import bonferroni_z


def _random_mixture(seed=0, num_k=4, dim=3):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(num_k, dim, dim))
    covs = a @ np.transpose(a, (0, 2, 1)) / dim + 0.05 * np.eye(dim)
    weights = rng.dirichlet(np.ones(num_k) * 2.0)
    means = rng.normal(size=(num_k, dim))
    return GaussianMixture(jnp.asarray(weights), jnp.asarray(means), jnp.asarray(covs))


def _scipy_log_prob(mixture, x):
    comps = [
        np.log(w) + multivariate_normal(m, c).logpdf(x)
        for w, m, c in zip(
            np.asarray(mixture.weights),
            np.asarray(mixture.means),
            np.asarray(mixture.covariances),
            strict=True,
        )
    ]
    return logsumexp(np.stack(comps, axis=-1), axis=-1)


def test_log_prob_matches_scipy(x64):
    mixture = _random_mixture()
    assert mixture.dim == 3 and mixture.num_components == 4
    x = np.random.default_rng(1).normal(size=(50, 3)) * 2
    np.testing.assert_allclose(
        mixture.log_prob(jnp.asarray(x)), _scipy_log_prob(mixture, x), rtol=1e-11
    )
    noised = mixture.noised(0.7, 0.4)
    np.testing.assert_allclose(
        mixture.noised_log_prob(jnp.asarray(x), 0.7, 0.4), _scipy_log_prob(noised, x), rtol=1e-11
    )


def test_score_equals_autodiff(x64):
    mixture = _random_mixture()
    x = jnp.asarray(np.random.default_rng(2).normal(size=(40, 3)))
    autodiff = jax.jit(jax.grad(lambda z: jnp.sum(mixture.log_prob(z))))(x)
    np.testing.assert_allclose(jax.jit(mixture.score)(x), autodiff, rtol=1e-9, atol=1e-11)
    # Per-example (alpha, sigma) equals each noised mixture's score, and its autodiff.
    alpha = jnp.linspace(0.1, 1.0, 40)
    sigma = jnp.sqrt(1 - alpha**2) + 0.01
    batched = jax.jit(mixture.noised_score)(x, alpha, sigma)

    @jax.jit
    @jax.vmap
    def one_by_one(z, a, s):
        noised = mixture.noised(a, s)
        grad = jax.grad(lambda v: noised.log_prob(v[None])[0])(z)
        return noised.score(z[None])[0], grad

    single, grad = one_by_one(x, alpha, sigma)
    np.testing.assert_allclose(batched, single, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(batched, grad, rtol=1e-9, atol=1e-11)


def _max_z_moments(samples, mean, cov):
    """Largest |z| of the sample mean and covariance entries against (mean, cov); standard
    errors from the per-sample terms themselves."""
    n = samples.shape[0]
    z_mean = (samples.mean(0) - mean) / np.sqrt(np.diag(cov) / n)
    centred = samples - mean
    prods = centred[:, :, None] * centred[:, None, :]
    z_cov = (prods.mean(0) - cov) / (prods.std(0, ddof=1) / np.sqrt(n))
    return float(max(np.abs(z_mean).max(), np.abs(z_cov).max()))


def test_sample_and_noised_moments(x64):
    mixture = _random_mixture()
    n = 40_000
    k0, k1 = jax.random.split(jax.random.key(0))
    x0 = np.asarray(mixture.sample(k0, n))
    mean, cov = (np.asarray(v) for v in mixture.moments())
    z_max = bonferroni_z(3 + 9)
    assert _max_z_moments(x0, mean, cov) < z_max
    alpha, sigma = 0.6, 0.8
    xt = alpha * x0 + sigma * np.asarray(jax.random.normal(k1, x0.shape, jnp.float64))
    noised = mixture.noised(alpha, sigma)
    n_mean, n_cov = (np.asarray(v) for v in noised.moments())
    np.testing.assert_allclose(n_mean, alpha * mean, rtol=1e-12)
    np.testing.assert_allclose(n_cov, alpha**2 * cov + sigma**2 * np.eye(3), rtol=1e-12)
    assert _max_z_moments(xt, n_mean, n_cov) < z_max
    # Negative control: a wrong noising law (alpha instead of alpha^2 on the covariances).
    wrong = GaussianMixture(
        mixture.weights,
        alpha * mixture.means,
        alpha * mixture.covariances + sigma**2 * jnp.eye(3)[None],
    )
    w_mean, w_cov = (np.asarray(v) for v in wrong.moments())
    assert _max_z_moments(xt, w_mean, w_cov) > z_max


def test_ddpm_eps_oracle(x64):
    sched = diffusion.linear_schedule(1000)
    mixture = _random_mixture(dim=2)
    eps_fn = ddpm_eps_oracle(mixture, sched)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(6, 2)))
    t = jnp.array([0, 1, 100, 500, 900, 999], jnp.int32)
    got = jax.jit(eps_fn)(x, t)
    a = sched.sqrt_alphas_cumprod[t]
    s = sched.sqrt_one_minus_alphas_cumprod[t]

    @jax.jit
    @jax.vmap
    def by_autodiff(z, a_i, s_i):
        return -s_i * jax.grad(lambda v: mixture.noised(a_i, s_i).log_prob(v[None])[0])(z)

    np.testing.assert_allclose(got, by_autodiff(x, a, s), rtol=1e-9, atol=1e-12)
    # Single Gaussian N(m, c^2 I): eps* = s (x - a m) / (a^2 c^2 + s^2).
    m, c = jnp.array([0.3, -0.5]), 0.4
    single = GaussianMixture.isotropic(jnp.ones(1), m[None], c)
    a = sched.sqrt_alphas_cumprod[t][:, None]
    s = sched.sqrt_one_minus_alphas_cumprod[t][:, None]
    np.testing.assert_allclose(
        jax.jit(ddpm_eps_oracle(single, sched))(x, t),
        s * (x - a * m[None]) / (a**2 * c**2 + s**2),
        rtol=1e-10,
    )
    with pytest.raises(ValueError, match=r"t must have shape"):
        eps_fn(x, t[:3])
    with pytest.raises(ValueError, match=r"x must have shape"):
        mixture.log_prob(jnp.zeros((4, 3)))
