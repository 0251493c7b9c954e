"""The importance-weighted bound (IWAE) and importance-sampled estimates of ``log p(x)``.

With ``K`` independent reparameterized draws ``z_k ~ q(z | x)`` and the log importance weights
``log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x)`` (prior ``p(z) = N(0, I)``), Burda,
Grosse and Salakhutdinov (2016, eq. 8) define::

    L_K(x) = E[ log 1/K sum_k w_k ] = E[ logsumexp_k(log w_k) - log K ].

``L_1`` is the ELBO, ``L_K <= L_{K+1} <= log p(x)`` (their Theorem 1) and ``L_K -> log p(x)``
as ``K -> inf`` when the weights are bounded; asymptotically
``log p(x) - L_K ~= Var_q[w / p(x)] / (2 K)`` (delta method).

* :func:`iwae_loss` returns ``-L_K`` per example (one sample of the estimator, gradients by
  reparameterization through the logsumexp) with the terms ``"iwae_bound"`` (the ``L_K``
  sample), ``"elbo"`` (``mean_k log w_k``, an unbiased ELBO estimate from the same draws)
  and ``"effective_sample_size"`` ``1 / sum_k wbar_k^2`` of the normalized weights
  ``wbar_k = w_k / sum_l w_l`` (in ``[1, K]``; ``K`` exactly when ``q`` is the posterior).
* :func:`importance_log_likelihood` estimates ``log p(x)`` by ``L_K`` for large ``K``
  (Burda et al. 2016 evaluate with ``K = 5000``) in chunks of ``chunk_size`` draws under
  ``jax.lax.scan`` with a running ``logaddexp``, so memory does not grow with ``K``; it
  returns ``(log_likelihood, terms)`` with the same draws' ``"elbo"``,
  ``"effective_sample_size"`` and ``"max_log_weight"`` as running statistics.
* bits/dim of a negative log-likelihood: :func:`jaxgen.core.bits_per_dim` (``nats / (D log 2)``)
  (:func:`jaxgen.core.units.bits_per_dim`).

Random draws (key semantics). The encoder is called once. For ``K`` draws from ``key`` the
noise is one array ``eps = jax.random.normal(key, (K, B, *latent))`` and
``z_k = mean + exp(log_std) * eps[k]``. JAX's counter-based generator gives
``normal(key, (1, *s))[0] == normal(key, s)``, the draw of ``DiagonalGaussian.sample(key)``,
so ``iwae_loss(..., key, num_samples=1)`` equals ``elbo_loss(..., key,
kl_estimator="monte_carlo")`` (loss, and ``"iwae_bound" == "elbo"``). In
:func:`importance_log_likelihood` chunk ``c = 0, 1, ...`` draws its ``chunk_size`` samples as
above from ``jax.random.fold_in(key, c)``: the result equals
``logsumexp_c(L_chunk(fold_in(key, c)) + log chunk_size) - log K`` for the per-chunk bounds of
:func:`iwae_loss`, and with ``chunk_size == num_samples`` it equals the ``"iwae_bound"`` of
``iwae_loss(..., jax.random.fold_in(key, 0), num_samples=num_samples)``. (Values for different
chunk sizes use different draws and agree only in distribution.)

References:
  Burda, Grosse, Salakhutdinov. Importance Weighted Autoencoders. ICLR 2016 (eq. 8 and
  Theorem 1).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxgen.core.validation import check_positive_int
from jaxgen.vae.elbo import (
    DecoderFn,
    EncoderFn,
    LogLikelihoodFn,
    check_per_example,
    check_posterior,
)
from jaxgen.vae.gaussian import DiagonalGaussian, standard_normal_log_prob

__all__ = ["importance_log_likelihood", "iwae_loss"]

# Running statistics of log importance weights over the chunks of a scan, each (B,):
# (logsumexp_k log w_k, logsumexp_k 2 log w_k, sum_k log w_k, max_k log w_k).
WeightStats = tuple[jax.Array, jax.Array, jax.Array, jax.Array]


def init_log_weight_stats(batch: int, dtype) -> WeightStats:
    """The statistics of no draws: ``(-inf, -inf, 0, -inf)``, each (B,)."""
    empty = jnp.full((batch,), -jnp.inf, dtype)
    return empty, empty, jnp.zeros((batch,), dtype), empty


def accumulate_log_weights(
    stats: WeightStats, log_w: jax.Array, valid: jax.Array | None = None
) -> WeightStats:
    """Add a chunk of log weights ``log_w`` (chunk, B) to the running ``stats``; rows with
    ``valid`` (chunk,) false (padding) are left out."""
    lse, lse2, total, top = stats
    if valid is None:
        masked, zeroed = log_w, log_w
    else:
        masked = jnp.where(valid[:, None], log_w, -jnp.inf)
        zeroed = jnp.where(valid[:, None], log_w, 0.0)
    return (
        jnp.logaddexp(lse, jax.nn.logsumexp(masked, axis=0)),
        jnp.logaddexp(lse2, jax.nn.logsumexp(2.0 * masked, axis=0)),
        total + jnp.sum(zeroed, axis=0),
        jnp.maximum(top, jnp.max(masked, axis=0)),
    )


def log_weight_summary(
    stats: WeightStats, num_samples: int
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(logsumexp_k log w_k - log K, terms)`` from the running ``stats`` of ``K`` draws, with
    the terms ``"elbo"`` (mean log weight), ``"effective_sample_size"`` (``(sum w)^2 / sum
    w^2 = exp(2 lse - lse2)``) and ``"max_log_weight"``, each (B,)."""
    lse, lse2, total, top = stats
    terms = {
        "elbo": total / num_samples,
        "effective_sample_size": jnp.exp(2.0 * lse - lse2),
        "max_log_weight": top,
    }
    return lse - math.log(num_samples), terms


