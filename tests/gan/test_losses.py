"""GAN losses (``jaxgen.gan.losses``) against the definitions of Goodfellow et al. (2014).

* Definitions by hand through ``D = sigmoid(logit)`` (x64, 1e-12), and stability at
  logits of +-200 where the naive ``log(sigmoid)`` overflows (the naive form is the control).
* Optimal discriminator (Prop. 1): for a point with densities ``(a, b)`` under
  ``(p_data, p_g)`` the expected loss ``a softplus(-l) + b softplus(l)`` is stationary exactly
  at ``l = log(a / b)`` (its gradient elsewhere is not 0).
* Value at ``D*`` (Theorem 1): ``-log 4`` exactly for ``p_g = p_data`` (``D = 1/2``); for two
  Gaussians a Monte Carlo estimate of ``-E[discriminator_loss]`` at ``D*`` matches
  ``-log 4 + 2 JSD`` (JSD by quadrature; z-test), and a suboptimal ``D`` is rejected.
* Gradients in the fake logit: saturating ``-D``, non-saturating ``-(1 - D)``; when
  ``D(G(z))`` is near 0 the non-saturating one is larger in magnitude, same direction (and
  the ordering flips near ``D = 1``, the negative control).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from jaxgen.gan import GENERATOR_LOSSES, discriminator_loss, generator_loss
from tests.diffusion.stats import bonferroni_z


def d_loss(*args, **kwargs):
    """The per-example discriminator loss: the first of ``(per_example, terms)``."""
    return discriminator_loss(*args, **kwargs)[0]


def g_loss(*args, **kwargs):
    """The per-example generator loss: the first of ``(per_example, terms)``."""
    return generator_loss(*args, **kwargs)[0]


def test_definitions_by_hand(x64):
    rng = np.random.default_rng(0)
    real, fake = rng.uniform(-8, 8, 50), rng.uniform(-8, 8, 50)
    d_real, d_fake = 1.0 / (1.0 + np.exp(-real)), 1.0 / (1.0 + np.exp(-fake))
    np.testing.assert_allclose(
        d_loss(real, fake), -np.log(d_real) - np.log(1.0 - d_fake), rtol=1e-12
    )
    np.testing.assert_allclose(g_loss(fake, kind="saturating"), np.log(1.0 - d_fake), rtol=1e-12)
    np.testing.assert_allclose(g_loss(fake, kind="non_saturating"), -np.log(d_fake), rtol=1e-12)
    np.testing.assert_allclose(g_loss(fake), g_loss(fake, kind="non_saturating"))
    assert GENERATOR_LOSSES == ("saturating", "non_saturating", "wasserstein", "hinge")
    # Negative control: the two generator losses are different functions.
    assert not np.allclose(g_loss(fake, kind="saturating"), -np.log(d_fake))


def test_stable_at_extreme_logits():
    big = jnp.array([200.0, -200.0, 0.0], jnp.float32)
    loss = d_loss(big, -big)
    np.testing.assert_allclose(loss, [0.0, 400.0, 2 * math.log(2.0)], rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(g_loss(big), [0.0, 200.0, math.log(2.0)], rtol=1e-6)
    np.testing.assert_allclose(
        g_loss(big, kind="saturating"), [-200.0, 0.0, -math.log(2.0)], rtol=1e-6
    )
    # Negative control: the naive formula overflows in float32.
    naive = -jnp.log(jax.nn.sigmoid(big)) - jnp.log(1.0 - jax.nn.sigmoid(-big))
    assert not bool(jnp.all(jnp.isfinite(naive)))


def test_optimal_discriminator_is_the_density_ratio(x64):
    """d/dl [a softplus(-l) + b softplus(l)] = 0 exactly at l = log(a / b)."""
    a = jnp.array([0.3, 1.2, 0.05, 2.0])
    b = jnp.array([0.7, 0.4, 0.05, 0.02])

    def expected_loss(logit, a, b):
        # a * (-log D) + b * (-log(1 - D)) from the two halves of the loss.
        real_part = d_loss(logit, jnp.full_like(logit, -jnp.inf))
        fake_part = d_loss(jnp.full_like(logit, jnp.inf), logit)
        return jnp.sum(a * real_part + b * fake_part)

    grad = jax.grad(expected_loss)
    l_star = jnp.log(a / b)
    np.testing.assert_allclose(grad(l_star, a, b), 0.0, atol=1e-12)
    assert float(jnp.min(jnp.abs(grad(l_star + 0.3, a, b)))) > 1e-3  # negative control


def _jsd(p, q):
    def integrand(x, f, g):
        m = 0.5 * (f.pdf(x) + g.pdf(x))
        return f.pdf(x) * (f.logpdf(x) - np.log(m))

    kl_pm = scipy.integrate.quad(integrand, -30, 30, args=(p, q), epsabs=1e-12)[0]
    kl_qm = scipy.integrate.quad(integrand, -30, 30, args=(q, p), epsabs=1e-12)[0]
    return 0.5 * (kl_pm + kl_qm)


def test_value_at_the_optimal_discriminator_is_minus_log4_plus_2jsd(x64):
    zeros = jnp.zeros(7)
    np.testing.assert_allclose(-d_loss(zeros, zeros), -math.log(4.0), rtol=1e-15)
    p_data, p_g = scipy.stats.norm(0.0, 1.0), scipy.stats.norm(1.0, 1.5)

    def logit_star(x):  # log p_data - log p_g: D* = p_data / (p_data + p_g)
        return p_data.logpdf(x) - p_g.logpdf(x)

    n = 4000
    rng = np.random.default_rng(1)
    real, fake = p_data.rvs(n, random_state=rng), p_g.rvs(n, random_state=rng)
    oracle = -math.log(4.0) + 2.0 * _jsd(p_data, p_g)
    z_max = bonferroni_z(3)

    def z_score(real_logits, fake_logits):
        v = -np.asarray(d_loss(real_logits, fake_logits))
        return (v.mean() - oracle) / (v.std(ddof=1) / np.sqrt(n)), v.mean()

    z, value = z_score(logit_star(real), logit_star(fake))
    z_half, value_half = z_score(0.5 * logit_star(real), 0.5 * logit_star(fake))
    print(f"V(D*) = {value:.4f} vs -log 4 + 2 JSD = {oracle:.4f} (z {z:.2f})")
    print(f"negative control: D with half the logit {value_half:.4f} (z {z_half:.1f})")
    assert abs(z) < z_max
    assert z_half < -z_max  # a suboptimal discriminator is worse
    assert oracle > -math.log(4.0) + 0.1  # and p_g != p_data is visible (2 JSD > 0.1)


def test_non_saturating_gradient_is_larger_when_d_is_near_zero(x64):
    fake = jnp.array([-6.0, -3.0, 6.0])
    g_sat = jax.grad(lambda f: jnp.sum(g_loss(f, kind="saturating")))(fake)
    g_ns = jax.grad(lambda f: jnp.sum(g_loss(f, kind="non_saturating")))(fake)
    d = 1.0 / (1.0 + np.exp(-np.asarray(fake)))
    np.testing.assert_allclose(g_sat, -d, rtol=1e-12)
    np.testing.assert_allclose(g_ns, -(1.0 - d), rtol=1e-12)
    print(f"D = {d}; saturating grad {np.asarray(g_sat)}, non-saturating {np.asarray(g_ns)}")
    near_zero = d < 0.1
    assert np.all(np.sign(g_sat) == np.sign(g_ns))  # both raise the fake logit
    assert np.all(np.abs(g_ns[near_zero]) > 10 * np.abs(g_sat[near_zero]))
    # Negative control: near D = 1 the saturating gradient is the larger one.
    assert np.all(np.abs(g_sat[~near_zero]) > np.abs(g_ns[~near_zero]))


def test_error_messages():
    with pytest.raises(ValueError, match=r"unknown generator loss kind 'wgan'.*'saturating'"):
        g_loss(jnp.zeros(3), kind="wgan")
    with pytest.raises(ValueError, match=r"same shape \(B,\), got \(3,\) and \(4,\)"):
        d_loss(jnp.zeros(3), jnp.zeros(4))
    with pytest.raises(ValueError, match=r"fake_logits must be per-example logits of shape \(B"):
        g_loss(jnp.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"real_logits must be a float array"):
        d_loss(jnp.zeros(3, int), jnp.zeros(3))


@pytest.mark.parametrize("kind", ["minimax", "wasserstein", "hinge"])
def test_discriminator_terms_are_the_two_halves_and_the_outputs(kind, x64):
    rng = np.random.default_rng(3)
    real, fake = jnp.asarray(rng.normal(size=9)), jnp.asarray(rng.normal(size=9))
    per_example, terms = discriminator_loss(real, fake, kind=kind)
    assert set(terms) == {"d_loss_real", "d_loss_fake", "d_real", "d_fake"}
    assert all(v.shape == (9,) for v in terms.values())
    np.testing.assert_allclose(terms["d_loss_real"] + terms["d_loss_fake"], per_example)
    # each half is the loss with the other half's logit sent where it costs nothing
    if kind == "minimax":
        np.testing.assert_allclose(terms["d_loss_real"], -np.log(jax.nn.sigmoid(real)))
        np.testing.assert_allclose(terms["d_loss_fake"], -np.log(1 - jax.nn.sigmoid(fake)))
        np.testing.assert_allclose(terms["d_real"], 1 / (1 + np.exp(-np.asarray(real))))
        np.testing.assert_allclose(terms["d_fake"], 1 / (1 + np.exp(-np.asarray(fake))))
    else:  # scores are reported as they are
        np.testing.assert_array_equal(terms["d_real"], real)
        np.testing.assert_array_equal(terms["d_fake"], fake)


@pytest.mark.parametrize("kind", GENERATOR_LOSSES)
def test_generator_terms_report_the_discriminator_output(kind, x64):
    fake = jnp.array([-2.0, 0.0, 3.0])
    per_example, terms = generator_loss(fake, kind=kind)
    assert per_example.shape == (3,) and set(terms) == {"g_d_fake"}
    expected = jax.nn.sigmoid(fake) if "saturating" in kind else fake
    np.testing.assert_allclose(terms["g_d_fake"], expected)
