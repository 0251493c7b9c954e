"""SRGAN networks (Ledig et al. 2017, Fig. 4): the SRResNet generator with sub-pixel
upsampling and the strided-convolution discriminator.

Generator (SRResNet), low-resolution ``y`` (B, h, w, C) -> (B, f h, f w, C):

* a ``k x k`` convolution (``k = 9`` in the paper) to ``F`` channels, PReLU;
* ``B`` residual blocks (16 in the paper), each ``h + BN(conv(PReLU(BN(conv(h)))))``
  with 3x3 convolutions of ``F`` channels;
* a 3x3 convolution and BN, added to the output of the first PReLU (the long skip);
* ``log2 f`` sub-pixel upsampling blocks (Shi et al. 2016): a 3x3 convolution to ``4 F``
  channels, :func:`pixel_shuffle` by 2 (``(h, w, 4 F) -> (2 h, 2 w, F)``), PReLU;
* a ``k x k`` convolution to ``C`` channels and ``tanh`` (images live in [-1, 1]; the paper
  scales HR images to [-1, 1] too).

PReLU (He et al. 2015): ``max(0, x) + a_c min(0, x)`` with a learned slope per channel,
initialised at 0.25.

Pixel shuffle (depth to space, the channel order of TensorFlow's ``depth_to_space``):
``out[b, r h + i, r w + j, c] = in[b, h, w, (r i + j) C + c]`` for ``0 <= i, j < r``;
:func:`space_to_depth` is its exact inverse.

Discriminator (Fig. 4, bottom): a 3x3 convolution to ``features[0]`` channels (stride 1,
LeakyReLU 0.2, no BN), then for each width ``n_k`` of ``features`` a 3x3 stride-2
convolution keeping ``n_k`` channels, followed (but after the last) by a 3x3 stride-1
convolution to ``n_{k+1}``, each with BN and LeakyReLU 0.2. ``features = (64, 128, 256,
512)`` gives the paper's eight convolutions 64, 64/2, 128, 128/2, 256, 256/2, 512, 512/2 and
divides H and W by 16. Then a dense layer of ``dense_features`` (1024) units, LeakyReLU, and
a dense layer to one logit per image.

Batch statistics: every BN here is :class:`jaxgen.nets.dcgan.BatchStatsNorm` (the batch's
own statistics, no running averages), as in the pix2pix networks. The generator takes
``num_reference = R``: its norms then use the statistics of the first ``R`` rows only (a
fixed reference batch, Salimans et al. 2016, sec. 3.4), so that a super-resolved image does
not depend on the other images of its batch (``jaxgen.gan.srgan``). The discriminator is
only used in training (and for diagnostics), with its batch's statistics.

References:
  Ledig, Theis, Huszar, Caballero, Cunningham, Acosta, Aitken, Tejani, Totz, Wang, Shi.
  Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial Network.
  CVPR 2017.
  Shi, Caballero, Huszar, Totz, Aitken, Bishop, Rueckert, Wang. Real-Time Single Image and
  Video Super-Resolution Using an Efficient Sub-Pixel Convolutional Neural Network. CVPR
  2016.
  He, Zhang, Ren, Sun. Delving Deep into Rectifiers. ICCV 2015.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.nets.dcgan import LEAKY_SLOPE, BatchStatsNorm

__all__ = [
    "PReLU",
    "SRGANDiscriminator",
    "SRResNetGenerator",
    "num_upsampling_blocks",
    "pixel_shuffle",
    "space_to_depth",
]

PRELU_INIT = 0.25


def _check_factor(factor: int) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    return factor


def pixel_shuffle(x: jax.Array, factor: int) -> jax.Array:
    """Depth to space: ``(B, h, w, r^2 C) -> (B, r h, r w, C)`` with
    ``out[b, r h + i, r w + j, c] = x[b, h, w, (r i + j) C + c]`` (Shi et al. 2016, eq. 4 up
    to the channel order; TensorFlow's ``depth_to_space``)."""
    r = _check_factor(factor)
    if x.ndim != 4 or x.shape[-1] % (r * r):
        raise ValueError(
            f"pixel_shuffle needs (B, h, w, {r * r} C) for factor {r}, got shape {x.shape}"
        )
    b, h, w, d = x.shape
    c = d // (r * r)
    x = x.reshape(b, h, w, r, r, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * r, w * r, c)


def space_to_depth(x: jax.Array, factor: int) -> jax.Array:
    """The exact inverse of :func:`pixel_shuffle`: ``(B, r h, r w, C) -> (B, h, w, r^2 C)``
    with ``out[b, h, w, (r i + j) C + c] = x[b, r h + i, r w + j, c]``."""
    r = _check_factor(factor)
    if x.ndim != 4 or x.shape[1] % r or x.shape[2] % r:
        raise ValueError(f"space_to_depth needs (B, H, W, C) with r = {r} dividing H, W: {x.shape}")
    b, hh, ww, c = x.shape
    x = x.reshape(b, hh // r, r, ww // r, r, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hh // r, ww // r, r * r * c)


def num_upsampling_blocks(factor: int) -> int:
    """``log2 factor`` for a power of two ``factor >= 2`` (each block doubles H and W)."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise ValueError(f"factor must be a power of two >= 2, got {factor!r}")
    if factor & (factor - 1):
        raise ValueError(f"factor must be a power of two >= 2, got {factor}")
    return factor.bit_length() - 1


class PReLU(nnx.Module):
    """``max(0, x) + a_c min(0, x)``, one learned slope ``a_c`` per channel (init 0.25)."""

    def __init__(self, num_features: int, *, rngs: nnx.Rngs | None = None):
        del rngs  # deterministic initialization; accepted for a uniform layer signature
        self.slope = nnx.Param(jnp.full((num_features,), PRELU_INIT, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        a = self.slope[...].reshape((1,) * (x.ndim - 1) + (-1,))
        return jnp.maximum(x, 0) + a * jnp.minimum(x, 0)


def _conv(a: int, b: int, k: int, *, rngs: nnx.Rngs, strides: int = 1, bias: bool = True):
    return nnx.Conv(a, b, (k, k), strides=strides, padding="SAME", use_bias=bias, rngs=rngs)


class _ResidualBlock(nnx.Module):
    """``h + BN(conv(PReLU(BN(conv(h)))))`` (Ledig et al. Fig. 4, after Gross and Wilber)."""

    def __init__(self, features: int, *, rngs: nnx.Rngs):
        self.conv1 = _conv(features, features, 3, bias=False, rngs=rngs)
        self.norm1 = BatchStatsNorm(features)
        self.act = PReLU(features)
        self.conv2 = _conv(features, features, 3, bias=False, rngs=rngs)
        self.norm2 = BatchStatsNorm(features)

    def __call__(self, h: jax.Array, *, num_reference: int = 0) -> jax.Array:
        r = self.act(self.norm1(self.conv1(h), num_reference=num_reference))
        return h + self.norm2(self.conv2(r), num_reference=num_reference)


class _UpsamplingBlock(nnx.Module):
    """conv 3x3 to ``4 F`` channels, pixel shuffle by 2, PReLU: doubles H and W."""

    def __init__(self, features: int, *, rngs: nnx.Rngs):
        self.conv = _conv(features, 4 * features, 3, rngs=rngs)
        self.act = PReLU(features)

    def __call__(self, h: jax.Array) -> jax.Array:
        return self.act(pixel_shuffle(self.conv(h), 2))


class SRResNetGenerator(nnx.Module):
    """Low-resolution ``(B, h, w, channels)`` -> ``(B, factor h, factor w, channels)``."""

    def __init__(
        self,
        channels: int,
        *,
        factor: int,
        features: int = 64,
        num_blocks: int = 16,
        kernel_size: int = 9,
        rngs: nnx.Rngs,
    ):
        num_up = num_upsampling_blocks(factor)
        if channels < 1 or features < 1 or num_blocks < 0 or kernel_size < 1:
            raise ValueError(
                "SRResNetGenerator: channels, features and kernel_size must be >= 1 and "
                f"num_blocks >= 0, got {channels}, {features}, {kernel_size}, {num_blocks}"
            )
        self.channels = channels
        self.factor = factor
        self.head = _conv(channels, features, kernel_size, rngs=rngs)
        self.head_act = PReLU(features)
        self.blocks = nnx.List([_ResidualBlock(features, rngs=rngs) for _ in range(num_blocks)])
        self.trunk = _conv(features, features, 3, bias=False, rngs=rngs)
        self.trunk_norm = BatchStatsNorm(features)
        self.upsampling = nnx.List([_UpsamplingBlock(features, rngs=rngs) for _ in range(num_up)])
        self.out = _conv(features, channels, kernel_size, rngs=rngs)

    def __call__(self, y: jax.Array, *, num_reference: int = 0) -> jax.Array:
        """``G(y)``; ``num_reference = R > 0``: every BN uses the first ``R`` rows' statistics."""
        if y.ndim != 4 or y.shape[-1] != self.channels:
            raise ValueError(
                f"SRResNetGenerator expects (B, h, w, {self.channels}), got shape {y.shape}"
            )
        skip = self.head_act(self.head(y))
        h = skip
        for block in self.blocks:
            h = block(h, num_reference=num_reference)
        h = skip + self.trunk_norm(self.trunk(h), num_reference=num_reference)
        for block in self.upsampling:
            h = block(h)
        return jnp.tanh(self.out(h))


class SRGANDiscriminator(nnx.Module):
    """Image ``(B, H, W, channels)`` -> one real/fake logit per image ``(B,)``."""

    def __init__(
        self,
        channels: int,
        *,
        image_size: tuple[int, int],
        features: Sequence[int] = (64, 128, 256, 512),
        dense_features: int = 1024,
        rngs: nnx.Rngs,
    ):
        features = tuple(int(f) for f in features)
        if not features or min(features) < 1 or dense_features < 1 or channels < 1:
            raise ValueError(
                "SRGANDiscriminator: features must be a non-empty sequence of positive ints "
                f"and channels, dense_features >= 1, got {features}, {channels}, {dense_features}"
            )
        h, w = (int(s) for s in image_size)
        scale = 2 ** len(features)
        if h % scale or w % scale:
            raise ValueError(
                f"SRGANDiscriminator: image size {(h, w)} must be divisible by 2^{len(features)}"
                f" = {scale} (one halving per width of features={features})"
            )
        self.channels = channels
        self.image_size = (h, w)
        self.stem = _conv(channels, features[0], 3, rngs=rngs)
        convs, norms, width = [], [], features[0]
        for i in range(len(features)):
            convs.append(_conv(width, width, 3, strides=2, bias=False, rngs=rngs))
            norms.append(BatchStatsNorm(width))
            if i + 1 < len(features):
                convs.append(_conv(width, features[i + 1], 3, bias=False, rngs=rngs))
                norms.append(BatchStatsNorm(features[i + 1]))
                width = features[i + 1]
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        self.dense = nnx.Linear((h // scale) * (w // scale) * width, dense_features, rngs=rngs)
        self.logit = nnx.Linear(dense_features, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[1:] != (*self.image_size, self.channels):
            raise ValueError(
                f"SRGANDiscriminator expects (B, {self.image_size[0]}, {self.image_size[1]}, "
                f"{self.channels}), got shape {x.shape}"
            )
        h = jax.nn.leaky_relu(self.stem(x), LEAKY_SLOPE)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = jax.nn.leaky_relu(norm(conv(h)), LEAKY_SLOPE)
        h = jax.nn.leaky_relu(self.dense(h.reshape(h.shape[0], -1)), LEAKY_SLOPE)
        return self.logit(h)[:, 0]
