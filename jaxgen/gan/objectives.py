"""The two players' objectives of a (class-conditional) GAN, as pure functions of callables.

Each objective takes the networks as callables, ``generator_fn(z, labels) -> x`` and
``discriminator_fn(x, labels) -> logits (B,)`` (``labels`` is None for an unconditional
GAN; a class-conditional pair sees the same labels, Mirza and Osindero 2014), and returns
``(per_example, terms, state_updates)``, the form of a player's loss in the two-player
step (``jaxgen.engine.adversarial_step``): the step differentiates the batch mean of
``per_example`` with respect to its own player only.

Discriminator (one minibatch ``x`` of ``B`` real examples, latents ``z_b`` from
``fold_in(k_z, b)``, ``(k_z, k_pen) = split(key)``):

    L_D = loss_kind(D(x, y), D(G(z, y), y)) + penalty,

with ``loss_kind`` one of ``jaxgen.gan.losses.discriminator_loss``'s games and the penalty

* ``"gradient_penalty"``: ``lambda (||grad D(x_hat)|| - 1)^2`` (Gulrajani et al. 2017,
  eq. 3; ``x_hat`` between ``x`` and ``G(z)`` with ``eps`` from ``k_pen``);
* ``"r1"``: ``(gamma / 2) ||grad_x D(x)||^2`` at real data (Mescheder et al. 2018, eq. 9;
  ``gamma = penalty_weight``);
* ``"none"``.

A discriminator with non-gradient state (spectral normalization's power-iteration
vectors, Miyato et al. 2018) is also given as ``stateful_discriminator_fn(x, labels) ->
(logits, new_state)``: the real and the generated examples then go through it in one pass
(one power iteration per update, Algorithm 1, and the same normalized weights for both
halves), and ``new_state`` is returned as ``state_updates["discriminator"]``. The
penalties and the logged input-gradient norm use the stateless ``discriminator_fn``.

Generator: ``L_G = generator_loss_kind(D(G(z, y), y))`` with ``z_b`` from ``fold_in(key,
b)``; it returns no state updates (it may call the discriminator without changing it).

Weight clipping (WGAN, Arjovsky et al. 2017) is a constraint on the discriminator's
parameters after each of its updates, not a term of the loss:
:func:`discriminator_constraint`.

References:
  Goodfellow et al. Generative Adversarial Nets. NeurIPS 2014.
  Mirza, Osindero. Conditional Generative Adversarial Nets. arXiv:1411.1784, 2014.
  Arjovsky, Chintala, Bottou. Wasserstein GAN. ICML 2017.
  Gulrajani et al. Improved Training of Wasserstein GANs. NeurIPS 2017.
  Mescheder, Geiger, Nowozin. Which Training Methods for GANs do actually Converge? ICML 2018.
  Miyato, Kataoka, Koyama, Yoshida. Spectral Normalization for GANs. ICLR 2018.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.core.sampling import as_example_keys
from jaxgen.core.validation import check_choice, check_sample_shape
from jaxgen.gan import losses, penalties
from jaxgen.gan.sampling import latents

__all__ = [
    "DISCRIMINATOR",
    "GAMES",
    "GENERATOR",
    "PENALTIES",
    "discriminator_constraint",
    "discriminator_objective",
    "generator_objective",
]

# The players' names: the top-level parameter entries of the two-player step.
GENERATOR = "generator"
DISCRIMINATOR = "discriminator"
# game -> (discriminator loss kind, generator loss kind)
GAMES: dict[str, tuple[str, str]] = {
    "saturating": ("minimax", "saturating"),
    "non_saturating": ("minimax", "non_saturating"),
    "wasserstein": ("wasserstein", "wasserstein"),
    "hinge": ("hinge", "hinge"),
}
PENALTIES: tuple[str, ...] = ("none", "gradient_penalty", "r1")

Labels = jax.Array | None
GeneratorFn = Callable[[jax.Array, Labels], jax.Array]
DiscriminatorFn = Callable[[jax.Array, Labels], jax.Array]
StatefulDiscriminatorFn = Callable[[jax.Array, Labels], tuple[jax.Array, Any]]
Objective = tuple[jax.Array, dict[str, jax.Array], dict[str, Any]]


def _concat_labels(labels: Labels) -> Labels:
    return None if labels is None else jnp.concatenate([labels, labels])


def discriminator_objective(
    generator_fn: GeneratorFn,
    discriminator_fn: DiscriminatorFn,
    real: jax.Array,
    key: jax.Array,
    *,
    latent_dim: int,
    labels: Labels = None,
    kind: str = "minimax",
    latent_distribution: str = "normal",
    penalty: str = "none",
    penalty_weight: float = 10.0,
    stateful_discriminator_fn: StatefulDiscriminatorFn | None = None,
) -> Objective:
    """The discriminator's per-example loss on the real minibatch ``real`` (B, *event).

    Returns:
      ``(per_example (B,), terms, state_updates)``: the terms of
      :func:`jaxgen.gan.losses.discriminator_loss` (``d_real``, ``d_fake``, the two halves),
      ``d_input_grad_norm`` (``||grad_x D(x)||`` at the real examples) and the penalty's
      terms; ``state_updates`` is ``{"discriminator": new_state}`` when
      ``stateful_discriminator_fn`` is given, else ``{}``.
    """
    check_choice("penalty", penalty, PENALTIES)
    if penalty_weight < 0:
        raise ValueError(f"penalty_weight must be >= 0, got {penalty_weight}")
    real = jnp.asarray(real)
    batch = real.shape[0]
    z_key, penalty_key = jax.random.split(key)
    z = latents(as_example_keys(z_key, batch), latent_dim, distribution=latent_distribution)
    fake = generator_fn(z, labels)
    if fake.shape != real.shape:
        raise ValueError(
            f"generator_fn must return examples of the data's shape {real.shape}, got {fake.shape}"
        )
    state_updates: dict[str, Any] = {}
    if stateful_discriminator_fn is not None:
        both, new_state = stateful_discriminator_fn(
            jnp.concatenate([real, fake]), _concat_labels(labels)
        )
        real_logits, fake_logits = both[:batch], both[batch:]
        state_updates[DISCRIMINATOR] = new_state
    else:
        real_logits, fake_logits = discriminator_fn(real, labels), discriminator_fn(fake, labels)
    per_example, terms = losses.discriminator_loss(real_logits, fake_logits, kind=kind)

    def frozen(x: jax.Array) -> jax.Array:
        return discriminator_fn(x, labels)

    terms["d_input_grad_norm"] = penalties.input_gradient_norms(frozen, real)
    if penalty == "gradient_penalty":
        value, penalty_terms = penalties.gradient_penalty(frozen, real, fake, penalty_key)
        per_example = per_example + penalty_weight * value
        terms.update(penalty_terms)
    elif penalty == "r1":
        value, penalty_terms = penalties.r1_penalty(frozen, real)
        per_example = per_example + 0.5 * penalty_weight * value
        terms.update(penalty_terms)
    return per_example, terms, state_updates


def generator_objective(
    generator_fn: GeneratorFn,
    discriminator_fn: DiscriminatorFn,
    key: jax.Array,
    latent_shape: Sequence[int],
    *,
    labels: Labels = None,
    kind: str = "non_saturating",
    latent_distribution: str = "normal",
) -> Objective:
    """The generator's per-example loss on ``latent_shape = (B, latent_dim)`` fresh latents
    (example ``b``'s from ``fold_in(key, b)``) against ``discriminator_fn``.

    Returns:
      ``(per_example (B,), {"g_d_fake": D's output on G(z)}, {})``.
    """
    batch, latent_dim = _latent_shape(latent_shape)
    z = latents(as_example_keys(key, batch), latent_dim, distribution=latent_distribution)
    logits = discriminator_fn(generator_fn(z, labels), labels)
    per_example, terms = losses.generator_loss(logits, kind=kind)
    return per_example, terms, {}


def _latent_shape(shape: Sequence[int]) -> tuple[int, int]:
    shape = check_sample_shape(shape, "latent_shape")
    if len(shape) != 2:
        raise ValueError(f"latent_shape must be (B, latent_dim), got {shape}")
    return shape[0], shape[1]


def discriminator_constraint(weight_clip: float | None) -> Callable[[Any], Any] | None:
    """WGAN's weight clipping to ``[-c, c]`` after every discriminator update
    (``penalties.clip_weights``), or None without clipping."""
    if weight_clip is None:
        return None
    if not weight_clip > 0:
        raise ValueError(f"weight_clip must be positive or None, got {weight_clip}")
    return functools.partial(penalties.clip_weights, clip=weight_clip)
