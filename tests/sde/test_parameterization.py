"""Parameterizations of score networks (``jaxgen.sde.parameterization``) against closed forms.

* Converters: for ``x_t = alpha x_0 + sigma eps`` with known ``(x_0, eps)``, every kind's
  prediction maps back to the same pair, and ``convert`` between any two kinds agrees with
  the closed-form target (including VE-like ``alpha = 1``, large ``sigma``).
* ``score_to_x0`` is Tweedie's formula: it equals the exact posterior mean ``E[x_0 | x_t]``
  of a full-covariance Gaussian and of a Gaussian mixture, computed independently.
* ``network_to_score`` / ``network_to_denoiser`` applied to a "network" that outputs the
  exact prediction in each parameterization (EDM's ``F`` by inverting
  ``D = c_skip x~ + c_out F``) reproduce the exact mixture score and posterior mean.

Each check has a negative control through the same assertion.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxgen.distributions import GaussianMixture
from jaxgen.sde import (
    PARAMETERIZATIONS,
    VESDE,
    VPSDE,
    SubVPSDE,
    convert,
    edm_coefficients,
    from_x0_eps,
    mixture_score_fn,
    network_to_denoiser,
    network_to_score,
    score_to_x0,
    to_x0_eps,
)
from tests.diffusion.mixture_oracle import MIXTURE

KINDS = ("score", "eps", "x0", "v")
SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE()}


def _f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _pair(key, batch=8, dim=3):
    """Known ``(x_0, eps)``, per-example ``(alpha, sigma)`` spanning VP-like and VE-like
    values (``alpha^2 + sigma^2`` far from 1 included), and ``x_t``."""
    k0, k1 = jax.random.split(key)
    x0 = jax.random.normal(k0, (batch, dim), jnp.float64)
    eps = jax.random.normal(k1, (batch, dim), jnp.float64)
    alpha = jnp.array([1.0, 0.999, 0.8, 0.5, 0.1, 1.0, 1.0, 0.02])[:batch]
    sigma = jnp.array([1e-3, 0.04, 0.6, 0.9, 0.995, 5.0, 50.0, 0.3])[:batch]
    return x0, eps, alpha, sigma, alpha[:, None] * x0 + sigma[:, None] * eps


def test_converters_recover_the_pair_and_convert_between_all_kinds(x64):
    x0, eps, alpha, sigma, x = _pair(jax.random.key(0))
    truth = {k: from_x0_eps(x0, eps, alpha, sigma, parameterization=k) for k in KINDS}
    np.testing.assert_allclose(truth["score"], -eps / sigma[:, None], rtol=1e-14)
    np.testing.assert_allclose(
        truth["v"], alpha[:, None] * eps - sigma[:, None] * x0, rtol=1e-14, atol=1e-14
    )
    for kind in KINDS:
        got_x0, got_eps = to_x0_eps(truth[kind], x, alpha, sigma, parameterization=kind)
        np.testing.assert_allclose(got_x0, x0, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(got_eps, eps, rtol=1e-9, atol=1e-9)
    for source, target in itertools.product(KINDS, KINDS):
        got = convert(truth[source], x, alpha, sigma, source=source, target=target)
        scale = float(jnp.max(jnp.abs(truth[target])))
        np.testing.assert_allclose(got, truth[target], rtol=1e-9, atol=1e-10 * scale)
        back = convert(got, x, alpha, sigma, source=target, target=source)
        np.testing.assert_allclose(back, truth[source], rtol=1e-8, atol=1e-9 * scale)
    # The converters are the core's: EDM is a network preconditioning, not a prediction.
    with pytest.raises(ValueError, match="parameterization must be one of .*got 'edm'"):
        to_x0_eps(x0, x, alpha, sigma, parameterization="edm")
    with pytest.raises(ValueError, match="parameterization must be one of .*got 'noise'"):
        from_x0_eps(x0, eps, alpha, sigma, parameterization="noise")

    # Negative control: the VP-only shortcut x_0 = alpha x_t - sigma v (alpha^2 + sigma^2 = 1)
    # fails the same recovery check on these (alpha, sigma).
    wrong_x0 = alpha[:, None] * x - sigma[:, None] * truth["v"]
    assert not np.allclose(wrong_x0, x0, rtol=1e-9, atol=1e-9)


def _gaussian_posterior_mean(mean, cov, x, alpha, sigma):
    """``E[x_0 | x_t]`` for ``x_0 ~ N(mean, cov)``: ``mean + alpha cov C^{-1} (x - alpha mean)``
    with ``C = alpha^2 cov + sigma^2 I`` (NumPy, per example)."""
    out = []
    for xi, a, s in zip(np.asarray(x), np.asarray(alpha), np.asarray(sigma), strict=True):
        c = a**2 * cov + s**2 * np.eye(len(mean))
        out.append(mean + a * cov @ np.linalg.solve(c, xi - a * mean))
    return np.stack(out)


def _mixture_posterior_mean(mixture, x, alpha, sigma):
    """``E[x_0 | x_t] = sum_k r_k(x_t) E[x_0 | x_t, k]`` (NumPy/SciPy, independent code)."""
    w, mus, covs = (np.asarray(a) for a in mixture)
    out = []
    for xi, a, s in zip(np.asarray(x), np.asarray(alpha), np.asarray(sigma), strict=True):
        eye = np.eye(len(xi))
        logs = [
            np.log(wk) + scipy.stats.multivariate_normal.logpdf(xi, a * mk, a**2 * ck + s**2 * eye)
            for wk, mk, ck in zip(w, mus, covs, strict=True)
        ]
        resp = np.exp(np.array(logs) - scipy.special.logsumexp(logs))
        means = [
            _gaussian_posterior_mean(mk, ck, xi[None], a[None], s[None])[0]
            for mk, ck in zip(mus, covs, strict=True)
        ]
        out.append(np.einsum("k,kd->d", resp, np.array(means)))
    return np.stack(out)


FULL_COV_MIXTURE = GaussianMixture(
    jnp.array([0.6, 0.4]),
    jnp.array([[-0.5, 0.3], [0.7, -0.2]]),
    jnp.array([[[0.09, 0.04], [0.04, 0.05]], [[0.02, -0.01], [-0.01, 0.06]]]),
)


def test_score_to_x0_is_tweedie(x64):
    key = jax.random.key(1)
    alpha = jnp.array([0.999, 0.9, 0.6, 0.3, 1.0, 1.0])
    sigma = jnp.array([0.04, 0.4, 0.8, 0.95, 0.2, 3.0])
    # A single full-covariance Gaussian (a one-component mixture) and the 3-mode mixture.
    single = _f64(
        GaussianMixture(
            jnp.ones(1), jnp.array([[0.3, -0.2]]), jnp.array([[[0.5, 0.2], [0.2, 0.3]]])
        )
    )
    cases = {"single Gaussian": single, "mixture": _f64(FULL_COV_MIXTURE), "3 modes": _f64(MIXTURE)}
    for name, mixture in cases.items():
        x = alpha[:, None] * mixture.sample(key, 6) + sigma[:, None] * jax.random.normal(
            key, (6, 2), jnp.float64
        )
        score = mixture.noised_score(x, alpha, sigma)
        want = _mixture_posterior_mean(mixture, x, alpha, sigma)
        if name == "single Gaussian":
            np.testing.assert_allclose(
                want,
                _gaussian_posterior_mean(
                    np.asarray(mixture.means[0]),
                    np.asarray(mixture.covariances[0]),
                    x,
                    alpha,
                    sigma,
                ),
                rtol=1e-12,
            )
        np.testing.assert_allclose(score_to_x0(score, x, alpha, sigma), want, rtol=1e-9, atol=1e-10)
        # Negative control: sigma in place of sigma^2 in Tweedie's formula.
        wrong = (x + sigma[:, None] * score) / alpha[:, None]
        assert not np.allclose(wrong, want, rtol=1e-6, atol=1e-6), name


# ----------------------------------------------------------------- network_to_score


def exact_network(kind, sde, score_fn, *, sigma_data, inverse_noise_input):
    """A raw network whose output is the exact ``kind`` prediction for the mixture.

    Plain kinds read ``t`` back from the conditioning input; "edm" reads ``s~`` from
    ``c_noise = log(s~) / 4``, ``x~`` from ``c_in x~``, and returns
    ``F = (D* - c_skip x~) / c_out`` with ``D*`` the exact posterior mean.
    """
    if kind == "edm":

        def net(x_in, c_noise):
            ratio = jnp.exp(4.0 * c_noise)
            t = sde.t_from_sigma_ratio(ratio)
            c_skip, c_out, c_in, _ = edm_coefficients(ratio, sigma_data)
            scaled = x_in / c_in[:, None]
            alpha, sigma = sde.alpha(t), sde.sigma(t)
            x = alpha[:, None] * scaled
            d = score_to_x0(score_fn(x, t), x, alpha, sigma)
            return (d - c_skip[:, None] * scaled) / c_out[:, None]

        return net

    def net(x, c):
        t = inverse_noise_input(c)
        alpha, sigma = sde.alpha(t), sde.sigma(t)
        s = score_fn(x, t)
        x0 = score_to_x0(s, x, alpha, sigma)
        return from_x0_eps(x0, -sigma[:, None] * s, alpha, sigma, parameterization=kind)

    return net


NOISE_INPUTS = {
    "identity": (None, lambda c: c),
    "1000t": (lambda t: 1000.0 * t, lambda c: c / 1000.0),
}


def _points(sde, mixture, key, n=32):
    k_t, k_x, k_e = jax.random.split(key, 3)
    t = jnp.exp(jax.random.uniform(k_t, (n,), jnp.float64, np.log(1e-3), 0.0))
    x = sde.perturb(mixture.sample(k_x, n), t, jax.random.normal(k_e, (n, 2), jnp.float64))
    return x, t


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("noise_input", list(NOISE_INPUTS))
def test_network_to_score_with_exact_predictions(x64, sde_name, noise_input):
    sde, mixture = SDES[sde_name], _f64(MIXTURE)
    score_fn = mixture_score_fn(mixture, sde)
    x, t = _points(sde, mixture, jax.random.key(3))
    exact = score_fn(x, t)
    x0_exact = score_to_x0(exact, x, sde.alpha(t), sde.sigma(t))
    forward, inverse = NOISE_INPUTS[noise_input]
    sigma_data = 0.7
    nets = {
        kind: exact_network(kind, sde, score_fn, sigma_data=sigma_data, inverse_noise_input=inverse)
        for kind in PARAMETERIZATIONS
    }
    opts = {"sigma_data": sigma_data, "noise_input": forward}
    scale = float(jnp.max(jnp.abs(exact)))
    for kind, net in nets.items():
        got = network_to_score(net, sde, parameterization=kind, **opts)(x, t)
        np.testing.assert_allclose(got, exact, rtol=1e-7, atol=1e-9 * scale, err_msg=kind)
        x0 = network_to_denoiser(net, sde, parameterization=kind, **opts)(x, t)
        np.testing.assert_allclose(x0, x0_exact, rtol=1e-7, atol=1e-9, err_msg=kind)

    # Negative controls through the same check: each exact network read as the next
    # parameterization, and the EDM network read with another sigma_data.
    kinds = list(PARAMETERIZATIONS)
    for kind, wrong in zip(kinds, kinds[1:] + kinds[:1], strict=True):
        got = network_to_score(nets[kind], sde, parameterization=wrong, **opts)(x, t)
        assert not np.allclose(got, exact, rtol=1e-7, atol=1e-9 * scale), (kind, wrong)
    got = network_to_score(nets["edm"], sde, parameterization="edm", sigma_data=0.5)(x, t)
    assert not np.allclose(got, exact, rtol=1e-7, atol=1e-9 * scale)


def test_unknown_parameterization_is_rejected():
    with pytest.raises(
        ValueError, match=r"parameterization must be one of \('score'.*'edm'\), got 'noise'"
    ):
        network_to_score(lambda x, c: x, VPSDE(), parameterization="noise")
    with pytest.raises(ValueError, match="parameterization must be one of"):
        network_to_denoiser(lambda x, c: x, VPSDE(), parameterization="x_0")
