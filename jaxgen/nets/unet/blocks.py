"""The U-Net's blocks: residual block, self-attention block and the resampling layers.

* :class:`ResBlock`: the wide-ResNet block of DDPM (PixelCNN++ style; Zagoruyko and
  Komodakis 2016) with a per-block projection of the timestep embedding; with ``resample``
  it is BigGAN's up/down-sampling residual block (Brock et al. 2019).
* :class:`AttentionBlock`: single- or multi-head self-attention over the H x W positions.
* :class:`Downsample` / :class:`Upsample`: the separate resampling layers (stride-2 conv /
  nearest neighbour + conv; with ``fir``, StyleGAN2's FIR-filtered versions).

References:
  Ho, Jain and Abbeel, "Denoising diffusion probabilistic models", NeurIPS 2020, app. B.
  Brock, Donahue and Simonyan, "Large scale GAN training" (BigGAN), ICLR 2019.
  Karras et al., "Analyzing and improving the image quality of StyleGAN", CVPR 2020.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.nets.unet.layers import conv, group_norm, linear, residual_sum
from jaxgen.nets.unet.resampling import fir_filter, nearest_upsample, resample_fn

__all__ = ["AttentionBlock", "Downsample", "ResBlock", "Upsample"]


class ResBlock(nnx.Module):
    """GroupNorm, SiLU, conv3x3, + Dense(SiLU(temb)), GroupNorm, SiLU, dropout, conv3x3 (zero).

    With ``resample="down"`` / ``"up"`` (BigGAN style) both branches are resampled right
    after the first SiLU (FIR or average-pool / nearest) and the skip branch gets a 1x1
    conv. With ``skip_rescale`` the output is ``(skip + residual) / sqrt(2)``.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        temb_ch: int,
        *,
        num_groups: int,
        dropout: float,
        rngs: nnx.Rngs,
        resample: str | None = None,
        fir: bool = False,
        skip_rescale: bool = False,
        init_scale: float = 0.0,
    ):
        if resample not in (None, "up", "down"):
            raise ValueError(f"resample must be None, 'up' or 'down', got {resample!r}")
        self.norm1 = group_norm(in_ch, num_groups, rngs)
        self.conv1 = conv(in_ch, out_ch, 3, rngs=rngs)
        self.temb_proj = linear(temb_ch, out_ch, rngs=rngs)
        self.norm2 = group_norm(out_ch, num_groups, rngs)
        self.dropout = nnx.Dropout(dropout)
        self.conv2 = conv(out_ch, out_ch, 3, rngs=rngs, init_scale=init_scale)
        # A 1x1 convolution (network-in-network) when the width or the resolution changes.
        needs_skip = in_ch != out_ch or resample is not None
        self.skip = linear(in_ch, out_ch, rngs=rngs) if needs_skip else None
        self.resample = resample
        self.fir = fir
        self.skip_rescale = skip_rescale

    def __call__(self, x: jax.Array, temb: jax.Array, *, key: jax.Array | None = None):
        """``x`` (B, H, W, in_ch), ``temb`` (B, temb_ch); dropout only when ``key`` is given."""
        h = jax.nn.silu(self.norm1(x))
        if self.resample is not None:
            resample = resample_fn(self.resample, fir=self.fir)
            h, x = resample(h), resample(x)
        h = self.conv1(h)
        proj = self.temb_proj(jax.nn.silu(temb))
        h = h + proj.reshape(proj.shape[0], 1, 1, proj.shape[1])
        h = jax.nn.silu(self.norm2(h))
        if self.dropout.rate > 0 and key is not None:
            h = self.dropout(h, deterministic=False, rngs=key)
        h = self.conv2(h)
        if self.skip is not None:
            x = self.skip(x)
        return residual_sum(x, h, skip_rescale=self.skip_rescale)


class AttentionBlock(nnx.Module):
    """Multi-head self-attention over the H x W positions, with a residual connection.

    GroupNorm, a fused q/k/v 1x1 projection, softmax(q k^T / sqrt(d)) v per head, and a
    zero-initialised 1x1 output projection. With one head this is the paper's block. With
    ``skip_rescale`` the output is ``(x + attention) / sqrt(2)``.
    """

    def __init__(
        self,
        ch: int,
        *,
        num_heads: int,
        num_groups: int,
        rngs: nnx.Rngs,
        skip_rescale: bool = False,
        init_scale: float = 0.0,
    ):
        if ch % num_heads:
            raise ValueError(f"attention width {ch} is not divisible by num_heads = {num_heads}")
        self.num_heads = num_heads
        self.norm = group_norm(ch, num_groups, rngs)
        self.qkv = linear(ch, 3 * ch, rngs=rngs)
        self.proj_out = linear(ch, ch, rngs=rngs, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def __call__(self, x: jax.Array) -> jax.Array:
        b, hgt, wid, ch = x.shape
        n, heads = hgt * wid, self.num_heads
        d = ch // heads
        qkv = self.qkv(self.norm(x)).reshape(b, n, 3, heads, d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (d**-0.5)
        # The softmax in float32 (bf16 logits lose the small differences it turns into weights).
        wide = jnp.promote_types(logits.dtype, jnp.float32)
        weights = jax.nn.softmax(logits.astype(wide), axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, ch)
        out = self.proj_out(out).reshape(b, hgt, wid, ch)
        return residual_sum(x, out, skip_rescale=self.skip_rescale)


class Downsample(nnx.Module):
    """Stride-2 3x3 convolution ('SAME' padding: one extra row/column at the bottom/right).

    With ``fir=True``: the FIR filter with padding (2, 2), then a 'VALID' stride-2 3x3
    convolution (StyleGAN2's ``conv_downsample_2d``).
    """

    def __init__(self, ch: int, *, rngs: nnx.Rngs, out_ch: int | None = None, fir: bool = False):
        out_ch = ch if out_ch is None else out_ch
        padding = "VALID" if fir else "SAME"
        self.conv = conv(ch, out_ch, 3, strides=2, padding=padding, rngs=rngs)
        self.fir = fir

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.fir:
            x = fir_filter(x, gain=1.0, padding=(2, 2))
        return self.conv(x)


class Upsample(nnx.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 convolution.

    With ``fir=True``: a stride-2 transposed 3x3 convolution (a convolution of the
    zero-inserted input, padded by 2, so ``2H + 1`` outputs), then the FIR filter ``4 k``
    with padding (1, 1) (StyleGAN2's ``upsample_conv_2d``; the kernel is learned, so its
    flip in a true transposed convolution is immaterial).
    """

    def __init__(self, ch: int, *, rngs: nnx.Rngs, out_ch: int | None = None, fir: bool = False):
        out_ch = ch if out_ch is None else out_ch
        if fir:
            self.conv = conv(ch, out_ch, 3, padding=((2, 2), (2, 2)), input_dilation=2, rngs=rngs)
        else:
            self.conv = conv(ch, out_ch, 3, rngs=rngs)
        self.fir = fir

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.fir:
            return fir_filter(self.conv(x), gain=4.0, padding=(1, 1))
        return self.conv(nearest_upsample(x))
