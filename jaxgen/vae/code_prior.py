"""A factorized learned prior over VQ-VAE code grids, and the VQ-VAE bound.

van den Oord, Vinyals, Kavukcuoglu (2017) generate from a VQ-VAE by fitting an
autoregressive prior (a PixelCNN) to the code indices of the training set. Until the
autoregressive family exists, this module is the factorized stand-in: each grid position
``j`` (of a code grid ``*grid``, e.g. (H, W)) has its own categorical distribution over the
``K`` codes, with free logits ``l_j`` shared over the batch::

    log p(k) = sum_j log softmax(l_j)[k_j].

Its maximum-likelihood logits reproduce the empirical per-position code frequencies
(the gradient of the mean negative log-likelihood w.r.t. ``l_j`` is
``softmax(l_j) - freq_j``). Sampling draws every position independently from
``softmax(l_j / T)``; the temperature ``T -> 0`` gives the per-position argmax.

The bound (sec. 3.1). The posterior ``q(z = k | x)`` is deterministic one-hot at the
nearest codes, so ``KL(q(z|x) || p(z)) = sum_k q_k log(q_k / p_k) = -log p(k)``, and::

    -ELBO(x) = -log p(x | z_q(x)) + KL(q || p) = -log p(x | z_q(x)) - log p(k(x)).

With the paper's uniform prior during VQ-VAE training, ``-log p(k) = P log K`` for ``P``
grid positions (``log K`` per position): a constant, so it drops out of VQ-VAE training but
belongs in the reported bound. All values are in nats, per example, shape (B,).

Reference:
  van den Oord, Vinyals, Kavukcuoglu. Neural Discrete Representation Learning. NeurIPS
  2017 (sec. 3.1 for the uniform prior and the KL; sec. 3.3 for fitting the prior).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxgen.core.sampling import SamplerOutput, as_example_keys
from jaxgen.core.validation import check_index_range, check_positive_int, check_sample_shape

__all__ = [
    "factorized_prior_log_prob",
    "factorized_prior_loss",
    "factorized_prior_sample",
    "uniform_prior_log_prob",
    "vq_negative_elbo",
]


def _check_logits(logits: jax.Array) -> jax.Array:
    logits = jnp.asarray(logits)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have shape (*grid, K) with K >= 1, got {logits.shape}.")
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise ValueError(f"logits must be a float array, got dtype {logits.dtype}.")
    return logits


def _check_indices(indices: jax.Array) -> jax.Array:
    indices = jnp.asarray(indices)
    if indices.ndim < 1:
        raise ValueError(f"indices must have shape (B, *grid), got {indices.shape}.")
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise ValueError(f"indices must be an integer array, got dtype {indices.dtype}.")
    return indices


def factorized_prior_log_prob(logits: jax.Array, indices: jax.Array) -> jax.Array:
    """``log p(indices) = sum_j log softmax(logits_j)[indices_j]`` per example, (B,).

    ``logits`` (*grid, K) are shared over the batch; ``indices`` (B, *grid) are integer codes
    in ``[0, K)`` (concrete values outside raise ``ValueError``; under jit they are not
    checked and are clamped by the gather).
    """
    logits = _check_logits(logits)
    indices = _check_indices(indices)
    grid, num_codes = logits.shape[:-1], logits.shape[-1]
    check_index_range(indices, num_codes, "indices", what="K")
    if indices.shape[1:] != grid:
        raise ValueError(
            f"indices must have shape (B, *grid) with grid = logits.shape[:-1] = {grid}, "
            f"got {indices.shape}."
        )
    num_positions = math.prod(grid)
    log_p = jax.nn.log_softmax(logits, axis=-1).reshape(num_positions, num_codes)  # (P, K)
    flat = indices.reshape(indices.shape[0], num_positions)  # (B, P)
    picked = log_p[jnp.arange(num_positions)[None, :], flat]  # (B, P)
    return jnp.sum(picked, axis=1)


def factorized_prior_loss(
    logits: jax.Array, indices: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Negative log-likelihood of the code grids in nats, (B,), and ``{"prior_nll": (B,)}``.

    The indices are integers (the encoder gets no gradient through them); the gradient goes
    to ``logits`` only. Minimizing the batch mean fits the per-position code frequencies.
    """
    nll = -factorized_prior_log_prob(logits, jax.lax.stop_gradient(indices))
    return nll, {"prior_nll": nll}


def factorized_prior_sample(
    logits: jax.Array,
    key: jax.Array,
    shape: Sequence[int],
    *,
    temperature: float = 1.0,
) -> SamplerOutput:
    """Code grids of ``shape = (B, *grid)`` (``grid = logits.shape[:-1]``), int32, each
    position drawn independently from ``softmax(logits_j / temperature)``;
    ``temperature = 0`` gives the per-position argmax (ties -> lowest index) for every sample.

    ``key`` is one key or ``(B,)`` per-example keys (:func:`jaxgen.core.sampling.
    as_example_keys`): grid ``b`` is drawn from its own key only. ``nfe = 1``: one evaluation
    of the prior (all positions at once; here a table of logits).
    """
    logits = _check_logits(logits)
    shape = check_sample_shape(shape)
    grid = logits.shape[:-1]
    if shape[1:] != grid:
        raise ValueError(
            f"shape must be (B, *grid) with grid = logits.shape[:-1] = {grid}, got {shape}."
        )
    static_t = isinstance(temperature, (int, float))
    if static_t and not temperature >= 0.0:
        raise ValueError(f"temperature must be >= 0, got {temperature}.")
    if static_t and temperature == 0.0:
        mode = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return SamplerOutput(jnp.broadcast_to(mode[None], shape), 1)
    keys = as_example_keys(key, shape[0])
    scaled = logits / temperature
    samples = jax.vmap(lambda k: jax.random.categorical(k, scaled, axis=-1))(keys)
    return SamplerOutput(samples.astype(jnp.int32), 1)


def uniform_prior_log_prob(indices: jax.Array, num_codes: int) -> jax.Array:
    """The paper's uniform prior: ``log p(indices) = -P log K`` per example, (B,), with ``P``
    the number of grid positions of ``indices`` (B, *grid)."""
    indices = _check_indices(indices)
    num_codes = check_positive_int(num_codes, "num_codes")
    check_index_range(indices, num_codes, "indices", what="K")
    num_positions = math.prod(indices.shape[1:])
    value = -num_positions * math.log(num_codes)
    return jnp.full(indices.shape[:1], value, jnp.zeros(()).dtype)


def vq_negative_elbo(reconstruction_nll: jax.Array, prior_log_prob: jax.Array) -> jax.Array:
    """``-ELBO = -log p(x | z_q) - log p(k)`` per example, (B,), in nats.

    With the deterministic one-hot posterior, ``KL(q || p) = -log p(k)``; with the uniform
    prior this is ``P log K`` (van den Oord et al. 2017, sec. 3.1). ``reconstruction_nll``
    is ``-log p(x | z_q(x))`` summed over the data dims and ``prior_log_prob`` is ``log p(k)``
    summed over the grid (e.g. :func:`factorized_prior_log_prob`), both (B,).
    """
    reconstruction_nll = jnp.asarray(reconstruction_nll)
    prior_log_prob = jnp.asarray(prior_log_prob)
    if reconstruction_nll.ndim != 1 or prior_log_prob.shape != reconstruction_nll.shape:
        raise ValueError(
            "reconstruction_nll and prior_log_prob must both have shape (B,), got "
            f"{reconstruction_nll.shape} and {prior_log_prob.shape}."
        )
    return reconstruction_nll - prior_log_prob
