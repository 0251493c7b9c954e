"""Flow and diffusion models are one model on a Gaussian path: the flow's exact velocity
converted to eps is the diffusion model's eps, the probability-flow field of the SDE with the
same kernel is the velocity, a flow model is sampled by DPM-Solver++ and EDM, and a diffusion
model by the flow samplers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import flow_matching as fm
from jaxgen import sde
from jaxgen.sde import samplers
from tests.flow_matching.oracle import MIXTURE, mmd_to_exact, reference


def _points(n=64):
    x = 1.5 * jax.random.normal(jax.random.key(0), (n, 2), jnp.float64)
    t = jnp.linspace(0.02, 1.0, n)
    return x, t


@pytest.mark.parametrize("path", [fm.VPPath(), fm.LinearPath(), fm.CosinePath()], ids=str)
def test_flow_velocity_converted_to_eps_is_the_diffusion_eps(x64, path):
    """(Tolerance 1e-6 relative: the velocity -> eps conversion divides by
    ``det = alpha sigma' - sigma alpha'``, which loses digits where ``sigma'`` is large.)"""
    x, t = _points()
    t_in = jnp.clip(t, 0.02, 0.9)  # a score gives no data prediction where alpha = 0
    other = MIXTURE._replace(means=MIXTURE.means + 0.1)
    vp = sde.VPSDE()

    @jax.jit
    def compute(x, t, t_in):
        u = fm.mixture_velocity_fn(MIXTURE, path)
        sigma = path.sigma(t)
        score = fm.velocity_to_score(u, path)
        return {
            "eps_flow": fm.convert_model(u, path, source="velocity", target="eps")(x, t),
            "eps_diffusion": -sigma[:, None] * MIXTURE.noised_score(x, path.alpha(t), sigma),
            "eps_other": -sigma[:, None] * other.noised_score(x, path.alpha(t), sigma),
            "eps_sde": -vp.sigma(t)[:, None] * sde.mixture_score_fn(MIXTURE, vp)(x, t),
            "u_sde": fm.score_to_velocity(sde.mixture_score_fn(MIXTURE, vp), vp)(x, t),
            "u": u(x, t),
            "u_in": u(x, t_in),
            "back": fm.score_to_velocity(score, path)(x, t_in),
            "pf": fm.PathSDE(path).probability_flow(score)(x, t_in),
        }

    r = compute(x, t, t_in)
    tol = dict(rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(r["eps_flow"], r["eps_diffusion"], **tol)
    if isinstance(path, fm.VPPath):  # the same kernel as Song et al.'s VP SDE
        np.testing.assert_allclose(r["eps_flow"], r["eps_sde"], **tol)
        np.testing.assert_allclose(r["u_sde"], r["u"], **tol)
    # round trip through the score; the adapter's probability-flow field is the velocity
    np.testing.assert_allclose(r["back"], r["u_in"], **tol)
    np.testing.assert_allclose(r["pf"], r["u_in"], rtol=1e-6, atol=1e-6)
    # negative control: another mixture's eps differs
    assert float(jnp.max(jnp.abs(r["eps_flow"] - r["eps_other"]))) > 1e-2


@pytest.mark.parametrize("sampler", ["dpm_solver", "edm"])
def test_flow_model_sampled_by_the_sde_samplers(sampler):
    _, _, threshold, _ = reference()
    path = fm.LinearPath()
    score_fn = fm.velocity_to_score(fm.mixture_velocity_fn(MIXTURE, path), path)
    adapter = fm.PathSDE(path)
    draw = {"dpm_solver": samplers.dpm_solver_sample, "edm": samplers.edm_sample}[sampler]
    out = jax.jit(lambda k: draw(score_fn, adapter, k, (1000, 2), num_steps=20))(jax.random.key(5))
    assert mmd_to_exact(out.samples) < threshold


def test_diffusion_model_sampled_by_a_flow_sampler():
    _, _, threshold, _ = reference()
    vp = sde.VPSDE()
    u = fm.score_to_velocity(sde.mixture_score_fn(MIXTURE, vp), vp)
    out = jax.jit(lambda k: fm.heun_sample(u, k, (1000, 2), num_steps=25, t_min=vp.t_min))(
        jax.random.key(5)
    )
    assert mmd_to_exact(out.samples) < threshold


def test_path_sde_checks():
    with pytest.raises(ValueError, match=r"alpha\(T\) must be positive.*alpha\(1.0\) = 0"):
        fm.PathSDE(fm.LinearPath(), T=1.0)
    with pytest.raises(ValueError, match="needs a GaussianPath"):
        fm.PathSDE(sde.VPSDE())
    adapter = fm.PathSDE(fm.CosinePath())
    np.testing.assert_allclose(adapter.sigma_ratio(adapter.T), 80.0, rtol=1e-4)
    np.testing.assert_allclose(adapter.sigma_ratio(adapter.t_min), 0.002, rtol=1e-4)
