"""DDPM's converters are the core's (issue 12): on a VP schedule they agree with
``jaxgen.core.parameterization`` at ``alpha = sqrt(abar_t)``, ``sigma = sqrt(1 - abar_t)``,
and they are computed by the core's code (a spy on the core's functions sees every call)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import diffusion
from jaxgen.core import parameterization as core_param


def _setup():
    sched = diffusion.linear_schedule(100)
    k0, k1 = jax.random.split(jax.random.key(0))
    x0 = jax.random.normal(k0, (5, 3, 2), jnp.float64)
    eps = jax.random.normal(k1, (5, 3, 2), jnp.float64)
    t = jnp.array([0, 3, 40, 77, 99], jnp.int32)
    xt = diffusion.q_sample(sched, x0, t, eps)
    alpha = jnp.sqrt(sched.alphas_cumprod[t])
    sigma = jnp.sqrt(1.0 - sched.alphas_cumprod[t])
    return sched, x0, eps, t, xt, alpha, sigma


def test_diffusion_converters_agree_with_core(x64):
    sched, x0, eps, t, xt, alpha, sigma = _setup()
    a, s = diffusion.alpha_sigma(sched, t, xt)
    np.testing.assert_allclose(a, alpha, rtol=1e-14)
    np.testing.assert_allclose(s, sigma, rtol=1e-14)
    for name in diffusion.PARAMETERIZATIONS:
        pred = core_param.from_x0_eps(x0, eps, alpha, sigma, parameterization=name)
        target = diffusion.prediction_target(sched, x0, t, eps, parameterization=name)
        np.testing.assert_allclose(target, pred, rtol=1e-14, atol=1e-14)
        core_x0, core_eps = core_param.to_x0_eps(pred, xt, alpha, sigma, parameterization=name)
        got_x0 = diffusion.to_x0(sched, xt, t, pred, parameterization=name)
        got_eps = diffusion.to_eps(sched, xt, t, pred, parameterization=name)
        np.testing.assert_allclose(got_x0, core_x0, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got_eps, core_eps, rtol=1e-12, atol=1e-12)
        # and both recover the pair (the oracle: x_t was built from it)
        np.testing.assert_allclose(got_x0, x0, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(got_eps, eps, rtol=1e-9, atol=1e-9)
    v = core_param.from_x0_eps(x0, eps, alpha, sigma, parameterization="v")
    np.testing.assert_allclose(diffusion.x0_from_v(sched, xt, t, v), x0, rtol=1e-9, atol=1e-9)
    # Negative control: the schedule read at the wrong step does not agree.
    wrong = diffusion.to_x0(sched, xt, (t + 1) % sched.num_timesteps, v, parameterization="v")
    assert not np.allclose(wrong, x0, rtol=1e-6, atol=1e-6)


def test_diffusion_converters_are_the_cores_code(monkeypatch, x64):
    sched, x0, eps, t, xt, _, _ = _setup()
    calls = []
    to_x0_eps, from_x0_eps = core_param.to_x0_eps, core_param.from_x0_eps

    def spy_to(*args, **kwargs):
        calls.append(("to", kwargs["parameterization"]))
        return to_x0_eps(*args, **kwargs)

    def spy_from(*args, **kwargs):
        calls.append(("from", kwargs["parameterization"]))
        return from_x0_eps(*args, **kwargs)

    monkeypatch.setattr(core_param, "to_x0_eps", spy_to)
    monkeypatch.setattr(core_param, "from_x0_eps", spy_from)
    diffusion.to_x0(sched, xt, t, eps, parameterization="eps")
    diffusion.to_eps(sched, xt, t, x0, parameterization="x0")
    diffusion.x0_from_v(sched, xt, t, eps)
    diffusion.eps_from_v(sched, xt, t, eps)
    diffusion.v_from_x0_eps(sched, x0, t, eps)
    diffusion.prediction_target(sched, x0, t, eps, parameterization="eps")
    assert calls == [
        ("to", "eps"),
        ("to", "x0"),
        ("to", "v"),
        ("to", "v"),
        ("from", "v"),
        ("from", "eps"),
    ]


def test_ddpm_refuses_parameterizations_it_does_not_train(x64):
    sched, x0, eps, t, xt, _, _ = _setup()
    for name in ("score", "velocity"):  # core parameterizations, not DDPM's
        assert name in core_param.PARAMETERIZATIONS
        with pytest.raises(ValueError, match=rf"\('eps', 'x0', 'v'\), got '{name}'"):
            diffusion.to_x0(sched, xt, t, eps, parameterization=name)
