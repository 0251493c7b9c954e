"""The convolutional encoder and decoder of VQ-VAE (van den Oord et al. 2017, sec. 4.1).

Encoder: ``num_downsamples`` strided 4x4 convolutions (stride 2, ReLU between), a 3x3
convolution, then a residual stack; a 1x1 convolution projects to the latent channels.
Decoder: a 3x3 convolution from the latent channels, the residual stack, then
``num_downsamples`` transposed 4x4 convolutions (stride 2) back to the image size, the last
producing ``out_channels``. Each residual block is ``x + conv1x1(ReLU(conv3x3(ReLU(x))))``
and the stack ends with a ReLU, as in the paper ("ReLU, 3x3 conv, ReLU, 1x1 conv"; 256
hidden units and two residual blocks for CIFAR-10).

Images are NHWC; an (H, W) image becomes an (H / 2^n, W / 2^n) latent grid.
"""

from __future__ import annotations

import jax
from flax import nnx


class ResidualStack(nnx.Module):
    """``num_blocks`` blocks ``x + conv1x1(ReLU(conv3x3(ReLU(x))))``, then ReLU."""

    def __init__(self, channels: int, hidden: int, num_blocks: int, *, rngs: nnx.Rngs):
        self.inner = nnx.List(
            [nnx.Conv(channels, hidden, (3, 3), rngs=rngs) for _ in range(num_blocks)]
        )
        self.outer = nnx.List(
            [nnx.Conv(hidden, channels, (1, 1), rngs=rngs) for _ in range(num_blocks)]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for inner, outer in zip(self.inner, self.outer, strict=True):
            x = x + outer(jax.nn.relu(inner(jax.nn.relu(x))))
        return jax.nn.relu(x)


def _check_image(x: jax.Array, num_downsamples: int, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} expects NHWC images, got shape {x.shape}")
    factor = 2**num_downsamples
    if x.shape[1] % factor or x.shape[2] % factor:
        raise ValueError(
            f"{name}: image size {x.shape[1:3]} is not divisible by 2^{num_downsamples}"
        )


class ConvEncoder(nnx.Module):
    """Image (B, H, W, C) -> latent grid (B, H / 2^n, W / 2^n, latent_channels)."""

    def __init__(
        self,
        in_channels: int,
        latent_channels: int,
        *,
        channels: int = 256,
        residual_channels: int = 256,
        num_residual_blocks: int = 2,
        num_downsamples: int = 2,
        rngs: nnx.Rngs,
    ):
        self.num_downsamples = num_downsamples
        sizes = [in_channels] + [channels] * num_downsamples
        self.down = nnx.List(
            [
                nnx.Conv(a, b, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), rngs=rngs)
                for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            ]
        )
        self.conv = nnx.Conv(sizes[-1], channels, (3, 3), rngs=rngs)
        self.residual = ResidualStack(channels, residual_channels, num_residual_blocks, rngs=rngs)
        self.project = nnx.Conv(channels, latent_channels, (1, 1), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        _check_image(x, self.num_downsamples, "ConvEncoder")
        h = x
        for layer in self.down:
            h = jax.nn.relu(layer(h))
        return self.project(self.residual(self.conv(h)))


class ConvDecoder(nnx.Module):
    """Latent grid (B, h, w, latent_channels) -> (B, h 2^n, w 2^n, out_channels)."""

    def __init__(
        self,
        latent_channels: int,
        out_channels: int,
        *,
        channels: int = 256,
        residual_channels: int = 256,
        num_residual_blocks: int = 2,
        num_downsamples: int = 2,
        rngs: nnx.Rngs,
    ):
        self.conv = nnx.Conv(latent_channels, channels, (3, 3), rngs=rngs)
        self.residual = ResidualStack(channels, residual_channels, num_residual_blocks, rngs=rngs)
        sizes = [channels] * num_downsamples + [out_channels]
        self.up = nnx.List(
            [
                nnx.ConvTranspose(a, b, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs)
                for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            ]
        )
        if num_downsamples == 0:
            self.final = nnx.Conv(channels, out_channels, (1, 1), rngs=rngs)
        else:
            self.final = None

    def __call__(self, z: jax.Array) -> jax.Array:
        h = self.residual(self.conv(z))
        for i, layer in enumerate(self.up):
            h = layer(h)
            if i < len(self.up) - 1:
                h = jax.nn.relu(h)
        if self.final is not None:
            h = self.final(h)
        return h
