"""ProbabilisticPCA: evidence against SciPy's multivariate normal, the posterior against
brute-force joint-Gaussian conditioning and Bayes' rule, the KL to the posterior against its
generic formula, sampling against the model's moments, and the orthogonal-columns case."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import multivariate_normal

from jaxgen.distributions.linear_gaussian import ProbabilisticPCA
from tests.diffusion.stats import bonferroni_z

DATA_DIM, LATENT_DIM = 5, 3


def _model(orthogonal: bool, seed: int = 0, noise_std: float = 0.4) -> ProbabilisticPCA:
    return ProbabilisticPCA.random(
        jax.random.key(seed),
        DATA_DIM,
        LATENT_DIM,
        noise_std=noise_std,
        orthogonal_columns=orthogonal,
    )


def _data(model, seed=1, num=20):
    return model.sample(jax.random.key(seed), num)


@pytest.mark.parametrize("orthogonal", [False, True])
def test_log_prob_matches_multivariate_normal(x64, orthogonal):
    model = _model(orthogonal)
    assert model.data_dim == DATA_DIM and model.latent_dim == LATENT_DIM
    x = _data(model)
    w, b, s = np.asarray(model.weight), np.asarray(model.bias), float(model.noise_std)
    cov = w @ w.T + s**2 * np.eye(DATA_DIM)
    logpdf = jax.vmap(multivariate_normal.logpdf, in_axes=(0, None, None))  # strict ranks
    expected = logpdf(x, jnp.asarray(b), jnp.asarray(cov))
    err = float(jnp.max(jnp.abs(model.log_prob(x) - expected)))
    assert err < 1e-11, err
    # Negative control: dropping the noise term from the covariance is detected.
    wrong = logpdf(x, jnp.asarray(b), jnp.asarray(w @ w.T + 1e-2 * np.eye(5)))
    assert float(jnp.max(jnp.abs(model.log_prob(x) - wrong))) > 1e-2


@pytest.mark.parametrize("orthogonal", [False, True])
def test_posterior_is_joint_gaussian_conditioning_and_bayes_rule(x64, orthogonal):
    model = _model(orthogonal)
    x = _data(model)
    mean, cov = model.posterior(x)
    assert mean.shape == (20, LATENT_DIM) and cov.shape == (LATENT_DIM, LATENT_DIM)

    # Brute force: (z, x) is jointly Gaussian with Cov = [[I, W^T], [W, W W^T + s^2 I]].
    w, b, s = (np.asarray(a, np.float64) for a in (model.weight, model.bias, model.noise_std))
    c_xx = w @ w.T + s**2 * np.eye(DATA_DIM)
    gain = np.linalg.solve(c_xx, w).T  # W^T C^-1, (d, D)
    ref_mean = (np.asarray(x) - b) @ gain.T
    ref_cov = np.eye(LATENT_DIM) - gain @ w
    err_mean = float(np.max(np.abs(np.asarray(mean) - ref_mean)))
    err_cov = float(np.max(np.abs(np.asarray(cov) - ref_cov)))
    assert err_mean < 1e-11 and err_cov < 1e-12, (err_mean, err_cov)

    # Bayes' rule: log p(z | x) = log p(x | z) + log p(z) - log p(x) for arbitrary z.
    z = jax.random.normal(jax.random.key(2), (20, LATENT_DIM), jnp.float64) + mean
    log_post = jax.vmap(multivariate_normal.logpdf, in_axes=(0, 0, None))(z, mean, cov)
    log_lik = jnp.sum(
        jax.scipy.stats.norm.logpdf(x, z @ model.weight.T + model.bias[None], model.noise_std),
        axis=1,
    )
    log_prior = jnp.sum(jax.scipy.stats.norm.logpdf(z), axis=1)
    bayes = log_lik + log_prior - model.log_prob(x)
    err_bayes = float(jnp.max(jnp.abs(log_post - bayes)))
    assert err_bayes < 1e-10, err_bayes
    # Negative control: the noise-free "posterior" (pseudo-inverse) fails the same check.
    pinv_mean = (x - model.bias[None]) @ jnp.linalg.pinv(model.weight).T
    wrong = jax.vmap(multivariate_normal.logpdf, in_axes=(0, 0, None))(z, pinv_mean, cov)
    assert float(jnp.max(jnp.abs(wrong - bayes))) > 1e-3


def test_orthogonal_columns_give_a_diagonal_posterior(x64):
    ortho, full = _model(True), _model(False)
    x = _data(ortho)
    _, cov = ortho.posterior(x)
    gram = ortho.weight.T @ ortho.weight
    off = np.asarray(cov) - np.diag(np.diag(cov))
    assert float(np.max(np.abs(off))) < 1e-14 * float(np.max(np.diag(cov)))
    assert float(jnp.max(jnp.abs(gram - jnp.diag(jnp.diag(gram))))) < 1e-13
    scales = jnp.sqrt(jnp.diag(gram))
    assert float(jnp.min(scales)) >= 0.5 - 1e-12 and float(jnp.max(scales)) <= 2.0 + 1e-12
    # s^2 / (c_j^2 + s^2) on the diagonal.
    np.testing.assert_allclose(jnp.diag(cov), 0.16 / (scales**2 + 0.16), rtol=1e-12)
    # Negative control: with Gaussian W the posterior is correlated.
    _, cov_full = full.posterior(_data(full))
    corr = np.asarray(cov_full) / np.sqrt(np.outer(np.diag(cov_full), np.diag(cov_full)))
    assert float(np.max(np.abs(corr - np.eye(LATENT_DIM)))) > 0.05


def _generic_gaussian_kl(m0, c0, m1, c1):
    """KL(N(m0, c0) || N(m1, c1)) by the textbook formula, NumPy float64."""
    prec = np.linalg.inv(c1)
    d = m1 - m0
    return 0.5 * (
        np.trace(prec @ c0)
        + d @ prec @ d
        - len(m0)
        + np.linalg.slogdet(c1)[1]
        - np.linalg.slogdet(c0)[1]
    )


def test_posterior_kl_matches_the_generic_formula(x64):
    model = _model(False)
    x = _data(model, num=6)
    mean, cov = model.posterior(x)
    rng = np.random.default_rng(3)
    q_mean = np.asarray(mean) + 0.3 * rng.normal(size=mean.shape)
    q_log_std = 0.5 * np.log(np.diag(cov)) + 0.4 * rng.normal(size=mean.shape)
    got = np.asarray(model.posterior_kl(x, jnp.asarray(q_mean), jnp.asarray(q_log_std)))
    ref = np.array(
        [
            _generic_gaussian_kl(qm, np.diag(np.exp(2 * ql)), pm, np.asarray(cov))
            for qm, ql, pm in zip(q_mean, q_log_std, np.asarray(mean), strict=True)
        ]
    )
    err = float(np.max(np.abs(got - ref)))
    assert err < 1e-11, err
    # The best diagonal q (posterior mean, variances 1 / precision_jj) has the Hadamard gap,
    # strictly positive here; any other diagonal q is worse (negative control of optimality).
    prec = np.linalg.inv(np.asarray(cov))
    best_log_std = np.broadcast_to(-0.5 * np.log(np.diag(prec)), mean.shape)
    best = np.asarray(model.posterior_kl(x, mean, jnp.asarray(best_log_std)))
    hadamard = 0.5 * (np.sum(np.log(np.diag(prec))) - np.linalg.slogdet(prec)[1])
    np.testing.assert_allclose(best, hadamard, rtol=1e-10)
    assert hadamard > 1e-2
    assert np.all(got > best)
    # Zero exactly at the exact posterior of the orthogonal model.
    ortho = _model(True)
    x_o = _data(ortho, num=6)
    mean_o, cov_o = ortho.posterior(x_o)
    log_std_o = jnp.broadcast_to(0.5 * jnp.log(jnp.diag(cov_o)), mean_o.shape)
    assert float(jnp.max(jnp.abs(ortho.posterior_kl(x_o, mean_o, log_std_o)))) < 1e-12


def test_sample_moments(x64):
    """Sample mean and covariance entries against (b, C): z-scores with standard errors from
    the per-sample terms; negative control with the noise-free covariance W W^T."""
    model = _model(False, noise_std=1.0)
    n = 4000
    x = np.asarray(model.sample(jax.random.key(4), n))
    assert x.shape == (n, DATA_DIM)
    b, cov = np.asarray(model.bias), np.asarray(model.covariance())
    centred = x - b
    z_mean = centred.mean(0) / np.sqrt(np.diag(cov) / n)
    prods = centred[:, :, None] * centred[:, None, :]  # E = C
    se = prods.std(0, ddof=1) / np.sqrt(n)
    z_cov = (prods.mean(0) - cov) / se
    z_max = bonferroni_z(DATA_DIM + DATA_DIM * (DATA_DIM + 1) // 2)
    worst = max(np.max(np.abs(z_mean)), np.max(np.abs(z_cov)))
    assert worst < z_max, worst
    w = np.asarray(model.weight)
    z_wrong = (prods.mean(0) - w @ w.T) / se
    assert np.max(np.abs(z_wrong)) > z_max


def test_errors():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="latent_dim <= data_dim"):
        ProbabilisticPCA.random(key, 2, 3, noise_std=0.1, orthogonal_columns=True)
    with pytest.raises(ValueError, match="noise_std must be positive"):
        ProbabilisticPCA.random(key, 4, 2, noise_std=0.0, orthogonal_columns=False)
    with pytest.raises(ValueError, match="dims must be >= 1"):
        ProbabilisticPCA.random(key, 4, 0, noise_std=0.1, orthogonal_columns=False)
    model = ProbabilisticPCA.random(key, 4, 2, noise_std=0.1, orthogonal_columns=False)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 4\)"):
        model.log_prob(jnp.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 4\)"):
        model.posterior(jnp.zeros(4))
    with pytest.raises(ValueError, match=r"mean must have shape \(3, 2\)"):
        model.posterior_kl(jnp.zeros((3, 4)), jnp.zeros((3, 3)), jnp.zeros((3, 3)))
    # A non-orthogonal model may have more latents than data dimensions.
    wide = ProbabilisticPCA.random(key, 2, 3, noise_std=0.5, orthogonal_columns=False)
    assert wide.log_prob(jnp.zeros((1, 2))).shape == (1,)
