"""eps <-> x0 <-> v conversions are exact inverses (float64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import diffusion


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_round_trips(x64, name):
    sched = diffusion.make_schedule(name, 1000)
    k0, k1 = jax.random.split(jax.random.key(0))
    x0 = jax.random.normal(k0, (6, 2, 3), jnp.float64)
    eps = jax.random.normal(k1, (6, 2, 3), jnp.float64)
    t = jnp.array([0, 1, 10, 500, 990, 999], jnp.int32)
    xt = diffusion.q_sample(sched, x0, t, eps)
    a = np.asarray(sched.sqrt_alphas_cumprod)[np.asarray(t)][:, None, None]
    s = np.asarray(sched.sqrt_one_minus_alphas_cumprod)[np.asarray(t)][:, None, None]
    tol = dict(rtol=1e-9, atol=1e-9)

    @jax.jit
    def conversions(xt, x0, eps):
        v = diffusion.v_from_x0_eps(sched, x0, t, eps)
        out = {
            "v": v,
            "x0_from_eps": diffusion.x0_from_eps(sched, xt, t, eps),
            "eps_from_x0": diffusion.eps_from_x0(sched, xt, t, x0),
            "x0_from_v": diffusion.x0_from_v(sched, xt, t, v),
            "eps_from_v": diffusion.eps_from_v(sched, xt, t, v),
        }
        for prediction, pred in {"eps": eps, "x0": x0, "v": v}.items():
            out[f"to_eps[{prediction}]"] = diffusion.to_eps(
                sched, xt, t, pred, parameterization=prediction
            )
            out[f"to_x0[{prediction}]"] = diffusion.to_x0(
                sched, xt, t, pred, parameterization=prediction
            )
            out[f"target[{prediction}]"] = diffusion.prediction_target(
                sched, x0, t, eps, parameterization=prediction
            )
        return out

    out = conversions(xt, x0, eps)
    v = out["v"]
    np.testing.assert_allclose(v, a * eps - s * x0, rtol=1e-14)  # Salimans & Ho definition
    np.testing.assert_allclose(out["x0_from_eps"], x0, **tol)
    np.testing.assert_allclose(out["eps_from_x0"], eps, **tol)
    np.testing.assert_allclose(out["x0_from_v"], x0, **tol)
    np.testing.assert_allclose(out["eps_from_v"], eps, **tol)
    for prediction, pred in {"eps": eps, "x0": x0, "v": v}.items():
        np.testing.assert_allclose(out[f"to_eps[{prediction}]"], eps, **tol)
        np.testing.assert_allclose(out[f"to_x0[{prediction}]"], x0, **tol)
        np.testing.assert_allclose(out[f"target[{prediction}]"], pred, rtol=1e-14)


def test_unknown_parameterization():
    sched = diffusion.linear_schedule(10)
    x = jnp.zeros((2, 3))
    t = jnp.zeros((2,), jnp.int32)
    # "score" is a core parameterization, but not one a DDPM network may have.
    with pytest.raises(ValueError, match=r"\('eps', 'x0', 'v'\), got 'score'"):
        diffusion.to_eps(sched, x, t, x, parameterization="score")
    with pytest.raises(ValueError, match="parameterization must be one of"):
        diffusion.to_x0(sched, x, t, x, parameterization="noise")
