"""Probability-flow ODE samplers (Song et al. 2021, eq. 13) with the exact score of the 2-D
Gaussian-mixture oracle: distributional correctness of Euler, Heun and adaptive (diffrax)
on VP, sub-VP and VE; fitted convergence orders 1 and 2 of the fixed-step methods; the
adaptive NFE formula against a direct count of vector-field calls; encoding and decoding
invert each other."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core.sampling import initial_and_step_keys
from jaxgen.sde import VESDE, VPSDE, SubVPSDE, mixture_score_fn
from jaxgen.sde.samplers.euler_maruyama import prior_and_step_keys
from jaxgen.sde.samplers.probability_flow import probability_flow_sample, probability_flow_solve
from tests.diffusion import mixture_oracle
from tests.diffusion.mixture_oracle import MIXTURE, NUM_SAMPLES

SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE()}
SHIFTED = MIXTURE._replace(means=MIXTURE.means + jnp.array([[0.1, 0.0]]))
METHOD_OPTIONS = {
    # Uniform-in-t Euler is poor for VE (sigma changes by 5000x over [0, 1]): more steps.
    "euler": lambda name: {"num_steps": 500 if name == "ve" else 100},
    "heun": lambda name: {"num_steps": 25},
    "adaptive": lambda name: {"rtol": 1e-4, "atol": 1e-4},
}


@jax.jit
def _sample_all(key, mixture, sde):
    # One compilation per SDE type; the mixture (exact vs negative control) is traced.
    score_fn = mixture_score_fn(mixture, sde)
    name = {VPSDE: "vp", SubVPSDE: "subvp", VESDE: "ve"}[type(sde)]
    return {
        method: probability_flow_sample(
            score_fn, sde, key, (NUM_SAMPLES, 2), method=method, **opts(name)
        )
        for method, opts in METHOD_OPTIONS.items()
    }


@functools.cache
def _mmds(sde_name: str, seed: int = 0):
    key = jax.random.key(seed)
    good = _sample_all(key, MIXTURE, SDES[sde_name])
    bad = _sample_all(key, SHIFTED, SDES[sde_name])
    return {
        m: (
            mixture_oracle.mmd_to_exact(good[m].samples),
            mixture_oracle.mmd_to_exact(bad[m].samples),
            good[m].nfe,
        )
        for m in METHOD_OPTIONS
    }


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("method", list(METHOD_OPTIONS))
def test_probability_flow_reproduces_mixture(sde_name, method):
    """MMD^2 (1000 samples) to exact mixture samples below the oracle threshold, and above
    it with the score of the mixture shifted by 0.1.

    Measured spread over 5 keys (mean / max MMD^2; threshold 0.0120), VP | sub-VP | VE:
    euler (N=100; VE N=500) 0.0000/0.0024 | 0.0001/0.0025 | 0.0011/0.0040;
    heun (N=25, 50 NFE) 0.0008/0.0027 | 0.0002/0.0025 | 0.0007/0.0016;
    adaptive (tsit5, tol 1e-4, 91-127 NFE) 0.0001/0.0023 | 0.0001/0.0023 | -0.0001/0.0021.
    (VE Euler with N=200 has mean 0.0053, max 0.0086: too close to the threshold.)
    Negative controls: 0.026 to 0.050.
    """
    _, _, threshold, _ = mixture_oracle.reference()
    mmd, mmd_wrong, nfe = _mmds(sde_name)[method]
    print(f"{sde_name} {method}: MMD^2 {mmd:.5f}, shifted {mmd_wrong:.4f}, thr {threshold:.5f}")
    assert mmd < threshold < mmd_wrong
    if method == "adaptive":
        assert jnp.issubdtype(jnp.asarray(nfe).dtype, jnp.integer) and 20 < int(nfe) < 400
    else:
        steps = METHOD_OPTIONS[method](sde_name)["num_steps"]
        assert nfe == steps * (2 if method == "heun" else 1)


STEPS = (32, 64, 128, 256)
REFERENCE_STEPS = 4096
T_MIN = 1e-3


@functools.partial(jax.jit, static_argnames=("steps",))
def _solutions(key, sde, *, steps):
    score_fn = mixture_score_fn(MIXTURE, sde)
    x_T = sde.prior_sample(key, (256, 2), dtype=jnp.float64)
    solve = functools.partial(probability_flow_solve, score_fn, sde, t0=sde.T, t1=T_MIN)
    out = {
        (m, n): solve(x_T, method=m, num_steps=n).samples for m in ("euler", "heun") for n in steps
    }
    ref = solve(x_T, method="heun", num_steps=REFERENCE_STEPS).samples
    back = probability_flow_solve(
        score_fn, sde, ref, t0=T_MIN, t1=sde.T, method="heun", num_steps=REFERENCE_STEPS
    ).samples
    return out, ref, x_T, back


def _fitted_order(errors, steps):
    slope, _ = np.polyfit(np.log(steps), np.log(errors), 1)
    return -slope


@pytest.mark.parametrize("sde_name", list(SDES))
def test_fixed_step_convergence_orders(sde_name, x64):
    """From the same x_T, the error at t_min = 1e-3 against Heun on 4096 steps falls with
    fitted log-log order ~1 (Euler) and ~2 (Heun) over N = 32..256.

    Error: the median over 256 paths of |x_N - x_ref| (a few paths that start near a basin
    boundary between modes converge late; the median ignores them). The asymptotic regime:
    measured local orders (doubling N) from N = 16 are VP Euler 0.62, 0.87, 0.95, 0.98 and
    Heun 1.67, 1.90, 1.94, 1.97; sub-VP Heun 0.89 at 16->32 then 1.67, 1.90, 1.96; VE Euler
    0.87..0.98, Heun 2.41, 2.16, 2.08, 2.04; so N starts at 32. Fitted orders on 32..256:
    Euler 0.94 / 1.03 / 0.97, Heun 1.94 / 1.85 / 2.09 (VP / sub-VP / VE). The reference's
    own error (Heun, 16x the finest N: ~(1/16)^2 of Heun-256's) biases nothing visible.
    Bands: Euler [0.8, 1.2], Heun [1.7, 2.3]; the negative control is that each method's
    fitted order fails the other's band.
    """
    sde = SDES[sde_name]
    out, ref, x_T, back = _solutions(jax.random.key(3), sde, steps=STEPS)
    orders = {}
    for method in ("euler", "heun"):
        errors = [
            float(np.median(np.linalg.norm(np.asarray(out[method, n] - ref), axis=-1)))
            for n in STEPS
        ]
        orders[method] = _fitted_order(np.array(errors), np.array(STEPS))
        print(f"{sde_name} {method}: median errors {np.array(errors)}, order {orders[method]:.3f}")
    assert 0.8 <= orders["euler"] <= 1.2 and not 1.7 <= orders["euler"] <= 2.3
    assert 1.7 <= orders["heun"] <= 2.3 and not 0.8 <= orders["heun"] <= 1.2
    # Encoding (t_min -> T) inverts decoding: the ODE map is a bijection.
    roundtrip = float(jnp.median(jnp.linalg.norm(back - x_T, axis=-1)))
    print(f"{sde_name} decode/encode round trip median error {roundtrip:.2e}")
    assert roundtrip < 1e-4
    assert float(jnp.median(jnp.linalg.norm(ref - x_T, axis=-1))) > 0.1  # it did move


def test_adaptive_nfe_formula_matches_callback_count(x64):
    """nfe = (s - 1) n + a_1 (module docstring) equals the number of vector-field calls
    counted at run time, for Tsit5 and Dopri5 and loose and tight tolerances. At least one
    case has a_1 >= 2 (the first trial step is rejected; its retries recompute the first
    stage), counted as the calls at t = T; there a formula that assumed a_1 = 1 would be
    wrong (negative control). The tight solution also matches Heun on 4096 steps."""
    sde = VESDE()
    cases = (("tsit5", 1e-4), ("dopri5", 1e-6), ("tsit5", 1e-10))
    calls = {case: [] for case in cases}

    @jax.jit
    def run(key):
        base = mixture_score_fn(MIXTURE, sde)
        x_T = sde.prior_sample(key, (16, 2), dtype=jnp.float64)
        outs = {}
        for case in cases:

            def score_fn(x, t, case=case):
                jax.debug.callback(lambda tt: calls[case].append(float(tt)), t[0])
                return base(x, t)

            solver, tol = case
            outs[case] = probability_flow_solve(
                score_fn,
                sde,
                x_T,
                t0=sde.T,
                t1=T_MIN,
                method="adaptive",
                solver=solver,
                rtol=tol,
                atol=tol,
            )
        ref = probability_flow_solve(
            base, sde, x_T, t0=sde.T, t1=T_MIN, method="heun", num_steps=REFERENCE_STEPS
        )
        return outs, ref

    outs, ref = run(jax.random.key(0))
    jax.block_until_ready(outs)
    jax.effects_barrier()
    first_attempts = {}
    for case in cases:
        nfe = int(outs[case].nfe)
        a_1 = sum(t == sde.T for t in calls[case])
        first_attempts[case] = a_1
        print(f"{case}: nfe {nfe}, counted {len(calls[case])}, a_1 {a_1}")
        assert nfe == len(calls[case])
        assert a_1 >= 1 and (nfe - a_1) % 6 == 0
    assert max(first_attempts.values()) >= 2
    case = max(cases, key=lambda c: first_attempts[c])
    assert (int(outs[case].nfe) - 1) % 6 != 0  # the a_1 = 1 formula fails here
    err = float(jnp.max(jnp.abs(outs[("tsit5", 1e-10)].samples - ref.samples)))
    print(f"tight adaptive vs Heun-{REFERENCE_STEPS}: max |diff| {err:.2e}")
    assert err < 1e-5


@pytest.mark.parametrize("method,steps,denoise", [("euler", 4, False), ("heun", 4, True)])
def test_fixed_step_nfe_is_the_number_of_score_calls(method, steps, denoise):
    calls = []
    sde = VPSDE()
    base = mixture_score_fn(MIXTURE, sde)

    def score_fn(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return base(x, t)

    out = probability_flow_sample(
        score_fn, sde, jax.random.key(0), (4, 2), method=method, num_steps=steps, denoise=denoise
    )
    jax.block_until_ready(out.samples)
    jax.effects_barrier()
    assert isinstance(out.nfe, int)
    assert out.nfe == len(calls) == steps * (2 if method == "heun" else 1) + int(denoise)


def test_sample_is_solve_from_the_prior_draw():
    """probability_flow_sample(key) integrates the ODE from the x_T of the shared split
    (the same x_T as the SDE samplers for the same key): per example, ``prior_std`` times
    the standard normal draw of ``core.initial_and_step_keys``."""
    sde = VPSDE()
    score_fn = mixture_score_fn(MIXTURE, sde)
    key = jax.random.key(4)
    out = probability_flow_sample(score_fn, sde, key, (8, 2), method="euler", num_steps=10)
    x_T, _ = prior_and_step_keys(sde, key, (8, 2), 1)
    z, _ = initial_and_step_keys(key, (8, 2), 1)
    np.testing.assert_array_equal(x_T, sde.prior_std() * z)  # VP: prior_std = 1
    solved = probability_flow_solve(
        score_fn, sde, x_T, t0=1.0, t1=sde.t_min, method="euler", num_steps=10
    )
    np.testing.assert_allclose(out.samples, solved.samples, rtol=1e-6, atol=1e-6)


def test_validation_errors():
    sde = VPSDE()
    score_fn = mixture_score_fn(MIXTURE, sde)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="euler.*heun.*adaptive"):
        probability_flow_sample(score_fn, sde, key, (4, 2), method="rk4")
    with pytest.raises(ValueError, match="tsit5.*dopri5"):
        probability_flow_sample(score_fn, sde, key, (4, 2), method="adaptive", solver="rk45")
    with pytest.raises(ValueError, match="num_steps"):
        probability_flow_sample(score_fn, sde, key, (4, 2), method="heun", num_steps=0)
    with pytest.raises(ValueError, match="max_steps"):
        probability_flow_sample(score_fn, sde, key, (4, 2), method="adaptive", max_steps=0)
    with pytest.raises(ValueError, match="shape"):
        probability_flow_sample(score_fn, sde, key, (0, 2))
