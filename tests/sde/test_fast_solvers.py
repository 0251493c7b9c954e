"""Few-step deterministic solvers (DPM-Solver++ 2M/3M, EDM Heun) and their time grids,
checked against the exact score of a 2-D Gaussian mixture (``tests/diffusion/
mixture_oracle.py``): two-sample MMD^2 against exact samples on VP, sub-VP and VE, fitted
convergence orders against a fine reference solution of the same probability-flow ODE,
exact model-call counts, and the grids' defining properties. Every check has a negative
control that fails it.

Compilations dominate the cost on CPU, so each test jits one bundle of samplers with the
mixture and the SDEs as traced arguments (the negative controls reuse the compilation).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.sde import VESDE, VPSDE, SubVPSDE, mixture_score_fn, score_to_x0
from jaxgen.sde.samplers.dpm_solver import dpm_solver_sample, dpm_solver_step_orders
from jaxgen.sde.samplers.edm import edm_sample, edm_sigma_ratios
from jaxgen.sde.samplers.time_steps import SPACINGS, time_steps
from tests.diffusion import mixture_oracle
from tests.diffusion.mixture_oracle import MIXTURE, NUM_SAMPLES
from tests.sde.test_few_step import mmds_to_exact

SDES = (VPSDE(), SubVPSDE(), VESDE())
SDE_NAMES = ("vp", "subvp", "ve")


# ----------------------------------------------------------------------------- time grids


@pytest.mark.parametrize("spacing", SPACINGS)
def test_time_steps_endpoints_monotone_and_defining_property(spacing, x64):
    """Each grid runs from T to t_min exactly, strictly decreasing, and is uniform in its
    own coordinate: t, sqrt(t), lambda = log SNR, or sigma~^(1/rho) (EDM eq. 5)."""
    num_steps, rho = 12, 7.0
    coordinate = {
        "time_uniform": lambda sde, t: t,
        "time_quadratic": lambda sde, t: jnp.sqrt(t),
        "log_snr": lambda sde, t: sde.log_snr(t),
        "karras": lambda sde, t: sde.sigma_ratio(t) ** (1.0 / rho),
    }
    for sde in SDES:
        for t_min in (None, 0.05):
            ts = np.asarray(time_steps(sde, num_steps, spacing=spacing, t_min=t_min, rho=rho))
            end = sde.t_min if t_min is None else t_min
            assert ts.shape == (num_steps + 1,)
            assert ts[0] == sde.T and ts[-1] == end
            assert np.all(np.diff(ts) < 0)
            steps = np.diff(np.asarray(coordinate[spacing](sde, jnp.asarray(ts))))
            np.testing.assert_allclose(steps, steps.mean(), rtol=1e-8)
            # Negative control: the other grids are not uniform in this coordinate (except
            # that VE's lambda = -2 log sigma is linear in t, so two of its grids coincide).
            for other in SPACINGS:
                if other == spacing or (
                    isinstance(sde, VESDE) and {spacing, other} == {"time_uniform", "log_snr"}
                ):
                    continue
                ts_other = time_steps(sde, num_steps, spacing=other, t_min=t_min, rho=rho)
                steps_other = np.diff(np.asarray(coordinate[spacing](sde, ts_other)))
                assert np.ptp(steps_other) > 1e-3 * abs(steps_other.mean())


def test_time_steps_and_edm_levels_reject_bad_input():
    sde = VPSDE()
    with pytest.raises(ValueError, match="time_uniform.*time_quadratic.*log_snr.*karras"):
        time_steps(sde, 10, spacing="linear")
    with pytest.raises(ValueError, match="num_steps"):
        time_steps(sde, 0)
    with pytest.raises(ValueError, match="num_steps"):
        time_steps(sde, 2.0)
    with pytest.raises(ValueError, match="t_min"):
        time_steps(sde, 10, t_min=1.5)
    with pytest.raises(ValueError, match="rho"):
        time_steps(sde, 10, spacing="karras", rho=0.0)
    levels = np.asarray(edm_sigma_ratios(sde, 6))
    assert levels.shape == (7,) and levels[-1] == 0.0 and np.all(np.diff(levels) < 0)
    np.testing.assert_allclose(levels[0], sde.sigma_ratio(1.0), rtol=1e-6)
    np.testing.assert_allclose(levels[-2], sde.sigma_ratio(sde.t_min), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(edm_sigma_ratios(sde, 1)), [levels[0], 0.0], rtol=1e-6)


def test_sampler_options_are_checked():
    score = mixture_score_fn(MIXTURE, VPSDE())
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"order.*\(1, 2, 3\)"):
        dpm_solver_sample(score, VPSDE(), key, (4, 2), order=4)
    with pytest.raises(ValueError, match="spacing"):
        dpm_solver_sample(score, VPSDE(), key, (4, 2), spacing="cosine")
    with pytest.raises(ValueError, match="shape"):
        dpm_solver_sample(score, VPSDE(), key, (0, 2))
    with pytest.raises(ValueError, match="churn"):
        edm_sample(score, VPSDE(), key, (4, 2), churn=-1.0)
    with pytest.raises(ValueError, match="num_steps"):
        edm_sample(score, VPSDE(), key, (4, 2), num_steps=0)


def test_step_orders_warm_up_and_lower_order_final():
    np.testing.assert_array_equal(
        dpm_solver_step_orders(10, 3, lower_order_final=True), [1, 2, 3, 3, 3, 3, 3, 3, 2, 1]
    )
    np.testing.assert_array_equal(
        dpm_solver_step_orders(6, 2, lower_order_final=True), [1, 2, 2, 2, 2, 1]
    )
    # From 15 steps on, lower_order_final has no effect (only the warm-up remains).
    np.testing.assert_array_equal(
        dpm_solver_step_orders(15, 3, lower_order_final=True),
        dpm_solver_step_orders(15, 3, lower_order_final=False),
    )
    assert dpm_solver_step_orders(15, 3, lower_order_final=False)[-1] == 3


# ----------------------------------------------------------------------------- nfe


def test_nfe_is_the_exact_number_of_model_calls():
    """``nfe`` is static and equals the model calls counted at run time (a host callback
    per call): DPM-Solver N (+1 with the final denoise), EDM 2N - 1."""
    calls: dict[str, int] = {}

    def counting_score(tag):
        def score(x, t):
            jax.debug.callback(lambda: calls.__setitem__(tag, calls.get(tag, 0) + 1))
            return -x

        return score

    sde, key, shape = VPSDE(), jax.random.key(0), (3, 2)
    runs = {
        "dpm3_denoise": lambda: dpm_solver_sample(
            counting_score("dpm3_denoise"), sde, key, shape, num_steps=7, order=3, denoise=True
        ),
        "edm5": lambda: edm_sample(counting_score("edm5"), sde, key, shape, num_steps=5),
        "edm1": lambda: edm_sample(counting_score("edm1"), sde, key, shape, num_steps=1),
        "edm5_churn": lambda: edm_sample(
            counting_score("edm5_churn"), sde, key, shape, num_steps=5, churn=2.0
        ),
    }
    expected = {"dpm3_denoise": 8, "edm5": 9, "edm1": 1, "edm5_churn": 9}
    outs = jax.jit(lambda: {k: run() for k, run in runs.items()})()
    jax.effects_barrier()
    for name, out in outs.items():
        assert isinstance(out.nfe, int)
        assert out.nfe == calls[name] == expected[name], (name, out.nfe, calls)
    # Negative control: "two calls per Heun step" over-counts EDM's last (Euler) step.
    assert calls["edm5"] != 2 * 5
    # Churn is not silently ignored: the same key gives another path.
    assert float(jnp.max(jnp.abs(outs["edm5_churn"].samples - outs["edm5"].samples))) > 1e-3
    no_denoise = jax.eval_shape(
        lambda: dpm_solver_sample(lambda x, t: -x, sde, key, shape, num_steps=7, order=2)
    )
    assert no_denoise.nfe == 7


# ----------------------------------------------------------------------------- data


@functools.partial(jax.jit, static_argnames=("shape",))
def _sample_all(mixture, sdes, key, *, shape=(NUM_SAMPLES, 2)):
    """DPM-Solver++ 2M/3M (20 steps) and EDM (18 steps, 35 calls) on each SDE, and EDM with
    churn (Alg. 2, 30 steps) on VP."""
    out = {}
    for name, sde in zip(SDE_NAMES, sdes, strict=True):
        score = mixture_score_fn(mixture, sde)
        for order in (2, 3):
            out[f"dpm{order}m_{name}"] = dpm_solver_sample(
                score, sde, key, shape, num_steps=20, order=order
            ).samples
        out[f"edm_{name}"] = edm_sample(score, sde, key, shape, num_steps=18).samples
    vp_score = mixture_score_fn(mixture, sdes[0])
    out["edm_churn_vp"] = edm_sample(
        vp_score, sdes[0], key, shape, num_steps=30, churn=30.0, s_tmin=0.05, s_tmax=50.0,
        s_noise=1.003,
    ).samples  # fmt: skip
    return out


def test_solvers_reproduce_the_mixture_on_vp_subvp_ve():
    """Measured over 10 keys (1000 samples; threshold ~0.012 = null mean + 5 null std):
    MMD^2 means 0.0003 to 0.0038, max 0.0064 (sub-VP EDM, whose grid reaches
    s~(t_min) = 1.1e-4); the shifted-mixture control gives 0.027 to 0.034. EDM with churn
    (S_churn = 30, S_tmin = 0.05, S_tmax = 50, S_noise = 1.003) on 30 steps: mean 0.0003,
    max 0.0038 over 8 keys (on 18 steps the extra noise is not yet removed: mean 0.0076)."""
    _, _, threshold, _ = mixture_oracle.reference()
    key = jax.random.key(0)
    samples = _sample_all(MIXTURE, SDES, key)
    shifted = MIXTURE._replace(means=MIXTURE.means + jnp.array([[0.1, 0.0]]))
    wrong = _sample_all(shifted, SDES, key)
    names = list(samples)
    # mixture_oracle.mmd_to_exact of all of them in one call
    mmd = mmds_to_exact(jnp.stack([out[n] for out in (samples, wrong) for n in names]))
    mmd = mmd.reshape(2, len(names)).tolist()
    report = {n: (round(mmd[0][i], 5), round(mmd[1][i], 4)) for i, n in enumerate(names)}
    print(f"MMD^2 (exact model, shifted model) vs threshold {threshold:.5f}: {report}")
    for name, (mmd, mmd_wrong) in report.items():
        assert mmd < threshold < mmd_wrong, name


# ----------------------------------------------------------------------------- orders

ORDER_STEPS = (20, 40, 80)
REFERENCE_STEPS = 2000
ORDER_PATHS = 256


@jax.jit
def _convergence_runs(mixture, sde, key):
    """Same x_T for all: DPM-Solver++ orders 1-3 and EDM at ORDER_STEPS, and the
    reference: DPM-Solver++ 3M on 2000 steps (and its Tweedie denoise at t_min, which is
    what EDM's last step to s~ = 0 converges to)."""
    score = mixture_score_fn(mixture, sde)
    shape = (ORDER_PATHS, 2)
    runs = {}
    for n in ORDER_STEPS:
        for order in (1, 2, 3):
            runs[(f"dpm{order}", n)] = dpm_solver_sample(
                score, sde, key, shape, num_steps=n, order=order, lower_order_final=False
            ).samples
        # Uncapped (Alg. 1 from s~(T)): the capped start is an approximation of the flow map
        # from T that does not vanish with N (edm module docstring).
        runs[("edm", n)] = edm_sample(
            score, sde, key, shape, num_steps=n, sigma_max=math.inf
        ).samples
    ref = dpm_solver_sample(
        score, sde, key, shape, num_steps=REFERENCE_STEPS, order=3, lower_order_final=False
    ).samples
    t = jnp.full((ORDER_PATHS,), sde.t_min)
    ref_denoised = score_to_x0(score(ref, t), ref, sde.alpha(t), sde.sigma(t))
    return runs, ref, ref_denoised


def _fitted_order(steps, errors) -> float:
    return -float(np.polyfit(np.log(steps), np.log(errors), 1)[0])


def test_convergence_orders(x64):
    """Fitted slopes of log(error) vs log(N), VP, N = 20, 40, 80, float64.

    Error: median over 256 paths of |x_N - x_ref| with the same x_T (the median, since the
    rare paths that start on a basin boundary switch mode under any change of step). The
    reference (3M, 2000 steps) is ~1e-8 from the exact flow, far below the errors here.

    Measured local slopes (N = 10..320, doubling) for VP / sub-VP / VE: order 1 (DDIM)
    1.0; 2M 2.65, 2.2, 2.0, 2.05, 2.0; 3M 2.2, 3.3, 3.4, 3.3, 3.15 (approaching 3 from
    above; sub-VP starts at 1.4 for N = 10); EDM 2.8, 2.3, 2.2, 2.1, 2.1. Fitted on
    N = 20..80 (VP): ~1.0, ~2.1, ~3.35, ~2.2. The windows: [0.8, 1.3] for order 1, [1.8,
    2.5] for 2M and EDM, [2.7, 3.7] for 3M. Negative controls: each window rejects the
    solver of the neighbouring order.
    """
    sde = VPSDE()
    runs, ref, ref_denoised = _convergence_runs(MIXTURE, sde, jax.random.key(3))
    steps = np.array(ORDER_STEPS, float)
    errors = {}
    for name in ("dpm1", "dpm2", "dpm3", "edm"):
        target = ref_denoised if name == "edm" else ref
        errors[name] = np.array(
            [float(np.median(np.linalg.norm(np.asarray(runs[(name, n)] - target), axis=-1)))
             for n in ORDER_STEPS]
        )  # fmt: skip
    orders = {name: _fitted_order(steps, e) for name, e in errors.items()}
    print("median errors:", {k: np.round(v, 8).tolist() for k, v in errors.items()})
    print("fitted orders:", {k: round(v, 3) for k, v in orders.items()})
    windows = {"dpm1": (0.8, 1.3), "dpm2": (1.8, 2.5), "dpm3": (2.7, 3.7), "edm": (1.8, 2.5)}
    for name, (lo, hi) in windows.items():
        assert lo <= orders[name] <= hi, (name, orders[name])
    # Negative controls: the neighbouring order fails each window.
    assert not windows["dpm2"][0] <= orders["dpm1"] <= windows["dpm2"][1]
    assert not windows["dpm3"][0] <= orders["dpm2"] <= windows["dpm3"][1]
    assert not windows["edm"][0] <= orders["dpm3"] <= windows["edm"][1]
    assert not windows["dpm1"][0] <= orders["edm"] <= windows["dpm1"][1]
