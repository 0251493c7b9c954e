"""Classifier-free guidance as a transform (Ho and Salimans 2022), its interval (Kynkaanniemi
et al. 2024) and rescale (Lin et al. 2024), checked against the formulas written out here."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import diffusion
from jaxgen.guidance import (
    NULL_LABEL,
    GuidanceInterval,
    classifier_free_guidance,
    drop_condition,
    multi_condition_guidance,
    path_coefficients,
)
from jaxgen.sde import VPSDE
from tests.guidance import oracle

B = 6
LABELS = jnp.array([0, 1, 2, 0, 1, 2])


def _setup():
    sde = VPSDE()
    mixture = oracle.overlapping()
    model = oracle.conditional_score(mixture, sde)
    x = jax.random.normal(jax.random.key(0), (B, 2))
    return sde, mixture, model, x


def _both(model, x, t, labels=LABELS):
    return model(x, t, labels), model(x, t, jnp.full_like(labels, NULL_LABEL))


@pytest.mark.parametrize("batched", [True, False])
def test_weight_zero_is_the_conditional_model_exactly(batched):
    sde, _, model, x = _setup()
    t = jnp.full((B,), 0.4)
    cond = model(x, t, LABELS)
    for kw in (dict(weight=0.0), dict(scale=1.0)):
        guided = classifier_free_guidance(model, LABELS, NULL_LABEL, batched=batched, **kw)
        np.testing.assert_array_equal(guided(x, t), cond)
        np.testing.assert_array_equal(jax.jit(guided)(x, t), jax.jit(model)(x, t, LABELS))


def test_both_written_forms_and_both_pass_modes_agree():
    _, _, model, x = _setup()
    t = jnp.full((B,), 0.3)
    c, u = (np.asarray(a, np.float64) for a in _both(model, x, t))
    w = 2.0
    by_scale = classifier_free_guidance(model, LABELS, NULL_LABEL, scale=1.0 + w)(x, t)
    by_weight = classifier_free_guidance(model, LABELS, NULL_LABEL, weight=w)(x, t)
    two_pass = classifier_free_guidance(model, LABELS, NULL_LABEL, weight=w, batched=False)(x, t)
    np.testing.assert_array_equal(by_scale, by_weight)
    np.testing.assert_allclose(by_weight, (1.0 + w) * c - w * u, rtol=1e-5, atol=1e-6)  # eq. 6
    np.testing.assert_allclose(by_scale, u + (1.0 + w) * (c - u), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(two_pass, by_weight, rtol=1e-6, atol=1e-6)
    # s = 0 is the unconditional model; per-example scales act per example
    uncond = classifier_free_guidance(model, LABELS, NULL_LABEL, scale=0.0)(x, t)
    np.testing.assert_allclose(uncond, u, rtol=1e-5, atol=1e-6)
    scales = jnp.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    per_example = classifier_free_guidance(model, LABELS, NULL_LABEL, scale=scales)(x, t)
    expected = u + np.asarray(scales)[:, None] * (c - u)
    np.testing.assert_allclose(per_example, expected, rtol=1e-5, atol=1e-5)


def test_dict_conditions_and_a_model_counting_its_passes():
    calls = []

    def model(x, t, condition):
        calls.append(x.shape[0])
        return x * condition["gain"][:, None] + condition["shift"]

    x = jnp.ones((3, 2))
    t = jnp.zeros((3,))
    cond = {"gain": jnp.array([1.0, 2.0, 3.0]), "shift": jnp.full((3, 2), 0.5)}
    null = {"gain": 0.0, "shift": 0.0}  # broadcast to the condition's shapes
    out = classifier_free_guidance(model, cond, null, scale=2.0)(x, t)
    assert calls == [6]
    np.testing.assert_allclose(out, 2.0 * (x * cond["gain"][:, None] + 0.5))
    classifier_free_guidance(model, cond, null, scale=2.0, batched=False)(x, t)
    assert calls == [6, 3, 3]


def test_multi_condition_guidance_is_a_sum_of_directions():
    _, _, model, x = _setup()
    t = jnp.full((B,), 0.3)
    other = (LABELS + 1) % 3
    c1, u = (np.asarray(a, np.float64) for a in _both(model, x, t))
    c2 = np.asarray(model(x, t, other), np.float64)
    for batched in (True, False):
        out = multi_condition_guidance(
            model, [LABELS, other], NULL_LABEL, scales=[3.0, -1.5], batched=batched
        )(x, t)
        np.testing.assert_allclose(out, u + 3.0 * (c1 - u) - 1.5 * (c2 - u), rtol=1e-5, atol=1e-5)
    single = multi_condition_guidance(model, [LABELS], NULL_LABEL, scales=[2.0])(x, t)
    np.testing.assert_array_equal(
        single, classifier_free_guidance(model, LABELS, NULL_LABEL, scale=2.0)(x, t)
    )


INTERVAL = GuidanceInterval(0.5, 2.0)  # EDM sigma; VP: t = 0.05 -> 0.17, 0.3 -> 1.1, 0.9 -> 58


@pytest.mark.parametrize("batched", [True, False])
def test_interval_outside_is_the_conditional_model_bit_for_bit(batched):
    sde, _, model, x = _setup()
    kw = dict(scale=3.0, interval=INTERVAL, path=sde, parameterization="score", batched=batched)
    guided = classifier_free_guidance(model, LABELS, NULL_LABEL, **kw)
    plain = classifier_free_guidance(
        model, LABELS, NULL_LABEL, scale=3.0, parameterization="score", batched=batched
    )
    for t_value in (0.05, 0.9):
        t = jnp.full((B,), t_value)
        np.testing.assert_array_equal(guided(x, t), model(x, t, LABELS))
        np.testing.assert_array_equal(jax.jit(guided)(x, t), jax.jit(model)(x, t, LABELS))
    t = jnp.full((B,), 0.3)
    np.testing.assert_array_equal(guided(x, t), plain(x, t))
    np.testing.assert_allclose(jax.jit(guided)(x, t), plain(x, t), rtol=1e-6, atol=1e-6)
    # per-example times, some inside and some outside
    t = jnp.array([0.05, 0.3, 0.9, 0.3, 0.05, 0.3])
    inside = np.array([False, True, False, True, False, True])
    out = np.asarray(jax.jit(guided)(x, t))
    np.testing.assert_allclose(out[inside], np.asarray(plain(x, t))[inside], rtol=1e-6, atol=1e-6)
    cond = np.asarray(model(x, t, LABELS))
    np.testing.assert_allclose(out[~inside], cond[~inside], rtol=1e-6, atol=1e-7)
    assert not np.allclose(out[inside], cond[inside], atol=1e-3)  # guidance acted inside


@pytest.mark.parametrize("batched", [True, False])
def test_interval_skips_the_unconditional_pass(batched):
    schedule = diffusion.linear_schedule(1000)
    mixture = oracle.overlapping()
    base = oracle.conditional_score(mixture, schedule)
    nulls = []

    def model(x, t, labels):
        jax.debug.callback(lambda lab: nulls.append(int(np.sum(lab == NULL_LABEL))), labels)
        alpha, sigma = path_coefficients(schedule)(t)
        return -sigma[:, None] * base(x, t, labels)  # eps

    interval = GuidanceInterval(0.3, 3.0)
    num_steps, batch = 20, 4
    labels = jnp.arange(batch) % 3

    @jax.jit
    def sample(key):
        guided = classifier_free_guidance(
            model, labels, NULL_LABEL, scale=2.0, interval=interval, path=schedule, batched=batched
        )
        return diffusion.ddim_sample(guided, schedule, key, (batch, 2), num_steps=num_steps)

    out = sample(jax.random.key(0))
    jax.block_until_ready(out.samples)
    jax.effects_barrier()
    steps = diffusion.ddim_timesteps(1000, num_steps)
    abar = np.asarray(schedule.alphas_cumprod, np.float64)[steps]
    level = np.sqrt((1.0 - abar) / abar)
    expected_inside = int(np.sum((level > 0.3) & (level <= 3.0)))
    assert 0 < expected_inside < num_steps
    assert sum(nulls) == batch * expected_inside


def _rescale_reference(c, u, x, alpha, sigma, scale, phi):
    """Lin et al. (2024) Alg. 2 in numpy, on v = alpha eps - sigma x0 (eps models)."""

    def to_v(eps):
        x0 = (x - sigma * eps) / alpha
        return alpha * eps - sigma * x0

    c_v, u_v = to_v(c), to_v(u)
    cfg = u_v + scale * (c_v - u_v)
    axes = tuple(range(1, x.ndim))
    std_c = c_v.std(axis=axes, keepdims=True)
    std_cfg = cfg.std(axis=axes, keepdims=True)
    v = phi * (cfg * std_c / std_cfg) + (1.0 - phi) * cfg
    return (sigma * x + alpha * v) / (alpha**2 + sigma**2)  # eps of (x, v)


def test_rescale_matches_lin_et_al(x64):
    schedule = diffusion.linear_schedule(1000)

    def model(x, t, labels):  # an arbitrary nonlinear eps model on (B, 3, 4) "images"
        lab = labels.astype(x.dtype)[:, None, None]
        return jnp.tanh(x * (1.0 + 0.3 * lab)) + 0.1 * lab - 0.05 * x**2

    x = jax.random.normal(jax.random.key(3), (4, 3, 4), jnp.float64)
    t = jnp.array([10, 300, 600, 900])
    labels = jnp.array([0, 1, 2, 1])
    nulls = jnp.full_like(labels, NULL_LABEL)
    c, u, xn = (np.asarray(a) for a in (model(x, t, labels), model(x, t, nulls), x))
    alpha = np.asarray(schedule.sqrt_alphas_cumprod)[np.asarray(t)][:, None, None]
    sigma = np.asarray(schedule.sqrt_one_minus_alphas_cumprod)[np.asarray(t)][:, None, None]
    for phi in (0.7, 1.0):
        out = classifier_free_guidance(
            model, labels, NULL_LABEL, scale=4.0, rescale=phi, path=schedule
        )(x, t)
        expected = _rescale_reference(c, u, xn, alpha, sigma, 4.0, phi)
        np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    plain = classifier_free_guidance(model, labels, NULL_LABEL, scale=4.0)(x, t)
    assert not np.allclose(out, plain, atol=1e-3)
    zero = classifier_free_guidance(model, labels, NULL_LABEL, scale=4.0, rescale=0.0)(x, t)
    np.testing.assert_array_equal(zero, plain)

    @jax.jit
    def traced(phi):
        guided = classifier_free_guidance(
            model, labels, NULL_LABEL, scale=4.0, rescale=phi, path=schedule
        )
        return guided(x, t)

    np.testing.assert_allclose(traced(0.0), plain, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        traced(0.7), _rescale_reference(c, u, xn, alpha, sigma, 4.0, 0.7), rtol=1e-10, atol=1e-12
    )


def test_changing_the_scale_does_not_retrace():
    schedule = diffusion.linear_schedule(1000)
    mixture = oracle.overlapping()
    base = oracle.conditional_score(mixture, schedule)
    traces = []

    def model(x, t, labels):
        traces.append(1)  # Python side: runs once per trace
        alpha, sigma = path_coefficients(schedule)(t)
        return -sigma[:, None] * base(x, t, labels)

    labels = jnp.arange(8) % 3

    @jax.jit
    def sample(scale, key):
        guided = classifier_free_guidance(model, labels, NULL_LABEL, scale=scale)
        return diffusion.ddim_sample(guided, schedule, key, (8, 2), num_steps=10).samples

    first = sample(1.0, jax.random.key(0))
    count = len(traces)
    second = sample(3.0, jax.random.key(0))
    third = sample(0.5, jax.random.key(0))
    assert count >= 1 and len(traces) == count
    assert not np.allclose(first, second) and not np.allclose(second, third)


def test_drop_condition():
    cond = {"label": jnp.arange(4000) % 10, "emb": jnp.ones((4000, 3))}
    null = {"label": NULL_LABEL, "emb": 0.0}
    dropped = drop_condition(jax.random.key(0), cond, null, p_uncond=0.2)
    is_null = np.asarray(dropped["label"]) == NULL_LABEL
    # Binomial(4000, 0.2): std 25.3 examples; 5 std
    assert abs(int(is_null.sum()) - 800) < 5 * 25.3
    np.testing.assert_array_equal(np.asarray(dropped["emb"])[is_null], 0.0)
    np.testing.assert_array_equal(np.asarray(dropped["emb"])[~is_null], 1.0)
    np.testing.assert_array_equal(np.asarray(dropped["label"])[~is_null], cond["label"][~is_null])
    assert dropped["label"].dtype == cond["label"].dtype
    kept = drop_condition(jax.random.key(1), cond, null, p_uncond=0.0)
    np.testing.assert_array_equal(kept["label"], cond["label"])
    gone = drop_condition(jax.random.key(1), cond, null, p_uncond=1.0)
    np.testing.assert_array_equal(gone["label"], NULL_LABEL)
