"""The VQ-VAE objective (van den Oord, Vinyals, Kavukcuoglu 2017) as one pure function.

With an encoder ``z_e(x)`` (B, ..., D), nearest-code quantization ``k(x)``, ``z_q(x) = e_k``
(straight-through, :func:`jaxgen.vae.vector_quantization.quantize`), a decoder and a prior
``p(k)`` over the code grid, the per-example loss is (eq. 3, plus the prior's fit, sec. 3.3)::

    loss(x) = -log p(x | z_q(x))                       reconstruction
              + beta ||z_e(x) - sg[e_k]||^2              commitment (gradient to the encoder)
              + ||sg[z_e(x)] - e_k||^2                   codebook (gradient-trained codebook only)
              - log p(k(x))                              prior (gradient to the prior only)

with the squared norms summed over positions and dims per example. The reconstruction and
prior parts are the negative ELBO ``-log p(x | z_q) - log p(k)`` (sec. 3.1; the one-hot
posterior's KL is ``-log p(k)``), reported as the term ``"neg_elbo"``. The code indices are
integers, so the prior term gives no gradient to the encoder. Without a prior callable the
paper's uniform prior ``-log p(k) = P log K`` is used: a constant that leaves the gradients
unchanged but keeps ``"neg_elbo"`` a bound.

Codebook. A codebook array is a parameter trained by the codebook term. An
:class:`~jaxgen.vae.vector_quantization.EMACodebookState` is non-gradient state instead: the
codebook term is left out of the loss and the state's EMA update (appendix A.1, eqs. 6-8;
:func:`~jaxgen.vae.vector_quantization.ema_codebook_update`, over the whole batch passed in),
optionally followed by dead-code restarts
(:func:`~jaxgen.vae.vector_quantization.restart_dead_codes`), is returned as a state update.

Reference:
  van den Oord, Vinyals, Kavukcuoglu. Neural Discrete Representation Learning. NeurIPS 2017
  (eq. 3, sec. 3.1 and 3.3, appendix A.1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.vae.code_prior import uniform_prior_log_prob, vq_negative_elbo
from jaxgen.vae.elbo import check_per_example
from jaxgen.vae.vector_quantization import (
    EMACodebookState,
    ema_codebook_update,
    quantize,
    restart_dead_codes,
)

__all__ = ["vqvae_loss"]

VQEncoderFn = Callable[[jax.Array], jax.Array]
PriorLogProbFn = Callable[[jax.Array], jax.Array]


def vqvae_loss(
    encoder_fn: VQEncoderFn,
    decoder_fn: Callable[[jax.Array], Any],
    log_likelihood_fn: Callable[[Any, jax.Array], jax.Array],
    codebook: jax.Array | EMACodebookState,
    x: jax.Array,
    key: jax.Array | None,
    *,
    commitment_cost: float = 0.25,
    prior_log_prob_fn: PriorLogProbFn | None = None,
    ema_decay: float = 0.99,
    ema_epsilon: float = 1e-5,
    dead_code_threshold: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array], dict[str, EMACodebookState]]:
    """Per-example VQ-VAE loss, its terms and the EMA codebook's update (module doc).

    Args:
      encoder_fn: ``x -> z_e`` of shape (B, ..., D), ``D`` the code dimension.
      decoder_fn: ``z_q -> out``, the raw decoder output.
      log_likelihood_fn: ``(out, x) -> log p(x | z_q)``, (B,).
      codebook: the codes (K, D), trained by gradient (the codebook term is in the loss), or
        an :class:`EMACodebookState` updated by EMA (the codebook term is only reported).
      x: data (B, *event).
      key: used only for dead-code restarts (``dead_code_threshold > 0``); may be ``None``
        otherwise.
      commitment_cost: ``beta``, the weight of the commitment term (the paper: 0.25).
      prior_log_prob_fn: ``indices (B, *grid) -> log p(k)`` (B,), e.g.
        ``lambda k: factorized_prior_log_prob(logits, k)``; ``None``: the uniform prior.
      ema_decay, ema_epsilon: the EMA update's decay and Laplace smoothing (EMA state only).
      dead_code_threshold: restart codes whose EMA count falls below it (EMA state only;
        0 disables restarts).

    Returns:
      ``(loss, terms, state_updates)``: ``loss`` (B,); ``terms``, each (B,):
      ``"reconstruction"`` (``-log p(x | z_q)``), ``"commitment"`` and ``"codebook"`` (the
      unweighted squared distances), ``"prior_nll"`` (``-log p(k)``), ``"neg_elbo"``
      (``reconstruction + prior_nll``), ``"perplexity"`` (the batch's code perplexity,
      broadcast) and, with restarts, ``"restarted_codes"`` (the number of codes restarted,
      broadcast); ``state_updates`` is ``{"codebook": new EMACodebookState}`` for an EMA
      codebook and ``{}`` for a gradient-trained one.
    """
    ema = isinstance(codebook, EMACodebookState)
    if dead_code_threshold > 0 and not ema:
        raise ValueError(
            f"dead_code_threshold={dead_code_threshold} needs an EMACodebookState codebook "
            "(restarts reset EMA statistics), got a codebook array."
        )
    if dead_code_threshold > 0 and key is None:
        raise ValueError(f"dead_code_threshold={dead_code_threshold} needs a key, got None.")
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (B, *event), got {x.shape}.")
    batch = x.shape[0]
    codes = codebook.codebook if ema else codebook
    z_e = encoder_fn(x)
    q = quantize(z_e, codes)
    if q.indices.shape[0] != batch:
        raise ValueError(
            f"encoder_fn must return shape (B, ..., D) with B = {batch}, got {jnp.shape(z_e)}."
        )
    log_px = check_per_example(log_likelihood_fn(decoder_fn(q.z_q), x), batch, "log_likelihood_fn")
    reconstruction = -log_px
    if prior_log_prob_fn is None:
        prior_log_prob = uniform_prior_log_prob(q.indices, jnp.shape(codes)[0])
    else:
        prior_log_prob = check_per_example(prior_log_prob_fn(q.indices), batch, "prior_log_prob_fn")
    prior_nll = -prior_log_prob.astype(reconstruction.dtype)
    loss = reconstruction + commitment_cost * q.commitment_loss + prior_nll
    if not ema:
        loss = loss + q.codebook_loss
    terms = {
        "reconstruction": reconstruction,
        "commitment": q.commitment_loss,
        "codebook": q.codebook_loss,
        "prior_nll": prior_nll,
        "neg_elbo": vq_negative_elbo(reconstruction, -prior_nll),
        "perplexity": jnp.broadcast_to(q.perplexity, (batch,)),
    }
    updates: dict[str, EMACodebookState] = {}
    if ema:
        state = ema_codebook_update(codebook, z_e, q.indices, decay=ema_decay, epsilon=ema_epsilon)
        if dead_code_threshold > 0:
            state, restarted = restart_dead_codes(state, z_e, key, threshold=dead_code_threshold)
            terms["restarted_codes"] = jnp.broadcast_to(
                restarted.astype(reconstruction.dtype), (batch,)
            )
        updates["codebook"] = state
    return loss, terms, updates
