"""The two-level VQ-VAE-2 objective (Razavi, van den Oord, Vinyals 2019) as one pure function.

The hierarchy of sec. 3.1 (Fig. 2a), with the networks passed in as callables::

    h_b   = bottom_encoder(x)                        (B, H / 2^n_b, W / 2^n_b, C)
    z_e^t = top_encoder(h_b)                         (B, h_t, w_t, D), a further / 2^n_t
    e_t   = q_t(z_e^t)                               nearest code of the top codebook
    z_e^b = bottom_conditioner(h_b, e_t)             [h_b, top_decoder(e_t)] -> D channels
    e_b   = q_b(z_e^b)                               nearest code of the bottom codebook
    out   = decoder(e_t, e_b)                        [upsample(e_t), e_b] -> p(x | e_t, e_b)

Each level has its own codebook (sizes ``K_t`` and ``K_b`` may differ) and quantizes with
:func:`jaxgen.vae.vector_quantization.quantize` (straight-through, so the reconstruction's
gradient reaches both encoders, and through ``e_t`` the bottom's conditioner reaches the top
encoder). The per-example loss is (eq. 2 of the paper, per level, plus the priors' fit)::

    loss(x) = -log p(x | e_t, e_b)                                   reconstruction
              + beta (||z_e^t - sg[e_t]||^2 + ||z_e^b - sg[e_b]||^2)  commitment, both levels
              + ||sg[z_e^t] - e_t||^2 + ||sg[z_e^b] - e_b||^2          codebooks (gradient only)
              - log p(k_t, k_b)                                       prior (to the prior only)

with squared norms summed over positions and dims per example. The reconstruction and the
prior parts are the bound ``-ELBO = -log p(x | e_t, e_b) - log p(k_t, k_b)`` (the one-hot
posteriors' KL is ``-log p(k)``; :func:`jaxgen.vae.code_prior.vq_negative_elbo`). Without a
prior callable the uniform prior ``-log p(k) = P_t log K_t + P_b log K_b`` is used.

Codebooks: each level's codebook is an array trained by its codebook term, or an
:class:`~jaxgen.vae.vector_quantization.EMACodebookState` updated by EMA (appendix A of the
paper, the VQ-VAE's eqs. 6-8; :func:`~jaxgen.vae.vector_quantization.ema_codebook_update`)
over the batch passed in, optionally followed by dead-code restarts
(:func:`~jaxgen.vae.vector_quantization.restart_dead_codes`), returned as a state update.

Reference:
  Razavi, van den Oord, Vinyals. Generating Diverse High-Fidelity Images with VQ-VAE-2.
  NeurIPS 2019 (sec. 3.1, Fig. 2a, eq. 2, Algorithm 1).
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
    Quantized,
    ema_codebook_update,
    quantize,
    restart_dead_codes,
)

__all__ = ["LEVELS", "vqvae2_encode", "vqvae2_loss"]

LEVELS = ("top", "bottom")

Codebook = jax.Array | EMACodebookState


def _codes(codebook: Codebook) -> jax.Array:
    return codebook.codebook if isinstance(codebook, EMACodebookState) else codebook


def _check_codebooks(codebooks: Any) -> tuple[Codebook, Codebook]:
    if not isinstance(codebooks, (tuple, list)) or len(codebooks) != 2:
        raise ValueError(
            "codebooks must be a pair (top, bottom) of codebook arrays or EMACodebookStates, "
            f"got {type(codebooks).__name__}"
            + (f" of length {len(codebooks)}" if isinstance(codebooks, (tuple, list)) else "")
        )
    return codebooks[0], codebooks[1]


def vqvae2_encode(
    bottom_encoder_fn: Callable[[jax.Array], jax.Array],
    top_encoder_fn: Callable[[jax.Array], jax.Array],
    bottom_conditioner_fn: Callable[[jax.Array, jax.Array], jax.Array],
    codebooks: tuple[Codebook, Codebook],
    x: jax.Array,
) -> tuple[tuple[jax.Array, jax.Array], tuple[Quantized, Quantized]]:
    """The encoder half of the hierarchy (module doc): ``h_b = bottom_encoder_fn(x)``,
    ``z_e^t = top_encoder_fn(h_b)``, ``q_t = quantize(z_e^t, C_t)``,
    ``z_e^b = bottom_conditioner_fn(h_b, q_t.z_q)``, ``q_b = quantize(z_e^b, C_b)``.

    Returns ``((z_e^t, z_e^b), (q_t, q_b))``, coarse to fine, each
    :class:`~jaxgen.vae.vector_quantization.Quantized` with its indices and per-example losses.
    """
    top_book, bottom_book = _check_codebooks(codebooks)
    h_b = bottom_encoder_fn(x)
    z_top = top_encoder_fn(h_b)
    q_top = quantize(z_top, _codes(top_book))
    z_bottom = bottom_conditioner_fn(h_b, q_top.z_q)
    q_bottom = quantize(z_bottom, _codes(bottom_book))
    return (z_top, z_bottom), (q_top, q_bottom)


def vqvae2_loss(
    bottom_encoder_fn: Callable[[jax.Array], jax.Array],
    top_encoder_fn: Callable[[jax.Array], jax.Array],
    bottom_conditioner_fn: Callable[[jax.Array, jax.Array], jax.Array],
    decoder_fn: Callable[[jax.Array, jax.Array], Any],
    log_likelihood_fn: Callable[[Any, jax.Array], jax.Array],
    codebooks: tuple[Codebook, Codebook],
    x: jax.Array,
    key: jax.Array | None,
    *,
    commitment_cost: float = 0.25,
    prior_log_prob_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    ema_decay: float = 0.99,
    ema_epsilon: float = 1e-5,
    dead_code_threshold: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array], dict[str, EMACodebookState]]:
    """Per-example two-level VQ-VAE-2 loss, its terms and the EMA codebooks' updates.

    Args:
      bottom_encoder_fn: ``x -> h_b``, the bottom encoder's features.
      top_encoder_fn: ``h_b -> z_e^t`` (B, h_t, w_t, D_t).
      bottom_conditioner_fn: ``(h_b, e_t) -> z_e^b`` (B, h_b, w_b, D_b): the top decoder
        applied to ``e_t``, concatenated with ``h_b`` and projected (Fig. 2a).
      decoder_fn: ``(e_t, e_b) -> out``, the raw decoder output.
      log_likelihood_fn: ``(out, x) -> log p(x | e_t, e_b)``, (B,).
      codebooks: ``(top, bottom)``, each a codebook array (K_l, D_l) trained by gradient or an
        :class:`EMACodebookState` updated by EMA.
      x: data (B, *event).
      key: used only for dead-code restarts; may be ``None`` otherwise.
      commitment_cost: ``beta`` of both levels' commitment terms (the paper: 0.25).
      prior_log_prob_fn: ``(k_t, k_b) -> log p(k_t, k_b)`` (B,); ``None``: uniform priors.
      ema_decay, ema_epsilon: the EMA updates' decay and Laplace smoothing.
      dead_code_threshold: restart EMA codes whose count falls below it (0: none).

    Returns:
      ``(loss, terms, state_updates)``: ``loss`` (B,); ``terms``, each (B,):
      ``"reconstruction"``, ``"commitment_top"``, ``"commitment_bottom"``,
      ``"codebook_top"``, ``"codebook_bottom"`` (unweighted squared distances),
      ``"prior_nll"``, ``"neg_elbo"``, ``"perplexity_top"``, ``"perplexity_bottom"`` (the
      batch's code perplexities, broadcast) and, with restarts,
      ``"restarted_codes_top"``/``"restarted_codes_bottom"``; ``state_updates`` maps
      ``"top"``/``"bottom"`` to the new :class:`EMACodebookState` of each EMA level.
    """
    books = _check_codebooks(codebooks)
    ema = [isinstance(b, EMACodebookState) for b in books]
    if dead_code_threshold > 0 and not all(ema):
        raise ValueError(
            f"dead_code_threshold={dead_code_threshold} needs EMACodebookState codebooks at "
            "both levels (restarts reset EMA statistics), got a codebook array."
        )
    if dead_code_threshold > 0 and key is None:
        raise ValueError(f"dead_code_threshold={dead_code_threshold} needs a key, got None.")
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (B, *event), got {x.shape}.")
    batch = x.shape[0]
    z_es, qs = vqvae2_encode(bottom_encoder_fn, top_encoder_fn, bottom_conditioner_fn, books, x)
    for name, q, z in zip(LEVELS, qs, z_es, strict=True):
        if q.indices.shape[0] != batch:
            raise ValueError(
                f"the {name} level's z_e must have shape (B, ..., D) with B = {batch}, "
                f"got {jnp.shape(z)}."
            )
    q_top, q_bottom = qs
    out = decoder_fn(q_top.z_q, q_bottom.z_q)
    reconstruction = -check_per_example(log_likelihood_fn(out, x), batch, "log_likelihood_fn")
    if prior_log_prob_fn is None:
        prior_log_prob = sum(
            uniform_prior_log_prob(q.indices, jnp.shape(_codes(b))[0])
            for q, b in zip(qs, books, strict=True)
        )
    else:
        prior_log_prob = check_per_example(
            prior_log_prob_fn(q_top.indices, q_bottom.indices), batch, "prior_log_prob_fn"
        )
    prior_nll = -prior_log_prob.astype(reconstruction.dtype)
    loss = reconstruction + prior_nll
    terms = {"reconstruction": reconstruction}
    for name, q, is_ema in zip(LEVELS, qs, ema, strict=True):
        loss = loss + commitment_cost * q.commitment_loss
        if not is_ema:
            loss = loss + q.codebook_loss
        terms[f"commitment_{name}"] = q.commitment_loss
        terms[f"codebook_{name}"] = q.codebook_loss
        terms[f"perplexity_{name}"] = jnp.broadcast_to(q.perplexity, (batch,))
    terms["prior_nll"] = prior_nll
    terms["neg_elbo"] = vq_negative_elbo(reconstruction, -prior_nll)
    updates: dict[str, EMACodebookState] = {}
    keys = jax.random.split(key) if dead_code_threshold > 0 else (None, None)
    for name, book, q, z, is_ema, k in zip(LEVELS, books, qs, z_es, ema, keys, strict=True):
        if not is_ema:
            continue
        state = ema_codebook_update(book, z, q.indices, decay=ema_decay, epsilon=ema_epsilon)
        if dead_code_threshold > 0:
            state, restarted = restart_dead_codes(state, z, k, threshold=dead_code_threshold)
            terms[f"restarted_codes_{name}"] = jnp.broadcast_to(
                restarted.astype(reconstruction.dtype), (batch,)
            )
        updates[name] = state
    return loss, terms, updates
