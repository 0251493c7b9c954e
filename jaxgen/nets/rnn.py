"""Recurrent language models: LSTM and GRU cells written out, run with ``lax.scan``.

Row-vector convention: ``x`` (B, in), ``h`` (B, H); ``W`` (in, nH), ``U`` (H, nH) and ``b``
(nH,) hold the ``n`` gates side by side, in the order listed. ``sigma`` is the logistic
sigmoid and ``*`` the elementwise product.

**LSTM** (Hochreiter and Schmidhuber 1997, with the forget gate of Gers, Schmidhuber and
Cummins 2000, in the form of Graves 2013, eqs. 7-11 without peepholes); gates ``[i, f, g, o]``::

    i = sigma(x W_i + h U_i + b_i)        (input gate)
    f = sigma(x W_f + h U_f + b_f)        (forget gate)
    g = tanh(x W_g + h U_g + b_g)         (candidate cell)
    o = sigma(x W_o + h U_o + b_o)        (output gate)
    c' = f * c + i * g,      h' = o * tanh(c').

The carry of one layer is ``(h, c)``. ``b_f`` starts at 1 (as recommended by Jozefowicz,
Zaremba and Sutskever 2015), the other biases at 0.

**GRU** (Cho et al. 2014, eqs. 5-8); gates ``[r, z, n]``::

    r = sigma(x W_r + h U_r + b_r)                 (reset gate)
    z = sigma(x W_z + h U_z + b_z)                 (update gate)
    n = tanh(x W_n + (r * h) U_n + b_n)            (candidate)
    h' = z * h + (1 - z) * n.

The paper writes no biases; the cell adds ``b`` (zero at initialisation). The reset gate
multiplies ``h`` before ``U_n`` as in the paper (cuDNN and PyTorch apply it
after: ``r * (h U_n + b)``, a different model). The carry of one layer is ``(h,)``.

``W`` is LeCun-normal, ``U`` orthogonal. :class:`RNNLM` stacks ``num_layers`` cells of width
``hidden`` on a token embedding of width ``hidden`` and reads logits from the top layer's
``h`` through one linear layer. Its carry is a tuple over layers of the per-layer tuples
above, a plain pytree of ``(B, H)`` arrays starting at zero. The input / output convention
(start token ``bos = V``, ``V + 1`` input ids, position ``t`` predicts token ``t``) is that of
:mod:`jaxgen.autoregressive.losses`. ``__call__`` runs the whole (shifted) sequence;
:meth:`RNNLM.step` advances one token at O(1) cost for sampling.

References:
  Hochreiter, Schmidhuber. Long Short-Term Memory. Neural Computation 1997.
  Gers, Schmidhuber, Cummins. Learning to Forget: Continual Prediction with LSTM.
  Neural Computation 2000.
  Graves. Generating Sequences With Recurrent Neural Networks. arXiv:1308.0850, 2013.
  Cho, van Merrienboer, Gulcehre, Bahdanau, Bougares, Schwenk, Bengio. Learning Phrase
  Representations using RNN Encoder-Decoder for Statistical Machine Translation. EMNLP 2014.
  Jozefowicz, Zaremba, Sutskever. An Empirical Exploration of Recurrent Network
  Architectures. ICML 2015.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.autoregressive.losses import check_tokens

__all__ = ["CELLS", "GRUCell", "LSTMCell", "RNNLM"]

CELLS = ("lstm", "gru")
Carry = tuple[jax.Array, ...]


class _GatedCell(nnx.Module):
    """Parameters ``W`` (in, nH), ``U`` (H, nH), ``b`` (nH,) for ``n`` gates of width H."""

    num_gates = 0
    carry_size = 0

    def __init__(self, in_features: int, hidden: int, *, rngs: nnx.Rngs):
        if in_features < 1 or hidden < 1:
            raise ValueError(
                f"{type(self).__name__}: in_features and hidden must be >= 1, got "
                f"{in_features}, {hidden}."
            )
        self.in_features = in_features
        self.hidden = hidden
        width = self.num_gates * hidden
        init_w = nnx.initializers.lecun_normal()
        init_u = nnx.initializers.orthogonal()
        self.input_kernel = nnx.Param(init_w(rngs.params(), (in_features, width), jnp.float32))
        self.hidden_kernel = nnx.Param(init_u(rngs.params(), (hidden, width), jnp.float32))
        self.bias = nnx.Param(self._initial_bias())

    def _initial_bias(self) -> jax.Array:
        return jnp.zeros((self.num_gates * self.hidden,), jnp.float32)

    def initial_carry(self, batch: int, dtype=jnp.float32) -> Carry:
        raise NotImplementedError

    def _check(self, carry: Carry, x: jax.Array) -> None:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__} expects x of shape (B, {self.in_features}), got {x.shape}."
            )
        expected = self.carry_size
        if len(carry) != expected or any(c.shape != (x.shape[0], self.hidden) for c in carry):
            raise ValueError(
                f"{type(self).__name__} expects a carry of {expected} arrays of shape "
                f"({x.shape[0]}, {self.hidden}), got {[c.shape for c in carry]}."
            )


class LSTMCell(_GatedCell):
    """One LSTM step ``((h, c), x) -> ((h', c'), h')`` (module docstring, gates [i, f, g, o])."""

    num_gates = 4
    carry_size = 2

    def _initial_bias(self) -> jax.Array:
        return jnp.zeros((4, self.hidden), jnp.float32).at[1].set(1.0).reshape(-1)

    def initial_carry(self, batch: int, dtype=jnp.float32) -> Carry:
        zeros = jnp.zeros((batch, self.hidden), dtype)
        return (zeros, zeros)

    def __call__(self, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]:
        self._check(carry, x)
        h, c = carry
        pre = x @ self.input_kernel[...] + h @ self.hidden_kernel[...] + self.bias[...][None]
        i, f, g, o = jnp.split(pre, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h


class GRUCell(_GatedCell):
    """One GRU step ``((h,), x) -> ((h',), h')`` (module docstring, gates [r, z, n])."""

    num_gates = 3
    carry_size = 1

    def initial_carry(self, batch: int, dtype=jnp.float32) -> Carry:
        return (jnp.zeros((batch, self.hidden), dtype),)

    def __call__(self, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]:
        self._check(carry, x)
        (h,) = carry
        hidden = self.hidden
        u = self.hidden_kernel[...]
        from_x = x @ self.input_kernel[...] + self.bias[...][None]
        r, z = jnp.split(jax.nn.sigmoid(from_x[:, : 2 * hidden] + h @ u[:, : 2 * hidden]), 2, -1)
        n = jnp.tanh(from_x[:, 2 * hidden :] + (r * h) @ u[:, 2 * hidden :])
        h = z * h + (1.0 - z) * n
        return (h,), h


_CELL_TYPES = {"lstm": LSTMCell, "gru": GRUCell}


class RNNLM(nnx.Module):
    """Tokens (B, T) -> logits (B, T, V) through stacked LSTM or GRU cells."""

    def __init__(
        self,
        vocab_size: int,
        *,
        cell: str = "lstm",
        hidden: int,
        num_layers: int = 1,
        rngs: nnx.Rngs,
    ):
        if cell not in _CELL_TYPES:
            raise ValueError(f"unknown cell {cell!r}; expected one of {CELLS}.")
        if vocab_size < 1 or hidden < 1 or num_layers < 1:
            raise ValueError(
                "RNNLM: vocab_size, hidden and num_layers must be >= 1, got "
                f"{vocab_size}, {hidden}, {num_layers}."
            )
        self.vocab_size = vocab_size
        self.cell = cell
        self.hidden = hidden
        self.embed = nnx.Embed(vocab_size + 1, hidden, rngs=rngs)
        self.cells = nnx.List(
            [_CELL_TYPES[cell](hidden, hidden, rngs=rngs) for _ in range(num_layers)]
        )
        self.out = nnx.Linear(hidden, vocab_size, rngs=rngs)

    def initial_carry(self, batch: int, dtype=jnp.float32) -> tuple[Carry, ...]:
        """Zero state: a tuple over layers of ``(h, c)`` (LSTM) or ``(h,)`` (GRU), (B, H) each."""
        return tuple(c.initial_carry(batch, dtype) for c in self.cells)

    def embed_tokens(self, tokens: jax.Array) -> jax.Array:
        """Input embeddings (B, T, H) of tokens (B, T) in ``0..V`` (``V`` = start token)."""
        return self.embed(check_tokens(tokens))

    def _step_embedded(
        self, carry: tuple[Carry, ...], x: jax.Array
    ) -> tuple[tuple[Carry, ...], jax.Array]:
        new = []
        for cell, layer_carry in zip(self.cells, carry, strict=True):
            layer_carry, x = cell(layer_carry, x)
            new.append(layer_carry)
        return tuple(new), self.out(x)

    def from_embeddings(
        self, embeddings: jax.Array, carry: tuple[Carry, ...] | None = None
    ) -> jax.Array:
        """Logits (B, T, V) from input embeddings (B, T, H), scanning over T from ``carry``
        (zero by default)."""
        if embeddings.ndim != 3 or embeddings.shape[-1] != self.hidden:
            raise ValueError(
                f"RNNLM expects embeddings of shape (B, T, {self.hidden}), got {embeddings.shape}."
            )
        if carry is None:
            carry = self.initial_carry(embeddings.shape[0], embeddings.dtype)
        _, logits = jax.lax.scan(self._step_embedded, carry, jnp.swapaxes(embeddings, 0, 1))
        return jnp.swapaxes(logits, 0, 1)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """Teacher forcing: logits (B, T, V), position ``t`` seeing ``tokens[:, :t + 1]``."""
        return self.from_embeddings(self.embed_tokens(tokens))

    def step(
        self, carry: tuple[Carry, ...], token: jax.Array, position: jax.Array | None = None
    ) -> tuple[tuple[Carry, ...], jax.Array]:
        """One token (B,) -> ``(carry, logits (B, V))``. ``position`` is ignored (accepted so
        that the method fits ``sample_sequence``'s ``step_fn(carry, token, position)``)."""
        del position
        token = check_tokens(token, name="token", ndim=1)
        return self._step_embedded(carry, self.embed(token))
