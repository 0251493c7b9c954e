"""Schedules: values against the papers' formulas (float64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import diffusion


def test_linear_schedule_values(x64):
    sched = diffusion.linear_schedule(1000)
    betas = np.asarray(sched.betas)
    assert sched.num_timesteps == 1000
    assert sched.betas.dtype == jnp.float64
    # Ho et al. Sec. 4: beta_1 = 1e-4 ... beta_T = 0.02, linear, not rescaled with T.
    np.testing.assert_allclose(betas[0], 1e-4, rtol=1e-14)
    np.testing.assert_allclose(betas[-1], 0.02, rtol=1e-14)
    np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999, rtol=1e-9)
    small = diffusion.linear_schedule(10)
    np.testing.assert_allclose(np.asarray(small.betas)[[0, -1]], [1e-4, 0.02], rtol=1e-14)
    np.testing.assert_allclose(
        np.asarray(sched.alphas_cumprod), np.cumprod(1.0 - betas), rtol=1e-13
    )
    np.testing.assert_allclose(
        np.asarray(sched.sqrt_one_minus_alphas_cumprod) ** 2
        + np.asarray(sched.sqrt_alphas_cumprod) ** 2,
        1.0,
        rtol=1e-14,
    )
    # Ho et al. report abar_T ~ 4e-5 for this schedule (prior term ~ 1e-5 bits/dim).
    assert 1e-5 < float(sched.alphas_cumprod[-1]) < 1e-4


def test_scaled_linear_schedule_is_linear_in_sqrt_beta(x64):
    # LDM's unconditional models: sqrt(beta) evenly spaced from sqrt(0.0015) to sqrt(0.0195).
    sched = diffusion.make_schedule("scaled_linear", 1000, beta_start=0.0015, beta_end=0.0195)
    betas = np.asarray(sched.betas)
    np.testing.assert_allclose(betas[[0, -1]], [0.0015, 0.0195], rtol=1e-13)
    np.testing.assert_allclose(np.diff(np.sqrt(betas)), np.diff(np.sqrt(betas))[0], rtol=1e-9)
    assert np.ptp(np.diff(betas)) > 1e-8  # negative control: not linear in beta itself
    np.testing.assert_allclose(np.asarray(sched.alphas_cumprod), np.cumprod(1 - betas), rtol=1e-13)
    assert float(sched.alphas_cumprod[-1]) < 1e-3  # abar_T ~ 0: the chain reaches noise


def test_cosine_schedule_matches_eq17(x64):
    num_t, s = 1000, 0.008
    sched = diffusion.cosine_schedule(num_t, offset=s)
    t = np.arange(1, num_t + 1, dtype=np.float64)
    f = np.cos(((t / num_t + s) / (1 + s)) * np.pi / 2) ** 2
    f0 = np.cos((s / (1 + s)) * np.pi / 2) ** 2
    abar_formula = f / f0
    betas = np.asarray(sched.betas)
    unclipped = np.cumprod(betas < 0.999) == 1  # steps before the first clipped beta
    assert unclipped.sum() > 990 and not unclipped[-1]  # only the very end is clipped
    np.testing.assert_allclose(
        np.asarray(sched.alphas_cumprod)[unclipped], abar_formula[unclipped], rtol=1e-10
    )
    assert np.all(betas <= 0.999) and betas[-1] == pytest.approx(0.999)


def test_posterior_coefficients_match_eqs_6_7(x64):
    for sched in (diffusion.linear_schedule(200), diffusion.cosine_schedule(200)):
        b = np.asarray(sched.betas)
        ab = np.cumprod(1 - b)
        abp = np.concatenate([[1.0], ab[:-1]])
        np.testing.assert_allclose(np.asarray(sched.alphas_cumprod_prev), abp, rtol=1e-13)
        pv = (1 - abp) / (1 - ab) * b
        np.testing.assert_allclose(np.asarray(sched.posterior_variance), pv, rtol=1e-12)
        assert float(sched.posterior_variance[0]) == 0.0
        np.testing.assert_allclose(
            np.asarray(sched.posterior_log_variance_clipped),
            np.log(np.concatenate([[pv[1]], pv[1:]])),
            rtol=1e-12,
        )
        np.testing.assert_allclose(
            np.asarray(sched.posterior_mean_coef1), np.sqrt(abp) * b / (1 - ab), rtol=1e-12
        )
        np.testing.assert_allclose(
            np.asarray(sched.posterior_mean_coef2),
            np.sqrt(1 - b) * (1 - abp) / (1 - ab),
            rtol=1e-12,
        )


def test_dtype_follows_x64_flag():
    with jax.enable_x64(False):
        assert diffusion.linear_schedule(10).betas.dtype == jnp.float32
    with jax.enable_x64(True):
        assert diffusion.linear_schedule(10).betas.dtype == jnp.float64


def test_make_schedule_and_errors():
    assert diffusion.make_schedule("linear", 20).num_timesteps == 20
    np.testing.assert_allclose(
        diffusion.make_schedule("cosine", 20, offset=0.01).betas,
        diffusion.cosine_schedule(20, offset=0.01).betas,
    )
    with pytest.raises(ValueError, match="cosine.*linear"):
        diffusion.make_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="1-D"):
        diffusion.schedule_from_betas(np.full((3, 2), 0.1))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        diffusion.schedule_from_betas(np.array([0.1, 0.0, 0.2]))
    with pytest.raises(ValueError, match="T >= 2"):
        diffusion.schedule_from_betas(np.array([0.1]))
    with pytest.raises(ValueError, match="num_timesteps"):
        diffusion.linear_schedule(1)
