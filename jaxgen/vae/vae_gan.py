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

Gradients: the features ``Dis_l`` inside ``L_llike`` must not train the discriminator
(Larsen et al. limit each error signal to the networks it is meant for; in Algorithm 1
only ``L_GAN`` updates ``Dis``, and ``L_GAN`` does not update the encoder). Nothing here
stops gradients: the caller differentiates each player's loss only w.r.t. that player's
parameters, which enforces exactly this.

Random keys: ``key_q, key_p = jax.random.split(key)``; ``z = q.sample(key_q)`` and
``z_p = N(0, I)`` drawn from ``key_p`` with ``z``'s shape.

References:
  Larsen, Sonderby, Larochelle, Winther. Autoencoding beyond pixels using a learned
  similarity metric. ICML 2016.
  Goodfellow et al. Generative Adversarial Nets. NeurIPS 2014.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgen.gan.losses import discriminator_loss, generator_loss
from jaxgen.vae.gaussian import DiagonalGaussian

__all__ = ["feature_matching_loss", "vae_gan_losses"]


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
    discriminator_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]], x: jax.Array, what: str
) -> tuple[jax.Array, jax.Array]:
    out = discriminator_fn(x)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError(
            f"discriminator_fn must return (logits (B,), features (B, ...)), got "
            f"{type(out).__name__} for the {what} batch."
        )
    logits, features = out
    batch = x.shape[0]
    if jnp.shape(logits) != (batch,):
        raise ValueError(
            f"discriminator_fn logits must have shape ({batch},), got {jnp.shape(logits)} for "
            f"the {what} batch."
        )
    if jnp.ndim(features) < 1 or jnp.shape(features)[0] != batch:
        raise ValueError(
            f"discriminator_fn features must have shape ({batch}, ...), got "
            f"{jnp.shape(features)} for the {what} batch."
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
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Per-example VAE-GAN losses of the three players (see the module doc).

    Args:
      encoder_fn: ``x -> q(z | x)``, a ``DiagonalGaussian`` with batch ``B``.
      decoder_fn: ``z -> x``-space image with ``x``'s shape.
      discriminator_fn: ``x -> (logits (B,), features (B, ...))``; ``Dis = sigmoid(logits)``
        and ``features`` is ``Dis_l``.
      x: data ``(B, *event)``.
      key: a ``jax.random.key``: ``key_q, key_p = jax.random.split(key)``.
      gamma: weight of ``L_llike`` in the decoder's loss (Larsen et al.'s ``gamma``).
      beta: weight of the KL in the encoder's loss.

    Returns:
      ``(losses, terms)``: ``losses`` has ``"encoder"``, ``"decoder"``, ``"discriminator"``;
      ``terms`` has ``"kl"``, ``"feature_matching"`` (``L_llike`` without its constant),
      ``"d_real"``, ``"d_recon"``, ``"d_prior"`` (the probabilities ``Dis(.)``) and
      ``"elbo_features"`` ``= -(kl + feature_matching)``; every entry is ``(B,)``.
    """
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (B, *event), got {x.shape}.")
    posterior = encoder_fn(x)
    if not isinstance(posterior, DiagonalGaussian):
        raise ValueError(
            f"encoder_fn must return a DiagonalGaussian, got {type(posterior).__name__}."
        )
    if jnp.ndim(posterior.mean) < 1 or jnp.shape(posterior.mean)[0] != x.shape[0]:
        raise ValueError(
            f"encoder_fn must return a posterior with batch {x.shape[0]}, got mean shape "
            f"{jnp.shape(posterior.mean)}."
        )
    key_q, key_p = jax.random.split(key)
    z = posterior.sample(key_q)
    z_prior = jax.random.normal(key_p, z.shape, z.dtype)
    x_recon, x_prior = decoder_fn(z), decoder_fn(z_prior)
    for name, image in (("reconstruction", x_recon), ("prior sample", x_prior)):
        if jnp.shape(image) != x.shape:
            raise ValueError(
                f"decoder_fn must return images of x's shape {x.shape}, got "
                f"{jnp.shape(image)} for the {name}."
            )
    real_logits, real_features = _discriminate(discriminator_fn, x, "real")
    recon_logits, recon_features = _discriminate(discriminator_fn, x_recon, "reconstruction")
    prior_logits, _ = _discriminate(discriminator_fn, x_prior, "prior sample")

    kl = posterior.kl()
    llike = feature_matching_loss(real_features, recon_features)
    adversarial = generator_loss(recon_logits) + generator_loss(prior_logits)
    d_loss = discriminator_loss(real_logits, recon_logits) + jax.nn.softplus(prior_logits)
    losses = {
        "encoder": beta * kl + llike,
        "decoder": gamma * llike + adversarial,
        "discriminator": d_loss,
    }
    terms = {
        "kl": kl,
        "feature_matching": llike,
        "d_real": jax.nn.sigmoid(real_logits),
        "d_recon": jax.nn.sigmoid(recon_logits),
        "d_prior": jax.nn.sigmoid(prior_logits),
        "elbo_features": -(kl + llike),
    }
    return losses, terms
