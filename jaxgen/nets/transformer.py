"""A decoder-only causal transformer (GPT-2 layout) with a key-value cache for sampling.

**Forward pass** over inputs ``(B, T)`` (the shifted tokens of
:mod:`jaxgen.autoregressive.losses`: start token ``bos = V``, ``V + 1`` input ids)::

    x_0 = E[tokens] + P[0:T]                       (learned token and position embeddings)
    x <- x + Attn(LN_1(x)),   x <- x + MLP(LN_2(x))        (each of num_layers pre-LN blocks)
    logits = LN_f(x) W_out + b_out                 (B, T, V)

with ``MLP(h) = GELU(h W_1 + b_1) W_2 + b_2`` of width ``mlp_ratio * dim`` and multi-head
causal self-attention (Vaswani et al. 2017, sec. 3.2.1-3.2.3, eq. 1): with ``q, k, v``
``(B, heads, T, d_h)`` from one dense layer and ``d_h = dim / heads``::

    A = softmax(q k^T / sqrt(d_h) + M),   M[t, s] = 0 if s <= t else -inf,
    Attn(h) = concat_heads(A v) W_o + b_o,

so position ``t`` attends to ``0..t`` only. The normalisation is placed before each
sub-layer with a final ``LN_f`` (GPT-2, Radford et al. 2019, sec. 2.3). Initialisation:
dense and token-embedding weights ``N(0, 0.02^2)``, position embeddings ``N(0, 0.01^2)``
(the values of the GPT-2 release), biases 0, and the two residual output projections of
each block (``W_o``, ``W_2``) scaled by ``1 / sqrt(N)``, ``N = 2 num_layers`` residual
layers (GPT-2, sec. 2.3). The output layer is not
tied to the input embedding (``V + 1`` input ids against ``V`` outputs).

**Key-value cache.** :meth:`CausalTransformer.init_cache` returns, per block, zero arrays
``{"key", "value"}`` of shape ``(B, heads, L, d_h)`` (``L`` <= ``max_len``).
:meth:`CausalTransformer.decode_step` embeds one token at ``position = t`` (position
embedding ``P[t]``), computes its query, key and value in every block, writes the key and
value into slot ``t`` of the cache and attends over the slots ``s <= t``::

    A_t = softmax(q_t K^T / sqrt(d_h) + m),   m[s] = 0 if s <= t else -inf,

which is row ``t`` of the full computation above: one position of work per token (plus the
``O(L)`` attention read) instead of re-running the whole prefix. The cache is a plain pytree
of arrays, so it can be carried by ``lax.scan`` (see
:func:`jaxgen.autoregressive.sampling.sample_sequence`).

References:
  Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser, Polosukhin. Attention Is All
  You Need. NeurIPS 2017.
  Radford, Wu, Child, Luan, Amodei, Sutskever. Language Models are Unsupervised Multitask
  Learners (GPT-2). OpenAI 2019.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.autoregressive.losses import check_tokens

__all__ = ["CausalSelfAttention", "CausalTransformer", "TransformerBlock"]

LayerCache = dict[str, jax.Array]


def _causal_mask(length: int) -> jax.Array:
    """(T, T) bool, True where query t may attend to key s (s <= t)."""
    return jnp.tril(jnp.ones((length, length), bool))


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """``softmax(q k^T / sqrt(d) + M) v`` for (B, H, Tq, d), (B, H, Tk, d), mask (Tq, Tk)."""
    scores = jnp.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
    scores = jnp.where(mask[None, None], scores, -jnp.inf)
    wide = jnp.promote_types(scores.dtype, jnp.float32)  # at least float32 (bf16 compute)
    weights = jax.nn.softmax(scores.astype(wide), axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bhkd->bhqd", weights, v)


def _dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout: zero each entry with probability ``rate``, scale the rest by
    ``1 / (1 - rate)``; the identity without a key (evaluation and sampling)."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def _dense(a: int, b: int, std: float, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(a, b, kernel_init=nnx.initializers.normal(std), rngs=rngs)


class CausalSelfAttention(nnx.Module):
    """Multi-head causal self-attention ``(B, T, D) -> (B, T, D)``, with a one-token decode."""

    def __init__(self, dim: int, num_heads: int, *, out_std: float, rngs: nnx.Rngs):
        self.dim = dim
        self.num_heads = num_heads
        self.qkv = _dense(dim, 3 * dim, 0.02, rngs)
        self.proj = _dense(dim, dim, out_std, rngs)

    def _heads(self, h: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(B, T, D) -> q, k, v each (B, H, T, d_h)."""
        batch, length, _ = h.shape
        qkv = self.qkv(h).reshape(batch, length, 3, self.num_heads, self.dim // self.num_heads)
        q, k, v = (jnp.transpose(qkv[:, :, i], (0, 2, 1, 3)) for i in range(3))
        return q, k, v

    def _merge(self, y: jax.Array) -> jax.Array:
        """(B, H, T, d_h) -> (B, T, D) through the output projection."""
        batch, _, length, _ = y.shape
        return self.proj(jnp.transpose(y, (0, 2, 1, 3)).reshape(batch, length, self.dim))

    def __call__(self, h: jax.Array) -> jax.Array:
        q, k, v = self._heads(h)
        return self._merge(_attend(q, k, v, _causal_mask(h.shape[1])))

    def decode(
        self, h: jax.Array, cache: LayerCache, position: jax.Array
    ) -> tuple[jax.Array, LayerCache]:
        """One position: ``h`` (B, 1, D) at ``position``; writes its key / value into the cache
        and attends over cache slots ``0..position``."""
        q, k, v = self._heads(h)
        keys = jax.lax.dynamic_update_slice_in_dim(cache["key"], k, position, axis=2)
        values = jax.lax.dynamic_update_slice_in_dim(cache["value"], v, position, axis=2)
        mask = (jnp.arange(keys.shape[2]) <= position)[None, :]
        return self._merge(_attend(q, keys, values, mask)), {"key": keys, "value": values}


class TransformerBlock(nnx.Module):
    """Pre-LN block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: int, out_std: float, rngs):
        self.norm_attn = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = CausalSelfAttention(dim, num_heads, out_std=out_std, rngs=rngs)
        self.norm_mlp = nnx.LayerNorm(dim, rngs=rngs)
        self.mlp_in = _dense(dim, mlp_ratio * dim, 0.02, rngs)
        self.mlp_out = _dense(mlp_ratio * dim, dim, out_std, rngs)

    def _mlp_branch(self, x: jax.Array) -> jax.Array:
        return self.mlp_out(jax.nn.gelu(self.mlp_in(self.norm_mlp(x))))

    def _mlp(self, x: jax.Array) -> jax.Array:
        return x + self._mlp_branch(x)

    def __call__(
        self, x: jax.Array, *, dropout: float = 0.0, key: jax.Array | None = None
    ) -> jax.Array:
        """The block; with ``key``, each residual branch is dropped at rate ``dropout``."""
        keys = (None, None) if key is None else tuple(jax.random.split(key))
        x = x + _dropout(self.attn(self.norm_attn(x)), dropout, keys[0])
        return x + _dropout(self._mlp_branch(x), dropout, keys[1])

    def decode(
        self, x: jax.Array, cache: LayerCache, position: jax.Array
    ) -> tuple[jax.Array, LayerCache]:
        y, cache = self.attn.decode(self.norm_attn(x), cache, position)
        return self._mlp(x + y), cache


class CausalTransformer(nnx.Module):
    """Tokens (B, T) -> logits (B, T, V), T <= max_len; ``decode_step`` for cached sampling."""

    def __init__(
        self,
        vocab_size: int,
        *,
        max_len: int,
        dim: int,
        num_heads: int,
        num_layers: int,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        sizes = (vocab_size, max_len, dim, num_heads, num_layers, mlp_ratio)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"CausalTransformer: dropout must be in [0, 1), got {dropout!r}.")
        self.dropout = float(dropout)
        if min(sizes) < 1:
            raise ValueError(
                "CausalTransformer: vocab_size, max_len, dim, num_heads, num_layers and "
                f"mlp_ratio must be >= 1, got {sizes}."
            )
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a multiple of num_heads ({num_heads}).")
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.dim = dim
        self.num_heads = num_heads
        out_std = 0.02 / math.sqrt(2 * num_layers)
        self.token_embed = nnx.Embed(
            vocab_size + 1, dim, embedding_init=nnx.initializers.normal(0.02), rngs=rngs
        )
        self.position_embed = nnx.Param(
            nnx.initializers.normal(0.01)(rngs.params(), (max_len, dim), jnp.float32)
        )
        self.blocks = nnx.List(
            [
                TransformerBlock(dim, num_heads, mlp_ratio=mlp_ratio, out_std=out_std, rngs=rngs)
                for _ in range(num_layers)
            ]
        )
        self.norm_out = nnx.LayerNorm(dim, rngs=rngs)
        self.head = _dense(dim, vocab_size, 0.02, rngs)

    def embed_tokens(self, tokens: jax.Array) -> jax.Array:
        """Token embeddings (B, T, D) of tokens (B, T) in ``0..V``, without positions."""
        return self.token_embed(check_tokens(tokens))

    def from_embeddings(
        self, embeddings: jax.Array, *, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Logits (B, T, V) from token embeddings (B, T, D); adds the position embeddings.
        With ``dropout_key`` (training), the embeddings and every residual branch are
        dropped at rate ``dropout`` (GPT-2's embedding and residual dropout)."""
        if embeddings.ndim != 3 or embeddings.shape[-1] != self.dim:
            raise ValueError(
                f"CausalTransformer expects embeddings of shape (B, T, {self.dim}), got "
                f"{embeddings.shape}."
            )
        length = embeddings.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len {self.max_len}.")
        x = embeddings + self.position_embed[:length][None]
        keys = [None] * (len(self.blocks) + 1)
        if dropout_key is not None and self.dropout > 0.0:
            keys = list(jax.random.split(dropout_key, len(self.blocks) + 1))
        x = _dropout(x, self.dropout, keys[0])
        for block, key in zip(self.blocks, keys[1:], strict=True):
            x = block(x, dropout=self.dropout, key=key)
        return self.head(self.norm_out(x))

    def __call__(self, tokens: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        """Teacher forcing: logits (B, T, V), position ``t`` seeing ``tokens[:, :t + 1]``
        (``dropout_key``: training with dropout, :meth:`from_embeddings`)."""
        return self.from_embeddings(self.embed_tokens(tokens), dropout_key=dropout_key)

    def init_cache(
        self, batch: int, max_len: int | None = None, dtype=jnp.float32
    ) -> tuple[LayerCache, ...]:
        """Zero cache: per block ``{"key", "value"}`` of shape (B, heads, L, dim / heads),
        ``L = max_len`` (default: the model's ``max_len``; at most it)."""
        length = self.max_len if max_len is None else max_len
        if batch < 1 or not 1 <= length <= self.max_len:
            raise ValueError(
                f"init_cache needs batch >= 1 and 1 <= max_len <= {self.max_len}, got "
                f"batch={batch}, max_len={max_len}."
            )
        shape = (batch, self.num_heads, length, self.dim // self.num_heads)
        return tuple(
            {"key": jnp.zeros(shape, dtype), "value": jnp.zeros(shape, dtype)} for _ in self.blocks
        )

    def decode_step(
        self, cache: tuple[LayerCache, ...], token: jax.Array, position: int | jax.Array
    ) -> tuple[tuple[LayerCache, ...], jax.Array]:
        """Token (B,) at ``position`` (a scalar, the same for the batch; must be below the
        cache length, checked when not traced) -> ``(cache, logits (B, V))``.

        The logits equal ``self(inputs)[:, position]`` when the cache holds the keys and
        values of ``inputs[:, :position]`` (written by earlier calls at those positions).
        """
        token = check_tokens(token, name="token", ndim=1)
        if len(cache) != len(self.blocks):
            raise ValueError(f"cache has {len(cache)} layers, the model {len(self.blocks)}.")
        shape = cache[0]["key"].shape
        if shape[:2] != (token.shape[0], self.num_heads) or shape[3] != self.dim // self.num_heads:
            raise ValueError(
                f"cache arrays of shape {shape} do not fit batch {token.shape[0]} and "
                f"{self.num_heads} heads of width {self.dim // self.num_heads}."
            )
        position = jnp.asarray(position)
        if position.ndim != 0 or not jnp.issubdtype(position.dtype, jnp.integer):
            raise ValueError(f"position must be an integer scalar, got {position!r}.")
        if not isinstance(position, jax.core.Tracer) and not 0 <= int(position) < shape[2]:
            raise ValueError(f"position {int(position)} is outside the cache (0..{shape[2] - 1}).")
        pos_embed = jax.lax.dynamic_index_in_dim(self.position_embed[...], position, keepdims=True)
        x = self.token_embed(token)[:, None, :] + pos_embed[None]
        new_cache = []
        for block, layer_cache in zip(self.blocks, cache, strict=True):
            x, layer_cache = block.decode(x, layer_cache, position)
            new_cache.append(layer_cache)
        return tuple(new_cache), self.head(self.norm_out(x))[:, 0]
