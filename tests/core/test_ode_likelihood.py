"""The shared ODE likelihood against closed forms: a linear flow ``dx/dt = a(t) x`` maps
``N(0, I)`` at ``t1`` to ``N(0, s^2 I)`` at ``t0`` with ``s = exp(-int_{t0}^{t1} a)``, and
``div v = D a(t)``; Hutchinson's estimate is exact for it with Rademacher probes and unbiased
with Gaussian ones; ``nfe`` counts the vector-field calls."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core import ode_likelihood


def _linear_flow():
    # a(t) = 1 + t: int_0^1 a = 1.5, so x(1) = e^{1.5} x(0) and p_0 = N(0, e^{-3} I).
    def velocity(x, t):
        return (1.0 + t)[:, None] * x

    scale = math.exp(-1.5)
    return velocity, scale


def _normal_log_prob(z, std=1.0):
    d = z.shape[1]
    return -0.5 * jnp.sum(jnp.square(z / std), -1) - d * (
        0.5 * math.log(2 * math.pi) + math.log(std)
    )


def test_linear_flow_log_likelihood_is_exact(x64):
    """(Rademacher probes are exact here: eps^T (a I) eps = a D.)"""
    velocity, scale = _linear_flow()
    x = scale * jax.random.normal(jax.random.key(1), (4, 3))
    log_p, terms = ode_likelihood.ode_log_likelihood(
        velocity,
        x,
        jax.random.key(2),
        t0=0.0,
        t1=1.0,
        prior_log_prob=_normal_log_prob,
        divergence="rademacher",
        rtol=1e-9,
        atol=1e-9,
    )
    np.testing.assert_allclose(log_p, _normal_log_prob(x, scale), rtol=1e-7)
    np.testing.assert_allclose(terms["delta_log_p"], 3 * 1.5, rtol=1e-7)
    np.testing.assert_allclose(terms["z"], x / scale, rtol=1e-7)
    # negative control: the wrong prior scale is off
    assert np.all(np.abs(np.asarray(log_p - _normal_log_prob(x, 1.0))) > 1.0)


def test_gaussian_hutchinson_is_unbiased_and_nfe_is_counted(x64):
    # v = A x with a non-symmetric constant A: div = tr(A) = 0.5, estimate eps^T A eps.
    a = jnp.array([[0.3, 2.0], [-1.0, 0.2]])
    calls = []

    def velocity(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return x @ a.T

    x = jnp.ones((500, 2))
    _, terms = jax.jit(
        lambda y: ode_likelihood.ode_log_likelihood(
            lambda z, t: z @ a.T,
            y,
            jax.random.key(0),
            t0=0.0,
            t1=1.0,
            prior_log_prob=_normal_log_prob,
            divergence="gaussian",
            rtol=1e-4,
            atol=1e-4,
        )
    )(x)
    delta = np.asarray(terms["delta_log_p"])
    # Var(eps^T A eps) = 2 ||sym(A)||_F^2 for Gaussian eps
    sym = 0.5 * (a + a.T)
    se = math.sqrt(2 * float(jnp.sum(sym**2)) / x.shape[0])
    assert abs(delta.mean() - 0.5) < 4.5 * se
    assert delta.std() > 0.1  # Gaussian probes: a real estimate, not the exact value
    # nfe = 1 + 6 n against the vector-field calls counted at run time (one example)
    _, one = jax.jit(
        lambda y: ode_likelihood.ode_log_likelihood(
            velocity,
            y,
            None,
            t0=0.0,
            t1=1.0,
            prior_log_prob=_normal_log_prob,
            divergence="exact",
            rtol=1e-3,
            atol=1e-3,
        )
    )(x[:1])
    jax.effects_barrier()
    assert int(one["nfe"][0]) == 1 + 6 * int(one["num_steps"][0]) == len(calls), (
        one["nfe"],
        one["num_steps"],
        len(calls),
    )


def test_bad_options_are_refused():
    x = jnp.zeros((2, 2))
    kw = dict(t0=0.0, t1=1.0, prior_log_prob=_normal_log_prob)
    with pytest.raises(ValueError, match="exact.*rademacher.*gaussian"):
        ode_likelihood.ode_log_likelihood(lambda y, t: y, x, None, divergence="h", **kw)
    with pytest.raises(ValueError, match="PRNG key"):
        ode_likelihood.ode_log_likelihood(lambda y, t: y, x, None, **kw)
    with pytest.raises(ValueError, match=r"\(B, \*event\)"):
        ode_likelihood.ode_log_likelihood(lambda y, t: y, jnp.zeros(3), None, **kw)
