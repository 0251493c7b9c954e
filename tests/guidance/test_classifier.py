"""Classifier guidance with the exact noisy classifier of a Gaussian mixture whose classes are
its components (Dhariwal and Nichol 2021, Alg. 1 and 2).

At ``s = 1`` Bayes' rule makes the guided score the class's noised score exactly, on every
path; samplers driven by it then draw the class's distribution (MMD^2 two-sample test against
exact samples of ``mixture.component(k)``, threshold ``mean + 5 std`` of the null distribution
of two exact sample sets, ``oracle.mmd_null``; the unguided samples fail the same test).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import diffusion
from jaxgen.core.parameterization import convert
from jaxgen.distributions import ddpm_eps_oracle
from jaxgen.evaluation.two_sample import mmd_squared
from jaxgen.guidance import (
    ancestral_mean_shift_guidance,
    classifier_gradient,
    classifier_guidance,
    path_coefficients,
)
from jaxgen.sde import VESDE, VPSDE, SubVPSDE, samplers
from tests.guidance import oracle

NUM = 500
CLASS = 1


def _paths():
    return {
        "vp": (VPSDE(), jnp.linspace(0.02, 1.0, 6)),
        "subvp": (SubVPSDE(), jnp.linspace(0.02, 1.0, 6)),
        "ve": (VESDE(), jnp.linspace(0.02, 1.0, 6)),
        "ddpm": (diffusion.linear_schedule(1000), jnp.array([0, 5, 50, 400, 800, 999])),
    }


@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "ddpm"])
def test_scale_one_with_exact_classifier_is_the_class_score(x64, name):
    path, t = _paths()[name]
    mixture = oracle.separated()
    x = 3.0 * jax.random.normal(jax.random.key(0), (6, 2), jnp.float64)
    alpha, sigma = path_coefficients(path)(t)
    x = alpha[:, None] * x + sigma[:, None] * jax.random.normal(jax.random.key(1), (6, 2))
    labels = jnp.array([0, 1, 2, 0, 1, 2])
    expected_score = mixture.noised_component_score(x, alpha, sigma, labels)
    score_model = oracle.unconditional_score(mixture, path)
    log_prob_fn = oracle.classifier(mixture, path)
    # The gradient of the exact classifier is the difference of the two closed-form scores.
    grad = classifier_gradient(log_prob_fn, x, t, labels)
    np.testing.assert_allclose(grad, expected_score - score_model(x, t), rtol=1e-9, atol=1e-12)
    for parameterization in ("score", "eps", "x0", "v"):
        model = oracle.score_to(score_model, path, parameterization)
        guided = classifier_guidance(
            model, log_prob_fn, labels, scale=1.0, parameterization=parameterization, path=path
        )
        expected = convert(expected_score, x, alpha, sigma, source="score", target=parameterization)
        scale = float(jnp.max(jnp.abs(expected)))
        np.testing.assert_allclose(
            guided(x, t), expected, rtol=1e-9, atol=1e-12 * scale, err_msg=parameterization
        )
    # scale 0 is the model itself, scale s shifts the score by s grad
    np.testing.assert_array_equal(
        classifier_guidance(score_model, log_prob_fn, labels, scale=0.0)(x, t), score_model(x, t)
    )
    np.testing.assert_allclose(
        classifier_guidance(score_model, log_prob_fn, labels, scale=2.5)(x, t),
        score_model(x, t) + 2.5 * grad,
        rtol=1e-12,
    )


@functools.lru_cache(maxsize=1)
def _reference():
    mixture = oracle.separated()
    return oracle.mmd_null(lambda key, n: mixture.component(CLASS).sample(key, n), NUM)


@functools.partial(jax.jit, static_argnames=("sampler",))
def _sde_samples(scale, key, *, sampler):
    sde = VPSDE()
    mixture = oracle.separated()
    labels = jnp.full((NUM,), CLASS)
    guided = classifier_guidance(
        oracle.unconditional_score(mixture, sde),
        oracle.classifier(mixture, sde),
        labels,
        scale=scale,
    )
    if sampler == "dpm_solver":
        return samplers.dpm_solver_sample(guided, sde, key, (NUM, 2), num_steps=20).samples
    return samplers.probability_flow_sample(
        guided, sde, key, (NUM, 2), method="heun", num_steps=25
    ).samples


@pytest.mark.parametrize("sampler", ["dpm_solver", "probability_flow"])
def test_classifier_guided_samplers_draw_the_class(sampler):
    ref, bandwidths, threshold = _reference()
    guided = _sde_samples(1.0, jax.random.key(3), sampler=sampler)
    unguided = _sde_samples(0.0, jax.random.key(3), sampler=sampler)
    mmd = float(mmd_squared(guided, ref, bandwidths=bandwidths))
    mmd_unguided = float(mmd_squared(unguided, ref, bandwidths=bandwidths))
    print(f"{sampler}: MMD^2 {mmd:.5f}, unguided {mmd_unguided:.4f}, threshold {threshold:.5f}")
    assert np.all(np.isfinite(guided))
    assert mmd < threshold < mmd_unguided


# A short DDPM chain that still reaches noise: abar_T = 2e-5.
ANCESTRAL_SCHEDULE = diffusion.linear_schedule(100, beta_start=1e-3, beta_end=0.2)


@jax.jit
def _ancestral_samples(scale, key):
    mixture = oracle.separated()
    labels = jnp.full((NUM,), CLASS)
    eps = ddpm_eps_oracle(mixture, ANCESTRAL_SCHEDULE)
    guided = ancestral_mean_shift_guidance(
        eps,
        oracle.classifier(mixture, ANCESTRAL_SCHEDULE),
        labels,
        scale=scale,
        schedule=ANCESTRAL_SCHEDULE,
    )
    return diffusion.ancestral_sample(
        guided, ANCESTRAL_SCHEDULE, key, (NUM, 2), parameterization="eps", clip_denoised=False
    ).samples


def test_ancestral_mean_shift_draws_the_class():
    # model_variance "beta": with T = 100 steps, the sampler itself (unguided too) is biased
    # with "posterior" variances at this data scale; the mean shift is exact for both (below).
    ref, bandwidths, threshold = _reference()
    guided = _ancestral_samples(1.0, jax.random.key(5))
    unguided = _ancestral_samples(0.0, jax.random.key(5))
    mmd = float(mmd_squared(guided, ref, bandwidths=bandwidths))
    mmd_unguided = float(mmd_squared(unguided, ref, bandwidths=bandwidths))
    print(f"ancestral: MMD^2 {mmd:.5f}, unguided {mmd_unguided:.4f}, threshold {threshold:.5f}")
    assert mmd < threshold < mmd_unguided


@pytest.mark.parametrize("model_variance", ["beta", "posterior"])
def test_ancestral_step_mean_moves_by_scale_sigma_grad(x64, model_variance):
    schedule = diffusion.linear_schedule(100, beta_start=1e-3, beta_end=0.2)
    mixture = oracle.separated()
    eps = ddpm_eps_oracle(mixture, schedule)
    t = jnp.array([1, 10, 40, 70, 99, 25])
    x = 2.0 * jax.random.normal(jax.random.key(2), (6, 2), jnp.float64)
    labels = jnp.array([0, 1, 2, 2, 1, 0])
    scale = 2.5
    name = "beta" if model_variance == "beta" else "beta_tilde"
    guided = ancestral_mean_shift_guidance(
        eps,
        oracle.classifier(mixture, schedule),
        labels,
        scale=scale,
        schedule=schedule,
        model_variance=name,
    )
    kw = dict(parameterization="eps", model_variance=model_variance, clip_denoised=False)
    mean_guided = diffusion.p_mean_variance(guided, schedule, x, t, **kw)[0]
    mean = diffusion.p_mean_variance(eps, schedule, x, t, **kw)[0]
    # The classifier's gradient in closed form: grad log q(k | x) = class score - score.
    alpha, sigma = schedule.sqrt_alphas_cumprod[t], schedule.sqrt_one_minus_alphas_cumprod[t]
    grad = mixture.noised_component_score(x, alpha, sigma, labels)
    grad = grad - mixture.noised_score(x, alpha, sigma)
    # mu_tilde = coef1 x0 + coef2 x with x0 = (x - sqrt(1 - abar) eps) / sqrt(abar): the
    # schedule's posterior coefficients give d mu / d eps directly.
    variance = schedule.betas[t] if model_variance == "beta" else schedule.posterior_variance[t]
    expected = mean + scale * variance[:, None] * grad
    np.testing.assert_allclose(mean_guided, expected, rtol=1e-10, atol=1e-12)
    assert float(jnp.max(jnp.abs(mean_guided - mean))) > 1e-3  # the shift is not negligible
