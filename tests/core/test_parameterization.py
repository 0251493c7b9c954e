"""Oracles for ``jaxgen.core.parameterization``: exact round trips between every pair of
parameterizations, hand-derived closed forms on a VP and a VE path, flow matching's
velocity on the linear path, and Tweedie's formula on Gaussian data (float64)."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core import parameterization as param
from jaxgen.core.parameterization import PARAMETERIZATIONS, convert, from_x0_eps, to_x0_eps

EVENT = (3, 4)
PAIRS = list(itertools.product(PARAMETERIZATIONS, PARAMETERIZATIONS))


def _col(v):
    """A per-example (B,) value as (B, 1, 1), written out independently of the module."""
    return np.asarray(v)[:, None, None]


def _random_path(seed, batch=6):
    """Random alpha, sigma > 0 and derivatives with a non-zero ``alpha sigma' - sigma alpha'``
    (noise grows: alpha' < 0 < sigma')."""
    rng = np.random.default_rng(seed)
    alpha = rng.uniform(0.05, 2.0, batch)
    sigma = rng.uniform(0.05, 3.0, batch)
    alpha_dot = -rng.uniform(0.1, 2.0, batch)
    sigma_dot = rng.uniform(0.1, 2.0, batch)
    return alpha, sigma, alpha_dot, sigma_dot


def _data(seed, batch=6):
    rng = np.random.default_rng(seed + 100)
    return rng.standard_normal((batch, *EVENT)), rng.standard_normal((batch, *EVENT))


def _closed_form(source, target, pred, x, a, s, da, ds):
    """``target`` prediction from a ``source`` one, each pair derived by hand (module doc of
    ``jaxgen.core.parameterization``; ``det = a ds - s da``, ``n = a^2 + s^2``)."""
    n, det = a**2 + s**2, a * ds - s * da
    forms = {
        ("eps", "x0"): lambda e: (x - s * e) / a,
        ("eps", "score"): lambda e: -e / s,
        ("eps", "v"): lambda e: (n * e - s * x) / a,
        ("eps", "velocity"): lambda e: (da / a) * x + (ds - da * s / a) * e,
        ("x0", "eps"): lambda d: (x - a * d) / s,
        ("x0", "score"): lambda d: -(x - a * d) / s**2,  # Tweedie
        ("x0", "v"): lambda d: (a * x - n * d) / s,
        ("x0", "velocity"): lambda d: (ds / s) * x + (da - ds * a / s) * d,
        ("score", "eps"): lambda g: -s * g,
        ("score", "x0"): lambda g: (x + s**2 * g) / a,  # Tweedie
        ("score", "v"): lambda g: -(s / a) * (n * g + x),
        ("score", "velocity"): lambda g: (da / a) * x + (da * s**2 / a - ds * s) * g,
        ("v", "eps"): lambda v: (s * x + a * v) / n,
        ("v", "x0"): lambda v: (a * x - s * v) / n,
        ("v", "score"): lambda v: -(s * x + a * v) / (s * n),
        ("v", "velocity"): lambda v: ((a * da + s * ds) * x + (a * ds - s * da) * v) / n,
        ("velocity", "eps"): lambda u: (a * u - da * x) / det,
        ("velocity", "x0"): lambda u: (ds * x - s * u) / det,
        ("velocity", "score"): lambda u: -(a * u - da * x) / (s * det),
        ("velocity", "v"): lambda u: (n * u - (a * da + s * ds) * x) / det,
    }
    return pred if source == target else forms[(source, target)](pred)


def _targets(x0, eps, a, s, da, ds):
    """Every parameterization of ``(x0, eps)``, from the definitions (not the module)."""
    return {
        "eps": eps,
        "x0": x0,
        "score": -eps / s,
        "v": a * eps - s * x0,
        "velocity": da * x0 + ds * eps,
    }


def test_parameterizations_listed():
    assert PARAMETERIZATIONS == ("eps", "x0", "score", "v", "velocity")
    assert param.prediction_target is from_x0_eps


def test_definitions(x64):
    alpha, sigma, alpha_dot, sigma_dot = _random_path(0)
    x0, eps = _data(0)
    kw = dict(alpha_dot=alpha_dot, sigma_dot=sigma_dot)
    expected = _targets(x0, eps, _col(alpha), _col(sigma), _col(alpha_dot), _col(sigma_dot))
    for name in PARAMETERIZATIONS:
        got = from_x0_eps(x0, eps, alpha, sigma, parameterization=name, **kw)
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, expected[name], rtol=1e-15, atol=0)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("source, target", PAIRS)
def test_round_trip_every_pair(x64, seed, source, target):
    """source -> target -> source is the identity, and the target is the definition's."""
    alpha, sigma, alpha_dot, sigma_dot = _random_path(seed)
    x0, eps = _data(seed)
    x = _col(alpha) * x0 + _col(sigma) * eps
    kw = dict(alpha_dot=alpha_dot, sigma_dot=sigma_dot)
    expected = _targets(x0, eps, _col(alpha), _col(sigma), _col(alpha_dot), _col(sigma_dot))
    pred = expected[source]
    out = convert(pred, x, alpha, sigma, source=source, target=target, **kw)
    back = convert(out, x, alpha, sigma, source=target, target=source, **kw)
    np.testing.assert_allclose(out, expected[target], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(back, pred, rtol=1e-10, atol=1e-10)
    # to_x0_eps recovers the pair itself.
    got_x0, got_eps = to_x0_eps(pred, x, alpha, sigma, parameterization=source, **kw)
    np.testing.assert_allclose(got_x0, x0, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got_eps, eps, rtol=1e-10, atol=1e-10)


def _vp_path(t):
    """Cosine VP path: alpha = cos(pi t / 2), sigma = sin(pi t / 2) (alpha^2 + sigma^2 = 1)."""
    phi, dphi = 0.5 * math.pi * t, 0.5 * math.pi
    return np.cos(phi), np.sin(phi), -dphi * np.sin(phi), dphi * np.cos(phi)


def _ve_path(t, sigma_min=0.01, sigma_max=50.0):
    """VE path: alpha = 1, sigma = sigma_min (sigma_max / sigma_min)^t."""
    sigma = sigma_min * (sigma_max / sigma_min) ** t
    return np.ones_like(t), sigma, np.zeros_like(t), sigma * math.log(sigma_max / sigma_min)


@pytest.mark.parametrize("path", [_vp_path, _ve_path])
@pytest.mark.parametrize("source, target", PAIRS)
def test_convert_matches_closed_forms(x64, path, source, target):
    t = np.array([0.02, 0.3, 0.5, 0.77, 0.98])
    a, s, da, ds = path(t)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, *EVENT)) * _col(np.sqrt(a**2 + s**2))
    pred = rng.standard_normal((5, *EVENT))  # any prediction, not necessarily consistent
    got = convert(pred, x, a, s, source=source, target=target, alpha_dot=da, sigma_dot=ds)
    want = _closed_form(source, target, pred, x, *map(_col, (a, s, da, ds)))
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)


