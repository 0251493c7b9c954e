"""Markovian hierarchical VAE with top-down (ladder) inference (Sonderby et al. 2016).

Generative model with ``L`` stochastic layers (layer 1 nearest the data)::

    p(x, z) = p(x | z_1) prod_{l=1}^{L-1} p(z_l | z_{l+1}) p(z_L),
    p(z_L) = N(0, I),   p(z_l | z_{l+1}) = N(mu_p,l(z_{l+1}), s_p,l^2).

Inference (Ladder VAE, Sonderby et al. 2016, Section 2.2, eqs. 17-21). A deterministic
bottom-up pass turns ``x`` into Gaussian "messages" ``N(mu^_l, s^_l^2)``, ``l = 1..L``. The
posterior is sampled top-down, sharing the generative model's conditionals::

    q(z_L | x)            = N(mu^_L, s^_L^2)                       (the top message alone)
    q(z_l | z_{l+1}, x)   ~ N(mu^_l, s^_l^2) * p(z_l | z_{l+1})    (eqs. 18-19)
    s_q,l^-2 = s^_l^-2 + s_p,l^-2,   mu_q,l = s_q,l^2 (mu^_l s^_l^-2 + mu_p,l s_p,l^-2),

i.e. :func:`jaxgen.vae.gaussian.precision_weighted_merge`. Every draw is reparameterized
(``z = mu + s eps``), so gradients reach all layers.

Why the top message is a posterior and the others are likelihood factors. For a Markov
chain the exact posterior factorizes as ``p(z | x) = p(z_L | x) prod_l p(z_l | z_{l+1}, x)``
and ``p(z_l | z_{l+1}, x) ~ p(z_l | z_{l+1}) p(x | z_l)`` (given ``z_l``, ``x`` does not
depend on ``z_{l+1}``). So layer ``l < L`` is exact when its message is proportional to the
likelihood factor ``p(x | z_l)`` as a function of ``z_l`` (the merge supplies the prior
factor ``p(z_l | z_{l+1})``), while the top layer is not merged with ``p(z_L)``: its
message must be the whole posterior ``p(z_L | x) ~ p(z_L) p(x | z_L)``, prior included.

ELBO with analytic per-layer KLs, given the sampled parents (unbiased for the ELBO)::

    ELBO = E_q[ log p(x | z_1) ] - KL(q(z_L | x) || N(0, I))
           - sum_{l<L} E_q[ KL(q(z_l | z_{l+1}, x) || p(z_l | z_{l+1})) ],

and the per-example loss is ``reconstruction + beta * sum_l KL_l`` with
``reconstruction = -log p(x | z_1)`` (``beta = 1``: the negative ELBO; ``L = 1``: the plain
VAE of Kingma and Welling 2014).

Importance-weighted estimate of ``log p(x)`` (Burda et al. 2016, eq. 8) with the ladder
posterior as proposal, ``z^(k) ~ q(z | x)`` top-down::

    log w_k = log p(x | z_1) + sum_{l<L} log p(z_l | z_{l+1}) + log p(z_L)
              - log q(z_L | x) - sum_{l<L} log q(z_l | z_{l+1}, x),
    log p^_K(x) = logsumexp_k(log w_k) - log K.

``E[p^_K] = p(x)`` for every ``K`` and ``E[log p^_K]`` increases to ``log p(x)`` with ``K``
(Burda et al. 2016, Theorem 1); with the exact posterior as proposal every ``log w_k``
equals ``log p(x)``.

Random keys: in :func:`ladder_elbo_loss`, with ``keys = jax.random.split(key, L)`` the
noise of layer ``l`` (1-based) is drawn from ``keys[l - 1]``. :func:`ladder_sample` draws
per example: example ``b``'s key is split the same way, ``L`` ways, so a sample depends
only on its own key (the seed and its index), not on the batch it is drawn in.

References:
  Sonderby, Raiko, Maaloe, Sonderby, Winther. Ladder Variational Autoencoders. NeurIPS 2016.
  Kingma, Welling. Auto-Encoding Variational Bayes. ICLR 2014.
  Burda, Grosse, Salakhutdinov. Importance Weighted Autoencoders. ICLR 2016.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.core.sampling import SamplerOutput, as_example_keys, normal
from jaxgen.core.validation import check_positive_int, check_sample_shape
from jaxgen.vae.gaussian import (
    DiagonalGaussian,
    precision_weighted_merge,
    standard_normal_log_prob,
)
from jaxgen.vae.iwae import accumulate_log_weights, init_log_weight_stats, log_weight_summary

__all__ = [
    "ladder_elbo_loss",
    "ladder_importance_log_likelihood",
    "ladder_sample",
    "ladder_sample_with_latents",
]

BottomUpFn = Callable[[jax.Array], Sequence[DiagonalGaussian]]
TopDownFn = Callable[[jax.Array], DiagonalGaussian]


def _as_gaussian(g: Any, what: str, shape: tuple[int, ...] | None = None) -> DiagonalGaussian:
    """Check ``g`` is a Gaussian with ``log_std`` broadcastable to ``mean`` (and ``mean`` of
    ``shape`` when given); return it with ``log_std`` broadcast to ``mean``'s shape."""
    if not isinstance(g, DiagonalGaussian):
        raise ValueError(f"{what} must be a DiagonalGaussian, got {type(g).__name__}.")
    mean = jnp.asarray(g.mean)
    if mean.ndim < 1:
        raise ValueError(f"{what} must have shape (B, *event), got mean shape {mean.shape}.")
    if shape is not None and mean.shape != shape:
        raise ValueError(f"{what} has mean shape {mean.shape}, expected {shape}.")
    try:
        log_std = jnp.broadcast_to(g.log_std, mean.shape)
    except ValueError as err:
        raise ValueError(
            f"{what} has log_std shape {jnp.shape(g.log_std)} that does not broadcast to its "
            f"mean shape {mean.shape}."
        ) from err
    return DiagonalGaussian(mean, log_std)


