"""VAE-GAN losses (``jaxgen.vae.vae_gan``) against hand computations (Larsen et al. 2016).

* ``feature_matching_loss`` is the Gaussian negative log density ``-log N(real | recon, I)``
  (``jax.scipy.stats.norm``) minus its constant ``(F/2) log 2 pi``; keeping the constant is
  detected.
* With identity discriminator features, ``L_llike`` is half the squared pixel error.
* For linear toy callables every player loss and every term equals the hand formula, with
  ``z`` and ``z_p`` drawn from the documented keys (x64, 1e-12); the saturating generator and
  a rebalanced discriminator loss are detected as different.
* Gradients (``jax.grad`` on linear models): with ``gamma = 0`` the decoder's gradient is the
  pure adversarial one, ``sum_i -(1 - D_i) z_i v^T`` over reconstructions and prior samples;
  with ``gamma > 0`` it adds exactly ``gamma`` times the feature-matching gradient. The
  discriminator's gradient in its logit weights is
  ``sum -(1 - D(x)) x + D(x~) x~ + D(x_p) x_p``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.vae.gaussian import DiagonalGaussian
from jaxgen.vae.vae_gan import feature_matching_loss, vae_gan_losses

B, DX, K, F = 6, 4, 2, 3
_rng = np.random.default_rng(0)
PARAMS = {
    "enc_a": _rng.standard_normal((DX, K)) * 0.5,
    "enc_b": _rng.standard_normal((DX, K)) * 0.3,
    "dec_w": _rng.standard_normal((K, DX)),
    "dec_b": _rng.standard_normal((DX,)) * 0.2,
    "dis_v": _rng.standard_normal((DX,)),
    "dis_m": _rng.standard_normal((DX, F)),
}
X = _rng.standard_normal((B, DX))


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _softplus(a):
    return np.logaddexp(0.0, a)


def make_players(p):
    def encoder_fn(x):
        return DiagonalGaussian(x @ p["enc_a"], x @ p["enc_b"] - 0.5)

    def decoder_fn(z):
        return z @ p["dec_w"] + p["dec_b"][None, :]

    def discriminator_fn(x):
        return x @ p["dis_v"] + 0.1, x @ p["dis_m"]

    return encoder_fn, decoder_fn, discriminator_fn


def _params():
    return jax.tree.map(jnp.asarray, PARAMS)


def _draws(key):
    """z ~ q(z|x) and z_p ~ N(0, I) as the module documents its key use."""
    key_q, key_p = jax.random.split(key)
    mu, log_s = X @ PARAMS["enc_a"], X @ PARAMS["enc_b"] - 0.5
    z = mu + np.exp(log_s) * np.asarray(jax.random.normal(key_q, (B, K)))
    z_p = np.asarray(jax.random.normal(key_p, (B, K)))
    return mu, np.exp(log_s), z, z_p


def test_feature_matching_is_the_gaussian_nll_minus_its_constant(x64):
    rng = np.random.default_rng(1)
    real, recon = rng.standard_normal((5, 3, 4)), rng.standard_normal((5, 3, 4))
    nll = -jax.scipy.stats.norm.logpdf(real, loc=recon, scale=1.0).sum(axis=(1, 2))
    constant = 0.5 * 12 * math.log(2.0 * math.pi)
    loss = feature_matching_loss(real, recon)
    np.testing.assert_allclose(loss, nll - constant, rtol=1e-12)
    np.testing.assert_allclose(loss, 0.5 * ((real - recon) ** 2).sum(axis=(1, 2)), rtol=1e-12)
    assert not np.allclose(loss, nll, rtol=1e-3)  # negative control: the constant is dropped
    with pytest.raises(ValueError, match=r"same shape, got \(5, 3, 4\) and \(5, 12\)"):
        feature_matching_loss(real, recon.reshape(5, 12))


def test_identity_features_give_half_squared_pixel_error(x64):
    p = _params()
    encoder_fn, decoder_fn, discriminator_fn = make_players(p)
    key = jax.random.key(3)
    _, terms = vae_gan_losses(
        encoder_fn, decoder_fn, lambda x: (discriminator_fn(x)[0], x), jnp.asarray(X), key
    )
    _, _, z, _ = _draws(key)
    x_recon = z @ PARAMS["dec_w"] + PARAMS["dec_b"]
    np.testing.assert_allclose(
        terms["feature_matching"], 0.5 * ((X - x_recon) ** 2).sum(1), rtol=1e-12
    )


def test_player_losses_and_terms_by_hand(x64):
    encoder_fn, decoder_fn, discriminator_fn = make_players(_params())
    key, gamma, beta = jax.random.key(4), 0.3, 0.7
    losses, terms = vae_gan_losses(
        encoder_fn, decoder_fn, discriminator_fn, jnp.asarray(X), key, gamma=gamma, beta=beta
    )
    mu, s, z, z_p = _draws(key)
    x_recon = z @ PARAMS["dec_w"] + PARAMS["dec_b"]
    x_prior = z_p @ PARAMS["dec_w"] + PARAMS["dec_b"]
    l_real, l_recon, l_prior = (a @ PARAMS["dis_v"] + 0.1 for a in (X, x_recon, x_prior))
    kl = (0.5 * (s**2 + mu**2 - 1.0) - np.log(s)).sum(1)
    llike = 0.5 * (((X - x_recon) @ PARAMS["dis_m"]) ** 2).sum(1)
    want_losses = {
        "encoder": beta * kl + llike,
        "decoder": gamma * llike + _softplus(-l_recon) + _softplus(-l_prior),
        "discriminator": _softplus(-l_real) + _softplus(l_recon) + _softplus(l_prior),
    }
    want_terms = {
        "kl": kl,
        "feature_matching": llike,
        "d_real": _sigmoid(l_real),
        "d_recon": _sigmoid(l_recon),
        "d_prior": _sigmoid(l_prior),
        "elbo_features": -(kl + llike),
    }
    assert set(losses) == set(want_losses) and set(terms) == set(want_terms)
    for name, want in {**want_losses, **want_terms}.items():
        got = losses[name] if name in losses else terms[name]
        assert got.shape == (B,)
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=name)
    # Negative controls: the saturating generator, and fakes averaged to the real's weight.
    saturating = gamma * llike - _softplus(l_recon) - _softplus(l_prior)
    rebalanced = _softplus(-l_real) + 0.5 * (_softplus(l_recon) + _softplus(l_prior))
    assert not np.allclose(losses["decoder"], saturating, rtol=1e-6)
    assert not np.allclose(losses["discriminator"], rebalanced, rtol=1e-6)


def _player_loss(player, gamma):
    def total(p):
        encoder_fn, decoder_fn, discriminator_fn = make_players(p)
        losses, _ = vae_gan_losses(
            encoder_fn, decoder_fn, discriminator_fn, jnp.asarray(X), jax.random.key(5),
            gamma=gamma,
        )  # fmt: skip
        return jnp.sum(losses[player])

    return total


def test_decoder_gradient_is_adversarial_plus_gamma_feature_matching(x64):
    _, _, z, z_p = _draws(jax.random.key(5))
    w, b, v, m = (PARAMS[k] for k in ("dec_w", "dec_b", "dis_v", "dis_m"))
    x_recon, x_prior = z @ w + b, z_p @ w + b
    d_recon, d_prior = _sigmoid(x_recon @ v + 0.1), _sigmoid(x_prior @ v + 0.1)
    # d/dW softplus(-(zW + b) v) = -(1 - D) z v^T, summed over reconstructions and prior draws.
    adv_w = -np.einsum("i,ik,j->kj", 1 - d_recon, z, v) - np.einsum(
        "i,ik,j->kj", 1 - d_prior, z_p, v
    )
    adv_b = -((1 - d_recon).sum() + (1 - d_prior).sum()) * v
    # d/dW 1/2 ||(x - zW - b) M||^2 = -z^T (x - x~) M M^T.
    resid = (X - x_recon) @ m @ m.T
    fm_w, fm_b = -z.T @ resid, -resid.sum(0)
    grads = {g: jax.grad(_player_loss("decoder", g))(_params()) for g in (0.0, 0.3)}
    np.testing.assert_allclose(grads[0.0]["dec_w"], adv_w, rtol=1e-12)
    np.testing.assert_allclose(grads[0.0]["dec_b"], adv_b, rtol=1e-12)
    np.testing.assert_allclose(grads[0.3]["dec_w"], adv_w + 0.3 * fm_w, rtol=1e-12)
    np.testing.assert_allclose(grads[0.3]["dec_b"], adv_b + 0.3 * fm_b, rtol=1e-12)
    # Negative control: the feature-matching part is not negligible at gamma = 0.3.
    assert not np.allclose(grads[0.3]["dec_w"], adv_w, rtol=1e-3)
    # The discriminator's own gradient: sum -(1 - D(x)) x + D(x~) x~ + D(x_p) x_p.
    d_real = _sigmoid(X @ v + 0.1)
    want_v = -(1 - d_real) @ X + d_recon @ x_recon + d_prior @ x_prior
    grad_d = jax.grad(_player_loss("discriminator", 0.3))(_params())
    np.testing.assert_allclose(grad_d["dis_v"], want_v, rtol=1e-12)
    np.testing.assert_allclose(grad_d["dis_m"], 0.0)  # features do not enter the D loss


def test_error_messages():
    encoder_fn, decoder_fn, discriminator_fn = make_players(_params())
    x, key = jnp.asarray(X, jnp.float32), jax.random.key(0)

    def run(enc=encoder_fn, dec=decoder_fn, dis=discriminator_fn):
        return jax.eval_shape(lambda: vae_gan_losses(enc, dec, dis, x, key))

    losses, terms = run()
    assert all(v.shape == (B,) for v in (*losses.values(), *terms.values()))
    with pytest.raises(ValueError, match="encoder_fn must return a DiagonalGaussian"):
        run(enc=lambda x: x)
    with pytest.raises(ValueError, match=r"decoder_fn must return images of x's shape \(6, 4\)"):
        run(dec=lambda z: z)
    with pytest.raises(ValueError, match=r"logits must have shape \(6,\), got \(6, 1\)"):
        run(dis=lambda x: (x[:, :1], x))
    with pytest.raises(ValueError, match=r"must return \(logits \(B,\), features"):
        run(dis=lambda x: x[:, 0])
    with pytest.raises(ValueError, match=r"features must have shape \(6, \.\.\.\)"):
        run(dis=lambda x: (x[:, 0], x[:2]))
