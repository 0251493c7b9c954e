"""Ancestral sampling (Ho et al. Algorithm 2) with the exact eps of a 2-D Gaussian mixture
reproduces the mixture (MMD^2 against exact samples below the null threshold of
``tests/diffusion/mixture_oracle.py``); wrong models exceed the same threshold."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import diffusion
from jaxgen.distributions import GaussianMixture, ddpm_eps_oracle
from tests.diffusion import mixture_oracle
from tests.diffusion.mixture_oracle import MIXTURE, NUM_SAMPLES

SCHEDULE = diffusion.linear_schedule(1000)


@functools.partial(jax.jit, static_argnames=("model_variance",))
def _sample(key, mixture, eps_scale, *, model_variance):
    # The mixture and the eps scale are traced, so the exact model and both negative
    # controls share one compilation.
    eps = ddpm_eps_oracle(mixture, SCHEDULE)
    return diffusion.ancestral_sample(
        lambda x, t: eps_scale * eps(x, t),
        SCHEDULE,
        key,
        (NUM_SAMPLES, 2),
        model_variance=model_variance,
    )


@pytest.mark.parametrize("model_variance", ["beta", "posterior"])
def test_ancestral_reproduces_mixture(model_variance):
    _, _, threshold, null = mixture_oracle.reference()
    key = jax.random.key(7)
    out = _sample(key, MIXTURE, 1.0, model_variance=model_variance)
    assert out.nfe == 1000 and isinstance(out.nfe, int)
    mmd = mixture_oracle.mmd_to_exact(out.samples)
    shifted = MIXTURE._replace(means=MIXTURE.means + jnp.array([[0.1, 0.0]]))
    mmd_half = mixture_oracle.mmd_to_exact(
        _sample(key, MIXTURE, 0.5, model_variance=model_variance).samples
    )
    mmd_shift = mixture_oracle.mmd_to_exact(
        _sample(key, shifted, 1.0, model_variance=model_variance).samples
    )
    print(
        f"ancestral[{model_variance}] MMD^2 {mmd:.5f} vs threshold {threshold:.5f} "
        f"(null mean {null['mean']:.5f}, std {null['std']:.5f}, max {null['max']:.5f}); "
        f"eps*0.5: {mmd_half:.4f}, shifted mixture: {mmd_shift:.4f}"
    )
    assert mmd < threshold
    assert mmd_half > threshold and mmd_shift > threshold


def test_parameterisations_give_the_same_path(x64):
    """An x0- or v-predicting model with the same content yields the same samples."""
    sched = diffusion.cosine_schedule(100)
    eps = ddpm_eps_oracle(MIXTURE, sched)

    def as_x0(x, t):
        return diffusion.x0_from_eps(sched, x, t, eps(x, t))

    def as_v(x, t):
        return diffusion.v_from_x0_eps(sched, as_x0(x, t), t, eps(x, t))

    key = jax.random.key(0)
    ref = diffusion.ancestral_sample(eps, sched, key, (64, 2)).samples
    for fn, prediction in ((as_x0, "x0"), (as_v, "v")):
        got = diffusion.ancestral_sample(
            fn, sched, key, (64, 2), parameterization=prediction
        ).samples
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)


def test_clip_denoised_keeps_x0_in_range():
    sched = diffusion.linear_schedule(50)
    far = GaussianMixture.isotropic(jnp.ones(1), jnp.array([[3.0, -3.0]]), 0.1)
    eps = ddpm_eps_oracle(far, sched)
    out = diffusion.ancestral_sample(eps, sched, jax.random.key(0), (256, 2), clip_denoised=True)
    # The last step returns x0_pred itself (mu at t = 1 is x0_pred, no noise): clipped.
    assert float(jnp.max(jnp.abs(out.samples))) <= 1.0 + 1e-6
    free = diffusion.ancestral_sample(eps, sched, jax.random.key(0), (256, 2))
    assert float(jnp.min(jnp.abs(free.samples))) > 1.5


def test_ancestral_errors():
    with pytest.raises(ValueError, match="model_variance"):
        diffusion.ancestral_sample(
            lambda x, t: x, SCHEDULE, jax.random.key(0), (2, 2), model_variance="learned"
        )
    with pytest.raises(ValueError, match="shape"):
        diffusion.ancestral_sample(lambda x, t: x, SCHEDULE, jax.random.key(0), ())
    with pytest.raises(ValueError, match=r"parameterization must be one of .*got 'y'"):
        diffusion.ancestral_sample(
            lambda x, t: x, SCHEDULE, jax.random.key(0), (2, 2), parameterization="y"
        )