def test_vp_velocity_is_scaled_v(x64):
    """On the cosine VP path (alpha, sigma) = (cos phi, sin phi), phi = pi t / 2, the path's
    velocity is phi' v (Salimans and Ho 2022's v is the angular velocity)."""
    t = np.array([0.1, 0.5, 0.9])
    a, s, da, ds = _vp_path(t)
    v = np.random.default_rng(3).standard_normal((3, *EVENT))
    x = np.random.default_rng(4).standard_normal((3, *EVENT))
    u = convert(v, x, a, s, source="v", target="velocity", alpha_dot=da, sigma_dot=ds)
    np.testing.assert_allclose(u, 0.5 * math.pi * v, rtol=1e-13, atol=1e-13)


def test_velocity_on_linear_path_is_eps_minus_x0(x64):
    """Rectified flow / conditional flow matching: alpha = 1 - t, sigma = t gives
    u = d/dt ((1 - t) x0 + t eps) = eps - x0 (Lipman et al. 2023; Liu et al. 2023)."""
    t = np.array([0.1, 0.4, 0.6, 0.95])
    x0, eps = _data(5, batch=4)
    alpha, sigma = 1.0 - t, t
    kw = dict(alpha_dot=-np.ones(4), sigma_dot=np.ones(4))
    u = from_x0_eps(x0, eps, alpha, sigma, parameterization="velocity", **kw)
    np.testing.assert_allclose(u, eps - x0, rtol=1e-15, atol=1e-15)
    x = _col(alpha) * x0 + _col(sigma) * eps
    for source, pred in (("eps", eps), ("x0", x0)):
        got = convert(pred, x, alpha, sigma, source=source, target="velocity", **kw)
        np.testing.assert_allclose(got, eps - x0, rtol=1e-12, atol=1e-12)
    # Scalars (one t for the batch) broadcast the same way; the derivatives may be floats.
    u0 = from_x0_eps(x0, eps, 0.6, 0.4, parameterization="velocity", alpha_dot=-1.0, sigma_dot=1.0)
    np.testing.assert_allclose(u0, eps - x0, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("path", [_vp_path, _ve_path])
def test_gaussian_data_score_to_x0_is_posterior_mean(x64, path):
    """Data N(mu, s0^2 I) noised along the path: x_t ~ N(alpha mu, (alpha^2 s0^2 + sigma^2) I),
    score = -(x - alpha mu) / var. Converted to x0 it is the exact posterior mean
    E[x0 | x_t] = mu + alpha s0^2 (x - alpha mu) / var, to eps E[eps | x_t] =
    sigma (x - alpha mu) / var, and the eps of that posterior mean is consistent."""
    mu, s0 = 0.7, 1.3
    t = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    a, s, da, ds = path(t)
    var = a**2 * s0**2 + s**2
    x = np.random.default_rng(11).standard_normal((5, *EVENT)) * 2.0
    score = -(x - _col(a) * mu) / _col(var)
    kw = dict(alpha_dot=da, sigma_dot=ds)
    post_x0 = mu + _col(a * s0**2 / var) * (x - _col(a) * mu)
    post_eps = _col(s / var) * (x - _col(a) * mu)
    got_x0 = convert(score, x, a, s, source="score", target="x0", **kw)
    np.testing.assert_allclose(got_x0, post_x0, rtol=1e-11, atol=1e-11)
    got_eps = convert(score, x, a, s, source="score", target="eps", **kw)
    np.testing.assert_allclose(got_eps, post_eps, rtol=1e-11, atol=1e-11)
    # The posterior-mean velocity E[u | x_t] = alpha' E[x0|x] + sigma' E[eps|x].
    got_u = convert(score, x, a, s, source="score", target="velocity", **kw)
    np.testing.assert_allclose(
        got_u, _col(da) * post_x0 + _col(ds) * post_eps, rtol=1e-10, atol=1e-10
    )
    # Negative control: the prior mean is not the posterior mean.
    assert np.max(np.abs(got_x0 - mu)) > 0.1


def test_broadcast_to_event():
    x = jnp.zeros((4, 2, 3, 5))
    assert param.broadcast_to_event(jnp.arange(4.0), x).shape == (4, 1, 1, 1)
    assert param.broadcast_to_event(2.0, x).shape == ()
    assert param.broadcast_to_event(jnp.ones((4, 2)), x).shape == (4, 2, 1, 1)


def test_under_jit_and_float32():
    alpha, sigma, alpha_dot, sigma_dot = (jnp.asarray(v, jnp.float32) for v in _random_path(2))
    x0, eps = (jnp.asarray(v, jnp.float32) for v in _data(2))
    x = alpha[:, None, None] * x0 + sigma[:, None, None] * eps

    @jax.jit
    def f(pred):
        return convert(pred, x, alpha, sigma, source="v", target="eps", alpha_dot=alpha_dot)

    v = alpha[:, None, None] * eps - sigma[:, None, None] * x0
    out = f(v)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, eps, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "call",
    [
        lambda p, x, a, s: to_x0_eps(p, x, a, s, parameterization="velocity"),
        lambda p, x, a, s: to_x0_eps(p, x, a, s, parameterization="velocity", alpha_dot=-1.0),
        lambda p, x, a, s: from_x0_eps(p, x, a, s, parameterization="velocity", sigma_dot=1.0),
        lambda p, x, a, s: convert(p, x, a, s, source="velocity", target="eps"),
        lambda p, x, a, s: convert(p, x, a, s, source="x0", target="velocity"),
    ],
)
def test_velocity_needs_derivatives(call):
    p = x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="'velocity'.*alpha_dot and sigma_dot"):
        call(p, x, jnp.ones(2), jnp.ones(2))


@pytest.mark.parametrize(
    "call",
    [
        lambda p, x: to_x0_eps(p, x, 1.0, 1.0, parameterization="epsilon"),
        lambda p, x: from_x0_eps(p, x, 1.0, 1.0, parameterization="epsilon"),
        lambda p, x: convert(p, x, 1.0, 1.0, source="epsilon", target="x0"),
        lambda p, x: convert(p, x, 1.0, 1.0, source="eps", target="epsilon"),
        lambda p, x: convert(p, x, 1.0, 1.0, source="epsilon", target="epsilon"),
        lambda p, x: param.check_parameterization("epsilon"),
    ],
)
def test_unknown_names(call):
    p = x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"parameterization must be one of .*'eps'.*'velocity'"):
        call(p, x)
    with pytest.raises(ValueError, match=r"got 'epsilon'; did you mean 'eps'"):
        call(p, x)


def test_check_parameterization_allowed_subset():
    assert param.check_parameterization("v", allowed=("eps", "v")) == "v"
    with pytest.raises(ValueError, match=r"one of \('eps', 'x0'\), got 'score'"):
        param.check_parameterization("score", allowed=("eps", "x0"))
