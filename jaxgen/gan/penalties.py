"""Constraints on a GAN's discriminator: weight clipping, the gradient penalty and R1.

* Weight clipping (Arjovsky et al. 2017, Algorithm 1): after each critic update every
  weight is clipped to ``[-c, c]`` (``c = 0.01``), a crude way to keep the critic
  K-Lipschitz.
* Gradient penalty (Gulrajani et al. 2017, eq. 3, WGAN-GP): with ``x_hat = eps x + (1 - eps)
  x_tilde``, ``eps ~ U[0, 1]`` per example, between a real ``x`` and a generated
  ``x_tilde``, the penalty is ``(||grad_x D(x_hat)||_2 - 1)^2``; the caller adds
  ``lambda`` times its batch mean (``lambda = 10``) to the critic's loss.
* R1 (Mescheder et al. 2018, eq. 9): ``||grad_x D(x)||_2^2`` at real data only; the caller
  adds ``gamma / 2`` times it to the discriminator's loss.

The two penalties are losses: they return ``(per_example, terms)``, the per-example
penalty (B,) and a dict of named per-example terms; the caller weights and adds them.
The gradients are per example: ``critic_fn`` maps (B, *event) to (B,) with no interaction
between examples (no batch statistics), so ``grad`` of ``sum(critic_fn(x))`` with respect
to ``x`` holds each example's own input gradient in its row.

References:
  Arjovsky, Chintala, Bottou. Wasserstein GAN. ICML 2017.
  Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville. Improved Training of Wasserstein GANs.
  NeurIPS 2017.
  Mescheder, Geiger, Nowozin. Which Training Methods for GANs do actually Converge?
  ICML 2018.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.core.validation import check_finite_number

__all__ = ["clip_weights", "gradient_penalty", "input_gradient_norms", "r1_penalty"]

CriticFn = Callable[[jax.Array], jax.Array]


def input_gradient_norms(critic_fn: CriticFn, x: jax.Array) -> jax.Array:
    """``||grad_x critic_fn(x)_i||_2`` for each example ``i``, (B,)."""
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must be batched, (B, *event), got shape {x.shape}.")

    def total(inputs):
        scores = critic_fn(inputs)
        if scores.shape != (x.shape[0],):
            raise ValueError(
                f"critic_fn must return one score per example, shape ({x.shape[0]},); "
                f"got {scores.shape}."
            )
        return jnp.sum(scores)

    grads = jax.grad(total)(x).reshape(x.shape[0], -1)
    return jnp.sqrt(jnp.sum(grads * grads, axis=1))


def gradient_penalty(
    critic_fn: CriticFn,
    real: jax.Array,
    fake: jax.Array,
    key: jax.Array,
    *,
    target: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """WGAN-GP's ``(||grad D(x_hat)||_2 - target)^2`` per example, (B,), at
    ``x_hat = eps real + (1 - eps) fake`` with ``eps = jax.random.uniform(key, (B,))``.

    Returns:
      ``(per_example, terms)``: terms ``gradient_penalty`` (the per-example penalty) and
      ``interpolate_grad_norm`` (``||grad D(x_hat)||_2``).
    """
    check_finite_number(target, "target", low=0.0)
    real, fake = jnp.asarray(real), jnp.asarray(fake)
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {real.shape}, {fake.shape}.")
    eps = jax.random.uniform(key, (real.shape[0],), real.dtype)
    eps = eps.reshape((-1,) + (1,) * (real.ndim - 1))
    x_hat = eps * real + (1.0 - eps) * fake
    norms = input_gradient_norms(critic_fn, x_hat)
    penalty = (norms - target) ** 2
    return penalty, {"gradient_penalty": penalty, "interpolate_grad_norm": norms}


def r1_penalty(critic_fn: CriticFn, real: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """R1: ``||grad_x D(x)||_2^2`` at the real examples, (B,).

    Returns:
      ``(per_example, terms)`` with the term ``r1_penalty`` (the per-example penalty).
    """
    penalty = input_gradient_norms(critic_fn, real) ** 2
    return penalty, {"r1_penalty": penalty}


def clip_weights(params: Any, *, clip: float = 0.01) -> Any:
    """Every leaf of ``params`` clipped to ``[-clip, clip]`` (WGAN's weight clipping)."""
    if not clip > 0:
        raise ValueError(f"clip must be positive, got {clip}.")
    return jax.tree.map(lambda w: jnp.clip(w, -clip, clip), params)
