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
* One pass per network: tracing the objective (and its routed gradient) calls the encoder,
  decoder and discriminator once each.
* ``route_player_gradients``: the gradient of the summed player losses is each player's own
  gradient (the others behind ``stop_gradient``, three separate ``jax.grad`` calls), to
  1e-12; the plain gradient of the sum is detectably different.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.vae.gaussian import DiagonalGaussian
from jaxgen.vae.vae_gan import (
    PLAYERS,
    feature_matching_loss,
    player_terms,
    route_player_gradients,
    vae_gan_losses,
)

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
    losses = vae_gan_losses(
        encoder_fn, decoder_fn, lambda x: (discriminator_fn(x)[0], x), jnp.asarray(X), key
    )
    _, _, z, _ = _draws(key)
    x_recon = z @ PARAMS["dec_w"] + PARAMS["dec_b"]
    for player in ("encoder", "decoder"):
        np.testing.assert_allclose(
            losses[player][1]["feature_matching"], 0.5 * ((X - x_recon) ** 2).sum(1), rtol=1e-12
        )


def test_player_losses_and_terms_by_hand(x64):
    encoder_fn, decoder_fn, discriminator_fn = make_players(_params())
    key, gamma, beta = jax.random.key(4), 0.3, 0.7
    out = vae_gan_losses(
        encoder_fn, decoder_fn, discriminator_fn, jnp.asarray(X), key, gamma=gamma, beta=beta
    )
    losses = {player: per_example for player, (per_example, _) in out.items()}
    terms = {name: v for _, player_terms_ in out.values() for name, v in player_terms_.items()}
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
    assert set(losses) == set(want_losses) == set(PLAYERS) and set(terms) == set(want_terms)
    for name, want in {**want_losses, **want_terms}.items():
        got = losses[name] if name in losses else terms[name]
        assert got.shape == (B,)
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=name)
    # Every player's own terms, each equal to the hand value (shared ones in both players).
    assert set(out["encoder"][1]) == {"kl", "feature_matching", "elbo_features"}
    assert set(out["decoder"][1]) == {"feature_matching", "d_recon", "d_prior"}
    assert set(out["discriminator"][1]) == {"d_real", "d_recon", "d_prior"}
    for player, (_, own_terms) in out.items():
        for name, value in own_terms.items():
            np.testing.assert_allclose(value, want_terms[name], rtol=1e-12, err_msg=player)
    # Negative controls: the saturating generator, and fakes averaged to the real's weight.
    saturating = gamma * llike - _softplus(l_recon) - _softplus(l_prior)
    rebalanced = _softplus(-l_real) + 0.5 * (_softplus(l_recon) + _softplus(l_prior))
    assert not np.allclose(losses["decoder"], saturating, rtol=1e-6)
    assert not np.allclose(losses["discriminator"], rebalanced, rtol=1e-6)


def _player_loss(player, gamma):
    def total(p):
        encoder_fn, decoder_fn, discriminator_fn = make_players(p)
        losses = vae_gan_losses(
            encoder_fn, decoder_fn, discriminator_fn, jnp.asarray(X), jax.random.key(5),
            gamma=gamma,
        )  # fmt: skip
        return jnp.sum(losses[player][0])

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

    out = run()
    assert all(
        v.shape == (B,)
        for per_example, terms in out.values()
        for v in (per_example, *terms.values())
    )
    with pytest.raises(ValueError, match="encoder_fn must return a DiagonalGaussian"):
        run(enc=lambda x: x)
    with pytest.raises(ValueError, match=r"decoder_fn must return images of x's shape \(6, 4\)"):
        run(dec=lambda z: z)
    # The discriminator sees the 3 B = 18 images [real; reconstructions; prior samples] at once.
    with pytest.raises(ValueError, match=r"logits must have shape \(18,\), got \(18, 1\)"):
        run(dis=lambda x: (x[:, :1], x))
    with pytest.raises(ValueError, match=r"must return \(logits \(B,\), features"):
        run(dis=lambda x: x[:, 0])
    with pytest.raises(ValueError, match=r"features must have shape \(18, \.\.\.\)"):
        run(dis=lambda x: (x[:, 0], x[:2]))


# ----------------------------------------------------------------- one pass, routed gradients


def _nested(p):
    """The toy parameters grouped by player, as a recipe holds them."""
    return {
        "encoder": {k: p[k] for k in ("enc_a", "enc_b")},
        "decoder": {k: p[k] for k in ("dec_w", "dec_b")},
        "discriminator": {k: p[k] for k in ("dis_v", "dis_m")},
    }


