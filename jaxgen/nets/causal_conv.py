"""A WaveNet-style causal convolutional language model over token sequences.

Tokens are embedded (width ``C``) and pass through ``num_layers`` gated residual blocks
whose 1-D convolutions have kernel size ``k`` and dilations ``d_l = 2^l``, ``l = 0..L-1``
(van den Oord et al. 2016, sec. 2.1, "dilated causal convolutions"). Block ``l`` computes,
with ``*_d`` a convolution of dilation ``d``::

    u[t] = sum_{j=0}^{k-1} W_j x[t - j d_l]              (taps at t, t - d, ..., t - (k-1) d)
    z = tanh(u_f) * sigma(u_g)                           (gated activation, sec. 2.3, eq. 2)
    x <- x + R z,   skip_l = S z                         (residual and skip paths, sec. 2.4)

where ``u = [u_f, u_g]`` has ``2C`` channels, ``R`` and ``S`` are 1x1 convolutions (dense
layers per position), and positions before 0 read zeros. Causality comes from padding
``(k - 1) d_l`` zeros on the left only (none on the right), so output ``t`` of a block sees
its input at ``t, t - d, ...`` and never later. The output head (sec. 2.4, Fig. 4) is
``logits = H_2 relu(H_1 relu(sum_l skip_l))`` with dense ``H_1`` (C -> C), ``H_2`` (C -> V).

Every other layer is pointwise, so output ``t`` depends exactly on the inputs
``t - R + 1, ..., t`` with the receptive field::

    R = 1 + (k - 1) sum_l d_l = 1 + (k - 1)(2^L - 1).

The model follows the convention of :mod:`jaxgen.autoregressive.losses`: inputs are the
shifted tokens (start token ``bos = V``, ``V + 1`` input ids), and output ``t`` may use input
``t`` itself because the caller has already shifted (WaveNet's own first layer does the
shift instead). Sampling re-runs the network on the prefix
(:func:`jaxgen.autoregressive.sampling.sample_sequence_uncached`).

References:
  van den Oord, Dieleman, Zen, Simonyan, Vinyals, Graves, Kalchbrenner, Senior,
  Kavukcuoglu. WaveNet: A Generative Model for Raw Audio. arXiv:1609.03499, 2016.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.autoregressive.losses import check_tokens

__all__ = ["CausalConvNet", "GatedResidualBlock"]


def _causal_padding(amount: int) -> tuple[int, int]:
    """(left, right) zero padding of the time axis: all of it on the left (the past)."""
    return (amount, 0)


class GatedResidualBlock(nnx.Module):
    """``x (B, T, C) -> (x + R z, S z)`` with ``z`` the gated dilated causal convolution."""

    def __init__(self, channels: int, *, kernel_size: int, dilation: int, rngs: nnx.Rngs):
        self.channels = channels
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.conv = nnx.Conv(
            channels,
            2 * channels,
            (kernel_size,),
            padding="VALID",
            kernel_dilation=(dilation,),
            rngs=rngs,
        )
        self.residual = nnx.Linear(channels, channels, rngs=rngs)
        self.skip = nnx.Linear(channels, channels, rngs=rngs)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        pad = _causal_padding(self.dilation * (self.kernel_size - 1))
        u = self.conv(jnp.pad(x, ((0, 0), pad, (0, 0))))
        filt, gate = jnp.split(u, 2, axis=-1)
        z = jnp.tanh(filt) * jax.nn.sigmoid(gate)
        return x + self.residual(z), self.skip(z)


class CausalConvNet(nnx.Module):
    """Tokens (B, T) -> logits (B, T, V) through dilated gated causal convolutions."""

    def __init__(
        self,
        vocab_size: int,
        *,
        channels: int,
        num_layers: int,
        kernel_size: int = 2,
        rngs: nnx.Rngs,
    ):
        if vocab_size < 1 or channels < 1 or num_layers < 1 or kernel_size < 1:
            raise ValueError(
                "CausalConvNet: vocab_size, channels, num_layers and kernel_size must be >= 1, "
                f"got {vocab_size}, {channels}, {num_layers}, {kernel_size}."
            )
        self.vocab_size = vocab_size
        self.channels = channels
        self.kernel_size = kernel_size
        self.embed = nnx.Embed(vocab_size + 1, channels, rngs=rngs)
        self.blocks = nnx.List(
            [
                GatedResidualBlock(channels, kernel_size=kernel_size, dilation=2**i, rngs=rngs)
                for i in range(num_layers)
            ]
        )
        self.head_hidden = nnx.Linear(channels, channels, rngs=rngs)
        self.head_out = nnx.Linear(channels, vocab_size, rngs=rngs)

    @property
    def receptive_field(self) -> int:
        """``1 + (k - 1) sum_l d_l``: how many input positions (ending at t) output t sees."""
        return 1 + (self.kernel_size - 1) * sum(block.dilation for block in self.blocks)

    def embed_tokens(self, tokens: jax.Array) -> jax.Array:
        """Input embeddings (B, T, C) of tokens (B, T) in ``0..V`` (``V`` = start token)."""
        return self.embed(check_tokens(tokens))

    def from_embeddings(self, embeddings: jax.Array) -> jax.Array:
        """Logits (B, T, V) from input embeddings (B, T, C)."""
        if embeddings.ndim != 3 or embeddings.shape[-1] != self.channels:
            raise ValueError(
                f"CausalConvNet expects embeddings of shape (B, T, {self.channels}), got "
                f"{embeddings.shape}."
            )
        x = embeddings
        skips = jnp.zeros_like(x)
        for block in self.blocks:
            x, skip = block(x)
            skips = skips + skip
        return self.head_out(jax.nn.relu(self.head_hidden(jax.nn.relu(skips))))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """Teacher forcing: logits (B, T, V), position ``t`` seeing ``tokens[:, :t + 1]``."""
        return self.from_embeddings(self.embed_tokens(tokens))
