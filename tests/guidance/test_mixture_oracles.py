"""The class oracles of GaussianMixture: component posterior, component scores, components."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.distributions import GaussianMixture


def _mixture():
    # Full covariances and unequal weights, so that nothing cancels by symmetry.
    covs = jnp.array(
        [[[0.5, 0.2], [0.2, 0.3]], [[0.2, -0.1], [-0.1, 0.4]], [[0.3, 0.0], [0.0, 0.1]]]
    )
    return GaussianMixture(
        jnp.array([0.5, 0.3, 0.2]), jnp.array([[1.0, 0.0], [-1.0, 0.5], [0.0, -1.5]]), covs
    )


def test_component_posterior_is_bayes_rule(x64):
    mixture = _mixture()
    x = jax.random.normal(jax.random.key(0), (6, 2), jnp.float64)
    alpha, sigma = jnp.linspace(0.3, 1.0, 6), jnp.linspace(0.9, 0.1, 6)
    log_post = mixture.component_log_posterior(x, alpha, sigma)
    # Bayes: log w_k + log N_k(x) - log q(x), with each component's density from the
    # one-component mixture.
    log_comp = jnp.stack(
        [mixture.component(k).noised_log_prob(x, alpha, sigma) for k in range(3)], axis=1
    )
    expected = jnp.log(mixture.weights)[None] + log_comp
    expected = expected - mixture.noised_log_prob(x, alpha, sigma)[:, None]
    np.testing.assert_allclose(log_post, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jnp.sum(jnp.exp(log_post), axis=1), 1.0, rtol=1e-12)


def test_component_score_is_the_gradient_and_bayes_identity(x64):
    mixture = _mixture()
    x = jax.random.normal(jax.random.key(1), (6, 2), jnp.float64)
    alpha, sigma = jnp.linspace(0.2, 1.0, 6), jnp.linspace(1.0, 0.05, 6)
    labels = jnp.array([0, 1, 2, 2, 1, 0])
    score = mixture.noised_component_score(x, alpha, sigma, labels)

    for k in range(3):
        comp = mixture.component(k)
        grad = jax.grad(lambda v, c=comp: jnp.sum(c.noised_log_prob(v, alpha, sigma)))(x)
        np.testing.assert_allclose(score[labels == k], grad[labels == k], rtol=1e-10)

    # grad log q(x | k) = grad log q(x) + grad log q(k | x)
    def log_post(v):
        lp = mixture.component_log_posterior(v, alpha, sigma)
        return jnp.sum(jnp.take_along_axis(lp, labels[:, None], axis=1))

    bayes = mixture.noised_score(x, alpha, sigma) + jax.grad(log_post)(x)
    np.testing.assert_allclose(score, bayes, rtol=1e-10, atol=1e-12)


def test_component_and_bad_labels():
    mixture = _mixture()
    comp = mixture.component(1)
    np.testing.assert_array_equal(comp.weights, [1.0])
    np.testing.assert_array_equal(comp.means, mixture.means[1:2])
    np.testing.assert_array_equal(comp.covariances, mixture.covariances[1:2])
    for k in (-1, 3, 1.0):
        with pytest.raises(ValueError, match="k must"):
            mixture.component(k)
    x = jnp.zeros((2, 2))
    with pytest.raises(ValueError, match="labels must lie in"):
        mixture.noised_component_score(x, 1.0, 0.1, jnp.array([0, 3]))
    with pytest.raises(ValueError, match="labels must be an int array"):
        mixture.noised_component_score(x, 1.0, 0.1, jnp.array([0.0, 1.0]))
