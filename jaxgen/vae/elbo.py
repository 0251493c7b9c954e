"""The evidence lower bound (ELBO) with beta weighting, KL warm-up and free bits.

For an encoder ``q(z | x) = N(mu(x), diag(sigma(x)^2))``, a decoder likelihood ``p(x | z)``
and the prior ``p(z) = N(0, I)`` (Kingma and Welling 2014, eqs. 3 and 10)::

    log p(x) >= ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z))
                        = log p(x) - KL(q(z | x) || p(z | x)).

:func:`elbo_loss` draws one reparameterized ``z = mu + sigma * eps`` per example
(``DiagonalGaussian.sample(key)``) and returns per example::

    loss = reconstruction + beta * kl_penalty,   reconstruction = -log p(x | z),

with the KL estimated either in closed form (``"analytic"``: their estimator ``L^B``, eq. 7,
with the Gaussian KL of appendix B) or by the single-sample Monte Carlo value
``log q(z | x) - log p(z)`` at the same ``z`` (``"monte_carlo"``: their estimator ``L^A``,
eq. 6; unbiased, and exactly ``log p(x)`` for every ``z`` when ``q`` is the true posterior).

* beta-VAE (Higgins et al. 2017, eq. 4): ``beta`` multiplies the KL only; ``beta`` may be a
  traced scalar, e.g. the KL warm-up weight.
* KL warm-up / annealing (Bowman et al. 2016, "KL cost annealing"; Sonderby et al. 2016,
  "warm-up"): :func:`kl_warmup` ramps ``beta`` linearly from ``start`` at step 0 to 1 at
  ``warmup_steps``.
* Free bits (Kingma et al. 2016, IAF paper, appendix section "Free bits"): with ``lambda`` =
  ``free_bits`` nats per latent dimension ``j`` (latent event axes flattened) and the
  analytic per-dimension KL ``KL_j(x)``, the penalty is
  ``sum_j max(lambda, KL_j)``, so dimensions whose KL is below ``lambda`` receive no
  gradient pressure to shrink further. Two modes:

  - ``"batch"`` (the paper's form: the constraint is on the minibatch mean
    ``KLbar_j = mean_x KL_j(x)``): example ``x`` contributes ``KL_j(x)`` for a dimension
    with ``KLbar_j >= lambda`` and the constant ``lambda`` (no gradient) otherwise, so that
    ``mean_x kl_penalty(x) = sum_j max(lambda, KLbar_j)`` exactly. The batch mean is over
    the whole array passed in (under ``jit`` with sharded inputs that is the global
    batch; inside ``shard_map`` it would be the per-device shard).
  - ``"example"``: ``kl_penalty(x) = sum_j max(lambda, KL_j(x))``.

  Free bits need the analytic per-dimension KL (a ``ValueError`` otherwise).

The returned ``terms`` (each (B,)) are ``"reconstruction"`` (``-log p(x | z)``, nats),
``"kl"`` (the KL estimate), ``"kl_penalty"`` (what enters the objective after free bits) and
``"elbo"`` ``= -(reconstruction + kl)``, the estimate of the true bound whatever ``beta``
and ``free_bits`` are.

References:
  Kingma and Welling. Auto-Encoding Variational Bayes. ICLR 2014.
  Higgins et al. beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
  Framework. ICLR 2017.
  Bowman et al. Generating Sentences from a Continuous Space. CoNLL 2016.
  Sonderby et al. Ladder Variational Autoencoders. NeurIPS 2016.
  Kingma et al. Improved Variational Inference with Inverse Autoregressive Flow.
  NeurIPS 2016.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgen.core.validation import check_choice, check_finite_number, check_positive_int
from jaxgen.vae.gaussian import DiagonalGaussian, standard_normal_log_prob

__all__ = ["FREE_BITS_MODES", "KL_ESTIMATORS", "elbo_loss", "kl_warmup"]

KL_ESTIMATORS: tuple[str, ...] = ("analytic", "monte_carlo")
FREE_BITS_MODES: tuple[str, ...] = ("example", "batch")

EncoderFn = Callable[[jax.Array], DiagonalGaussian]
DecoderFn = Callable[[jax.Array], jax.Array]
LogLikelihoodFn = Callable[[jax.Array, jax.Array], jax.Array]


def check_posterior(posterior: DiagonalGaussian, x: jax.Array) -> None:
    """The encoder's output must be per example: ``mean``/``log_std`` of shape (B, ...)."""
    shape = jnp.shape(posterior.mean)
    if len(shape) < 2 or shape[0] != x.shape[0] or jnp.shape(posterior.log_std) != shape:
        raise ValueError(
            f"encoder_fn must return a DiagonalGaussian with mean and log_std of shape "
            f"(B={x.shape[0]}, *latent), got {shape} and {jnp.shape(posterior.log_std)}."
        )


def check_per_example(values: jax.Array, batch: int, what: str) -> jax.Array:
    values = jnp.asarray(values)
    if values.shape != (batch,):
        raise ValueError(f"{what} must return shape ({batch},), got {values.shape}.")
    return values