def _check_x(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (B, *event), got {x.shape}.")
    return x


def _log_weights(
    posterior: DiagonalGaussian,
    decoder_fn: DecoderFn,
    log_likelihood_fn: LogLikelihoodFn,
    x: jax.Array,
    key: jax.Array,
    num_samples: int,
) -> jax.Array:
    """``log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x)``, shape (K, B)."""
    mean, log_std = posterior.mean, posterior.log_std
    eps = jax.random.normal(key, (num_samples, *jnp.shape(mean)), jnp.result_type(mean))
    z = mean[None] + jnp.exp(log_std)[None] * eps
    batch = x.shape[0]

    def one(z_k: jax.Array) -> jax.Array:
        log_px = log_likelihood_fn(decoder_fn(z_k), x)
        log_px = check_per_example(log_px, batch, "log_likelihood_fn")
        return log_px + standard_normal_log_prob(z_k) - posterior.log_prob(z_k)

    return jax.vmap(one)(z)


def iwae_loss(
    encoder_fn: EncoderFn,
    decoder_fn: DecoderFn,
    log_likelihood_fn: LogLikelihoodFn,
    x: jax.Array,
    key: jax.Array,
    *,
    num_samples: int,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``-L_K`` per example with ``K = num_samples`` reparameterized draws (module doc).

    Args:
      encoder_fn: ``x -> DiagonalGaussian`` with ``mean``/``log_std`` of shape (B, *latent).
      decoder_fn: ``z -> out``, the raw decoder output (called under ``vmap`` over ``K``).
      log_likelihood_fn: ``(out, x) -> log p(x | z)``, (B,).
      x: data (B, *event).
      key: key of the ``K`` draws (see the module doc for the key semantics).
      num_samples: ``K >= 1``.

    Returns:
      ``(loss, terms)``: ``loss = -L_K`` (B,); ``terms`` with ``"iwae_bound"``, ``"elbo"``
      and ``"effective_sample_size"``, each (B,).
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    x = _check_x(x)
    posterior = encoder_fn(x)
    check_posterior(posterior, x)
    log_w = _log_weights(posterior, decoder_fn, log_likelihood_fn, x, key, num_samples)
    log_sum = jax.nn.logsumexp(log_w, axis=0)
    bound = log_sum - math.log(num_samples)
    # ESS = (sum w)^2 / sum w^2, in log space.
    ess = jnp.exp(2.0 * log_sum - jax.nn.logsumexp(2.0 * log_w, axis=0))
    terms = {
        "iwae_bound": bound,
        "elbo": jnp.mean(log_w, axis=0),
        "effective_sample_size": jax.lax.stop_gradient(ess),
    }
    return -bound, terms


def importance_log_likelihood(
    encoder_fn: EncoderFn,
    decoder_fn: DecoderFn,
    log_likelihood_fn: LogLikelihoodFn,
    x: jax.Array,
    key: jax.Array,
    *,
    num_samples: int,
    chunk_size: int = 100,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Importance-sampled ``log p(x) ~= L_K``, ``K = num_samples``, (B,), in chunks.

    ``num_samples`` must be a multiple of ``chunk_size``; chunk ``c`` draws from
    ``jax.random.fold_in(key, c)`` (module doc). Peak memory is that of ``chunk_size`` draws.
    Meant for evaluation: a lower bound on ``log p(x)`` in expectation, with bias
    ``~ Var[w / p(x)] / (2 K)``.

    Returns:
      ``(log_likelihood, terms)``: ``log_likelihood = logsumexp_k(log w_k) - log K`` (B,)
      (a log-likelihood, not a loss: higher is better) and ``terms``, each (B,), accumulated
      over the same ``K`` draws by the running scan (no extra network evaluation):
      ``"elbo"`` ``mean_k log w_k`` (an unbiased ELBO estimate, ``<= log_likelihood``);
      ``"effective_sample_size"`` ``(sum_k w_k)^2 / sum_k w_k^2`` in ``[1, K]`` (``K``
      exactly when every weight is equal, e.g. ``q`` is the posterior; near 1 when one draw
      dominates and the estimate is unreliable); ``"max_log_weight"`` ``max_k log w_k``.
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    if num_samples % chunk_size:
        raise ValueError(
            f"num_samples ({num_samples}) must be a multiple of chunk_size ({chunk_size})."
        )
    x = _check_x(x)
    posterior = encoder_fn(x)
    check_posterior(posterior, x)
    dtype = jnp.result_type(posterior.mean)

    def step(acc: WeightStats, chunk: jax.Array) -> tuple[WeightStats, None]:
        log_w = _log_weights(
            posterior, decoder_fn, log_likelihood_fn, x, jax.random.fold_in(key, chunk), chunk_size
        )
        return accumulate_log_weights(acc, log_w.astype(dtype)), None

    init = init_log_weight_stats(x.shape[0], dtype)
    stats, _ = jax.lax.scan(step, init, jnp.arange(num_samples // chunk_size))
    return log_weight_summary(stats, num_samples)
