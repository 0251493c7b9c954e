"""GAN losses from discriminator outputs, per example, for both players.

With ``D(x) = sigmoid(l(x))`` for a discriminator logit ``l``, Goodfellow et al. (2014,
eq. 1) play the minimax game ``min_G max_D V(D, G)``::

    V(D, G) = E_{x ~ p_data}[log D(x)] + E_{z ~ p_z}[log(1 - D(G(z)))].

Using ``log sigmoid(l) = -softplus(-l)`` and ``log(1 - sigmoid(l)) = -softplus(l)`` (exact,
and stable for any logit):

* discriminator (minimizes ``-V``): ``-log D(x) - log(1 - D(G(z))) = softplus(-l_real) +
  softplus(l_fake)``;
* generator, ``"saturating"`` (minimizes ``V``'s second term, eq. 1 as written):
  ``log(1 - D(G(z))) = -softplus(l_fake)``; its gradient in the logit is ``-D(G(z))``,
  which vanishes when the discriminator confidently rejects the fakes (``D -> 0``);
* generator, ``"non_saturating"`` (Goodfellow et al. 2014, Section 3: maximize
  ``log D(G(z))`` instead): ``-log D(G(z)) = softplus(-l_fake)``; gradient
  ``-(1 - D(G(z)))``, the same direction and close to ``-1`` when ``D -> 0``.

For a fixed ``G`` the optimal discriminator is ``D* = p_data / (p_data + p_g)`` (Prop. 1), and
``V(D*, G) = -log 4 + 2 JSD(p_data || p_g)`` (Theorem 1), ``-log 4`` exactly when
``p_g = p_data`` (``D* = 1/2``).

The other games read the discriminator's output ``l`` as a real-valued score:

* ``"wasserstein"`` (Arjovsky et al. 2017, eq. 3; Gulrajani et al. 2017, eq. 3 without its
  penalty): the critic minimizes ``l_fake - l_real``, an estimate of ``-W_1(p_data, p_g)``
  when the critic is 1-Lipschitz (enforce it with ``penalties.clip_weights`` or
  ``penalties.gradient_penalty``); the generator minimizes ``-l_fake``.
* ``"hinge"`` (Lim and Ye 2017; Miyato et al. 2018, eq. 16 and 17): the discriminator
  minimizes ``relu(1 - l_real) + relu(1 + l_fake)``, the generator ``-l_fake``.

All functions take outputs of shape (B,) and return ``(per_example, terms)``: the
per-example loss (B,) and a dict of named per-example terms (B,) (the discriminator's two
halves and its outputs, see each function), for the training step to average and log.

References:
  Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley, Ozair, Courville, Bengio.
  Generative Adversarial Nets. NeurIPS 2014.
  Arjovsky, Chintala, Bottou. Wasserstein GAN. ICML 2017.
  Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville. Improved Training of Wasserstein GANs.
  NeurIPS 2017.
  Lim and Ye. Geometric GAN. 2017. Miyato, Kataoka, Koyama, Yoshida. Spectral
  Normalization for Generative Adversarial Networks. ICLR 2018.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "DISCRIMINATOR_LOSSES",
    "GENERATOR_LOSSES",
    "discriminator_loss",
    "discriminator_output",
    "generator_loss",
]

DISCRIMINATOR_LOSSES: tuple[str, ...] = ("minimax", "wasserstein", "hinge")
GENERATOR_LOSSES: tuple[str, ...] = ("saturating", "non_saturating", "wasserstein", "hinge")


def discriminator_output(logits: jax.Array, *, kind: str) -> jax.Array:
    """What the discriminator says about an example: ``D = sigmoid(l)``, a probability, for
    the minimax games (``kind`` ``"minimax"``, ``"saturating"`` or ``"non_saturating"``);
    the score ``l`` itself for ``"wasserstein"`` and ``"hinge"``."""
    if kind not in DISCRIMINATOR_LOSSES + GENERATOR_LOSSES:
        raise ValueError(
            f"unknown loss kind {kind!r}; expected one of "
            f"{tuple(dict.fromkeys(DISCRIMINATOR_LOSSES + GENERATOR_LOSSES))}."
        )
    if kind in ("minimax", "saturating", "non_saturating"):
        return jax.nn.sigmoid(logits)
    return logits


def _check_logits(logits: jax.Array, name: str) -> jax.Array:
    logits = jnp.asarray(logits)
    if logits.ndim != 1:
        raise ValueError(f"{name} must be per-example logits of shape (B,), got {logits.shape}.")
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise ValueError(f"{name} must be a float array, got dtype {logits.dtype}.")
    return logits


def discriminator_loss(
    real_logits: jax.Array, fake_logits: jax.Array, *, kind: str = "minimax"
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-example discriminator loss (B,) and its terms.

    The loss is the sum of a real and a fake half: ``"minimax"`` ``-log D(x) - log(1 -
    D(G(z))) = softplus(-real) + softplus(fake)``, ``"wasserstein"`` ``-real + fake``, or
    ``"hinge"`` ``relu(1 - real) + relu(1 + fake)``.

    Returns:
      ``(per_example, terms)`` with terms ``d_loss_real`` and ``d_loss_fake`` (the two
      halves, summing to ``per_example``) and ``d_real`` / ``d_fake``, the discriminator's
      outputs (:func:`discriminator_output`: probabilities for ``"minimax"``, scores
      otherwise).
    """
    if kind not in DISCRIMINATOR_LOSSES:
        raise ValueError(
            f"unknown discriminator loss kind {kind!r}; expected one of {DISCRIMINATOR_LOSSES}."
        )
    real_logits = _check_logits(real_logits, "real_logits")
    fake_logits = _check_logits(fake_logits, "fake_logits")
    if real_logits.shape != fake_logits.shape:
        raise ValueError(
            f"real_logits and fake_logits must have the same shape (B,), got "
            f"{real_logits.shape} and {fake_logits.shape}."
        )
    if kind == "wasserstein":
        real_part, fake_part = -real_logits, fake_logits
    elif kind == "hinge":
        real_part, fake_part = jax.nn.relu(1.0 - real_logits), jax.nn.relu(1.0 + fake_logits)
    else:
        real_part, fake_part = jax.nn.softplus(-real_logits), jax.nn.softplus(fake_logits)
    terms = {
        "d_loss_real": real_part,
        "d_loss_fake": fake_part,
        "d_real": discriminator_output(real_logits, kind=kind),
        "d_fake": discriminator_output(fake_logits, kind=kind),
    }
    return real_part + fake_part, terms


def generator_loss(
    fake_logits: jax.Array, *, kind: str = "non_saturating"
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-example generator loss (B,) and its terms: ``"saturating"`` ``log(1 - D(G(z))) =
    -softplus(fake)``, ``"non_saturating"`` ``-log D(G(z)) = softplus(-fake)``, or
    ``"wasserstein"`` / ``"hinge"`` ``-fake``.

    Returns:
      ``(per_example, terms)`` with the term ``g_d_fake``: the discriminator's output on the
      generated examples (a probability for the two minimax kinds, the score otherwise).
    """
    if kind not in GENERATOR_LOSSES:
        raise ValueError(
            f"unknown generator loss kind {kind!r}; expected one of {GENERATOR_LOSSES}."
        )
    fake_logits = _check_logits(fake_logits, "fake_logits")
    if kind == "saturating":
        per_example = -jax.nn.softplus(fake_logits)
    elif kind in ("wasserstein", "hinge"):
        per_example = -fake_logits
    else:
        per_example = jax.nn.softplus(-fake_logits)
    return per_example, {"g_d_fake": discriminator_output(fake_logits, kind=kind)}
