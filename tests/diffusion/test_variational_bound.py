"""The variational bound (Ho et al. eq. 5) against closed forms.

Gaussian data ``x_0 ~ N(m, diag(s^2))`` with its exact eps: every term of the bound has a
closed-form expectation (all distributions are Gaussian), so the Monte Carlo mean of
:func:`variational_bound` is compared with the analytic value at 4.5 standard errors, and the
analytic gap to the true NLL (the differential entropy) is reported and checked >= 0.
Quantised data with the discretised decoder: the mean bound must be at least the discrete
entropy; the continuous decoder on the same data (a density, not a mass) must not be.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

from jaxgen import diffusion
from jaxgen.distributions import GaussianMixture, ddpm_eps_oracle
from tests.diffusion.stats import bonferroni_z

MEAN = np.array([0.3, -0.2, 0.1])
STD = np.array([0.5, 0.3, 0.8])


def _gaussian(mean, std):
    return GaussianMixture(
        jnp.ones(1), jnp.asarray(mean)[None], jnp.diag(jnp.asarray(std) ** 2)[None]
    )


def analytic_bound(sched, mean, std, model_variance):
    """E_{x_0, x_{1:T}}[L] for x_0 ~ N(mean, diag(std^2)) and the exact eps, per term (nats).

    With x0_pred = E[x_0 | x_t], mu_theta - mu_tilde = coef1 (x0_pred - x_0), whose squared
    expectation is coef1^2 Var(x_0 | x_t) = coef1^2 s^2 (1 - abar) / (abar s^2 + 1 - abar).
    """
    b = np.asarray(sched.betas, np.float64)
    ab = np.cumprod(1 - b)
    abp = np.concatenate([[1.0], ab[:-1]])
    s2 = std**2
    cond_var = s2 * (1 - ab)[:, None] / (ab[:, None] * s2 + (1 - ab)[:, None])  # (T, D)
    coef1 = (b * np.sqrt(abp) / (1 - ab))[:, None]
    post_var = b * (1 - abp) / (1 - ab)
    true_var = np.concatenate([[post_var[1]], post_var[1:]])[:, None]
    model_var = {"beta": np.concatenate([[post_var[1]], b[1:]]), "posterior": true_var[:, 0]}[
        model_variance
    ][:, None]
    kl = 0.5 * (
        np.log(model_var / true_var) + true_var / model_var - 1 + coef1**2 * cond_var / model_var
    )
    decoder = np.sum(0.5 * np.log(2 * np.pi * model_var[0]) + cond_var[0] / (2 * model_var[0]))
    prior = np.sum(0.5 * (-np.log(1 - ab[-1]) + (1 - ab[-1]) - 1 + ab[-1] * (mean**2 + s2)))
    return {"prior": prior, "diffusion": kl[1:].sum(), "decoder": decoder}


@pytest.mark.parametrize("model_variance", ["beta", "posterior"])
def test_gaussian_bound_matches_closed_form_and_upper_bounds_nll(x64, model_variance):
    sched = diffusion.linear_schedule(1000)
    data = _gaussian(MEAN, STD)
    n = 2048
    x0 = data.sample(jax.random.key(0), n)

    @jax.jit
    def bound(x, key, mixture, scale):
        # Mixture and eps scale are traced: the exact model and the negative controls share
        # one compilation.
        eps = ddpm_eps_oracle(mixture, sched)
        return diffusion.variational_bound(
            lambda xt, t: scale * eps(xt, t),
            sched,
            x,
            key,
            model_variance=model_variance,
            num_levels=None,
        )

    nats, terms = bound(x0, jax.random.key(1), data, 1.0)
    nats = np.asarray(nats)
    np.testing.assert_allclose(nats, sum(np.asarray(v) for v in terms.values()), rtol=1e-12)
    expected = analytic_bound(sched, MEAN, STD, model_variance)
    entropy = float(np.sum(0.5 * np.log(2 * np.pi * np.e * STD**2)))
    gap = sum(expected.values()) - entropy
    assert gap >= 0.0
    z_max = bonferroni_z(4)  # total and the three terms
    se = nats.std(ddof=1) / np.sqrt(n)
    z_total = (nats.mean() - sum(expected.values())) / se
    print(
        f"[{model_variance}] entropy {entropy:.4f}, analytic bound {sum(expected.values()):.4f} "
        f"(gap {gap:.4f} nats = {gap / 3 / math.log(2):.4f} bits/dim), MC "
        f"{nats.mean():.4f} +- {se:.4f} (z {z_total:.2f})"
    )
    assert abs(z_total) < z_max
    for name, value in expected.items():
        term = np.asarray(terms[name])
        assert abs(term.mean() - value) < z_max * term.std(ddof=1) / np.sqrt(n) + 1e-12, name
    # The MC bound sits above the true NLL (at the same significance).
    assert nats.mean() > entropy - z_max * se
    # Negative controls: a wrong model's bound is significantly higher than the exact model's
    # expected bound, so the closed-form comparison above can fail.
    for wrong_data, scale in ((data, 0.5), (_gaussian(MEAN + 0.3, STD), 1.0)):
        wrong_nats = np.asarray(bound(x0, jax.random.key(1), wrong_data, scale)[0])
        z_wrong = (wrong_nats.mean() - sum(expected.values())) / (
            wrong_nats.std(ddof=1) / np.sqrt(n)
        )
        print(f"  wrong model: bound {wrong_nats.mean():.4f}, z {z_wrong:.1f}")
        assert z_wrong > z_max, z_wrong


def _quantised_gaussian_1d(num_levels, mean, std):
    levels = np.linspace(-1.0, 1.0, num_levels)
    half = 1.0 / (num_levels - 1)
    edges = np.concatenate([[-np.inf], levels[:-1] + half, [np.inf]])
    probs = np.diff(norm.cdf((edges - mean) / std))
    return levels, probs


def test_discretised_bound_upper_bounds_discrete_entropy(x64):
    sched = diffusion.linear_schedule(1000)
    num_levels = 16
    levels, probs = _quantised_gaussian_1d(num_levels, 0.1, 0.4)
    entropy = float(-(probs * np.log(probs)).sum())
    # The quantised data is a mixture of point masses: its exact eps is the oracle's with
    # zero covariances (the noised covariances are sigma_t^2 I > 0 for every t).
    atoms = GaussianMixture(
        jnp.asarray(probs), jnp.asarray(levels)[:, None], jnp.zeros((num_levels, 1, 1))
    )
    exact = ddpm_eps_oracle(atoms, sched)
    n = 1024
    idx = jax.random.categorical(jax.random.key(0), jnp.log(jnp.asarray(probs)), shape=(n,))
    x0 = jnp.asarray(levels)[idx][:, None]
    bound = jax.jit(
        lambda x, k, levels_: diffusion.variational_bound(exact, sched, x, k, num_levels=levels_),
        static_argnums=2,
    )
    nats, terms = bound(x0, jax.random.key(1), num_levels)
    nats = np.asarray(nats)
    se = nats.std(ddof=1) / np.sqrt(n)
    z_max = bonferroni_z(1)
    print(
        f"discrete entropy {entropy:.4f} nats, mean bound {nats.mean():.4f} +- {se:.4f}, "
        f"gap {nats.mean() - entropy:.4f}; decoder {float(terms['decoder'].mean()):.2e}"
    )
    assert nats.mean() > entropy - z_max * se
    # Negative control: the continuous decoder gives a bound on a *density*, which is not a
    # bound on the discrete entropy; the same assertion must fail for it.
    cont = np.asarray(bound(x0, jax.random.key(1), None)[0])
    print(f"  continuous decoder on the same data: {cont.mean():.4f} (below the entropy)")
    assert not cont.mean() > entropy - z_max * cont.std(ddof=1) / np.sqrt(n)
    bpd = diffusion.bits_per_dim(jnp.asarray(nats), 1)
    np.testing.assert_allclose(bpd, nats / math.log(2.0), rtol=1e-12)


def test_one_step_estimate_is_unbiased(x64):
    sched = diffusion.linear_schedule(1000)
    data = _gaussian(MEAN, STD)
    n = 200_000
    x0 = data.sample(jax.random.key(2), n)
    nats, terms = jax.jit(
        lambda x, k: diffusion.variational_bound_estimate(
            ddpm_eps_oracle(data, sched), sched, x, k, num_levels=None
        )
    )(x0, jax.random.key(3))
    nats = np.asarray(nats)
    expected = sum(analytic_bound(sched, MEAN, STD, "beta").values())
    se = nats.std(ddof=1) / np.sqrt(n)
    assert abs(nats.mean() - expected) < bonferroni_z(1) * se, (nats.mean(), expected, se)
    assert set(terms) == {"prior", "t", "term"}


def test_normal_kl_matches_numerical_integration(x64):
    m1, lv1, m2, lv2 = 0.3, math.log(0.5), -0.4, math.log(2.0)
    p = norm(m1, math.exp(0.5 * lv1))
    q = norm(m2, math.exp(0.5 * lv2))
    ref, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -20, 20)
    got = diffusion.normal_kl(jnp.array(m1), jnp.array(lv1), jnp.array(m2), jnp.array(lv2))
    np.testing.assert_allclose(got, ref, rtol=1e-9)


# ---------------------------------------------------------------- discretised likelihood

CASES = [
    (mean, log_scale)
    for mean in (-3.0, -1.0, -0.03, 0.0, 0.4, 1.0, 2.5)
    for log_scale in (math.log(1e-4), math.log(0.01), math.log(0.3), math.log(5.0), math.log(1e4))
]


@pytest.mark.parametrize("num_levels", [2, 16, 256])
def test_discretised_probabilities_sum_to_one(x64, num_levels):
    levels = jnp.linspace(-1.0, 1.0, num_levels)
    means = jnp.array([c[0] for c in CASES])[:, None]
    log_scales = jnp.array([c[1] for c in CASES])[:, None]
    x = jnp.broadcast_to(levels[None], (len(CASES), num_levels))
    ll = jax.jit(
        functools.partial(diffusion.discretized_gaussian_log_likelihood, num_levels=num_levels)
    )(x, mean=jnp.broadcast_to(means, x.shape), log_scale=log_scales)
    assert bool(jnp.all(jnp.isfinite(ll)))
    np.testing.assert_allclose(jnp.exp(jax.nn.logsumexp(ll, axis=1)), 1.0, atol=1e-10)


def test_discretised_probabilities_sum_to_one_float32():
    levels = jnp.linspace(-1.0, 1.0, 256)
    means = jnp.array([c[0] for c in CASES])[:, None]
    log_scales = jnp.array([c[1] for c in CASES])[:, None]
    x = jnp.broadcast_to(levels[None], (len(CASES), 256))
    ll = jax.jit(functools.partial(diffusion.discretized_gaussian_log_likelihood, num_levels=256))(
        x, mean=jnp.broadcast_to(means, x.shape), log_scale=log_scales
    )
    assert ll.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(ll)))
    np.testing.assert_allclose(jnp.exp(jax.nn.logsumexp(ll, axis=1)), 1.0, atol=2e-5)


def _reference_log_prob(x, mean, scale, num_levels):
    """log P(bin of x) with 60-digit arithmetic (mpmath), straight from the CDF difference.

    Bins above the mean use survival functions, ``P = S(lower) - S(upper)``, so that the
    difference of two numbers near one does not cancel even at 60 digits.
    """
    mpmath.mp.dps = 60
    half = mpmath.mpf(1) / (num_levels - 1)
    x, mean, scale = mpmath.mpf(x), mpmath.mpf(mean), mpmath.mpf(scale)
    top, bottom = x > 1 - half, x < -1 + half
    if x > mean:
        sf = lambda v: mpmath.ncdf(-(v - mean) / scale)  # noqa: E731
        upper = mpmath.mpf(0) if top else sf(x + half)
        lower = mpmath.mpf(1) if bottom else sf(x - half)
        return float(mpmath.log(lower - upper))
    cdf = lambda v: mpmath.ncdf((v - mean) / scale)  # noqa: E731
    upper = mpmath.mpf(1) if top else cdf(x + half)
    lower = mpmath.mpf(0) if bottom else cdf(x - half)
    return float(mpmath.log(upper - lower))


@pytest.mark.parametrize("num_levels", [16, 256])
def test_discretised_matches_cdf_difference(x64, num_levels):
    levels = np.linspace(-1.0, 1.0, num_levels)
    picks = levels[[0, 1, num_levels // 2 - 1, num_levels // 2, -2, -1]]
    x = np.array([xv for xv in picks for _ in CASES])
    means = np.array([c[0] for _ in picks for c in CASES])
    log_scales = np.array([c[1] for _ in picks for c in CASES])
    log_likelihood = jax.jit(
        functools.partial(diffusion.discretized_gaussian_log_likelihood, num_levels=num_levels)
    )
    got = np.asarray(
        log_likelihood(jnp.asarray(x), mean=jnp.asarray(means), log_scale=jnp.asarray(log_scales))
    )
    ref = np.array(
        [
            _reference_log_prob(xv, m, math.exp(ls), num_levels)
            for xv, m, ls in zip(x, means, log_scales, strict=True)
        ]
    )
    # Relative accuracy in log space (log-probabilities reach -1e8 in the far tails) plus a
    # small absolute floor for probabilities near one.
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)
    # Plain float64 CDF differences agree wherever they do not cancel or underflow.
    scales = np.exp(log_scales)
    half = 1.0 / (num_levels - 1)
    up = np.where(x > 1 - half, 1.0, norm.cdf((x + half - means) / scales))
    lo = np.where(x < -1 + half, 0.0, norm.cdf((x - half - means) / scales))
    ok = (up - lo) > 1e-6
    np.testing.assert_allclose(got[ok], np.log((up - lo)[ok]), rtol=1e-8, atol=1e-8)


def test_discretised_gradients_are_finite(x64):
    levels = jnp.linspace(-1.0, 1.0, 256)

    def total(mean, log_scale):
        return jnp.sum(
            diffusion.discretized_gaussian_log_likelihood(
                levels, mean=jnp.full((256,), mean), log_scale=log_scale, num_levels=256
            )
        )

    means = jnp.array([c[0] for c in CASES])
    log_scales = jnp.array([c[1] for c in CASES])
    grads = jax.jit(jax.vmap(jax.grad(total, argnums=(0, 1))))(means, log_scales)
    for g in grads:
        assert bool(jnp.all(jnp.isfinite(g))), g


def test_bound_input_errors():
    sched = diffusion.linear_schedule(10)
    x0 = jnp.zeros((2, 3))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="model_variance"):
        diffusion.variational_bound(lambda x, t: x, sched, x0, key, model_variance="learned")
    with pytest.raises(ValueError, match="num_levels"):
        diffusion.variational_bound(lambda x, t: x, sched, x0, key, num_levels=1)
    with pytest.raises(ValueError, match="num_levels"):
        diffusion.discretized_gaussian_log_likelihood(x0, mean=x0, log_scale=0.0, num_levels=None)
    with pytest.raises(ValueError, match=r"parameterization must be one of .*got 'mu'"):
        diffusion.p_mean_variance(
            lambda x, t: x, sched, x0, jnp.zeros((2,), jnp.int32), parameterization="mu"
        )
