"""Vector quantization for VQ-VAE: nearest-code lookup, straight-through gradients, the
codebook and commitment losses, an EMA codebook, and dead-code restarts.

van den Oord, Vinyals, Kavukcuoglu (2017) quantize each encoder output vector
``z_e(x)_j`` in ``R^D`` (one per latent position ``j``) to its nearest code of a codebook
``{e_1, ..., e_K}`` (eqs. 1-2)::

    k_j = argmin_i ||z_e(x)_j - e_i||^2,        z_q(x)_j = e_{k_j}.

The squared distance is computed as ``||z||^2 - 2 z . e + ||e||^2`` with one matmul (at the
highest matmul precision, so reduced-precision accelerator matmuls do not flip close
assignments); ties go to the lowest code index.

The argmin has no gradient, so the decoder's gradient is copied to the encoder output
(eq. 3's straight-through estimator): ``z_q = z_e + sg(e_k - z_e)`` has the forward value
``e_k`` and the Jacobian ``d z_q / d z_e = I``; through ``z_q`` the codebook gets no
gradient. The training objective (eq. 3) is::

    L = -log p(x | z_q(x)) + ||sg[z_e(x)] - e||^2 + beta ||z_e(x) - sg[e]||^2,

whose second term (``codebook_loss``) moves the codes towards the encoder outputs (gradient
only to the codebook) and whose third term (``commitment_loss``) keeps the encoder committed
to its codes (gradient only to the encoder; the paper uses ``beta = 0.25``; the caller
applies beta). Both losses are **summed over latent positions and dims per example**, like
the reconstruction log-likelihood summed over pixels, so they come back with shape (B,).
For the gradient-trained codebook, the codebook is simply a parameter and ``codebook_loss``
trains it.

EMA codebook (appendix A.1, eqs. 6-8). Instead of ``codebook_loss``, each code tracks an
exponential moving average of the number ``n_i`` of encoder outputs assigned to it and of
their sum, with decay ``gamma``::

    N_i <- gamma N_i + (1 - gamma) n_i,                               (6)
    m_i <- gamma m_i + (1 - gamma) sum_{j: k_j = i} z_e_j,            (7)
    e_i <- m_i / N_i.                                                  (8)

With ``gamma = 0`` this is one Lloyd (k-means) step: every used code moves to the centroid
of its assigned vectors. As is standard practice (e.g. the Sonnet implementation of the
paper), ``N`` is Laplace-smoothed before the division so that a code with ``N_i = 0`` stays
finite: ``N~_i = (N_i + eps) / (n + K eps) * n`` with ``n = sum_i N_i`` (``N~`` has the same
total ``n``), and ``e_i = m_i / N~_i``. The counts and sums run over the whole batch passed
in; under ``jax.jit`` with a batch sharded across devices they are global sums over all
shards automatically (the reduction is an ordinary array op; no ``psum`` is needed).

Initialization (:func:`init_ema_codebook`): ``N_i = 1`` and ``m_i = e_i``, as if every code
had been assigned one vector equal to itself. Then (8) reproduces the initial codebook
exactly (all ``N_i`` equal, so the smoothing is the identity), and a code that is never
used keeps its value while ``N_i = gamma^t`` decays. (With ``N_i = 0`` and ``m_i = 0``
instead, every code unused in the first batch would collapse to the origin.)

Dead-code restarts (Dhariwal et al. 2020, Jukebox, "random restarts for embeddings";
Williams et al. 2020): a code whose EMA usage ``N_i`` falls below a threshold is reset to a randomly
chosen encoder output of the current batch, with ``N_i = 1`` and ``m_i`` equal to the new
code so that the next EMA update starts from it consistently. ``N_i`` is measured in
encoder outputs per batch: with ``gamma = 0.99`` an unused code initialized to ``N_i = 1``
drops below the default threshold ``1e-3`` after ``log(1e-3) / log(0.99) ~ 690`` steps.

Perplexity: ``exp(H)`` of the empirical code-usage distribution of a batch (over all its
positions), between 1 (one code used) and ``K`` (uniform usage).

References:
  van den Oord, Vinyals, Kavukcuoglu. Neural Discrete Representation Learning. NeurIPS
  2017 (eqs. 1-3; appendix A.1, eqs. 6-8).
  Dhariwal, Jun, Payne, Kim, Radford, Sutskever. Jukebox: A Generative Model for Music.
  2020 (the section "Random restarts for embeddings").
  Williams, Ringer, Ash, Hughes, MacLeod, Dougherty. Hierarchical Quantized Autoencoders.
  NeurIPS 2020 (codebook restarts).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxgen.core.validation import check_index_range, check_positive_int
from jaxgen.vae.gaussian import sum_event

__all__ = [
    "EMACodebookState",
    "Quantized",
    "codebook_perplexity",
    "ema_codebook_update",
    "init_ema_codebook",
    "quantize",
    "restart_dead_codes",
]

_HIGHEST = jax.lax.Precision.HIGHEST


class Quantized(NamedTuple):
    """Output of :func:`quantize`.

    ``z_q``: straight-through quantized latents, shape of ``z_e`` (forward value ``e_k``).
    ``indices``: int32 code indices, shape ``z_e.shape[:-1]``.
    ``codebook_loss``: ``sum ||sg(z_e) - e_k||^2`` per example, (B,).
    ``commitment_loss``: ``sum ||z_e - sg(e_k)||^2`` per example, (B,) (times beta by caller).
    ``perplexity``: scalar, ``exp(entropy)`` of this batch's code usage.
    """

    z_q: jax.Array
    indices: jax.Array
    codebook_loss: jax.Array
    commitment_loss: jax.Array
    perplexity: jax.Array


class EMACodebookState(NamedTuple):
    """EMA codebook statistics (float): ``cluster_size`` N (K,), ``embedding_sum`` m (K, D),
    and the current ``codebook`` e = m / N~ (K, D)."""

    cluster_size: jax.Array
    embedding_sum: jax.Array
    codebook: jax.Array


# ----------------------------------------------------------------------------- checks


def _check_codebook(codebook: jax.Array, name: str = "codebook") -> jax.Array:
    codebook = jnp.asarray(codebook)
    if codebook.ndim != 2 or codebook.shape[0] < 1:
        raise ValueError(f"{name} must have shape (K, D) with K >= 1, got {codebook.shape}.")
    if not jnp.issubdtype(codebook.dtype, jnp.floating):
        raise ValueError(f"{name} must be a float array, got dtype {codebook.dtype}.")
    return codebook


def _check_z_e(z_e: jax.Array, dim: int) -> jax.Array:
    z_e = jnp.asarray(z_e)
    if z_e.ndim < 2:
        raise ValueError(f"z_e must have shape (B, ..., D) with rank >= 2, got {z_e.shape}.")
    if not jnp.issubdtype(z_e.dtype, jnp.floating):
        raise ValueError(f"z_e must be a float array, got dtype {z_e.dtype}.")
    if z_e.shape[-1] != dim:
        raise ValueError(
            f"z_e's last dim {z_e.shape[-1]} does not match the codebook's code dim D = {dim}."
        )
    return z_e


def _check_indices(indices: jax.Array, shape: tuple[int, ...] | None = None) -> jax.Array:
    indices = jnp.asarray(indices)
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise ValueError(f"indices must be an integer array, got dtype {indices.dtype}.")
    if shape is not None and indices.shape != shape:
        raise ValueError(f"indices must have shape z_e.shape[:-1] = {shape}, got {indices.shape}.")
    return indices


def _check_state(state: EMACodebookState) -> tuple[int, int]:
    codebook = _check_codebook(state.codebook, "state.codebook")
    k, d = codebook.shape
    if jnp.shape(state.cluster_size) != (k,):
        raise ValueError(
            f"state.cluster_size must have shape ({k},), got {jnp.shape(state.cluster_size)}."
        )
    if jnp.shape(state.embedding_sum) != (k, d):
        raise ValueError(
            f"state.embedding_sum must have shape ({k}, {d}), got {jnp.shape(state.embedding_sum)}."
        )
    return k, d


def _is_static(value) -> bool:
    return isinstance(value, (int, float))


# ----------------------------------------------------------------------------- quantize


def _nearest_code(flat: jax.Array, codebook: jax.Array) -> jax.Array:
    """argmin_i ||flat_n - e_i||^2 for each row, (N,) int32; ties -> lowest index."""
    flat = jax.lax.stop_gradient(flat)
    codebook = jax.lax.stop_gradient(codebook)
    dtype = jnp.result_type(flat, codebook)
    flat, codebook = flat.astype(dtype), codebook.astype(dtype)
    cross = jnp.matmul(flat, codebook.T, precision=_HIGHEST)  # (N, K)
    dist = (
        jnp.sum(flat * flat, axis=1)[:, None]
        - 2.0 * cross
        + jnp.sum(codebook * codebook, axis=1)[None, :]
    )
    return jnp.argmin(dist, axis=1).astype(jnp.int32)  # argmin returns the first minimum


def codebook_perplexity(indices: jax.Array, num_codes: int) -> jax.Array:
    """``exp(-sum_i p_i log p_i)`` of the empirical code usage ``p_i`` over all entries of
    ``indices`` (every batch element and position); a scalar in ``[1, num_codes]``."""
    indices = _check_indices(indices)
    num_codes = check_positive_int(num_codes, "num_codes")
    check_index_range(indices, num_codes, "indices", what="num_codes")
    if indices.size == 0:
        raise ValueError("indices must not be empty.")
    counts = jnp.zeros((num_codes,), jnp.zeros(()).dtype).at[indices.reshape(-1)].add(1.0)
    probs = counts / indices.size
    safe = jnp.where(probs > 0, probs, 1.0)
    entropy = -jnp.sum(jnp.where(probs > 0, probs * jnp.log(safe), 0.0))
    return jnp.exp(entropy)


def quantize(z_e: jax.Array, codebook: jax.Array) -> Quantized:
    """Quantize ``z_e`` (B, ..., D) to its nearest codes of ``codebook`` (K, D).

    Returns :class:`Quantized`: the straight-through ``z_q = z_e + sg(e_k - z_e)`` (forward
    value ``e_k``, identity gradient to ``z_e``, none to the codebook), the int32 indices,
    the per-example (B,) ``codebook_loss = sum (sg(z_e) - e_k)^2`` (gradient to the codebook
    only) and ``commitment_loss = sum (z_e - sg(e_k))^2`` (gradient to ``z_e`` only), both
    summed over positions and dims, and the batch's code perplexity.
    """
    codebook = _check_codebook(codebook)
    z_e = _check_z_e(z_e, codebook.shape[1])
    num_codes, dim = codebook.shape
    indices = _nearest_code(z_e.reshape(-1, dim), codebook).reshape(z_e.shape[:-1])
    e_k = jnp.take(codebook, indices, axis=0)  # (B, ..., D); differentiable w.r.t. codebook
    sg = jax.lax.stop_gradient
    z_q = z_e + sg(e_k.astype(z_e.dtype) - z_e)
    codebook_loss = sum_event(jnp.square(sg(z_e) - e_k))
    commitment_loss = sum_event(jnp.square(z_e - sg(e_k)))
    return Quantized(
        z_q=z_q,
        indices=indices,
        codebook_loss=codebook_loss,
        commitment_loss=commitment_loss,
        perplexity=codebook_perplexity(indices, num_codes),
    )


# ----------------------------------------------------------------------------- EMA codebook


def init_ema_codebook(codebook: jax.Array) -> EMACodebookState:
    """EMA state for an initial ``codebook`` (K, D): ``cluster_size = 1`` for every code and
    ``embedding_sum = codebook`` (one pseudo-observation equal to the code itself), so that
    ``embedding_sum / smoothed(cluster_size)`` is exactly ``codebook``."""
    codebook = _check_codebook(codebook)
    return EMACodebookState(
        cluster_size=jnp.ones(codebook.shape[:1], codebook.dtype),
        embedding_sum=codebook,
        codebook=codebook,
    )


def ema_codebook_update(
    state: EMACodebookState,
    z_e: jax.Array,
    indices: jax.Array,
    *,
    decay: float = 0.99,
    epsilon: float = 1e-5,
) -> EMACodebookState:
    """One EMA codebook step (van den Oord et al. 2017, appendix A.1, eqs. 6-8).

    ``z_e`` (B, ..., D) are the encoder outputs and ``indices`` (B, ...) their code
    assignments (``quantize(z_e, state.codebook).indices``); both are stop_gradient'ed.
    ``N <- decay N + (1 - decay) n``, ``m <- decay m + (1 - decay) sum_{k_j = i} z_e_j`` with
    ``n_i`` the counts over the whole batch (global sums under jit with a sharded batch),
    then the Laplace-smoothed ``N~_i = (N_i + epsilon) / (n + K epsilon) * n``,
    ``n = sum_i N_i``, and ``codebook = m / N~``. ``decay`` in [0, 1] (0: one k-means step);
    ``epsilon >= 0`` (0 disables the smoothing, and a code with ``N_i = 0`` becomes NaN).
    """
    num_codes, dim = _check_state(state)
    z_e = _check_z_e(z_e, dim)
    indices = _check_indices(indices, z_e.shape[:-1])
    check_index_range(indices, num_codes, "indices", what="K")
    if _is_static(decay) and not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must lie in [0, 1], got {decay}.")
    if _is_static(epsilon) and not epsilon >= 0.0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}.")
    dtype = jnp.result_type(state.embedding_sum, state.cluster_size)
    flat = jax.lax.stop_gradient(z_e).reshape(-1, dim).astype(dtype)
    onehot = jax.nn.one_hot(jax.lax.stop_gradient(indices).reshape(-1), num_codes, dtype=dtype)
    counts = jnp.sum(onehot, axis=0)  # n_i, (K,)
    sums = jnp.matmul(onehot.T, flat, precision=_HIGHEST)  # sum_{k_j = i} z_e_j, (K, D)
    cluster_size = decay * state.cluster_size + (1.0 - decay) * counts
    embedding_sum = decay * state.embedding_sum + (1.0 - decay) * sums
    total = jnp.sum(cluster_size)
    smoothed = (cluster_size + epsilon) / (total + num_codes * epsilon) * total
    return EMACodebookState(
        cluster_size=cluster_size,
        embedding_sum=embedding_sum,
        codebook=embedding_sum / smoothed[:, None],
    )


def restart_dead_codes(
    state: EMACodebookState,
    z_e: jax.Array,
    key: jax.Array,
    *,
    threshold: float = 1e-3,
) -> tuple[EMACodebookState, jax.Array]:
    """Reset every code with ``cluster_size < threshold`` to a random encoder output.

    The candidates are the rows of ``stop_gradient(z_e).reshape(-1, D)`` (all positions of the
    batch), drawn uniformly with replacement, one per code; a restarted code gets
    ``cluster_size = 1`` and ``embedding_sum`` equal to the new code, so the next
    :func:`ema_codebook_update` starts from it. Fixed shapes (a ``where`` over all K codes),
    so it is jittable. Two dead codes may draw the same vector; the lower index then wins the
    ties and the other is restarted again later. Returns ``(new_state, num_restarted)``, the
    latter an int32 scalar.
    """
    num_codes, dim = _check_state(state)
    z_e = _check_z_e(z_e, dim)
    if _is_static(threshold) and not threshold >= 0.0:
        raise ValueError(f"threshold must be >= 0, got {threshold}.")
    flat = jax.lax.stop_gradient(z_e).reshape(-1, dim)
    choice = jax.random.randint(key, (num_codes,), 0, flat.shape[0])
    candidates = jnp.take(flat, choice, axis=0).astype(state.codebook.dtype)  # (K, D)
    dead = state.cluster_size < threshold  # (K,)
    dead_col = dead[:, None]
    new_state = EMACodebookState(
        cluster_size=jnp.where(dead, jnp.ones_like(state.cluster_size), state.cluster_size),
        embedding_sum=jnp.where(
            dead_col, candidates.astype(state.embedding_sum.dtype), state.embedding_sum
        ),
        codebook=jnp.where(dead_col, candidates, state.codebook),
    )
    return new_state, jnp.sum(dead.astype(jnp.int32))
