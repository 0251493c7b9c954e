"""Image-conditioned GAN networks after pix2pix (Isola et al. 2017): a U-Net generator and a
PatchGAN discriminator, sized here for 8x8 digit super-resolution (the condition is the 4x4
low-resolution digit upsampled to 8x8 by nearest neighbour, done by the caller).

U-Net generator (sec. 3.2.1 and 6.1.1): an encoder of stride-2 4x4 convolutions
(LeakyReLU 0.2) halves the resolution ``len(features)`` times (8 -> 4 -> 2 -> 1 with three
levels), with batch norm on every layer but the first (sec. 6.1.1) and the innermost: the
bottleneck is a 1 x 1 map at 8x8, where batch statistics are per channel over the batch
only, so a batch of one would normalize the bottleneck to a constant and cut the
decoder off from it (the authors' code leaves the innermost layer unnormalized too). The
decoder of stride-2 4x4 transposed convolutions (batch norm, ReLU) doubles the resolution
back, and before each decoder layer but the first the mirrored encoder activation is
concatenated on channels (the skip connections "between each layer i and layer n - i",
sec. 3.2.1). The last layer maps to
``out_channels`` with tanh. Channels: encoder ``features``; decoder
``features[-2], ..., features[0]`` (each doubled by its skip), then ``out_channels``.

Noise: pix2pix gets its stochasticity only from dropout kept on at test time (sec. 3.1).
Here noise is an explicit input instead: ``noise_channels`` channels of (caller-drawn)
noise concatenated to the condition, so a sample is a pure function of
(params, condition, key) and the nets stay deterministic modules of Params.

PatchGAN discriminator (sec. 3.2.2 and 6.1.2): the condition and the (real or generated)
target concatenated on channels go through stride-2 4x4 convolutions (padding 1,
LeakyReLU 0.2, batch norm on all but the first) and a final 3x3 stride-1 SAME convolution to
one channel: a grid of patch logits (B, H / 2^n, W / 2^n), each classifying one patch as
real or fake. Receptive field (``patch_receptive_field``): the final 3x3 convolution sees
rows ``[i - 1, i + 1]`` of its input; each stride-2 4x4 convolution (padding 1) maps rows
``[a, b]`` of its output to ``[2a - 1, 2b + 2]`` of its input; so with n downsamplings patch
``i`` sees input rows ``[2^n i - (2^(n+1) - 1), 2^n i + 3 * 2^n - 2]``: a window of
``5 * 2^n - 2`` pixels (8 for n = 1, 18 for n = 2) at stride ``2^n``, clipped to the image
(the rest is zero padding). On 8x8 digits with n = 2 each of the 2 x 2 patches therefore
sees the whole image (at different alignments). Batch norm makes every logit depend on
the batch's statistics too; the window holds for fixed statistics (``batch_norm=False``
makes it exact).

Sampling: ``UNetGenerator(x, noise, num_reference=R)`` normalizes with the statistics of
the first ``R`` rows only (a reference batch of conditions, Salimans et al. 2016, sec.
3.4), so that the other rows' outputs do not depend on their batch (Isola et al. use the
test batch's statistics; see ``jaxgen.gan.pix2pix``).

Weights are initialized from N(0, 0.02^2), as in DCGAN.

Reference:
  Isola, Zhu, Zhou, Efros. Image-to-Image Translation with Conditional Adversarial
  Networks. CVPR 2017.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.nets.dcgan import (
    DCGAN_INIT,
    LEAKY_SLOPE,
    BatchStatsNorm,
    downsampling_conv,
    upsampling_conv,
)

__all__ = ["PatchDiscriminator", "UNetGenerator"]


def _check_features(features: Sequence[int], name: str) -> tuple[int, ...]:
    features = tuple(int(f) for f in features)
    if not features or min(features) < 1:
        raise ValueError(f"{name}: features must be a non-empty sequence of positive ints")
    return features


class UNetGenerator(nnx.Module):
    """condition (B, H, W, in_channels) [+ noise (B, H, W, noise_channels)] -> (B, H, W, out)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        features: Sequence[int] = (64, 128, 256),
        noise_channels: int = 0,
        rngs: nnx.Rngs,
    ):
        features = _check_features(features, "UNetGenerator")
        if in_channels < 1 or out_channels < 1 or noise_channels < 0:
            raise ValueError(
                "UNetGenerator: in_channels, out_channels must be >= 1 and noise_channels >= 0"
            )
        self.in_channels = in_channels
        self.noise_channels = noise_channels
        self.num_levels = len(features)
        ins = [in_channels + noise_channels, *features[:-1]]
        self.encoder = nnx.List(
            [
                downsampling_conv(a, b, use_bias=i == 0, rngs=rngs)
                for i, (a, b) in enumerate(zip(ins, features, strict=True))
            ]
        )
        # no norm on the first layer (sec. 6.1.1) nor on the innermost (the bottleneck)
        self.encoder_norms = nnx.List([BatchStatsNorm(f, rngs=rngs) for f in features[1:-1]])
        # decoder layer j maps to features[-2 - j]; all but the first also take the skip
        dec_out = list(reversed(features[:-1]))
        dec_in = [features[-1], *(2 * f for f in dec_out)]
        self.decoder = nnx.List(
            [
                upsampling_conv(a, b, use_bias=False, rngs=rngs)
                for a, b in zip(dec_in[:-1], dec_out, strict=True)
            ]
        )
        self.decoder_norms = nnx.List([BatchStatsNorm(f, rngs=rngs) for f in dec_out])
        self.out = upsampling_conv(dec_in[-1], out_channels, use_bias=True, rngs=rngs)

    def __call__(
        self, x: jax.Array, noise: jax.Array | None = None, *, num_reference: int = 0
    ) -> jax.Array:
        """``G(x [, noise])``; ``num_reference = R > 0``: every batch norm uses the statistics
        of the first ``R`` rows only (a reference batch, see ``BatchStatsNorm``)."""
        factor = 2**self.num_levels
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(f"UNetGenerator expects (B, H, W, {self.in_channels}), got {x.shape}")
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(
                f"UNetGenerator: H, W = {x.shape[1:3]} must be divisible by 2^{self.num_levels}"
            )
        if self.noise_channels == 0:
            if noise is not None:
                raise ValueError("UNetGenerator has noise_channels=0 but got noise")
        else:
            expected = (*x.shape[:3], self.noise_channels)
            if noise is None or noise.shape != expected:
                got = None if noise is None else noise.shape
                raise ValueError(f"UNetGenerator needs noise of shape {expected}, got {got}")
            x = jnp.concatenate([x, noise.astype(x.dtype)], axis=-1)
        skips = []
        h = x
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            if 0 < i < self.num_levels - 1:
                h = self.encoder_norms[i - 1](h, num_reference=num_reference)
            h = jax.nn.leaky_relu(h, LEAKY_SLOPE)
            skips.append(h)
        skips.pop()  # the bottleneck is the decoder's input, not a skip
        for layer, norm in zip(self.decoder, self.decoder_norms, strict=True):
            h = jax.nn.relu(norm(layer(h), num_reference=num_reference))
            h = jnp.concatenate([h, skips.pop()], axis=-1)
        return jnp.tanh(self.out(h))


