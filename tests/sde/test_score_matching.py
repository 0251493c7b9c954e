"""Denoising score matching (``jaxgen.sde.score_matching``) against closed-form oracles.

* The DSM minimiser is the exact score. At fixed ``t``, for any ``c``,
  ``loss(s + c) - loss(s) = lambda c . (s - target) + lambda ||c||^2 / 2`` with
  ``target = -eps / sigma``; its expectation is ``lambda ||c||^2 / 2`` for every ``c``
  exactly when ``s = E[target | x_t] = grad log p_t`` (the exact mixture score), and the
  derivative in a scale ``k`` of ``k s`` vanishes at ``k = 1``. Both are z-tests with
  ``x_0`` drawn from the mixture; a wrong model (a shifted mixture's score) fails both.
* The loss is the defining formula for any network and parameterization (score space
  ``1/2 lambda ||s + eps / sigma||^2``; EDM's x0-space weighting; EDM's unit weight on
  ``F``), and for the exact model every parameterization gives the score
  parameterization's per-example loss, for every weighting.
* Importance sampling of the likelihood weighting: for a linear model the expected loss
  ``1/2 int lambda E||s + eps / sigma||^2 dt`` is closed-form up to a 1-D quadrature;
  the uniform-t and importance-sampled estimators both match it (z-tests), IS with a much
  smaller variance, while IS draws without the importance weight do not.
* Time-sampling laws (uniform, log-SNR uniform, EDM log-normal), shapes, reductions,
  jit, and error messages.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxgen.sde import (
    PARAMETERIZATIONS,
    VESDE,
    VPSDE,
    SubVPSDE,
    edm_coefficients,
    mixture_score_fn,
    network_to_denoiser,
    network_to_score,
)
from jaxgen.sde.score_matching import REDUCTIONS, WEIGHTINGS, dsm_loss, dsm_loss_at
from tests.diffusion.mixture_oracle import MIXTURE
from tests.diffusion.stats import bonferroni_z, max_abs_z_mean_var
from tests.sde.test_parameterization import exact_network

SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE()}


def _f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _z_mean(values, expected):
    values = np.asarray(values, np.float64)
    return float((values.mean() - expected) / (values.std(ddof=1) / np.sqrt(values.size)))


# ----------------------------------------------------------------- the minimiser

NUM_MC = 20000
# Fixed times with sigma between ~0.1 and ~0.8, where the mixture structure matters.
TIMES = {"vp": (0.05, 0.2), "subvp": (0.1, 0.3), "ve": (0.3, 0.5)}
WRONG_MIXTURE = MIXTURE._replace(means=MIXTURE.means + jnp.array([[0.15, -0.1]]))


# Jitted helpers that see several SDE classes take a static ``name`` (see
# tests/sde/test_sdes.py::test_sde_classes_have_distinct_treedefs).


@functools.partial(jax.jit, static_argnames=("name",))
def _minimiser_stats(sde, data, model, t, c0, key, *, name):
    """Per-example (excess loss of s + c over s, d loss(k s)/dk at k = 1) for both uniform-t
    weightings, with ``s`` the ``model`` mixture's exact score and ``c = c0 / sigma(t)``
    (the score's own scale)."""
    k0, k1 = jax.random.split(key)
    x0 = data.sample(k0, NUM_MC)
    noise = jax.random.normal(k1, x0.shape, x0.dtype)
    score = mixture_score_fn(model, sde)
    c = c0 / sde.sigma(t)
    out = {}
    for weighting in ("sigma2", "likelihood"):

        def loss(net, weighting=weighting):
            return dsm_loss_at(
                net, sde, x0, t, noise, parameterization="score", weighting=weighting
            )[0]

        base = loss(score)
        excess = loss(lambda x, tt: score(x, tt) + c) - base
        dscale = jax.jacfwd(lambda k: loss(lambda x, tt: k * score(x, tt)))(1.0)
        out[weighting] = (excess, dscale)
    return out


def test_dsm_minimiser_is_the_exact_score(x64):
    c0 = jnp.array([[0.3, -0.2]])
    data = _f64(MIXTURE)
    num_tests = 3 * 2 * 2 * 2  # SDEs x times x weightings x (excess, derivative)
    z_max = bonferroni_z(num_tests)
    for i, (name, sde) in enumerate(SDES.items()):
        for t in TIMES[name]:
            lam = {
                "sigma2": float(sde.sigma(t)) ** 2,
                "likelihood": float(sde.diffusion(t)) ** 2,
            }
            c_norm2 = float(jnp.sum(jnp.square(c0))) / float(sde.sigma(t)) ** 2
            key = jax.random.key(i)
            exact = _minimiser_stats(sde, data, data, t, c0, key, name=name)
            wrong = _minimiser_stats(sde, data, _f64(WRONG_MIXTURE), t, c0, key, name=name)
            for weighting in ("sigma2", "likelihood"):
                expected = 0.5 * lam[weighting] * c_norm2
                excess, dscale = exact[weighting]
                z_excess, z_scale = _z_mean(excess, expected), _z_mean(dscale, 0.0)
                w_excess, w_dscale = wrong[weighting]
                zw_excess, zw_scale = _z_mean(w_excess, expected), _z_mean(w_dscale, 0.0)
                print(
                    f"{name} t={t} {weighting}: excess {np.mean(excess):.4f} vs "
                    f"lambda|c|^2/2 = {expected:.4f} (z {z_excess:.2f}), d/dk z {z_scale:.2f}; "
                    f"wrong model z {zw_excess:.1f}, {zw_scale:.1f}"
                )
                assert abs(z_excess) < z_max and abs(z_scale) < z_max
                # The excess is itself significantly positive: the exact score is better.
                assert _z_mean(excess, 0.0) > z_max
                # Negative control: the same checks reject a wrong model.
                assert abs(zw_excess) > z_max and abs(zw_scale) > z_max


# ----------------------------------------------------------------- the defining formula


def _random_net(key, dim=2):
    k1, k2 = jax.random.split(key)
    w = 0.7 * jax.random.normal(k1, (dim, dim), jnp.float64)
    b = jax.random.normal(k2, (dim,), jnp.float64)

    def net(x, c):
        return jnp.tanh(x @ w + c[:, None] * b[None]) + 0.3 * x

    return net


@pytest.mark.parametrize("name", list(SDES))
def test_loss_is_the_defining_formula_for_any_network(x64, name):
    """For an arbitrary network, ``dsm_loss_at`` equals the weighting's definition, computed
    through ``network_to_score`` / ``network_to_denoiser``: ``1/2 lambda ||s + eps/sigma||^2``
    with ``lambda = sigma^2`` or ``g^2``, and for EDM ``1/2 lambda_x0 ||D - x_0||^2`` with
    ``lambda_x0 = (s~^2 + sd^2) / (s~ sd)^2``; for EDM's network and weighting this is
    ``1/2 ||F - F_target||^2`` (EDM's effective unit weight, Karras et al. Sec. 5)."""
    sde, sd = SDES[name], 0.6
    n = 40
    k0, k1, k2 = jax.random.split(jax.random.key(4), 3)
    x0 = jax.random.normal(k0, (n, 2), jnp.float64)
    noise = jax.random.normal(k1, (n, 2), jnp.float64)
    t = jnp.logspace(-5, 0, n)
    net = _random_net(k2)
    alpha, sigma, g = sde.alpha(t), sde.sigma(t), sde.diffusion(t)
    ratio = sigma / alpha
    xt = sde.perturb(x0, t, noise)
    opts = {"sigma_data": sd, "noise_input": lambda t: 3.0 * t}
    for kind in PARAMETERIZATIONS:
        s = network_to_score(net, sde, parameterization=kind, **opts)(xt, t)
        d = network_to_denoiser(net, sde, parameterization=kind, **opts)(xt, t)
        score_err = jnp.sum(jnp.square(s + noise / sigma[:, None]), axis=-1)
        x0_err = jnp.sum(jnp.square(d - x0), axis=-1)
        want = {
            "sigma2": 0.5 * jnp.square(sigma) * score_err,
            "likelihood": 0.5 * jnp.square(g) * score_err,
            "edm": 0.5 * (jnp.square(ratio) + sd**2) / jnp.square(ratio * sd) * x0_err,
        }
        for weighting in WEIGHTINGS:
            for reduce, denom in (("sum", 1.0), ("mean", 2.0)):
                got, terms = dsm_loss_at(
                    net, sde, x0, t, noise, parameterization=kind, weighting=weighting,
                    reduce=reduce, **opts,
                )  # fmt: skip
                np.testing.assert_allclose(
                    got, want[weighting] / denom, rtol=1e-7, err_msg=f"{kind} {weighting}"
                )
            np.testing.assert_allclose(got, 0.5 * terms["weight"] * terms["eps_mse"], rtol=1e-12)
            np.testing.assert_allclose(terms["t"], t)
    # EDM's unit weight on the raw network output.
    c_skip, c_out, c_in, c_noise = edm_coefficients(ratio, sd)
    scaled = xt / alpha[:, None]
    f_out = net(c_in[:, None] * scaled, c_noise)
    f_target = (x0 - c_skip[:, None] * scaled) / c_out[:, None]
    got, _ = dsm_loss_at(net, sde, x0, t, noise, parameterization="edm", weighting="edm", **opts)
    np.testing.assert_allclose(got, 0.5 * jnp.sum(jnp.square(f_out - f_target), -1), rtol=1e-7)
    # Negative control: the same comparison with the wrong weighting's definition fails.
    got, _ = dsm_loss_at(net, sde, x0, t, noise, parameterization="x0", weighting="sigma2", **opts)
    assert not np.allclose(got, want["likelihood"], rtol=1e-7)


@functools.partial(jax.jit, static_argnames=("name",))
def _losses_by_parameterization(sde, mixture, key, *, name):
    """Per-example losses (same key) of the exact model in every parameterization, for every
    weighting and for importance-sampled likelihood; plus a misread-network control."""
    x0 = mixture.sample(jax.random.fold_in(key, 1), 256)
    score_fn = mixture_score_fn(mixture, sde)
    opts = {"sigma_data": 0.7, "noise_input": lambda t: 1000.0 * t}
    nets = {
        kind: exact_network(
            kind, sde, score_fn, sigma_data=0.7, inverse_noise_input=lambda c: c / 1000.0
        )
        for kind in PARAMETERIZATIONS
    }
    settings = [(w, False) for w in WEIGHTINGS] + [("likelihood", True)]
    out = {}
    for weighting, is_ in settings:
        for kind, net in nets.items():
            out[f"{weighting}/{is_}/{kind}"] = dsm_loss(
                net, sde, x0, key, parameterization=kind, weighting=weighting,
                importance_sampling=is_, **opts,
            )[0]  # fmt: skip
    out["misread"] = dsm_loss(nets["eps"], sde, x0, key, parameterization="v", **opts)[0]
    return out


@pytest.mark.parametrize("name", list(SDES))
def test_exact_model_has_the_same_loss_in_every_parameterization(x64, name):
    sde = SDES[name]
    losses = _losses_by_parameterization(sde, _f64(MIXTURE), jax.random.key(5), name=name)
    for weighting, is_ in [(w, False) for w in WEIGHTINGS] + [("likelihood", True)]:
        ref = losses[f"{weighting}/{is_}/score"]
        assert float(jnp.min(ref)) > 0.0
        for kind in PARAMETERIZATIONS:
            np.testing.assert_allclose(
                losses[f"{weighting}/{is_}/{kind}"],
                ref,
                rtol=1e-7,
                err_msg=f"{weighting} {is_} {kind}",
            )
    # Negative control: the exact eps network read as a v network gives another loss.
    assert not np.allclose(losses["misread"], losses["sigma2/False/score"], rtol=1e-7)


# ----------------------------------------------------------------- importance sampling

NUM_IS = 4000
IS_T_MIN = 1e-3


def _linear_net(x, c):
    """``s(x, t) = -x``: the score of N(0, I), a fixed, wrong, data-dependent model."""
    return -x


@functools.partial(jax.jit, static_argnames=("t_min", "name"))
def _likelihood_estimates(sde, mixture, key, *, t_min, name):
    x0 = mixture.sample(jax.random.fold_in(key, 1), NUM_IS)
    k_u, k_is = jax.random.split(key)
    kw = {"parameterization": "score", "weighting": "likelihood", "t_min": t_min}
    uniform, terms_u = dsm_loss(_linear_net, sde, x0, k_u, **kw)
    sampled, terms_is = dsm_loss(_linear_net, sde, x0, k_is, importance_sampling=True, **kw)
    # The classic mistake: IS-distributed t with the uniform-t weight.
    t = terms_is["t"]
    g2_over_s2 = jnp.square(sde.diffusion(t) / sde.sigma(t))
    unweighted = 0.5 * (sde.T - t_min) * g2_over_s2 * x0.shape[-1] * terms_is["eps_mse"]
    return uniform, sampled, unweighted, terms_u, terms_is


def _expected_likelihood_loss(sde, mixture, t_min, nodes):
    """``1/2 int_{t_min}^T (g^2 / sigma^2) E||sigma s + eps||^2 dt`` for ``s = -x``.

    ``sigma s + eps = (1 - sigma^2) eps - sigma alpha x_0`` so the inner expectation is
    ``D (1 - sigma^2)^2 + sigma^2 alpha^2 E||x_0||^2``. The time integral is done by
    Gauss-Legendre in ``u = log t`` (smooth: ``t g^2 / sigma^2 -> 1`` as ``t -> 0``)."""
    mean, cov = mixture.moments()
    m2 = float(jnp.trace(cov) + jnp.sum(jnp.square(mean)))
    dim = mixture.dim
    u, w = np.polynomial.legendre.leggauss(nodes)
    lo, hi = np.log(t_min), np.log(sde.T)
    u = 0.5 * (hi - lo) * u + 0.5 * (hi + lo)
    t = jnp.exp(jnp.asarray(u))
    sig2, alp2 = jnp.square(sde.sigma(t)), jnp.square(sde.alpha(t))
    inner = dim * jnp.square(1.0 - sig2) + sig2 * alp2 * m2
    integrand = jnp.square(sde.diffusion(t)) / sig2 * inner * t
    return 0.5 * 0.5 * (hi - lo) * float(jnp.sum(jnp.asarray(w) * integrand))


@pytest.mark.parametrize("name", ["vp", "subvp"])
def test_importance_sampling_is_unbiased_with_lower_variance(x64, name):
    sde, mixture = SDES[name], _f64(MIXTURE)
    expected = _expected_likelihood_loss(sde, mixture, IS_T_MIN, 400)
    check = _expected_likelihood_loss(sde, mixture, IS_T_MIN, 200)
    assert abs(check - expected) < 1e-9 * expected  # the quadrature has converged
    uniform, sampled, unweighted, _, terms_is = (
        np.asarray(a) if not isinstance(a, dict) else a
        for a in _likelihood_estimates(sde, mixture, jax.random.key(6), t_min=IS_T_MIN, name=name)
    )
    z_max = bonferroni_z(3)
    z_u, z_is = _z_mean(uniform, expected), _z_mean(sampled, expected)
    z_diff = (sampled.mean() - uniform.mean()) / np.sqrt(
        sampled.var(ddof=1) / NUM_IS + uniform.var(ddof=1) / NUM_IS
    )
    z_bad = _z_mean(unweighted, expected)
    ratio = uniform.var(ddof=1) / sampled.var(ddof=1)
    print(
        f"{name}: J = {expected:.4f}; uniform {uniform.mean():.4f} (z {z_u:.2f}), IS "
        f"{sampled.mean():.4f} (z {z_is:.2f}), difference z {z_diff:.2f}; variance ratio "
        f"uniform / IS = {ratio:.1f}; IS without weight {unweighted.mean():.2f} (z {z_bad:.1f})"
    )
    assert abs(z_u) < z_max and abs(z_is) < z_max and abs(z_diff) < z_max
    assert ratio > 3.0
    assert abs(z_bad) > z_max  # negative control
    # The IS weight is the constant Z = log_snr(t_min) - log_snr(T).
    z_const = float(sde.log_snr(IS_T_MIN) - sde.log_snr(1.0))
    np.testing.assert_allclose(terms_is["weight"], z_const, rtol=1e-12)


def test_time_sampling_laws(x64):
    """Uniform t is uniform on [t_min, T]; IS draws have log-SNR uniform on
    [log_snr(T), log_snr(t_min)] (KS tests); EDM draws have ln(sigma / alpha) ~
    N(P_mean, P_std^2) (z-tests on mean and variance). Each with a negative control."""
    sde, x0 = SDES["vp"], jnp.zeros((4000, 1))
    key = jax.random.key(8)
    alpha_ks = 1e-4 / 3  # Bonferroni over the KS tests below

    def loss(**kw):
        return dsm_loss(_linear_net, sde, x0, key, parameterization="score", **kw)[1]

    t_u = np.asarray(loss(weighting="likelihood", t_min=1e-2)["t"])
    assert t_u.min() >= 1e-2 and t_u.max() <= 1.0
    assert scipy.stats.kstest(t_u, scipy.stats.uniform(1e-2, 1.0 - 1e-2).cdf).pvalue > alpha_ks
    terms = loss(weighting="likelihood", importance_sampling=True, t_min=1e-3)
    lam = np.asarray(sde.log_snr(terms["t"]))
    lo, hi = float(sde.log_snr(1.0)), float(sde.log_snr(1e-3))
    assert scipy.stats.kstest(lam, scipy.stats.uniform(lo, hi - lo).cdf).pvalue > alpha_ks
    # Negative control: uniform t does not have uniform log-SNR.
    lam_u = np.asarray(sde.log_snr(t_u))
    assert scipy.stats.kstest(lam_u, scipy.stats.uniform(lo, hi - lo).cdf).pvalue < alpha_ks

    z_max = bonferroni_z(2)
    for p_mean, p_std in ((-1.2, 1.2), (0.5, 0.6)):
        terms = loss(weighting="edm", p_mean=p_mean, p_std=p_std)
        log_ratio = np.log(np.asarray(sde.sigma_ratio(terms["t"])))
        assert max_abs_z_mean_var(log_ratio, p_mean, p_std**2) < z_max
        # Negative control: EDM's defaults do not describe the (0.5, 0.6) draws and vice versa.
        other = (0.5, 0.6) if p_mean == -1.2 else (-1.2, 1.2)
        assert max_abs_z_mean_var(log_ratio, other[0], other[1] ** 2) > z_max
    # Clipping to [t_min, T]: VE's sigma_min = 0.01 is below EDM's typical noise levels.
    t_ve = dsm_loss(
        _linear_net, SDES["ve"], x0, key, parameterization="score", weighting="edm",
        p_mean=-6.0, p_std=1.0, t_min=1e-4,
    )[1]["t"]  # fmt: skip
    assert float(jnp.min(t_ve)) == pytest.approx(1e-4) and float(jnp.max(t_ve)) <= 1.0


def test_ve_importance_sampling_coincides_with_uniform(x64):
    """For VE, g^2 / sigma^2 = 2 log(sigma_max / sigma_min) is constant, so the IS weight Z
    equals the uniform weight (T - t_min) g^2 / sigma^2 and IS times are uniform."""
    sde, x0 = SDES["ve"], jnp.zeros((2000, 1))
    kw = {"parameterization": "score", "weighting": "likelihood", "t_min": 1e-5}
    _, t_u = dsm_loss(_linear_net, sde, x0, jax.random.key(0), **kw)
    _, t_is = dsm_loss(_linear_net, sde, x0, jax.random.key(0), importance_sampling=True, **kw)
    np.testing.assert_allclose(t_is["weight"], t_u["weight"], rtol=1e-10)
    np.testing.assert_allclose(t_is["t"], t_u["t"], rtol=1e-9, atol=1e-12)
    # Negative control: not so for VP, whose g^2 / sigma^2 varies by orders of magnitude.
    _, t_vp = dsm_loss(_linear_net, SDES["vp"], x0, jax.random.key(0), **kw)
    assert float(jnp.max(t_vp["weight"]) / jnp.min(t_vp["weight"])) > 100.0


# ----------------------------------------------------------------- shapes, options, errors


def _net(x, c):
    return -0.5 * x + jnp.reshape(c, (-1,) + (1,) * (x.ndim - 1))


def test_shapes_reductions_and_jit():
    sde = VPSDE()
    x0 = jax.random.normal(jax.random.key(0), (6, 2, 3))
    key = jax.random.key(1)
    for weighting in WEIGHTINGS:
        for kind in PARAMETERIZATIONS:
            loss, terms = dsm_loss(_net, sde, x0, key, parameterization=kind, weighting=weighting)
            assert loss.shape == (6,) and loss.dtype == x0.dtype
            assert set(terms) >= {"t", "weight", "eps_mse"}
            assert all(v.shape == (6,) for v in terms.values())
            mean, _ = dsm_loss(
                _net, sde, x0, key, parameterization=kind, weighting=weighting, reduce="mean"
            )
            np.testing.assert_allclose(mean, loss / 6.0, rtol=1e-5)
    assert REDUCTIONS == ("sum", "mean")

    @jax.jit
    def jitted(sde, x0, key):
        return dsm_loss(_net, sde, x0, key, weighting="likelihood", importance_sampling=True)

    eager = dsm_loss(_net, sde, x0, key, weighting="likelihood", importance_sampling=True)
    np.testing.assert_allclose(jitted(sde, x0, key)[0], eager[0], rtol=1e-5)
    other = VPSDE(beta_min=0.2, beta_max=10.0)
    np.testing.assert_allclose(
        jitted(other, x0, key)[0],
        dsm_loss(_net, other, x0, key, weighting="likelihood", importance_sampling=True)[0],
        rtol=1e-5,
    )
    assert jitted._cache_size() == 1  # hyperparameters are traced leaves

    # The sigma2 / eps loss is 1/2 (T - t_min) ||eps_theta - eps||^2 (integral convention).
    loss, terms = dsm_loss(_net, sde, x0, key, t_min=0.5, weighting="sigma2")
    np.testing.assert_allclose(terms["weight"], 0.5, rtol=1e-6)
    assert float(jnp.min(terms["t"])) >= 0.5


def test_error_messages():
    sde, x0, key = VPSDE(), jnp.zeros((4, 2)), jax.random.key(0)
    with pytest.raises(
        ValueError, match=r"parameterization must be one of \(.*'eps'.*'edm'\), got 'noise'"
    ):
        dsm_loss(_net, sde, x0, key, parameterization="noise")
    with pytest.raises(ValueError, match=r"unknown weighting 'snr'.*'sigma2', 'likelihood'"):
        dsm_loss(_net, sde, x0, key, weighting="snr")
    with pytest.raises(ValueError, match=r"unknown reduce 'max'.*'sum', 'mean'"):
        dsm_loss(_net, sde, x0, key, reduce="max")
    with pytest.raises(ValueError, match="importance_sampling is only defined"):
        dsm_loss(_net, sde, x0, key, weighting="sigma2", importance_sampling=True)
    for bad in (0.0, 1.0, -1e-3, 2.0):
        with pytest.raises(ValueError, match=r"t_min must lie in \(0, T"):
            dsm_loss(_net, sde, x0, key, t_min=bad)
    with pytest.raises(ValueError, match="float array"):
        dsm_loss(_net, sde, jnp.zeros((4, 2), jnp.int32), key)
    with pytest.raises(ValueError, match="shape"):
        dsm_loss(_net, sde, jnp.zeros(()), key)
    with pytest.raises(ValueError, match=r"net output has shape \(4, 3\)"):
        dsm_loss(lambda x, c: jnp.zeros((4, 3)), sde, x0, key)
    with pytest.raises(ValueError, match="sigma_data must be positive"):
        dsm_loss(_net, sde, x0, key, parameterization="edm", sigma_data=0.0)
    with pytest.raises(ValueError, match="p_std must be positive"):
        dsm_loss(_net, sde, x0, key, weighting="edm", p_std=-1.0)
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(4,\)"):
        dsm_loss_at(_net, sde, x0, jnp.ones(3), x0)
    with pytest.raises(ValueError, match="noise must have x0's shape"):
        dsm_loss_at(_net, sde, x0, 0.5, jnp.zeros((4, 3)))
    # A scalar t is broadcast per example.
    _, terms = dsm_loss_at(_net, sde, x0, 0.5, x0)
    assert terms["t"].shape == (4,)