def _check_x(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (B, *event), got {x.shape}.")
    return x


def _messages(bottom_up_fn: BottomUpFn, top_down_fns: Sequence[TopDownFn], x: jax.Array):
    """Run the bottom-up pass and check the ladder's lengths and batch sizes."""
    messages = bottom_up_fn(x)
    if isinstance(messages, DiagonalGaussian) or not isinstance(messages, Sequence):
        raise ValueError(
            "bottom_up_fn must return a sequence of DiagonalGaussian messages (index 0 = "
            f"layer 1), got {type(messages).__name__}."
        )
    num_layers = len(messages)
    if num_layers < 1:
        raise ValueError("bottom_up_fn returned no messages; a ladder needs L >= 1 layers.")
    if len(top_down_fns) != num_layers - 1:
        raise ValueError(
            f"top_down_fns must have L - 1 = {num_layers - 1} entries for the L = {num_layers} "
            f"messages of bottom_up_fn, got {len(top_down_fns)}."
        )
    out = []
    for i, m in enumerate(messages):
        m = _as_gaussian(m, f"bottom-up message {i + 1}")
        if m.mean.shape[0] != x.shape[0]:
            raise ValueError(
                f"bottom-up message {i + 1} has batch size {m.mean.shape[0]}, x has {x.shape[0]}."
            )
        out.append(m)
    return out


def _top_down_posterior(
    messages: Sequence[DiagonalGaussian], top_down_fns: Sequence[TopDownFn], key: jax.Array
) -> tuple[list[jax.Array], list[DiagonalGaussian], list[DiagonalGaussian | None]]:
    """Sample ``z ~ q(z | x)`` top-down. Returns lists indexed by layer - 1: the samples,
    the posteriors ``q_l`` and the priors ``p(z_l | z_{l+1})`` (``None`` for the top)."""
    num_layers = len(messages)
    keys = jax.random.split(key, num_layers)
    zs: list[Any] = [None] * num_layers
    qs: list[Any] = [None] * num_layers
    ps: list[Any] = [None] * num_layers
    qs[-1] = messages[-1]
    zs[-1] = qs[-1].sample(keys[-1])
    for i in range(num_layers - 2, -1, -1):
        prior = _as_gaussian(
            top_down_fns[i](zs[i + 1]), f"top_down_fns[{i}] (p(z_{i + 1} | z_{i + 2}))",
            messages[i].mean.shape,
        )  # fmt: skip
        ps[i] = prior
        qs[i] = precision_weighted_merge(messages[i], prior)
        zs[i] = qs[i].sample(keys[i])
    return zs, qs, ps


def _log_likelihood(log_likelihood_fn, out, x: jax.Array) -> jax.Array:
    ll = log_likelihood_fn(out, x)
    if jnp.shape(ll) != (x.shape[0],):
        raise ValueError(
            f"log_likelihood_fn must return shape ({x.shape[0]},) (one value per example), "
            f"got {jnp.shape(ll)}."
        )
    return ll


def ladder_elbo_loss(
    bottom_up_fn: BottomUpFn,
    top_down_fns: Sequence[TopDownFn],
    decoder_fn: Callable[[jax.Array], Any],
    log_likelihood_fn: Callable[[Any, jax.Array], jax.Array],
    x: jax.Array,
    key: jax.Array,
    *,
    beta: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-example (beta-)negative ELBO of a ladder VAE, one top-down posterior sample.

    Args:
      bottom_up_fn: ``x -> [message_1, ..., message_L]``, ``DiagonalGaussian`` messages
        (index 0 = layer 1, nearest the data; the last is ``q(z_L | x)`` itself).
      top_down_fns: ``L - 1`` callables, ``top_down_fns[l - 1](z_{l+1}) = p(z_l | z_{l+1})``.
      decoder_fn: ``z_1 -> out``, the raw decoder output.
      log_likelihood_fn: ``(out, x) -> log p(x | z_1)``, shape (B,).
      x: data ``(B, *event)``.
      key: a ``jax.random.key``; layer ``l`` uses ``jax.random.split(key, L)[l - 1]``.
      beta: weight of the KL sum in the loss (not in ``terms["elbo"]``).

    Returns:
      ``(loss (B,), terms)``, ``loss = reconstruction + beta * kl``, with terms (each (B,))
      ``"reconstruction"`` (``-log p(x | z_1)``), ``"kl"`` (sum over layers), ``"kl_1"``
      ... ``"kl_L"`` (``kl_L`` against ``N(0, I)``, the others against ``p(z_l | z_{l+1})``
      at the sampled ``z_{l+1}``) and ``"elbo"`` ``= -(reconstruction + kl)``.
    """
    x = _check_x(x)
    messages = _messages(bottom_up_fn, top_down_fns, x)
    zs, qs, ps = _top_down_posterior(messages, top_down_fns, key)
    kls = [q.kl(p) for q, p in zip(qs, ps, strict=True)]  # p = None: against N(0, I)
    reconstruction = -_log_likelihood(log_likelihood_fn, decoder_fn(zs[0]), x)
    kl = sum(kls[1:], start=kls[0])
    terms = {"reconstruction": reconstruction, "kl": kl}
    terms.update({f"kl_{i + 1}": k for i, k in enumerate(kls)})
    terms["elbo"] = -(reconstruction + kl)
    return reconstruction + beta * kl, terms


def ladder_sample_with_latents(
    top_down_fns: Sequence[TopDownFn],
    decoder_fn: Callable[[jax.Array], Any],
    key: jax.Array,
    shape: Sequence[int],
    *,
    temperature: float = 1.0,
) -> tuple[SamplerOutput, list[jax.Array]]:
    """:func:`ladder_sample` that also returns the latents ``[z_1, ..., z_L]``."""
    shape = check_sample_shape(shape)
    if isinstance(temperature, (int, float)) and not temperature >= 0.0:
        raise ValueError(f"temperature must be non-negative, got {temperature}.")
    num_layers = len(top_down_fns) + 1
    keys = as_example_keys(key, shape[0])
    layer_keys = jax.vmap(lambda k: jax.random.split(k, num_layers))(keys)  # (B, L)
    z = temperature * normal(layer_keys[:, -1], shape[1:])
    zs = [z]
    for i in range(num_layers - 2, -1, -1):
        p = _as_gaussian(top_down_fns[i](z), f"top_down_fns[{i}] (p(z_{i + 1} | z_{i + 2}))")
        if p.mean.shape[0] != shape[0]:
            raise ValueError(
                f"top_down_fns[{i}] returned batch size {p.mean.shape[0]}, expected {shape[0]}."
            )
        eps = normal(layer_keys[:, i], p.mean.shape[1:], p.mean.dtype)
        z = p.mean + temperature * p.std * eps
        zs.append(z)
    zs.reverse()
    return SamplerOutput(decoder_fn(zs[0]), num_layers), zs


def ladder_sample(
    top_down_fns: Sequence[TopDownFn],
    decoder_fn: Callable[[jax.Array], Any],
    key: jax.Array,
    shape: Sequence[int],
    *,
    temperature: float = 1.0,
) -> SamplerOutput:
    """Ancestral sample ``z_L ~ N(0, T^2 I)``, ``z_l = mu_p,l(z_{l+1}) + T s_p,l eps`` down to
    ``z_1``, then ``decoder_fn(z_1)``; ``T = temperature`` scales every standard deviation
    (``T = 1``: the model; ``T = 0``: the mean path). ``L = len(top_down_fns) + 1``.

    Args:
      top_down_fns: ``L - 1`` callables, ``top_down_fns[l - 1](z_{l+1}) = p(z_l | z_{l+1})``.
      decoder_fn: ``z_1 -> out``.
      key: one key or ``(B,)`` per-example keys (:func:`jaxgen.core.sampling.as_example_keys`);
        example ``b``'s key ``k_b`` is split into ``L`` layer keys and layer ``l`` draws its
        noise from ``jax.random.split(k_b, L)[l - 1]``, so example ``b`` depends on ``k_b``
        only.
      shape: ``(B, *top_event)``, the shape of ``z_L``.
      temperature: non-negative scale of every standard deviation.

    Returns:
      ``SamplerOutput(decoder_fn(z_1), nfe=L)``: ``L - 1`` top-down passes and one decoder
      pass (:func:`ladder_sample_with_latents` also returns ``[z_1, ..., z_L]``).
    """
    out, _ = ladder_sample_with_latents(
        top_down_fns, decoder_fn, key, shape, temperature=temperature
    )
    return out


def ladder_importance_log_likelihood(
    bottom_up_fn: BottomUpFn,
    top_down_fns: Sequence[TopDownFn],
    decoder_fn: Callable[[jax.Array], Any],
    log_likelihood_fn: Callable[[Any, jax.Array], jax.Array],
    x: jax.Array,
    key: jax.Array,
    *,
    num_samples: int,
    chunk_size: int = 100,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Importance-weighted estimate ``log 1/K sum_k w_k`` of ``log p(x)``, (B,), and terms.

    ``K = num_samples`` top-down posterior samples, evaluated ``chunk_size`` at a time (a
    ``vmap`` over the chunk inside a ``lax.scan`` over chunks, with a running
    ``logaddexp``); a last partial chunk is padded and its padding masked out, so memory is
    ``chunk_size`` samples whatever ``K``. The bottom-up pass runs once. See the module doc
    for ``log w``. Sample ``k`` uses the key ``jax.random.split(key, num_chunks)[k //
    chunk_size]`` split ``chunk_size`` ways.
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    x = _check_x(x)
    messages = _messages(bottom_up_fn, top_down_fns, x)
    chunk = min(chunk_size, num_samples)
    num_chunks = -(-num_samples // chunk)

    def log_weight(k: jax.Array) -> jax.Array:
        zs, qs, ps = _top_down_posterior(messages, top_down_fns, k)
        lw = _log_likelihood(log_likelihood_fn, decoder_fn(zs[0]), x)
        lw = lw + standard_normal_log_prob(zs[-1])
        for z, q, p in zip(zs, qs, ps, strict=True):
            if p is not None:
                lw = lw + p.log_prob(z)
            lw = lw - q.log_prob(z)
        return lw

    def step(acc, inputs):
        chunk_key, index = inputs
        lw = jax.vmap(log_weight)(jax.random.split(chunk_key, chunk))  # (chunk, B)
        valid = index * chunk + jnp.arange(chunk) < num_samples
        return accumulate_log_weights(acc, lw.astype(dtype), valid), None

    dtype = messages[0].mean.dtype
    init = init_log_weight_stats(x.shape[0], dtype)
    inputs = (jax.random.split(key, num_chunks), jnp.arange(num_chunks))
    stats, _ = jax.lax.scan(step, init, inputs)
    return log_weight_summary(stats, num_samples)