def _check_x(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (B, *event), got {x.shape}.")
    return x


def _free_bits_penalty(kl_per_dim: jax.Array, free_bits: float, mode: str) -> jax.Array:
    """Per-example penalty from the per-dimension KL ``(B, J)`` (see the module doc)."""
    floor = jnp.asarray(free_bits, kl_per_dim.dtype)
    if mode == "example":
        return jnp.sum(jnp.maximum(kl_per_dim, floor), axis=1)
    active = jnp.mean(kl_per_dim, axis=0) >= floor  # (J,): batch-mean KL above the floor
    return jnp.sum(jnp.where(active[None, :], kl_per_dim, floor), axis=1)


def elbo_loss(
    encoder_fn: EncoderFn,
    decoder_fn: DecoderFn,
    log_likelihood_fn: LogLikelihoodFn,
    x: jax.Array,
    key: jax.Array,
    *,
    beta: float | jax.Array = 1.0,
    kl_estimator: str = "analytic",
    free_bits: float = 0.0,
    free_bits_mode: str = "batch",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Negative (beta-weighted, free-bits) ELBO per example with one reparameterized ``z``.

    Args:
      encoder_fn: ``x -> DiagonalGaussian`` with ``mean``/``log_std`` of shape (B, *latent).
      decoder_fn: ``z -> out``, the raw decoder output.
      log_likelihood_fn: ``(out, x) -> log p(x | z)``, (B,), e.g.
        ``functools.partial(log_likelihood, "bernoulli")``.
      x: data (B, *event).
      key: the key of the one ``z`` drawn per example (``posterior.sample(key)``).
      beta: weight of the KL penalty, a scalar ``>= 0`` (checked when concrete; may be
        traced, and is then not checked).
      kl_estimator: one of :data:`KL_ESTIMATORS`.
      free_bits: ``lambda``, nats per latent dimension (a Python float >= 0; 0 disables).
      free_bits_mode: one of :data:`FREE_BITS_MODES`.

    Returns:
      ``(loss, terms)``: ``loss = reconstruction + beta * kl_penalty``, (B,); ``terms`` with
      ``"reconstruction"``, ``"kl"``, ``"kl_penalty"`` and ``"elbo"``, each (B,).
    """
    check_choice("kl_estimator", kl_estimator, KL_ESTIMATORS)
    check_choice("free_bits_mode", free_bits_mode, FREE_BITS_MODES)
    free_bits = float(free_bits)
    if not free_bits >= 0.0:
        raise ValueError(f"free_bits must be >= 0, got {free_bits}.")
    if free_bits > 0.0 and kl_estimator != "analytic":
        raise ValueError(
            f"free bits need the analytic per-dimension KL; got kl_estimator={kl_estimator!r}."
        )
    beta = jnp.asarray(beta)
    if beta.ndim != 0:
        raise ValueError(f"beta must be a scalar, got shape {beta.shape}.")
    check_finite_number(beta, "beta", low=0.0)
    x = _check_x(x)
    batch = x.shape[0]

    posterior = encoder_fn(x)
    check_posterior(posterior, x)
    z = posterior.sample(key)
    log_px = check_per_example(log_likelihood_fn(decoder_fn(z), x), batch, "log_likelihood_fn")
    reconstruction = -log_px
    if kl_estimator == "analytic":
        kl_per_dim = posterior.kl_per_dim().reshape(batch, -1)  # (B, J)
        kl = jnp.sum(kl_per_dim, axis=1)
        if free_bits > 0.0:
            kl_penalty = _free_bits_penalty(kl_per_dim, free_bits, free_bits_mode)
        else:
            kl_penalty = kl
    else:
        kl = posterior.log_prob(z) - standard_normal_log_prob(z)
        kl_penalty = kl
    loss = reconstruction + beta.astype(kl_penalty.dtype) * kl_penalty
    terms = {
        "reconstruction": reconstruction,
        "kl": kl,
        "kl_penalty": kl_penalty,
        "elbo": -(reconstruction + kl),
    }
    return loss, terms


def kl_warmup(step: jax.Array | int, *, warmup_steps: int, start: float = 0.0) -> jax.Array:
    """KL weight ``beta(step) = start + (1 - start) min(step / warmup_steps, 1)``.

    A linear ramp from ``start`` at step 0 to 1 at ``warmup_steps`` and 1 thereafter
    (negative steps give ``start``); ``warmup_steps = 0`` means no warm-up (always 1).
    ``step`` may be traced; ``warmup_steps`` and ``start`` are Python numbers.
    """
    warmup_steps = check_positive_int(warmup_steps, "warmup_steps", minimum=0)
    if not 0.0 <= float(start) <= 1.0:
        raise ValueError(f"start must lie in [0, 1], got {start}.")
    step = jnp.asarray(step)
    if step.ndim != 0:
        raise ValueError(f"step must be a scalar, got shape {step.shape}.")
    dtype = jnp.result_type(float)
    if warmup_steps == 0:
        return jnp.ones((), dtype)
    frac = jnp.clip(step.astype(dtype) / warmup_steps, 0.0, 1.0)
    return start + (1.0 - start) * frac
