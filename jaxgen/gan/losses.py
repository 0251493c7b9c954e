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

All functions take outputs of shape (B,) and return per-example losses (B,).

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

__all__ = ["DISCRIMINATOR_LOSSES", "GENERATOR_LOSSES", "discriminator_loss", "generator_loss"]

DISCRIMINATOR_LOSSES: tuple[str, ...] = ("minimax", "wasserstein", "hinge")
GENERATOR_LOSSES: tuple[str, ...] = ("saturating", "non_saturating", "wasserstein", "hinge")


def _check_logits(logits: jax.Array, name: str) -> jax.Array:
    logits = jnp.asarray(logits)
    if logits.ndim != 1:
        raise ValueError(f"{name} must be per-example logits of shape (B,), got {logits.shape}.")
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise ValueError(f"{name} must be a float array, got dtype {logits.dtype}.")
    return logits


def discriminator_loss(
    real_logits: jax.Array, fake_logits: jax.Array, *, kind: str = "minimax"
) -> jax.Array:
    """Per-example discriminator loss, (B,): ``"minimax"`` ``-log D(x) - log(1 - D(G(z))) =
    softplus(-real) + softplus(fake)``, ``"wasserstein"`` ``fake - real``, or ``"hinge"``
    ``relu(1 - real) + relu(1 + fake)``."""
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
        return fake_logits - real_logits
    if kind == "hinge":
        return jax.nn.relu(1.0 - real_logits) + jax.nn.relu(1.0 + fake_logits)
    return jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits)


def generator_loss(fake_logits: jax.Array, *, kind: str = "non_saturating") -> jax.Array:
    """Per-example generator loss, (B,): ``"saturating"`` ``log(1 - D(G(z))) =
    -softplus(fake)``, ``"non_saturating"`` ``-log D(G(z)) = softplus(-fake)``, or
    ``"wasserstein"`` / ``"hinge"`` ``-fake``."""
    if kind not in GENERATOR_LOSSES:
        raise ValueError(
            f"unknown generator loss kind {kind!r}; expected one of {GENERATOR_LOSSES}."
        )
    fake_logits = _check_logits(fake_logits, "fake_logits")
    if kind == "saturating":
        return -jax.nn.softplus(fake_logits)
    if kind in ("wasserstein", "hinge"):
        return -fake_logits
    return jax.nn.softplus(-fake_logits)