def _counted_objective(calls, gamma=0.3, beta=0.7):
    """``objective(nested_params, x, key)`` whose networks count their calls; the decoder and
    discriminator are non-linear so that every gradient path matters."""

    def objective(params, x, key):
        flat = {k: v for group in params.values() for k, v in group.items()}
        enc, dec, dis = make_players(flat)

        def encoder_fn(x):
            calls["encoder"] += 1
            return enc(x)

        def decoder_fn(z):
            calls["decoder"] += 1
            return jnp.tanh(dec(z))

        def discriminator_fn(x):
            calls["discriminator"] += 1
            logits, features = dis(x)
            return logits, jnp.tanh(features)

        return vae_gan_losses(
            encoder_fn, decoder_fn, discriminator_fn, x, key, gamma=gamma, beta=beta
        )

    return objective


def test_each_network_is_evaluated_once_per_objective_evaluation():
    calls = dict.fromkeys(PLAYERS, 0)
    objective = _counted_objective(calls)
    params, x, key = _nested(_params()), jnp.asarray(X, jnp.float32), jax.random.key(0)
    jax.make_jaxpr(objective)(params, x, key)
    assert calls == dict.fromkeys(PLAYERS, 1)

    def total(p):
        out = route_player_gradients(objective, p, x, key)
        return sum(jnp.mean(out[q][0]) for q in PLAYERS)

    calls.update(dict.fromkeys(PLAYERS, 0))
    jax.make_jaxpr(jax.value_and_grad(total))(params)  # the forward pass and the routed grads
    assert calls == dict.fromkeys(PLAYERS, 1)
    # Negative control: the stop_gradient form (one objective per player) calls each 3 times.
    calls.update(dict.fromkeys(PLAYERS, 0))

    def per_player(p):
        parts = []
        for player in PLAYERS:
            frozen = {k: v if k == player else jax.lax.stop_gradient(v) for k, v in p.items()}
            parts.append(jnp.mean(objective(frozen, x, key)[player][0]))
        return sum(parts)

    jax.make_jaxpr(jax.grad(per_player))(params)
    assert calls == dict.fromkeys(PLAYERS, 3)


def test_routed_gradient_is_each_players_own_gradient(x64):
    calls = dict.fromkeys(PLAYERS, 0)
    objective = _counted_objective(calls)
    params, x, key = _nested(_params()), jnp.asarray(X), jax.random.key(6)
    weights = {"encoder": 1.0, "decoder": 2.0, "discriminator": 0.5}

    def routed_total(p):
        out = route_player_gradients(objective, p, x, key)
        return sum(weights[q] * jnp.mean(out[q][0]) for q in PLAYERS), out

    (value, routed_out), grads = jax.value_and_grad(routed_total, has_aux=True)(params)
    plain = objective(params, x, key)
    for player in PLAYERS:  # the routed value is the objective's
        np.testing.assert_array_equal(routed_out[player][0], plain[player][0])
        for name in plain[player][1]:
            np.testing.assert_array_equal(routed_out[player][1][name], plain[player][1][name])
    np.testing.assert_allclose(
        value, sum(weights[q] * jnp.mean(plain[q][0]) for q in PLAYERS), rtol=1e-14
    )
    for player in PLAYERS:

        def own(p, player=player):
            frozen = {k: v if k == player else jax.lax.stop_gradient(v) for k, v in p.items()}
            return weights[player] * jnp.mean(objective(frozen, x, key)[player][0])

        want = jax.grad(own)(params)[player]
        for name in want:
            np.testing.assert_allclose(
                grads[player][name], want[name], rtol=1e-12, atol=1e-14, err_msg=(player, name)
            )
    # Negative control: the plain gradient of the sum mixes the players' losses.
    mixed = jax.grad(
        lambda p: sum(weights[q] * jnp.mean(objective(p, x, key)[q][0]) for q in PLAYERS)
    )(params)
    assert not np.allclose(mixed["discriminator"]["dis_m"], grads["discriminator"]["dis_m"])
    assert not np.allclose(mixed["encoder"]["enc_a"], grads["encoder"]["enc_a"])


def test_routing_refuses_unknown_players_and_names_metrics():
    objective = _counted_objective(dict.fromkeys(PLAYERS, 0))
    params, x, key = _nested(_params()), jnp.asarray(X, jnp.float32), jax.random.key(0)
    partial_params = {k: v for k, v in params.items() if k != "decoder"}

    def bad(p, x, key):
        return objective({**p, "decoder": params["decoder"]}, x, key)

    with pytest.raises(ValueError, match=r"players \['decoder'\] name no top-level parameter"):
        jax.grad(lambda p: jnp.sum(route_player_gradients(bad, p, x, key)["encoder"][0]))(
            partial_params
        )
    names = player_terms(objective(params, x, key))
    assert {"encoder_loss", "decoder_loss", "discriminator_loss", "encoder_kl"} <= set(names)
    assert "discriminator_d_real" in names and "decoder_feature_matching" in names