def patch_receptive_field(num_downsamples: int) -> tuple[int, int, int]:
    """``(size, stride, offset)``: patch ``i`` sees input rows ``stride i - offset`` to
    ``stride i - offset + size - 1`` (see the module docstring)."""
    if num_downsamples < 0:
        raise ValueError(f"num_downsamples must be >= 0, got {num_downsamples}")
    scale = 2**num_downsamples
    return 5 * scale - 2, scale, 2 * scale - 1


class PatchDiscriminator(nnx.Module):
    """(condition, target) -> patch logits (B, H / 2^n, W / 2^n), n = len(features).

    ``in_channels`` is the number of channels of the condition and target together.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        features: Sequence[int] = (64, 128),
        batch_norm: bool = True,
        rngs: nnx.Rngs,
    ):
        features = _check_features(features, "PatchDiscriminator")
        if in_channels < 1:
            raise ValueError(f"PatchDiscriminator: in_channels must be >= 1, got {in_channels}")
        self.in_channels = in_channels
        self.num_downsamples = len(features)
        ins = [in_channels, *features[:-1]]
        self.down = nnx.List(
            [
                downsampling_conv(a, b, use_bias=not (batch_norm and i), rngs=rngs)
                for i, (a, b) in enumerate(zip(ins, features, strict=True))
            ]
        )
        self.norms = nnx.List(
            [BatchStatsNorm(f, rngs=rngs) for f in features[1:]] if batch_norm else []
        )
        self.final = nnx.Conv(
            features[-1], 1, (3, 3), padding="SAME", kernel_init=DCGAN_INIT, rngs=rngs
        )

    @property
    def receptive_field(self) -> tuple[int, int, int]:
        """``(size, stride, offset)`` of each patch logit's window (``patch_receptive_field``)."""
        return patch_receptive_field(self.num_downsamples)

    def __call__(self, condition: jax.Array, target: jax.Array) -> jax.Array:
        if condition.ndim != 4 or target.ndim != 4 or condition.shape[:3] != target.shape[:3]:
            raise ValueError(
                "PatchDiscriminator expects condition and target (B, H, W, C) of the same "
                f"B, H, W, got {condition.shape} and {target.shape}"
            )
        if condition.shape[-1] + target.shape[-1] != self.in_channels:
            raise ValueError(
                f"PatchDiscriminator: condition and target channels must add up to "
                f"in_channels={self.in_channels}, got {condition.shape[-1]} + {target.shape[-1]}"
            )
        factor = 2**self.num_downsamples
        if condition.shape[1] % factor or condition.shape[2] % factor:
            raise ValueError(
                f"PatchDiscriminator: H, W = {condition.shape[1:3]} must be divisible by "
                f"2^{self.num_downsamples}"
            )
        h = jnp.concatenate([condition, target.astype(condition.dtype)], axis=-1)
        for i, layer in enumerate(self.down):
            h = layer(h)
            if i > 0 and len(self.norms):
                h = self.norms[i - 1](h)
            h = jax.nn.leaky_relu(h, LEAKY_SLOPE)
        return self.final(h)[..., 0]
