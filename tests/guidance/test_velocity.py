"""Guidance of velocity (flow-matching) models: the path's derivatives make the conversions
exact, so classifier guidance and the CFG rescale work on ``u = alpha' x_0 + sigma' eps``.

The oracle is independent of the guidance code: the exact velocity of one mixture component
(``jaxgen.flow_matching.oracle.mixture_velocity_fn`` of ``mixture.component(k)``, through the
closed-form denoiser) is what the whole mixture's exact velocity guided by the exact noisy
classifier at ``s = 1`` must give, since ``grad log q_t(x | k) = grad log q_t(x) + grad log
q_t(k | x)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import flow_matching as fm
from jaxgen.core.parameterization import convert
from jaxgen.guidance import (
    NULL_LABEL,
    classifier_free_guidance,
    classifier_guidance,
    path_derivatives,
)
from tests.guidance.oracle import classifier, conditional_score, separated

B = 12


def _points(path):
    x = 2.0 * jax.random.normal(jax.random.key(0), (B, 2))
    t = jnp.linspace(0.1, 0.9, B)
    labels = jnp.arange(B, dtype=jnp.int32) % 3
    return x, t, labels


@pytest.mark.parametrize("path", [fm.LinearPath(), fm.CosinePath()], ids=["linear", "cosine"])
def test_classifier_guided_velocity_is_the_class_velocity(path, x64):
    mixture = separated()
    x, t, labels = _points(path)
    velocity = fm.oracle.mixture_velocity_fn(mixture, path)
    guided = classifier_guidance(
        velocity,
        classifier(mixture, path),
        labels,
        scale=1.0,
        parameterization="velocity",
        path=path,
    )
    got = guided(x, t)
    for k in range(3):
        rows = np.asarray(labels) == k
        want = fm.oracle.mixture_velocity_fn(mixture.component(k), path)(x, t)
        np.testing.assert_allclose(got[rows], want[rows], rtol=1e-7, atol=1e-9)
    # the guidance moved it: the unguided velocity is not the class velocity
    assert np.max(np.abs(np.asarray(velocity(x, t)) - np.asarray(got))) > 1e-2


def test_rescale_of_a_velocity_model_is_computed_in_v_space(x64):
    path = fm.LinearPath()
    mixture = separated()
    x, t, labels = _points(path)
    alpha, sigma = path.alpha(t), path.sigma(t)
    alpha_dot, sigma_dot = path_derivatives(path)(t)
    rates = dict(alpha_dot=alpha_dot, sigma_dot=sigma_dot)
    score_model = conditional_score(mixture, path)

    def velocity_model(x, t, c):  # the exact class velocity, alpha and sigma of its own t
        a, s = path.alpha(t), path.sigma(t)
        ad, sd = path_derivatives(path)(t)
        score = score_model(x, t, c)
        return convert(
            score, x, a, s, source="score", target="velocity", alpha_dot=ad, sigma_dot=sd
        )

    null = jnp.full_like(labels, NULL_LABEL)
    scale, phi = 3.0, 0.7
    got = classifier_free_guidance(
        velocity_model,
        labels,
        null,
        scale=scale,
        rescale=phi,
        parameterization="velocity",
        path=path,
    )(x, t)
    # Lin et al. (2024), Alg. 2, written here in v space with NumPy
    to_v = dict(source="velocity", target="v", **rates)
    c = np.asarray(convert(velocity_model(x, t, labels), x, alpha, sigma, **to_v))
    u = np.asarray(convert(velocity_model(x, t, null), x, alpha, sigma, **to_v))
    cfg = u + scale * (c - u)
    factor = c.std(axis=1, keepdims=True) / cfg.std(axis=1, keepdims=True)
    mixed = phi * cfg * factor + (1 - phi) * cfg
    want = convert(jnp.asarray(mixed), x, alpha, sigma, source="v", target="velocity", **rates)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)


def test_velocity_needs_a_path_with_derivatives():
    vp = fm.LinearPath()
    assert path_derivatives(vp) is not None
    assert path_derivatives(lambda t: (1.0 - t, t)) is None
    with pytest.raises(ValueError, match="derivatives"):
        classifier_guidance(
            lambda x, t: x,
            lambda x, t, c: jnp.zeros(x.shape[0]),
            jnp.zeros(2, jnp.int32),
            scale=1.0,
            parameterization="velocity",
            path=lambda t: (1.0 - t, t),
        )
