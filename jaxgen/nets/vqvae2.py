"""The networks of VQ-VAE-2 (Razavi, van den Oord, Vinyals 2019, sec. 3.1, Fig. 2a).

Built from the VQ-VAE's convolutional encoder and decoder (:mod:`jaxgen.nets.
conv_autoencoder`: strided 4x4 convolutions, a residual stack, transposed 4x4 convolutions):

* bottom encoder: ``ConvEncoder`` x (B, H, W, C) -> h_b (B, H / 2^n_b, W / 2^n_b, channels);
* top encoder: ``ConvEncoder`` h_b -> z_e^t (B, h_b / 2^n_t, w_b / 2^n_t, D);
* :class:`BottomConditioner`: the top decoder (a ``ConvDecoder``, e_t -> h_b's grid with
  ``channels`` channels), concatenated with h_b and projected by a 1x1 convolution to the
  bottom's code dimension: ``z_e^b = W [h_b, top_decoder(e_t)]``;
* :class:`TwoLevelDecoder`: e_t upsampled to e_b's grid by ``n_t`` transposed 4x4 stride-2
  convolutions (the paper's transposed convolution of e_t), concatenated with e_b and decoded
  by a ``ConvDecoder`` to the image size: ``out = decoder([e_b, upsample(e_t)])``.

Images and code grids are NHWC.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.nets.conv_autoencoder import ConvDecoder


def _upsampler(channels: int, num_upsamples: int, rngs: nnx.Rngs) -> nnx.List:
    return nnx.List(
        [
            nnx.ConvTranspose(channels, channels, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs)
            for _ in range(num_upsamples)
        ]
    )


def _check_grids(top: jax.Array, bottom: jax.Array, factor: int, name: str) -> None:
    if top.ndim != 4 or bottom.ndim != 4:
        raise ValueError(
            f"{name} expects NHWC grids, got top {top.shape} and bottom {bottom.shape}"
        )
    expected = (bottom.shape[0], bottom.shape[1] // factor, bottom.shape[2] // factor)
    if bottom.shape[1] % factor or bottom.shape[2] % factor or top.shape[:3] != expected:
        raise ValueError(
            f"{name}: the top grid must be the bottom grid {bottom.shape[1:3]} / {factor}, "
            f"i.e. (B, h, w) = {expected}; got top {top.shape} and bottom {bottom.shape}"
        )


class BottomConditioner(nnx.Module):
    """``(h_b, e_t) -> z_e^b = conv1x1([h_b, top_decoder(e_t)])`` on h_b's grid."""

    def __init__(
        self,
        feature_channels: int,
        top_channels: int,
        embedding_dim: int,
        *,
        channels: int,
        residual_channels: int,
        num_residual_blocks: int,
        num_upsamples: int,
        rngs: nnx.Rngs,
    ):
        self.factor = 2**num_upsamples
        self.top_decoder = ConvDecoder(
            top_channels,
            channels,
            channels=channels,
            residual_channels=residual_channels,
            num_residual_blocks=num_residual_blocks,
            num_downsamples=num_upsamples,
            rngs=rngs,
        )
        self.project = nnx.Conv(feature_channels + channels, embedding_dim, (1, 1), rngs=rngs)

    def __call__(self, h_bottom: jax.Array, e_top: jax.Array) -> jax.Array:
        _check_grids(e_top, h_bottom, self.factor, "BottomConditioner")
        return self.project(jnp.concatenate([h_bottom, self.top_decoder(e_top)], axis=-1))


class TwoLevelDecoder(nnx.Module):
    """``(e_t, e_b) -> out = ConvDecoder([e_b, upsample(e_t)])`` at the image size."""

    def __init__(
        self,
        top_channels: int,
        bottom_channels: int,
        out_channels: int,
        *,
        channels: int,
        residual_channels: int,
        num_residual_blocks: int,
        num_top_upsamples: int,
        num_upsamples: int,
        rngs: nnx.Rngs,
    ):
        self.factor = 2**num_top_upsamples
        self.upsample = _upsampler(top_channels, num_top_upsamples, rngs)
        self.decoder = ConvDecoder(
            top_channels + bottom_channels,
            out_channels,
            channels=channels,
            residual_channels=residual_channels,
            num_residual_blocks=num_residual_blocks,
            num_downsamples=num_upsamples,
            rngs=rngs,
        )

    def __call__(self, e_top: jax.Array, e_bottom: jax.Array) -> jax.Array:
        _check_grids(e_top, e_bottom, self.factor, "TwoLevelDecoder")
        up = e_top
        for i, layer in enumerate(self.upsample):
            up = layer(up)
            if i < len(self.upsample) - 1:
                up = jax.nn.relu(up)
        return self.decoder(jnp.concatenate([e_bottom, up], axis=-1))
