"""A time- and condition-aware MLP denoiser for flat data: 2-D toy mixtures and problems small
enough to check against closed-form oracles.

With ``e(t)`` the timestep embedding, ``e(t) = W_1 SiLU(W_0 s(t) + b_0) + b_1`` (``s`` the
sinusoidal features of DDPM, Ho et al. 2020, appendix B), plus the condition's embedding
(:class:`~jaxgen.nets.conditioning.ConditionEmbedding`: class label with a learned null class
and / or an embedding vector with a learned null vector, for classifier-free guidance), each
hidden layer is ``h_{i+1} = SiLU(A_i h_i + c_i + P_i SiLU(e))`` (the U-Net residual block's
per-layer projection of the embedding), ``h_0 = x``, and the output ``A_out h_L + c_out``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.nets.conditioning import ConditionEmbedding
from jaxgen.nets.embeddings import sinusoidal_embedding

__all__ = ["DenoisingMLP"]


class DenoisingMLP(nnx.Module):
    """``(x (B, D), t (B,), condition) -> (B, D)``: an MLP conditioned on time and a condition.

    Args:
      dim: data dimension ``D``.
      hidden: widths of the hidden layers; the embeddings have width ``hidden[0]``.
      num_classes: classes ``K`` without the null class (table of ``K + 1`` rows, label ``-1``
        the learned null); 0 for no label input.
      embedding_dim: width of a condition vector; 0 for none.
      dropout: dropout rate after every hidden layer (active only when a key is given).
      rngs: used for parameter initialisation only (not stored).
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (256, 256, 256),
        *,
        num_classes: int = 0,
        embedding_dim: int = 0,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        hidden = tuple(hidden)
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"DenoisingMLP.dim must be an integer >= 1, got {dim!r}")
        if not hidden or not all(
            isinstance(w, int) and not isinstance(w, bool) and w >= 2 for w in hidden
        ):
            raise ValueError(
                f"DenoisingMLP.hidden must be a non-empty sequence of integers >= 2, got {hidden}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"DenoisingMLP.dropout must be in [0, 1), got {dropout}")
        self.dim = dim
        self.hidden = hidden
        width = hidden[0]
        self.time_dense0 = nnx.Linear(width, width, rngs=rngs)
        self.time_dense1 = nnx.Linear(width, width, rngs=rngs)
        self.condition_embed = (
            ConditionEmbedding(
                width, num_classes=num_classes, embedding_dim=embedding_dim, rngs=rngs
            )
            if num_classes or embedding_dim
            else None
        )
        sizes = (dim, *hidden)
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        self.emb_proj = nnx.List([nnx.Linear(width, b, rngs=rngs) for b in hidden])
        self.dropout = nnx.Dropout(dropout)
        self.out = nnx.Linear(hidden[-1], dim, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        t: jax.Array,
        *,
        y: jax.Array | None = None,
        embedding: jax.Array | None = None,
        embedding_keep: jax.Array | None = None,
        key: jax.Array | None = None,
    ) -> jax.Array:
        """Apply the network.

        Args:
          x: ``(B, D)`` float.
          t: ``(B,)`` integer or float, on the scale the U-Net takes (the DDPM step, ``999 t``
            for VP SDEs, ``log sigma``): the sinusoidal features have periods ``2 pi`` to
            ``2 pi 10^4``.
          y: ``(B,)`` labels in ``[-1, num_classes)``, ``-1`` the null class; required iff
            ``num_classes > 0``.
          embedding: ``(B, embedding_dim)`` float; required iff ``embedding_dim > 0``.
          embedding_keep: ``(B,)`` bool; False rows use the learned null vector.
          key: PRNG key for dropout; ``None`` gives the deterministic network.

        Returns:
          An array of shape ``(B, D)``.
        """
        x, t = jnp.asarray(x), jnp.asarray(t)
        if x.ndim != 2 or x.shape[1] != self.dim or not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(
                f"DenoisingMLP expects a float x of shape (B, {self.dim}), "
                f"got shape {x.shape} dtype {x.dtype}"
            )
        batch = x.shape[0]
        if t.shape != (batch,):
            raise ValueError(
                f"DenoisingMLP expects t of shape ({batch},) for x of batch {batch}, got {t.shape}"
            )
        if not (jnp.issubdtype(t.dtype, jnp.floating) or jnp.issubdtype(t.dtype, jnp.integer)):
            raise ValueError(f"DenoisingMLP expects an integer or float t, got dtype {t.dtype}")
        if self.condition_embed is None:
            if y is not None or embedding is not None or embedding_keep is not None:
                raise ValueError(
                    "this DenoisingMLP is unconditional (num_classes = 0, embedding_dim = 0) "
                    "but y, embedding or embedding_keep was given"
                )
        emb = sinusoidal_embedding(t, self.hidden[0]).astype(x.dtype)
        emb = self.time_dense1(jax.nn.silu(self.time_dense0(emb)))
        if self.condition_embed is not None:
            cond = self.condition_embed(y, embedding, embedding_keep, batch_size=batch)
            emb = emb + cond.astype(emb.dtype)
        emb = jax.nn.silu(emb)
        keys = (
            [None] * len(self.layers)
            if key is None or self.dropout.rate == 0
            else list(jax.random.split(key, len(self.layers)))
        )
        h = x
        for layer, proj, k in zip(self.layers, self.emb_proj, keys, strict=True):
            h = jax.nn.silu(layer(h) + proj(emb))
            if k is not None:
                h = self.dropout(h, deterministic=False, rngs=k)
        return self.out(h)
