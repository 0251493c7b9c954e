"""The continuous-time view of a DDPM schedule (:mod:`jaxgen.diffusion.continuous`).

* at integer ``t = k`` it is the discrete schedule: ``lambda(k) = lambda_k`` bit for bit,
  ``alpha``, ``sigma`` equal ``sqrt(abar)``, ``sqrt(1 - abar)`` to float rounding;
* ``lambda`` is linear between the steps and strictly decreasing; the inverses are exact;
* the grids of :func:`jaxgen.sde.samplers.time_steps` are built on it (Karras: uniform in
  ``(sigma / alpha)^(1/7)``);
* with the exact eps of Gaussian data (closed form), DPM-Solver++ and UniPC through it land
  on the exact probability-flow map ``x -> m_1 + sqrt(v_1 / v_T) (x - m_T)`` (per dimension,
  ``m_t = alpha_t mu``, ``v_t = alpha_t^2 s^2 + sigma_t^2``) and reproduce the data's moments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import core, diffusion
from jaxgen.diffusion.continuous import ContinuousSchedule, continuous_score_fn, index_path
from jaxgen.sde import samplers

SCHEDULES = {
    "linear": diffusion.linear_schedule(1000),
    "cosine": diffusion.cosine_schedule(1000),
    "linear10": diffusion.linear_schedule(10),
}


def _coefficients(view, t):
    """Every map of the view at ``t`` (one compiled function per view)."""
    return {
        "log_snr": view.log_snr(t),
        "alpha": view.alpha(t),
        "sigma": view.sigma(t),
        "index_path": index_path(view)(t - 1.0),
        "t_from_log_snr": view.t_from_log_snr(view.log_snr(t)),
        "t_from_sigma_ratio": view.t_from_sigma_ratio(view.sigma_ratio(t)),
        "model_time": view.model_time(t),
    }


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_equals_discrete_schedule_at_integer_steps_and_interpolates(name):
    schedule = SCHEDULES[name]
    view = ContinuousSchedule(schedule)
    n = schedule.num_timesteps
    assert (view.T, view.t_min) == (float(n), 1.0)
    k = np.arange(1, n + 1, dtype=np.float32)
    # Integer steps, half steps, a fine grid, and two points outside [1, N] (clamped).
    t = np.concatenate([k, k[:-1] + 0.5, np.linspace(1.0, n, 2001, dtype=np.float32)])
    t = np.concatenate([t, np.array([0.0, n + 5.0], np.float32)])
    c = {key: np.asarray(v) for key, v in jax.jit(lambda t: _coefficients(view, t))(t).items()}
    at_k = slice(0, n)

    # The discrete log-SNR log(abar / (1 - abar)) in float64 from the stored betas.
    abar = np.cumprod(1.0 - np.asarray(schedule.betas, np.float64))
    lam = np.log(abar) - np.log1p(-abar)
    table = np.asarray(view.log_snrs)
    np.testing.assert_array_equal(c["log_snr"][at_k], table)  # lambda(k) = lambda_k exactly
    np.testing.assert_allclose(table, lam, rtol=1e-5, atol=1e-5)
    for key in ("alpha", "sigma"):
        column = (
            schedule.sqrt_alphas_cumprod
            if key == "alpha"
            else (schedule.sqrt_one_minus_alphas_cumprod)
        )
        np.testing.assert_allclose(c[key][at_k], column, rtol=1e-6)
    alpha, sigma = c["index_path"]  # the path in network time s = t - 1
    np.testing.assert_allclose(alpha[at_k], schedule.sqrt_alphas_cumprod, rtol=1e-6)
    np.testing.assert_allclose(sigma[at_k], schedule.sqrt_one_minus_alphas_cumprod, rtol=1e-6)
    np.testing.assert_array_equal(c["model_time"], t - 1.0)

    # Linear between steps: the half step is the mean of its neighbours' log-SNRs.
    half = c["log_snr"][n : 2 * n - 1]
    np.testing.assert_allclose(half, 0.5 * (table[:-1] + table[1:]), rtol=1e-6, atol=1e-5)
    fine = c["log_snr"][2 * n - 1 : -2].astype(np.float64)
    assert np.all(np.diff(fine) < 0)  # strictly decreasing
    np.testing.assert_array_equal(c["log_snr"][-2:], table[[0, -1]])  # clamped ends
    # Variance preserving, and the closed-form inverses.
    np.testing.assert_allclose(c["alpha"] ** 2 + c["sigma"] ** 2, 1.0, atol=2e-6)
    inside = slice(0, -2)
    np.testing.assert_allclose(c["t_from_log_snr"][inside], t[inside], rtol=1e-5, atol=2e-3)
    np.testing.assert_allclose(c["t_from_sigma_ratio"][inside], t[inside], rtol=1e-5, atol=2e-3)
    np.testing.assert_array_equal(c["t_from_log_snr"][at_k], k)


def test_karras_grid():
    # (The log-SNR and time-quadratic grids are the solvers' below.)
    view = ContinuousSchedule(SCHEDULES["linear"])
    grid, ratios = jax.jit(
        lambda: (g := samplers.time_steps(view, 7, spacing="karras"), view.sigma_ratio(g))
    )()
    grid = np.asarray(grid)
    assert grid.shape == (8,) and grid[0] == 1000.0 and grid[-1] == 1.0
    assert np.all(np.diff(grid) < 0)
    levels = np.asarray(ratios, np.float64) ** (1 / 7)  # EDM eq. 5: uniform
    np.testing.assert_allclose(np.diff(levels), np.diff(levels)[0], rtol=1e-3)


def test_rejects_non_monotone_schedule():
    bad = SCHEDULES["linear10"]._replace(
        sqrt_alphas_cumprod=jnp.ones(10), sqrt_one_minus_alphas_cumprod=jnp.ones(10)
    )
    with pytest.raises(ValueError, match="strictly decreasing"):
        ContinuousSchedule(bad)


# ----------------------------------------------------------------- exact Gaussian data

MU = np.array([[0.5, -1.0, 0.0, 2.0]], np.float32)  # (1, d): broadcasts over examples
STD = np.array([[0.3, 1.0, 1.5, 0.05]], np.float32)
NUM = 1024


def _exact_eps_model(view):
    """The exact eps of ``N(MU, diag STD^2)`` on the view's path, called at network index s:
    ``eps = sigma (x - alpha mu) / (alpha^2 s^2 + sigma^2)``."""
    path = index_path(view)

    def model(x, s):
        alpha, sigma = (a[:, None] for a in path(s))
        return sigma * (x - alpha * MU) / (alpha**2 * STD**2 + sigma**2)

    return model


def _exact_map(view, x_big_t):
    """The probability-flow map from ``T`` to ``t_min = 1`` of Gaussian data (per dimension
    the standardised coordinate ``(x - m_t) / sqrt(v_t)`` is constant along the ODE)."""
    a_hi, s_hi = view.alpha(view.T), view.sigma(view.T)
    a_lo, s_lo = view.alpha(1.0), view.sigma(1.0)
    v_hi, v_lo = a_hi**2 * STD**2 + s_hi**2, a_lo**2 * STD**2 + s_lo**2
    return a_lo * MU + jnp.sqrt(v_lo / v_hi) * (x_big_t - a_hi * MU)


@pytest.fixture(scope="module")
def gaussian_runs():
    view = ContinuousSchedule(SCHEDULES["linear"])
    score_fn = continuous_score_fn(_exact_eps_model(view), view, parameterization="eps")
    keys = core.example_keys(jax.random.key(0), NUM)
    shape = (NUM, MU.shape[1])
    x_big_t, _ = samplers.prior_and_step_keys(view, keys, shape, 1)
    exact = _exact_map(view, x_big_t)
    solvers = {
        "dpm_solver": lambda: samplers.dpm_solver_sample(
            score_fn, view, keys, shape, num_steps=40, order=3, spacing="log_snr"
        ),
        "unipc": lambda: samplers.unipc_sample(
            score_fn, view, keys, shape, num_steps=20, order=2, spacing="time_quadratic"
        ),
    }
    return exact, jax.jit(lambda: {name: fn() for name, fn in solvers.items()})()


# Worst solver error over the draws relative to each dimension's std, measured 0.0027
# (DPM-Solver++ 3M, 40 steps) and 0.18 (UniPC-2 bh2, 20 steps; worst on the sharp
# std-0.05 dimension); the same as on the VP SDE within 5%: the solvers step in lambda.
BOUNDS = {"dpm_solver": (40, 0.01), "unipc": (20, 0.25)}


@pytest.mark.parametrize("sampler", sorted(BOUNDS))
def test_solvers_follow_exact_flow_of_gaussian_data(gaussian_runs, sampler):
    exact, runs = gaussian_runs
    out = runs[sampler]
    num_steps, bound = BOUNDS[sampler]
    assert out.nfe == num_steps
    error = np.max(np.abs(np.asarray(out.samples) - np.asarray(exact)) / STD)
    assert error < bound, error
    # The data's moments: 4 standard errors (n = NUM), plus the residual noise
    # sigma(1) = 0.01 on the std and the prior's bias alpha(T) mu (~ 6e-3 mu) on the mean.
    samples = np.asarray(out.samples, np.float64)
    se = STD[0] / np.sqrt(NUM)
    mean_err = np.abs(samples.mean(0) - MU[0])
    assert np.all(mean_err < 4 * se + 7e-3 * np.abs(MU[0]) + 1e-3), mean_err
    std_ref = np.sqrt(STD[0] ** 2 + 1e-4)
    std_err = np.abs(samples.std(0) - std_ref)
    assert np.all(std_err < 4 * std_ref / np.sqrt(2 * NUM)), std_err
