"""Progressive distillation in the EDM frame (Salimans & Ho 2022, Alg. 2): the target's
algebraic identity, a loss that is provably zero, and the DDIM sampler."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core.sampling import initial_and_step_keys
from jaxgen.distillation import (
    ddim_sample_levels,
    ddim_step,
    progressive_distillation_loss,
    progressive_distillation_target,
)
from tests.distillation.oracle import gaussian_denoiser, gaussian_flow


def nonlinear_denoiser(x, sigma):
    s = sigma[:, None]
    return jnp.tanh(x) * s / (1.0 + s) + jnp.sin(3.0 * x) / (1.0 + s**2)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("s_next", [0.3, 0.0])
def test_one_student_step_lands_on_two_teacher_steps(s_next):
    x = jax.random.normal(jax.random.key(0), (5, 3), jnp.float64) * 2.0
    s, s_mid = jnp.full((5,), 2.0), jnp.full((5,), 0.9)
    s_nx = jnp.full((5,), s_next)
    d_star = progressive_distillation_target(nonlinear_denoiser, x, s, s_mid, s_nx)
    x_mid = ddim_step(x, nonlinear_denoiser(x, s), s, s_mid)
    x_two = ddim_step(x_mid, nonlinear_denoiser(x_mid, s_mid), s_mid, s_nx)
    np.testing.assert_allclose(ddim_step(x, d_star, s, s_nx), x_two, rtol=1e-12, atol=1e-12)
    if s_next == 0.0:
        np.testing.assert_allclose(d_star, x_two, rtol=1e-15)
    # negative control: the teacher's own one-step denoiser does not land there
    assert not np.allclose(ddim_step(x, nonlinear_denoiser(x, s), s, s_nx), x_two, atol=1e-3)


def test_loss_is_zero_for_the_exact_student_of_point_mass_data():
    """Data = a point mass at c: D* = c exactly (DDIM is exact when D is constant: the flow
    x~(s) = c + (x~ - c) s / s0 is linear in s), so the student D = c has zero loss and
    D = c + 0.1 has loss w(s) 0.01 per example."""
    c = 0.3
    levels = jnp.array([10.0, 4.0, 1.5, 0.6, 0.2])  # 2N + 1 = 5: N = 2 student steps

    def const(value):
        return lambda x, sigma: jnp.full_like(x, value)

    x0 = jnp.full((64, 2), c)
    for weighting, weight in (
        ("truncated_snr", lambda s: np.maximum(1 / s**2, 1)),
        ("snr", lambda s: 1 / s**2),
        ("uniform", lambda s: np.ones_like(s)),
    ):
        loss, terms = progressive_distillation_loss(
            const(c), const(c), x0, jax.random.key(0), teacher_levels=levels, weighting=weighting
        )
        np.testing.assert_allclose(loss, 0.0, atol=1e-10)
        assert set(np.asarray(terms["sigma"]).tolist()) <= {10.0, 1.5}
        loss, terms = progressive_distillation_loss(
            const(c + 0.1),
            const(c),
            x0,
            jax.random.key(0),
            teacher_levels=levels,
            weighting=weighting,
        )
        sigma = np.asarray(terms["sigma"])
        np.testing.assert_allclose(loss, weight(sigma) * 0.01, rtol=1e-4)
    index = jnp.ones(64, jnp.int32)
    _, terms = progressive_distillation_loss(
        const(c), const(c), x0, jax.random.key(0), teacher_levels=levels, index=index
    )
    assert np.all(np.asarray(terms["sigma"]) == 1.5)
    with pytest.raises(ValueError, match="odd number"):
        progressive_distillation_loss(
            const(c), const(c), x0, jax.random.key(0), teacher_levels=levels[:4]
        )


@pytest.mark.usefixtures("x64")
def test_ddim_sampler_is_first_order_and_ends_on_the_denoiser():
    mu, v = 0.5, 0.25
    denoiser = gaussian_denoiser(mu, v)
    z, _ = initial_and_step_keys(jax.random.key(1), (6, 1), 1)  # the sampler's initial noise
    exact = gaussian_flow(5.0 * z, 5.0, 0.1, mu, v)
    errors = []
    for steps in (8, 16, 32):
        sigmas = np.linspace(5.0, 0.1, steps + 1)
        out = ddim_sample_levels(denoiser, jax.random.key(1), (6, 1), sigmas=sigmas)
        assert out.nfe == steps
        errors.append(float(jnp.max(jnp.abs(out.samples - exact))))
    slopes = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    np.testing.assert_allclose(slopes, 1.0, atol=0.15)
    # one step to 0 returns D(s_0 z, s_0) exactly; keys are per example
    out8 = ddim_sample_levels(denoiser, jax.random.key(2), (8, 1), sigmas=[3.0, 0.0])
    out4 = ddim_sample_levels(denoiser, jax.random.key(2), (4, 1), sigmas=[3.0, 0.0])
    z8, _ = initial_and_step_keys(jax.random.key(2), (8, 1), 1)
    assert out8.nfe == 1
    np.testing.assert_allclose(out8.samples, denoiser(3.0 * z8, jnp.full((8,), 3.0)), rtol=1e-12)
    np.testing.assert_allclose(out8.samples[:4], out4.samples, rtol=1e-12)
    with pytest.raises(ValueError, match="decreasing"):
        ddim_sample_levels(denoiser, jax.random.key(2), (8, 1), sigmas=[0.0, 3.0])
