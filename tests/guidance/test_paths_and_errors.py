"""Noise levels of paths, guidance intervals, and the errors of bad input."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import diffusion
from jaxgen.guidance import (
    NULL_LABEL,
    GuidanceInterval,
    ancestral_mean_shift_guidance,
    check_interval_in_range,
    classifier_free_guidance,
    classifier_guidance,
    drop_condition,
    multi_condition_guidance,
    path_coefficients,
)
from jaxgen.sde import VESDE, VPSDE


def test_path_coefficients_of_each_kind():
    schedule = diffusion.linear_schedule(50)
    t = jnp.array([0, 7, 49])
    alpha, sigma = path_coefficients(schedule)(t)
    np.testing.assert_array_equal(alpha, schedule.sqrt_alphas_cumprod[t])
    np.testing.assert_array_equal(sigma, schedule.sqrt_one_minus_alphas_cumprod[t])
    sde = VESDE()
    tf = jnp.array([0.1, 0.5, 1.0])
    alpha, sigma = path_coefficients(sde)(tf)
    assert alpha.shape == (3,)  # VE's alpha = 1 broadcast to t's shape
    np.testing.assert_array_equal(alpha, 1.0)
    np.testing.assert_array_equal(sigma, sde.sigma(tf))
    alpha, sigma = path_coefficients(lambda t: (jnp.cos(t), jnp.sin(t)))(tf)
    np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="path must be"):
        path_coefficients(3.0)


def test_interval_in_sigma_and_log_snr_is_the_same_set():
    sde = VPSDE()
    t = jnp.linspace(0.01, 1.0, 200)
    alpha, sigma = sde.alpha(t), sde.sigma(t)
    by_sigma = GuidanceInterval(0.5, 2.0)
    by_log_snr = GuidanceInterval(-2 * math.log(2.0), -2 * math.log(0.5), kind="log_snr")
    inside = np.asarray(by_sigma.contains(alpha, sigma))
    np.testing.assert_array_equal(inside, np.asarray(by_log_snr.contains(alpha, sigma)))
    level = np.asarray(sigma / alpha)
    np.testing.assert_array_equal(inside, (level > 0.5) & (level <= 2.0))
    assert 0 < inside.sum() < inside.size
    np.testing.assert_allclose(by_log_snr.sigma_bounds(), (0.5, 2.0), rtol=1e-12)
    assert GuidanceInterval(0.0, math.inf).contains(alpha, sigma).all()


def test_check_interval_in_range():
    interval = GuidanceInterval(0.3, 5.0)
    assert check_interval_in_range(interval, 0.002, 80.0) is interval
    check_interval_in_range(GuidanceInterval(-5.0, 2.0, kind="log_snr"), 0.01, 1.0)
    with pytest.raises(ValueError, match="outside the sampler's noise range"):
        check_interval_in_range(GuidanceInterval(100.0, 200.0), 0.002, 80.0)
    with pytest.raises(ValueError, match="outside the sampler's noise range"):
        check_interval_in_range(GuidanceInterval(0.0, 0.001), 0.002, 80.0)
    with pytest.raises(ValueError, match="outside the sampler's noise range"):
        check_interval_in_range(GuidanceInterval(20.0, 30.0, kind="log_snr"), 0.01, 80.0)
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        check_interval_in_range(interval, 1.0, 0.5)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((1.0, 1.0), {}, "low < high"),
        ((2.0, 1.0), {}, "low < high"),
        ((-0.1, 1.0), {}, "low >= 0"),
        ((0.1, math.nan), {}, "NaN"),
        ((0.1, 1.0), {"kind": "step"}, "kind must be one of"),
        ((3.0, -3.0), {"kind": "log_snr"}, "low < high"),
    ],
)
def test_bad_intervals(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        GuidanceInterval(*args, **kwargs)


def _model(x, t, labels):
    return x * (1.0 + labels.astype(x.dtype))[:, None]


LABELS = jnp.array([0, 1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": math.inf}, "guidance scale must be finite"),
        ({"scale": jnp.array([1.0, math.nan])}, "guidance scale must be finite"),
        ({"weight": math.nan}, "guidance weight must be finite"),
        ({}, "exactly one of scale"),
        ({"scale": 2.0, "weight": 1.0}, "exactly one of scale"),
        ({"scale": 2.0, "interval": GuidanceInterval(0.1, 1.0)}, "interval needs path"),
        ({"scale": 2.0, "rescale": 0.7}, "rescale needs path"),
        ({"scale": 2.0, "rescale": 1.5, "path": VPSDE()}, r"rescale .* must lie in \[0, 1\]"),
        ({"scale": 2.0, "parameterization": "noise"}, "parameterization must be one of"),
        ({"scale": 2.0, "rescale_parameterization": "w"}, "parameterization must be one of"),
        ({"scale": 2.0, "interval": (0.1, 1.0), "path": VPSDE()}, "GuidanceInterval"),
    ],
)
def test_classifier_free_guidance_refuses_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        classifier_free_guidance(_model, LABELS, NULL_LABEL, **kwargs)


def test_other_bad_input():
    with pytest.raises(ValueError, match="one entry per condition"):
        multi_condition_guidance(_model, [LABELS, LABELS], NULL_LABEL, scales=[1.0])
    with pytest.raises(ValueError, match="guidance scale 1 must be finite"):
        multi_condition_guidance(_model, [LABELS, LABELS], NULL_LABEL, scales=[1.0, math.inf])
    with pytest.raises(ValueError, match="at least one condition"):
        multi_condition_guidance(_model, [], NULL_LABEL, scales=[])
    guided = classifier_free_guidance(_model, jnp.array([0, 1, 2]), NULL_LABEL, scale=2.0)
    with pytest.raises(ValueError, match="leading axis B = 2"):
        guided(jnp.ones((2, 2)), jnp.zeros((2,)))
    with pytest.raises(ValueError, match="p_uncond must lie in"):
        drop_condition(jax.random.key(0), LABELS, NULL_LABEL, p_uncond=1.5)
    with pytest.raises(ValueError, match="p_uncond must be finite"):
        drop_condition(jax.random.key(0), LABELS, NULL_LABEL, p_uncond=math.nan)

    def log_prob(x, t, labels):
        return jnp.sum(x, axis=1)

    def score(x, t):
        return -x

    with pytest.raises(ValueError, match="guidance scale must be finite"):
        classifier_guidance(score, log_prob, LABELS, scale=math.inf)
    with pytest.raises(ValueError, match="needs path"):
        classifier_guidance(score, log_prob, LABELS, scale=1.0, parameterization="eps")
    with pytest.raises(ValueError, match="parameterization must be one of"):
        classifier_guidance(score, log_prob, LABELS, scale=1.0, parameterization="noise")
    with pytest.raises(ValueError, match="velocity"):
        classifier_guidance(score, log_prob, LABELS, scale=1.0, parameterization="velocity")
    schedule = diffusion.linear_schedule(10)
    with pytest.raises(ValueError, match="model_variance must be one of"):
        ancestral_mean_shift_guidance(
            score, log_prob, LABELS, scale=1.0, schedule=schedule, model_variance="learned"
        )
    with pytest.raises(ValueError, match="guidance scale must be finite"):
        ancestral_mean_shift_guidance(score, log_prob, LABELS, scale=math.nan, schedule=schedule)
    with pytest.raises(ValueError, match="DDPM schedule"):
        ancestral_mean_shift_guidance(score, log_prob, LABELS, scale=1.0, schedule=VPSDE())
    bad = classifier_guidance(score, lambda x, t, c: x, LABELS, scale=1.0)
    with pytest.raises(ValueError, match="one log-probability per example"):
        bad(jnp.ones((2, 2)), jnp.zeros((2,)))
