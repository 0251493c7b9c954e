"""VAE-GAN: a VAE whose reconstruction error is measured in a discriminator's feature space
(Larsen, Sonderby, Larochelle, Winther 2016, eqs. 8-10 and Algorithm 1).

Encoder ``q(z | x) = N(mu(x), s(x)^2)``, decoder/generator ``x~ = Dec(z)``, discriminator
``Dis(x) = sigmoid(logit(x))`` with hidden features ``Dis_l(x)``.

Feature-wise likelihood (Larsen et al. eqs. 8-9): a Gaussian observation model on the
features, ``p(Dis_l(x) | z) = N(Dis_l(x) | Dis_l(x~), I)``, so::

    L_llike^{Dis_l} = -E_{q(z|x)}[log p(Dis_l(x) | z)]
                    = 1/2 sum_f (Dis_l(x)_f - Dis_l(x~)_f)^2 + (F/2) log(2 pi),

with ``F`` the number of feature entries per example. :func:`feature_matching_loss` drops the
constant ``(F/2) log(2 pi)``, which has no gradient. With one draw ``z ~ q(z|x)``
(reparameterized) this is a one-sample estimate. ``L_prior = KL(q(z|x) || N(0, I))``
(analytic). The per-example "ELBO in feature space" reported is ``-(KL + L_llike)``.

GAN term (Larsen et al. eq. 10), with samples from both the reconstruction ``x~ = Dec(z)``,
``z ~ q(z|x)``, and the prior ``x_p = Dec(z_p)``, ``z_p ~ N(0, I)``::

    L_GAN = log Dis(x) + log(1 - Dis(x~)) + log(1 - Dis(x_p)).

Per-example losses by player (Algorithm 1; each player minimizes its own loss w.r.t. its
own parameters only):

* ``"encoder"``: ``beta * KL + L_llike`` (``beta = 1``: Larsen et al.'s ``L_prior +
  L_llike``);
* ``"decoder"``: ``gamma * L_llike + L_GAN^G`` with the non-saturating generator term on both
  fake kinds, ``L_GAN^G = -log Dis(x~) - log Dis(x_p) = softplus(-l~) + softplus(-l_p)``
  (Algorithm 1 writes the saturating ``-L_GAN``; the non-saturating form has the same fixed
  point and useful gradients early in training, Goodfellow et al. 2014, Section 3);
* ``"discriminator"``: ``-L_GAN = softplus(-l_real) + softplus(l~) + softplus(l_p)``: the
  real batch is weighted once and each of the two fake batches once (so fakes carry twice
  the real weight, as in eq. 10; no rebalancing).

One pass per network (:func:`vae_gan_losses`): the encoder runs once on ``x``, the decoder
once on the ``2B`` latents ``[z; z_p]`` and the discriminator once on the ``3B`` images
``[x; x~; x_p]``, so the networks must treat examples independently (no batch statistics).

Gradients: the features ``Dis_l`` inside ``L_llike`` must not train the discriminator
(Larsen et al. limit each error signal to the networks it is meant for; in Algorithm 1
only ``L_GAN`` updates ``Dis``, and ``L_GAN`` does not update the encoder). Each player
minimizes its own loss w.r.t. its own parameters: ``grad_enc L_enc``, ``grad_dec L_dec``,
``grad_dis L_dis`` (a simultaneous-update game step). :func:`route_player_gradients` gives
exactly these gradients from one evaluation of the three networks: it runs the objective
once and, backwards, pulls each player's loss back on its own (one vector-Jacobian
product per player) and keeps only that player's block of parameters, so that the
gradient of ``sum_p L_p`` is ``(grad_enc L_enc, grad_dec L_dec, grad_dis L_dis)``.

Random keys: ``key_q, key_p = jax.random.split(key)``; ``z = q.sample(key_q)`` and
``z_p = N(0, I)`` drawn from ``key_p`` with ``z``'s shape.

References:
  Larsen, Sonderby, Larochelle, Winther. Autoencoding beyond pixels using a learned
  similarity metric. ICML 2016.
  Goodfellow et al. Generative Adversarial Nets. NeurIPS 2014.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.vae.gaussian import DiagonalGaussian

__all__ = [
    "PLAYERS",
    "feature_matching_loss",
    "player_terms",
    "route_player_gradients",
    "vae_gan_losses",
]

PLAYERS: tuple[str, ...] = ("encoder", "decoder", "discriminator")

PlayerLosses = dict[str, tuple[jax.Array, dict[str, jax.Array]]]


def feature_matching_loss(real_features: jax.Array, recon_features: jax.Array) -> jax.Array:
    """``-log N(real | recon, I) - (F/2) log(2 pi) = 1/2 sum_f (real_f - recon_f)^2``, (B,),
    summed over every axis but the first (``F`` feature entries per example)."""
    real_features, recon_features = jnp.asarray(real_features), jnp.asarray(recon_features)
    if real_features.shape != recon_features.shape:
        raise ValueError(
            f"real_features and recon_features must have the same shape, got "
            f"{real_features.shape} and {recon_features.shape}."
        )
    if real_features.ndim < 1:
        raise ValueError(f"features must have shape (B, ...), got {real_features.shape}.")
    sq = jnp.square(real_features - recon_features)
    return 0.5 * jnp.sum(sq.reshape(sq.shape[0], -1), axis=1)


def _discriminate(
    discriminator_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]], x: jax.Array
) -> tuple[jax.Array, jax.Array]:
    out = discriminator_fn(x)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError(
            f"discriminator_fn must return (logits (B,), features (B, ...)), got "
            f"{type(out).__name__}."
        )
    logits, features = out
    batch = x.shape[0]
    if jnp.shape(logits) != (batch,):
        raise ValueError(
            f"discriminator_fn logits must have shape ({batch},), got {jnp.shape(logits)} for "
            f"the {batch} images [real; reconstructions; prior samples]."
        )
    if jnp.ndim(features) < 1 or jnp.shape(features)[0] != batch:
        raise ValueError(
            f"discriminator_fn features must have shape ({batch}, ...), got "
            f"{jnp.shape(features)} for the {batch} images [real; reconstructions; prior samples]."
        )
    return logits, features


def vae_gan_losses(
    encoder_fn: Callable[[jax.Array], DiagonalGaussian],
    decoder_fn: Callable[[jax.Array], jax.Array],
    discriminator_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    x: jax.Array,
    key: jax.Array,
    *,
    gamma: float = 1e-2,
    beta: float = 1.0,
) -> PlayerLosses:
    """Per-example VAE-GAN losses of the three players, each network evaluated once (see
    the module doc).

    Args:
      encoder_fn: ``x -> q(z | x)``, a ``DiagonalGaussian`` with batch ``B``.
      decoder_fn: ``z -> x``-space images; called once on the ``2B`` latents ``[z; z_p]``.
      discriminator_fn: ``x -> (logits (N,), features (N, ...))``; ``Dis = sigmoid(logits)``
        and ``features`` is ``Dis_l``; called once on the ``3B`` images ``[x; x~; x_p]``.
      x: data ``(B, *event)``.
      key: a ``jax.random.key``: ``key_q, key_p = jax.random.split(key)``.
      gamma: weight of ``L_llike`` in the decoder's loss (Larsen et al.'s ``gamma``).
      beta: weight of the KL in the encoder's loss.

    Returns:
      ``{player: (per_example (B,), terms)}`` for the players of :data:`PLAYERS`:
      ``"encoder"``: ``beta kl + feature_matching`` with terms ``"kl"``,
      ``"feature_matching"`` (``L_llike`` without its constant) and ``"elbo_features"``
      ``= -(kl + feature_matching)``; ``"decoder"``: ``gamma feature_matching +
      softplus(-l~) + softplus(-l_p)`` with terms ``"feature_matching"``, ``"d_recon"`` and
      ``"d_prior"``; ``"discriminator"``: ``softplus(-l_real) + softplus(l~) +
      softplus(l_p)`` with terms ``"d_real"``, ``"d_recon"``, ``"d_prior"`` (the
      probabilities ``Dis(.)``). Every entry is ``(B,)``.
    """
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (B, *event), got {x.shape}.")
    batch = x.shape[0]
    posterior = encoder_fn(x)
    if not isinstance(posterior, DiagonalGaussian):
        raise ValueError(
            f"encoder_fn must return a DiagonalGaussian, got {type(posterior).__name__}."
        )
    if jnp.ndim(posterior.mean) < 1 or jnp.shape(posterior.mean)[0] != batch:
        raise ValueError(
            f"encoder_fn must return a posterior with batch {batch}, got mean shape "
            f"{jnp.shape(posterior.mean)}."
        )
    key_q, key_p = jax.random.split(key)
    z = posterior.sample(key_q)
    z_prior = jax.random.normal(key_p, z.shape, z.dtype)
    fakes = decoder_fn(jnp.concatenate([z, z_prior]))
    if jnp.shape(fakes) != (2 * batch, *x.shape[1:]):
        raise ValueError(
            f"decoder_fn must return images of x's shape {x.shape} per example (a batch of "
            f"{2 * batch} for the reconstructions and prior samples), got {jnp.shape(fakes)}."
        )
    logits, features = _discriminate(discriminator_fn, jnp.concatenate([x, fakes.astype(x.dtype)]))
    real_logits, recon_logits, prior_logits = jnp.split(logits, 3)
    real_features, recon_features = features[:batch], features[batch : 2 * batch]

    kl = posterior.kl()
    llike = feature_matching_loss(real_features, recon_features)
    d_real, d_recon, d_prior = jnp.split(jax.nn.sigmoid(logits), 3)
    # Non-saturating generator: -log Dis(x~) - log Dis(x_p); discriminator: -L_GAN (eq. 10).
    adversarial = jax.nn.softplus(-recon_logits) + jax.nn.softplus(-prior_logits)
    d_loss = (
        jax.nn.softplus(-real_logits)
        + jax.nn.softplus(recon_logits)
        + jax.nn.softplus(prior_logits)
    )
    return {
        "encoder": (
            beta * kl + llike,
            {"kl": kl, "feature_matching": llike, "elbo_features": -(kl + llike)},
        ),
        "decoder": (
            gamma * llike + adversarial,
            {"feature_matching": llike, "d_recon": d_recon, "d_prior": d_prior},
        ),
        "discriminator": (d_loss, {"d_real": d_real, "d_recon": d_recon, "d_prior": d_prior}),
    }


def route_player_gradients(
    losses_fn: Callable[..., PlayerLosses], params: Mapping[str, Any], *inputs: Any
) -> PlayerLosses:
    """``losses_fn(params, *inputs)``, evaluated once, whose gradient goes to each player's
    own parameters only.

    ``losses_fn`` returns ``{player: (per_example, terms)}`` and every player names a
    top-level entry of ``params``. The value is that of ``losses_fn``; differentiated, the
    cotangent of player ``p``'s ``per_example`` reaches ``params[p]`` only (through every
    network the loss passes, the others' parameters held fixed), so for any weights
    ``c_p``, ``grad_{params[p]} sum_q c_q . L_q = grad_{params[p]} c_p . L_p``: the
    gradient of the summed losses is each player's own gradient, as if every other
    player's parameters were behind ``stop_gradient`` in its loss. The forward pass runs
    once; backwards, one vector-Jacobian product per player pulls its loss back. Parameter
    entries of no player, the ``terms`` and ``inputs`` get no gradient.
    """

    def evaluate(p, args):
        out = losses_fn(p, *args)
        unknown = set(out) - set(p)
        if unknown:
            raise ValueError(
                f"players {sorted(unknown)} name no top-level parameter entry of {sorted(p)}"
            )
        return out

    @jax.custom_vjp
    def routed(p, args):
        return evaluate(p, args)

    def forward(p, args):
        return jax.vjp(lambda q: evaluate(q, args), p)

    def backward(pullback, cotangent):
        def only(player):
            return {
                q: (
                    ct if q == player else jnp.zeros_like(ct),
                    jax.tree.map(jnp.zeros_like, terms_ct),
                )
                for q, (ct, terms_ct) in cotangent.items()
            }

        own = {player: pullback(only(player))[0] for player in cotangent}
        some = next(iter(own.values()))
        grads = {
            name: own[name][name] if name in own else jax.tree.map(jnp.zeros_like, some[name])
            for name in some
        }
        return grads, None

    routed.defvjp(forward, backward)
    return routed(params, inputs)


def player_terms(losses: PlayerLosses) -> dict[str, jax.Array]:
    """Flat metric names for a game's losses: ``"<player>_loss"`` and ``"<player>_<term>"``
    for each player's per-example loss and terms, so no player's value hides another's."""
    out = {}
    for player, (per_example, terms) in losses.items():
        out[f"{player}_loss"] = per_example
        out.update({f"{player}_{name}": value for name, value in terms.items()})
    return out
