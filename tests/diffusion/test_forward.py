"""Forward process: q(x_t | x_0) by Monte Carlo and by iterating the one-step kernel; the
posterior q(x_{t-1} | x_t, x_0) against Bayes' rule on the joint Gaussian."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import diffusion
from tests.diffusion.stats import bonferroni_z, max_abs_z_mean_var

X0 = np.array([[0.9, -0.5, 0.0], [-1.0, 0.3, 0.7], [0.2, 0.2, -0.8], [0.5, -0.9, 0.1]])
T_IDX = np.array([0, 10, 400, 999], np.int32)


def test_q_sample_monte_carlo_moments(x64):
    sched = diffusion.linear_schedule(1000)
    x0, t = jnp.asarray(X0), jnp.asarray(T_IDX)
    n = 4000
    noise = jax.random.normal(jax.random.key(0), (n, *X0.shape), dtype=jnp.float64)
    samples = np.asarray(jax.jit(jax.vmap(lambda e: diffusion.q_sample(sched, x0, t, e)))(noise))
    mean, std = diffusion.q_mean_std(sched, x0, t)
    assert mean.shape == X0.shape and std.shape == (4, 1)
    ab = np.cumprod(1 - np.asarray(sched.betas))[T_IDX][:, None]
    np.testing.assert_allclose(mean, np.sqrt(ab) * X0, rtol=1e-13)
    np.testing.assert_allclose(std, np.sqrt(1 - ab), rtol=1e-13)
    z_max = bonferroni_z(2 * X0.size)  # means and variances of every coordinate
    var = np.broadcast_to(np.asarray(std) ** 2, X0.shape)
    assert max_abs_z_mean_var(samples, mean, var) < z_max
    # Negative control: the same check against a wrong law (std sqrt(beta_t) instead of
    # sqrt(1 - abar_t)) must fail.
    wrong_var = np.broadcast_to(np.asarray(sched.betas)[T_IDX][:, None], X0.shape)
    assert max_abs_z_mean_var(samples, mean, wrong_var) > z_max


@functools.partial(jax.jit, static_argnames=("shrink",))
def _run_chain(sched, x0, key, *, shrink: bool):
    """Iterates x_k = sqrt(1 - beta_k) x_{k-1} + sqrt(beta_k) eps_k (shrink=False drops the
    sqrt(1 - beta_k) factor: a deliberately wrong kernel). Returns every x_k, k = 1..T."""

    def step(x, inputs):
        beta, k = inputs
        scale = jnp.sqrt(1.0 - beta) if shrink else 1.0
        x = scale * x + jnp.sqrt(beta) * jax.random.normal(k, x.shape, x.dtype)
        return x, x

    keys = jax.random.split(key, sched.num_timesteps)
    _, path = jax.lax.scan(step, x0, (sched.betas, keys))
    return path


def test_iterated_kernel_matches_marginal(x64):
    sched = diffusion.linear_schedule(1000)
    b = np.asarray(sched.betas)
    # Exact moment recursion: m_k = sqrt(1 - b_k) m_{k-1}, v_k = (1 - b_k) v_{k-1} + b_k.
    m, v = 1.0, 0.0
    for k in range(1000):
        m, v = np.sqrt(1 - b[k]) * m, (1 - b[k]) * v + b[k]
        if k in T_IDX:
            assert m == pytest.approx(float(sched.sqrt_alphas_cumprod[k]), rel=1e-12)
            assert v == pytest.approx(1 - float(sched.alphas_cumprod[k]), rel=1e-10)
    # Monte Carlo: n chains per starting point, moments at several t.
    n = 2000
    x0 = jnp.broadcast_to(jnp.asarray(X0[:2]), (n, 2, 3))
    checks = np.array([0, 9, 99, 499, 999])
    z_max = bonferroni_z(2 * len(checks) * 6)
    for shrink, should_pass in ((True, True), (False, False)):
        path = np.asarray(_run_chain(sched, x0, jax.random.key(1), shrink=shrink))
        worst = 0.0
        for k in checks:
            t = jnp.full((2,), k, jnp.int32)
            mean, std = diffusion.q_mean_std(sched, jnp.asarray(X0[:2]), t)
            var = np.broadcast_to(np.asarray(std) ** 2, (2, 3))
            worst = max(worst, max_abs_z_mean_var(path[k], mean, var))
        assert (worst < z_max) == should_pass, (shrink, worst, z_max)


def _bayes_posterior(sched, x0, xt, k):
    """q(x_{k-1} | x_k, x_0) by conditioning the joint Gaussian of (x_{k-1}, x_k) | x_0
    (paper steps t-1 = k and t = k + 1 with 0-based k; abar_{t-1} = 1 at k = 0)."""
    b = np.asarray(sched.betas, np.float64)
    ab = np.cumprod(1 - b)
    ab_prev = 1.0 if k == 0 else ab[k - 1]
    a = 1 - b[k]
    m1, v1 = np.sqrt(ab_prev) * x0, 1 - ab_prev  # x_{t-1} | x_0
    cov = np.array([[v1, np.sqrt(a) * v1], [np.sqrt(a) * v1, a * v1 + b[k]]])
    m2 = np.sqrt(a) * m1  # mean of x_t | x_0
    gain = cov[0, 1] / cov[1, 1]
    return m1 + gain * (xt - m2), cov[0, 0] - gain * cov[1, 0]


def test_q_posterior_is_bayes_rule(x64):
    sched = diffusion.cosine_schedule(100)
    x0 = jnp.asarray(X0)
    xt = jnp.asarray(np.random.default_rng(0).normal(size=X0.shape))
    t_idx = np.array([0, 1, 50, 99], np.int32)
    mean, var, log_var = diffusion.q_posterior(sched, x0, xt, jnp.asarray(t_idx))
    assert mean.shape == X0.shape and var.shape == (4, 1)
    for i, k in enumerate(t_idx):
        m_ref, v_ref = _bayes_posterior(sched, X0[i], np.asarray(xt[i]), int(k))
        np.testing.assert_allclose(mean[i], m_ref, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(var[i, 0], v_ref, rtol=1e-10, atol=1e-15)
        if k > 0:
            np.testing.assert_allclose(log_var[i, 0], np.log(v_ref), rtol=1e-11)


def test_forward_input_errors():
    sched = diffusion.linear_schedule(10)
    x0 = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match=r"t must have shape \(B,\)"):
        diffusion.q_sample(sched, x0, jnp.zeros((3, 1), jnp.int32), x0)
    with pytest.raises(ValueError, match=r"t must have shape \(B,\)"):
        diffusion.q_sample(sched, x0, jnp.zeros((2,), jnp.int32), x0)
    with pytest.raises(ValueError, match="integer"):
        diffusion.q_sample(sched, x0, jnp.zeros((3,)), x0)
    with pytest.raises(ValueError, match="noise"):
        diffusion.q_sample(sched, x0, jnp.zeros((3,), jnp.int32), jnp.zeros((3, 3)))
