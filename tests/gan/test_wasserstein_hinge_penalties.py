"""Wasserstein and hinge losses, weight clipping, the WGAN-GP gradient penalty and R1,
against their definitions and closed forms.

* The gradient penalty on a linear critic ``D(x) = w.x + b`` is ``(||w|| - 1)^2`` for every
  example and every interpolation point (its input gradient is ``w`` everywhere); on a
  quadratic critic it is computed by hand at the documented interpolates.
* R1 on a linear critic is ``||w||^2``; on ``D(x) = ||x||^2`` it is ``4 ||x||^2``.
* With the 1-Lipschitz critic ``f(x) = x`` between N(0, 1) and N(mu, 1), the Wasserstein
  critic loss averages ``-W_1 = -mu`` (Kantorovich-Rubinstein), checked by a z-score.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.gan import (
    DISCRIMINATOR_LOSSES,
    clip_weights,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    r1_penalty,
)


def d_loss(*args, **kwargs):
    """The per-example discriminator loss: the first of ``(per_example, terms)``."""
    return discriminator_loss(*args, **kwargs)[0]


def g_loss(*args, **kwargs):
    """The per-example generator loss: the first of ``(per_example, terms)``."""
    return generator_loss(*args, **kwargs)[0]


def gp(*args, **kwargs):
    """The per-example gradient penalty: the first of ``(per_example, terms)``."""
    return gradient_penalty(*args, **kwargs)[0]


def r1(*args, **kwargs):
    """The per-example R1 penalty: the first of ``(per_example, terms)``."""
    return r1_penalty(*args, **kwargs)[0]


def test_wasserstein_and_hinge_definitions():
    real = jnp.array([2.0, 0.5, -1.5, 0.0])
    fake = jnp.array([-2.0, 0.3, 1.0, -0.9])
    np.testing.assert_allclose(d_loss(real, fake, kind="wasserstein"), fake - real)
    hinge = np.maximum(0, 1 - np.asarray(real)) + np.maximum(0, 1 + np.asarray(fake))
    np.testing.assert_allclose(d_loss(real, fake, kind="hinge"), hinge, rtol=1e-6)
    for kind in ("wasserstein", "hinge"):
        np.testing.assert_allclose(g_loss(fake, kind=kind), -fake)
    # hinge: a discriminator that separates with margin 1 pays nothing; minimax still pays
    sep_real, sep_fake = jnp.array([1.0, 3.0]), jnp.array([-1.0, -5.0])
    np.testing.assert_array_equal(d_loss(sep_real, sep_fake, kind="hinge"), 0.0)
    assert np.all(d_loss(sep_real, sep_fake) > 0)
    assert DISCRIMINATOR_LOSSES == ("minimax", "wasserstein", "hinge")
    with pytest.raises(ValueError, match="discriminator loss kind"):
        d_loss(real, fake, kind="least_squares")


def test_wasserstein_critic_loss_estimates_minus_w1():
    """With real ~ N(mu, 1), fake ~ N(0, 1) and mu > 0, f(x) = x is an optimal 1-Lipschitz
    critic, so E[f(fake) - f(real)] = -W_1 = -mu."""
    mu, n = 0.7, 20000
    k1, k2 = jax.random.split(jax.random.key(0))
    real = mu + jax.random.normal(k1, (n,))
    fake = jax.random.normal(k2, (n,))
    loss = np.asarray(d_loss(real, fake, kind="wasserstein"), np.float64)
    z = (loss.mean() + mu) / (loss.std(ddof=1) / np.sqrt(n))
    assert abs(z) < 4.5, z
    # negative control: a wrong distance (mu / 2) is rejected
    assert abs((loss.mean() + mu / 2) / (loss.std(ddof=1) / np.sqrt(n))) > 10


def test_gradient_penalty_on_a_linear_critic_is_norm_minus_one_squared(x64):
    w = jnp.array([[0.3, -1.2], [0.5, 2.0]])  # event (2, 2)
    critic = lambda x: jnp.sum(x * w[None], axis=(1, 2)) + 0.7  # noqa: E731
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    real = jax.random.normal(k1, (16, 2, 2))
    fake = jax.random.normal(k2, (16, 2, 2))
    expected = (np.linalg.norm(np.asarray(w)) - 1.0) ** 2
    np.testing.assert_allclose(gp(critic, real, fake, k3), expected, rtol=1e-12)
    np.testing.assert_allclose(gp(critic, real, fake, k3, target=0.0), np.sum(np.asarray(w) ** 2))
    # a 1-Lipschitz linear critic with unit gradient pays nothing
    unit = w / jnp.linalg.norm(w)
    unit_critic = lambda x: jnp.sum(x * unit[None], axis=(1, 2))  # noqa: E731
    np.testing.assert_allclose(gp(unit_critic, real, fake, k3), 0.0, atol=1e-24)


def test_gradient_penalty_at_the_documented_interpolates(x64):
    """D(x) = ||x||^2 has gradient 2 x_hat, with x_hat = eps real + (1 - eps) fake and
    eps = uniform(key, (B,))."""
    critic = lambda x: jnp.sum(x * x, axis=1)  # noqa: E731
    k1, k2, k3 = jax.random.split(jax.random.key(2), 3)
    real, fake = jax.random.normal(k1, (32, 3)), jax.random.normal(k2, (32, 3))
    eps = np.asarray(jax.random.uniform(k3, (32,), jnp.float64))[:, None]
    x_hat = eps * np.asarray(real) + (1 - eps) * np.asarray(fake)
    expected = (2.0 * np.linalg.norm(x_hat, axis=1) - 1.0) ** 2
    got = gp(critic, real, fake, k3)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # negative controls: at the real points, or at the midpoint, the values differ
    assert not np.allclose(got, (2.0 * np.linalg.norm(real, axis=1) - 1.0) ** 2)
    mid = 0.5 * (np.asarray(real) + np.asarray(fake))
    assert not np.allclose(got, (2.0 * np.linalg.norm(mid, axis=1) - 1.0) ** 2)


def test_r1_penalty_closed_forms(x64):
    x = jax.random.normal(jax.random.key(3), (8, 4))
    w = jnp.array([0.5, -1.0, 2.0, 0.1])
    np.testing.assert_allclose(r1(lambda v: v @ w, x), np.sum(np.asarray(w) ** 2))
    np.testing.assert_allclose(
        r1(lambda v: jnp.sum(v * v, axis=1), x),
        4.0 * np.sum(np.asarray(x) ** 2, axis=1),
        rtol=1e-12,
    )


def test_penalties_refuse_a_critic_without_per_example_scores():
    x = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="one score per example"):
        r1(lambda v: jnp.sum(v), x)
    with pytest.raises(ValueError, match="same shape"):
        gp(lambda v: v[:, 0], x, jnp.ones((4, 2)), jax.random.key(0))


def test_clip_weights_clips_every_leaf_and_keeps_the_rest():
    params = {"a": jnp.array([-0.5, 0.005, 0.02]), "b": {"c": jnp.array([[0.009, -0.011]])}}
    clipped = clip_weights(params, clip=0.01)
    np.testing.assert_allclose(clipped["a"], [-0.01, 0.005, 0.01])
    np.testing.assert_allclose(clipped["b"]["c"], [[0.009, -0.01]])
    with pytest.raises(ValueError, match="positive"):
        clip_weights(params, clip=0.0)


def test_penalty_terms_name_the_penalty_and_the_gradient_norm(x64):
    w = jnp.array([0.5, -1.0, 2.0])
    critic = lambda v: v @ w  # noqa: E731
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    real, fake = jax.random.normal(k1, (5, 3)), jax.random.normal(k2, (5, 3))
    penalty, terms = gradient_penalty(critic, real, fake, k3)
    assert set(terms) == {"gradient_penalty", "interpolate_grad_norm"}
    np.testing.assert_array_equal(terms["gradient_penalty"], penalty)
    np.testing.assert_allclose(terms["interpolate_grad_norm"], np.linalg.norm(w) * np.ones(5))
    penalty, terms = r1_penalty(critic, real)
    assert set(terms) == {"r1_penalty"} and penalty.shape == (5,)
    np.testing.assert_array_equal(terms["r1_penalty"], penalty)
