"""The DDPM U-Net (Ho et al. 2020, appendix B) as a Flax NNX module, with the options of the
DDPM++ / NCSN++ networks of Song et al. (2021, appendix H).

A PixelCNN++-style wide-ResNet U-Net: a sinusoidal timestep embedding through a two-layer
MLP, residual blocks with GroupNorm and a per-block projection of the timestep embedding,
single- or multi-head self-attention at chosen resolutions, stride-2 convolutions down and
nearest-neighbour upsampling + convolution up, with skip connections concatenated on the
way up. As in the paper's code, the last convolution of every residual block, the output
projection of every attention block and the output convolution start at zero, so a fresh
network outputs exactly zero and every block starts as the identity.

Options of ``UNetConfig`` (all default to the DDPM network above; Song et al. 2021, App. H.1):

* ``resblock_updown``: BigGAN-style resampling (Brock et al. 2019): the residual block does
  the up/down-sampling, ``x -> GN, SiLU -> resample -> conv`` on the residual branch and
  ``x -> resample -> 1x1 conv`` on the skip branch, instead of a separate resample layer.
* ``skip_rescale``: every residual sum ``x + F(x)`` (residual blocks, attention blocks,
  progressive ``residual`` paths) becomes ``(x + F(x)) / sqrt(2)``, which keeps the variance
  of a sum of two unit-variance branches at 1 (Karras et al. 2018; Song et al. 2021).
* ``time_embedding="fourier"``: Gaussian Fourier features
  ``[sin(2 pi w t), cos(2 pi w t)]``, ``w_i ~ N(0, fourier_scale^2)``, ``i = 1 .. ch``
  (Tancik et al. 2020), in place of the sinusoidal embedding; NCSN++ feeds it
  ``t = log sigma``. The frequencies are a fixed function of ``(ch, fourier_scale,
  fourier_seed)`` (see ``jaxgen.nets.embeddings.gaussian_fourier_frequencies``), recomputed
  at trace time: they are not stored in the module, so they are not in the parameter tree
  and no optimizer can update them.
* ``resample_filter="fir"``: anti-aliased resampling with the separable FIR filter
  ``k = [1, 3, 3, 1] (x) [1, 3, 3, 1] / 64`` (Zhang 2019; StyleGAN2, Karras et al. 2020),
  applied as a fixed depthwise convolution with zero padding, exactly as ``upfirdn2d``:
  down = ``k`` with padding (1, 1) then keep every 2nd sample; up = zero insertion then
  ``4 k`` with padding (2, 1). Up is 4 times the adjoint of down, and both preserve
  constants away from the border. The conv layers of a resampling layer become
  "blur, then stride-2 3x3 conv" (down) and "stride-2 transposed 3x3 conv, then blur" (up).
* ``progressive_input`` (NCSN++'s input pyramid): ``"input_skip"`` adds a 1x1 conv of the
  FIR/average-downsampled input image to the features after every downsampling (the
  official ``progressive_combine='sum'``; concatenation is not offered);
  ``"residual"`` keeps a running pyramid ``p <- (Down_conv(p) + h) / sqrt(2)`` and feeds it
  to the next level.
* ``progressive_output`` (NCSN++'s output pyramid): ``"output_skip"`` makes the output the
  sum over levels of upsampled per-level heads ``conv3x3(SiLU(GN(h_l)))`` (no final
  norm/conv); ``"residual"`` keeps a running pyramid ``p <- (Up_conv(p) + h) / sqrt(2)``.
* ``up_attention="last_block"``: on the way up, attention once per level after the last
  residual block (the NCSN++/DDPM++ code) instead of after every residual block (DDPM).
* ``init_scale``: the scale of the variance-scaling initialiser of the layers that start at
  zero (last conv of residual blocks, attention output projections, output convolutions);
  ``0`` (the default, as DDPM and NCSN++) is an exact zero initialisation.

``ddpmpp_config()`` and ``ncsnpp_config()`` give the CIFAR-10 networks of the paper
("DDPM++ cont." and "NCSN++ cont."; ``deep=True``: 8 residual blocks per level).

The module keeps no ``nnx.Rngs``: its state is made only of ``nnx.Param`` leaves, and dropout
takes its PRNG key at call time. Typical pure-function use::

    model = UNet(UNetConfig(), image_shape=(32, 32, 3), rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    params = nnx.to_pure_dict(state)
    eps = jax.jit(lambda p, x, t, k: nnx.merge(graphdef, p)(x, t, key=k))(params, x, t, key)

References:
  Ho, Jain and Abbeel, "Denoising diffusion probabilistic models", NeurIPS 2020.
  Song et al., "Score-based generative modeling through stochastic differential equations",
  ICLR 2021, appendix H.
  Salimans et al., "PixelCNN++", ICLR 2017. Zagoruyko and Komodakis, "Wide residual
  networks", BMVC 2016. Wu and He, "Group normalization", ECCV 2018.
  Brock, Donahue and Simonyan, "Large scale GAN training" (BigGAN), ICLR 2019.
  Zhang, "Making convolutional networks shift-invariant again", ICML 2019.
  Karras et al., "Analyzing and improving the image quality of StyleGAN", CVPR 2020.
  Karras et al., "Progressive growing of GANs", ICLR 2018.
  Tancik et al., "Fourier features let networks learn high frequency functions", NeurIPS 2020.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgen.nets.embeddings import (
    gaussian_fourier_embedding,
    gaussian_fourier_frequencies,
    sinusoidal_embedding,
)

# Every convolution and dense layer of the paper's code: variance scaling with scale 1,
# fan_avg, uniform (the TF default for `tf.layers`). Output layers start at zero.
_default_init = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform")
_zero_init = nnx.initializers.zeros_init()
_GROUPNORM_EPS = 1e-6
_SQRT2 = math.sqrt(2.0)

TIME_EMBEDDINGS = ("sinusoidal", "fourier")
RESAMPLE_FILTERS = ("none", "fir")
PROGRESSIVE_INPUTS = ("none", "input_skip", "residual")
PROGRESSIVE_OUTPUTS = ("none", "output_skip", "residual")
UP_ATTENTIONS = ("every_block", "last_block")
FIR_TAPS = (1.0, 3.0, 3.0, 1.0)


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Hyperparameters of the U-Net. The defaults are the DDPM paper's CIFAR-10 model.

    Attributes:
      channels: base width ``ch``; level ``i`` has ``ch * channel_mult[i]`` channels and the
        timestep embedding has ``4 ch``.
      channel_mult: width multipliers, one per resolution level; the image is downsampled
        ``len(channel_mult) - 1`` times by 2.
      num_res_blocks: residual blocks per level on the way down (``+ 1`` on the way up).
      attention_resolutions: feature-map heights at which self-attention follows each
        residual block. Each must be the height of some level for the given image.
      dropout: dropout rate inside the residual blocks (active only when a key is given).
      num_groups: GroupNorm groups; must divide every level's width.
      num_heads: attention heads; must divide the width of every level with attention.
      num_classes: 0 for an unconditional model; ``> 0`` adds a learned class embedding
        (``num_classes`` rows) to the timestep embedding and the call then takes ``y``.
        For classifier-free guidance, count the "no label" token as one of the classes.
      out_channels: output channels; ``None`` means the input's channels.
      resblock_updown: BigGAN-style residual blocks do the up/down-sampling.
      skip_rescale: divide every residual sum by ``sqrt(2)``.
      time_embedding: ``"sinusoidal"`` (``ch`` features) or ``"fourier"`` (Gaussian Fourier
        features: ``ch`` frequencies, ``2 ch`` features).
      fourier_scale: standard deviation of the Fourier frequencies (NCSN++: 16).
      fourier_seed: seed of the (fixed, untrained) Fourier frequencies.
      resample_filter: ``"none"`` or ``"fir"`` ([1, 3, 3, 1] anti-aliasing filter).
      progressive_input: ``"none"``, ``"input_skip"`` or ``"residual"``.
      progressive_output: ``"none"``, ``"output_skip"`` or ``"residual"``.
      up_attention: ``"every_block"`` (DDPM) or ``"last_block"`` (NCSN++/DDPM++ code).
      init_scale: initial scale of the zero-started layers; 0 is an exact zero init.
    """

    channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    num_groups: int = 32
    num_heads: int = 1
    num_classes: int = 0
    out_channels: int | None = None
    resblock_updown: bool = False
    skip_rescale: bool = False
    time_embedding: str = "sinusoidal"
    fourier_scale: float = 16.0
    fourier_seed: int = 0
    resample_filter: str = "none"
    progressive_input: str = "none"
    progressive_output: str = "none"
    up_attention: str = "every_block"
    init_scale: float = 0.0

    def __post_init__(self):
        # Accept lists but store tuples, so that the config stays hashable (it is static
        # data in the module's graphdef).
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        object.__setattr__(self, "attention_resolutions", tuple(self.attention_resolutions))

        def check_int(name, value, minimum=1):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(
                    f"UNetConfig.{name} must be an integer >= {minimum}, got {value!r}"
                )

        check_int("channels", self.channels)
        check_int("num_res_blocks", self.num_res_blocks)
        check_int("num_groups", self.num_groups)
        check_int("num_heads", self.num_heads)
        check_int("num_classes", self.num_classes, minimum=0)
        if self.out_channels is not None:
            check_int("out_channels", self.out_channels)
        if not self.channel_mult:
            raise ValueError("UNetConfig.channel_mult must have at least one level, got ()")
        for name in ("channel_mult", "attention_resolutions"):
            values = getattr(self, name)
            for i, value in enumerate(values):
                check_int(f"{name}[{i}]", value)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout}")
        for m in self.channel_mult:
            width = self.channels * m
            if width % self.num_groups:
                raise ValueError(
                    f"UNetConfig: level width channels * mult = {self.channels} * {m} = {width} "
                    f"is not divisible by num_groups = {self.num_groups}"
                )
        mid = self.channels * self.channel_mult[-1]
        if mid % self.num_heads:
            raise ValueError(
                f"UNetConfig: the middle attention block's width {mid} is not divisible by "
                f"num_heads = {self.num_heads}"
            )

        for name in ("resblock_updown", "skip_rescale"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"UNetConfig.{name} must be a bool, got {getattr(self, name)!r}")
        for name, choices in (
            ("time_embedding", TIME_EMBEDDINGS),
            ("resample_filter", RESAMPLE_FILTERS),
            ("progressive_input", PROGRESSIVE_INPUTS),
            ("progressive_output", PROGRESSIVE_OUTPUTS),
            ("up_attention", UP_ATTENTIONS),
        ):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in choices:
                raise ValueError(
                    f"UNetConfig.{name} must be one of {', '.join(map(repr, choices))}; "
                    f"got {value!r}"
                )
        for name in ("fourier_scale", "init_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"UNetConfig.{name} must be a float, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not (math.isfinite(self.fourier_scale) and self.fourier_scale > 0):
            raise ValueError(
                f"UNetConfig.fourier_scale must be finite and > 0, got {self.fourier_scale}"
            )
        if not (math.isfinite(self.init_scale) and self.init_scale >= 0):
            raise ValueError(
                f"UNetConfig.init_scale must be finite and >= 0, got {self.init_scale}"
            )
        check_int("fourier_seed", self.fourier_seed, minimum=0)
        if self.fourier_seed >= 2**32:
            raise ValueError(f"UNetConfig.fourier_seed must be < 2**32, got {self.fourier_seed}")


def ddpmpp_config(*, deep: bool = False, **overrides) -> UNetConfig:
    """The "DDPM++ cont." CIFAR-10 network of Song et al. (2021), App. H.

    ``ch = 128``, ``channel_mult = (1, 2, 2, 2)``, 4 residual blocks per level (8 with
    ``deep=True``), attention at 16x16, dropout 0.1, BigGAN-style up/down residual blocks,
    skip rescaling, sinusoidal embedding (of ``999 t`` in the paper's VP / sub-VP code),
    attention once per level on the way up, zero-initialised output layers (the official
    ``configs/vp/cifar10_ddpmpp_continuous.py``). ``overrides`` replace any field.
    """
    base = dict(
        channels=128,
        channel_mult=(1, 2, 2, 2),
        num_res_blocks=8 if deep else 4,
        attention_resolutions=(16,),
        dropout=0.1,
        resblock_updown=True,
        skip_rescale=True,
        time_embedding="sinusoidal",
        up_attention="last_block",
        init_scale=0.0,
    )
    return UNetConfig(**{**base, **overrides})


def ncsnpp_config(*, deep: bool = False, **overrides) -> UNetConfig:
    """The "NCSN++ cont." CIFAR-10 network of Song et al. (2021), App. H.

    DDPM++ plus FIR resampling, Gaussian Fourier features of scale 16 (of ``log sigma``) and
    the ``residual`` input pyramid, with no output pyramid (the official
    ``configs/ve/cifar10_ncsnpp_continuous.py``: ``progressive = 'none'``,
    ``progressive_input = 'residual'``). ``overrides`` replace any field.
    """
    base = dict(
        resample_filter="fir",
        time_embedding="fourier",
        fourier_scale=16.0,
        progressive_input="residual",
        progressive_output="none",
    )
    return ddpmpp_config(deep=deep, **{**base, **overrides})


# ----------------------------------------------------------------------------- resampling


def fir_kernel(gain: float = 1.0) -> np.ndarray:
    """The 4x4 FIR filter ``gain * outer(t, t) / sum(outer(t, t))`` with ``t = [1, 3, 3, 1]``."""
    k = np.outer(FIR_TAPS, FIR_TAPS)
    return k * (gain / k.sum())


def _fir(x, *, gain, padding, stride=1, dilation=1):
    """Depthwise correlation of NHWC ``x`` with ``fir_kernel(gain)`` (fixed, untrained).

    ``padding`` (before, after) is applied to H and W after the input dilation (zero
    insertion) ``dilation``; the kernel is symmetric, so correlation = convolution.
    """
    c = x.shape[-1]
    k = jnp.asarray(fir_kernel(gain), x.dtype)
    k = jnp.broadcast_to(k.reshape(4, 4, 1, 1), (4, 4, 1, c))
    return jax.lax.conv_general_dilated(
        x,
        k,
        window_strides=(stride, stride),
        padding=(padding, padding),
        lhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
        precision=jax.lax.Precision.HIGHEST,
    )


def fir_downsample(x: jax.Array) -> jax.Array:
    """FIR 2x downsampling of NHWC ``x`` (``upfirdn2d(x, k, down=2, pad=(1, 1))``).

    ``y[i, j] = sum_{a, b} k[a, b] x[2i + a - 1, 2j + b - 1]`` with zero outside the image.
    """
    return _fir(x, gain=1.0, padding=(1, 1), stride=2)


def fir_upsample(x: jax.Array) -> jax.Array:
    """FIR 2x upsampling of NHWC ``x`` (``upfirdn2d(x, 4 k, up=2, pad=(2, 1))``).

    Zero insertion followed by the filter ``4 k`` (each polyphase component of ``4 k`` sums
    to 1); the exact adjoint of ``fir_downsample`` times 4.
    """
    return _fir(x, gain=4.0, padding=(2, 2), dilation=2)


def avg_pool_downsample(x: jax.Array) -> jax.Array:
    """2x2 average pooling of NHWC ``x`` (BigGAN's downsampling without a filter)."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def nearest_upsample(x: jax.Array) -> jax.Array:
    """Nearest-neighbour 2x upsampling of NHWC ``x``."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


# ----------------------------------------------------------------------------- layers


def _out_init(init_scale):
    if init_scale == 0:
        return _zero_init
    return nnx.initializers.variance_scaling(init_scale, "fan_avg", "uniform")


def _conv(
    in_ch, out_ch, kernel, *, rngs, strides=1, padding="SAME", input_dilation=1, init_scale=None
):
    """A conv with the default init, or the output-layer init of ``init_scale`` if given."""
    return nnx.Conv(
        in_ch,
        out_ch,
        (kernel, kernel),
        strides=strides,
        padding=padding,
        input_dilation=input_dilation,
        kernel_init=_default_init if init_scale is None else _out_init(init_scale),
        rngs=rngs,
    )


def _linear(in_ch, out_ch, *, rngs, init_scale=None):
    init = _default_init if init_scale is None else _out_init(init_scale)
    return nnx.Linear(in_ch, out_ch, kernel_init=init, rngs=rngs)


def _group_norm(ch, num_groups, rngs):
    return nnx.GroupNorm(ch, num_groups=num_groups, epsilon=_GROUPNORM_EPS, rngs=rngs)


def _resample_fn(direction, fir):
    if direction == "down":
        return fir_downsample if fir else avg_pool_downsample
    return fir_upsample if fir else nearest_upsample


class ResBlock(nnx.Module):
    """GroupNorm, SiLU, conv3x3, + Dense(SiLU(temb)), GroupNorm, SiLU, dropout, conv3x3 (zero).

    With ``resample="down"`` / ``"up"`` (BigGAN style) both branches are resampled right
    after the first SiLU (FIR or average-pool / nearest) and the skip branch gets a 1x1
    conv. With ``skip_rescale`` the output is ``(skip + residual) / sqrt(2)``.
    """

    def __init__(
        self,
        in_ch,
        out_ch,
        temb_ch,
        *,
        num_groups,
        dropout,
        rngs: nnx.Rngs,
        resample: str | None = None,
        fir: bool = False,
        skip_rescale: bool = False,
        init_scale: float = 0.0,
    ):
        if resample not in (None, "up", "down"):
            raise ValueError(f"resample must be None, 'up' or 'down', got {resample!r}")
        self.norm1 = _group_norm(in_ch, num_groups, rngs)
        self.conv1 = _conv(in_ch, out_ch, 3, rngs=rngs)
        self.temb_proj = _linear(temb_ch, out_ch, rngs=rngs)
        self.norm2 = _group_norm(out_ch, num_groups, rngs)
        self.dropout = nnx.Dropout(dropout)
        self.conv2 = _conv(out_ch, out_ch, 3, rngs=rngs, init_scale=init_scale)
        # A 1x1 convolution (network-in-network) when the width or the resolution changes.
        needs_skip = in_ch != out_ch or resample is not None
        self.skip = _linear(in_ch, out_ch, rngs=rngs) if needs_skip else None
        self.resample = resample
        self.fir = fir
        self.skip_rescale = skip_rescale

    def __call__(self, x, temb, *, key=None):
        h = jax.nn.silu(self.norm1(x))
        if self.resample is not None:
            resample = _resample_fn(self.resample, self.fir)
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
        return (x + h) / _SQRT2 if self.skip_rescale else x + h


class AttentionBlock(nnx.Module):
    """Multi-head self-attention over the H x W positions, with a residual connection.

    GroupNorm, a fused q/k/v 1x1 projection, softmax(q k^T / sqrt(d)) v per head, and a
    zero-initialised 1x1 output projection. With one head this is the paper's block. With
    ``skip_rescale`` the output is ``(x + attention) / sqrt(2)``.
    """

    def __init__(
        self,
        ch,
        *,
        num_heads,
        num_groups,
        rngs: nnx.Rngs,
        skip_rescale: bool = False,
        init_scale: float = 0.0,
    ):
        if ch % num_heads:
            raise ValueError(f"attention width {ch} is not divisible by num_heads = {num_heads}")
        self.num_heads = num_heads
        self.norm = _group_norm(ch, num_groups, rngs)
        self.qkv = _linear(ch, 3 * ch, rngs=rngs)
        self.proj_out = _linear(ch, ch, rngs=rngs, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def __call__(self, x):
        b, hgt, wid, ch = x.shape
        n, heads = hgt * wid, self.num_heads
        d = ch // heads
        qkv = self.qkv(self.norm(x)).reshape(b, n, 3, heads, d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (d**-0.5)
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, ch)
        out = x + self.proj_out(out).reshape(b, hgt, wid, ch)
        return out / _SQRT2 if self.skip_rescale else out


class Downsample(nnx.Module):
    """Stride-2 3x3 convolution ('SAME' padding: one extra row/column at the bottom/right).

    With ``fir=True``: the FIR filter with padding (2, 2), then a 'VALID' stride-2 3x3
    convolution (StyleGAN2's ``conv_downsample_2d``).
    """

    def __init__(self, ch, *, rngs: nnx.Rngs, out_ch: int | None = None, fir: bool = False):
        out_ch = ch if out_ch is None else out_ch
        padding = "VALID" if fir else "SAME"
        self.conv = _conv(ch, out_ch, 3, strides=2, padding=padding, rngs=rngs)
        self.fir = fir

    def __call__(self, x):
        if self.fir:
            x = _fir(x, gain=1.0, padding=(2, 2))
        return self.conv(x)


class Upsample(nnx.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 convolution.

    With ``fir=True``: a stride-2 transposed 3x3 convolution (a convolution of the
    zero-inserted input, padded by 2, so ``2H + 1`` outputs), then the FIR filter ``4 k``
    with padding (1, 1) (StyleGAN2's ``upsample_conv_2d``; the kernel is learned, so its
    flip in a true transposed convolution is immaterial).
    """

    def __init__(self, ch, *, rngs: nnx.Rngs, out_ch: int | None = None, fir: bool = False):
        out_ch = ch if out_ch is None else out_ch
        if fir:
            self.conv = _conv(ch, out_ch, 3, padding=((2, 2), (2, 2)), input_dilation=2, rngs=rngs)
        else:
            self.conv = _conv(ch, out_ch, 3, rngs=rngs)
        self.fir = fir

    def __call__(self, x):
        if self.fir:
            return _fir(self.conv(x), gain=4.0, padding=(1, 1))
        x = nearest_upsample(x)
        return self.conv(x)


class _Level(nnx.Module):
    """One resolution level: residual blocks, each optionally followed by attention.

    ``pyramid_*`` hold the progressive input/output layers of the level, if any.
    """

    def __init__(
        self, res, attn, resample, *, pyramid_norm=None, pyramid_conv=None, pyramid_resample=None
    ):
        self.res = nnx.List(res)
        self.attn = nnx.List(attn)  # empty, or one block per residual block (or one per level)
        self.resample = resample
        self.pyramid_norm = pyramid_norm
        self.pyramid_conv = pyramid_conv
        self.pyramid_resample = pyramid_resample


class UNet(nnx.Module):
    """The U-Net: predicts an NHWC tensor (the noise, the score, ...) from ``x_t`` and ``t``.

    Args:
      config: the hyperparameters.
      image_shape: ``(H, W, C)`` of the inputs, fixed at construction. H and W must be
        divisible by ``2 ** (len(config.channel_mult) - 1)``.
      rngs: used for parameter initialisation only (not stored).
    """

    def __init__(self, config: UNetConfig, *, image_shape: tuple[int, int, int], rngs: nnx.Rngs):
        if not isinstance(config, UNetConfig):
            raise TypeError(f"config must be a UNetConfig, got {type(config).__name__}")
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or not all(isinstance(s, int) and s > 0 for s in image_shape):
            raise ValueError(
                f"image_shape must be (H, W, C) with positive integers, got {image_shape}"
            )
        height, width, in_ch = image_shape
        num_levels = len(config.channel_mult)
        factor = 2 ** (num_levels - 1)
        if height % factor or width % factor:
            raise ValueError(
                f"image size {height}x{width} is not divisible by 2**(len(channel_mult) - 1) "
                f"= {factor} (channel_mult = {config.channel_mult} downsamples "
                f"{num_levels - 1} times)"
            )
        level_heights = [height // 2**i for i in range(num_levels)]
        missing = [r for r in config.attention_resolutions if r not in level_heights]
        if missing:
            raise ValueError(
                f"attention_resolutions {missing} match no level of a {height}x{width} image; "
                f"the levels' heights are {level_heights}"
            )

        self.config = config
        self.image_shape = image_shape
        ch, nrb = config.channels, config.num_res_blocks
        temb_ch = 4 * ch
        groups, heads = config.num_groups, config.num_heads
        out_ch = config.out_channels if config.out_channels is not None else in_ch
        fir = config.resample_filter == "fir"
        rescale, init_scale = config.skip_rescale, config.init_scale
        num_blocks = 0  # residual blocks, one dropout key each

        def res(i, o, resample=None):
            nonlocal num_blocks
            num_blocks += 1
            return ResBlock(
                i,
                o,
                temb_ch,
                num_groups=groups,
                dropout=config.dropout,
                rngs=rngs,
                resample=resample,
                fir=fir,
                skip_rescale=rescale,
                init_scale=init_scale,
            )

        def attn(c):
            return AttentionBlock(
                c,
                num_heads=heads,
                num_groups=groups,
                rngs=rngs,
                skip_rescale=rescale,
                init_scale=init_scale,
            )

        emb_ch = ch if config.time_embedding == "sinusoidal" else 2 * ch
        self.temb_dense0 = _linear(emb_ch, temb_ch, rngs=rngs)
        self.temb_dense1 = _linear(temb_ch, temb_ch, rngs=rngs)
        self.class_embed = (
            nnx.Embed(config.num_classes, temb_ch, rngs=rngs) if config.num_classes else None
        )
        self.conv_in = _conv(in_ch, ch, 3, rngs=rngs)

        # Down path; skip_ch records the width of every activation pushed on the skip stack.
        skip_ch = [ch]
        cur = ch
        pyramid_ch = in_ch  # width of the input pyramid
        down = []
        for i, mult in enumerate(config.channel_mult):
            use_attn = level_heights[i] in config.attention_resolutions
            blocks, attns = [], []
            for _ in range(nrb):
                blocks.append(res(cur, ch * mult))
                cur = ch * mult
                if use_attn:
                    attns.append(attn(cur))
                skip_ch.append(cur)
            resample, pyramid = None, {}
            if i != num_levels - 1:
                if config.resblock_updown:
                    resample = res(cur, cur, resample="down")
                else:
                    resample = Downsample(cur, rngs=rngs, fir=fir)
                if config.progressive_input == "input_skip":
                    pyramid["pyramid_conv"] = _conv(pyramid_ch, cur, 1, rngs=rngs)
                elif config.progressive_input == "residual":
                    pyramid["pyramid_resample"] = Downsample(
                        pyramid_ch, out_ch=cur, fir=fir, rngs=rngs
                    )
                    pyramid_ch = cur
                skip_ch.append(cur)
            down.append(_Level(blocks, attns, resample, **pyramid))
        self.down = nnx.List(down)

        self.mid_res1 = res(cur, cur)
        self.mid_attn = attn(cur)
        self.mid_res2 = res(cur, cur)

        # Up path, from the lowest resolution to the highest.
        up = []
        pyramid_ch = None  # width of the output pyramid, once started
        for i in reversed(range(num_levels)):
            mult = config.channel_mult[i]
            use_attn = level_heights[i] in config.attention_resolutions
            blocks, attns = [], []
            for _ in range(nrb + 1):
                blocks.append(res(cur + skip_ch.pop(), ch * mult))
                cur = ch * mult
                if use_attn and config.up_attention == "every_block":
                    attns.append(attn(cur))
            if use_attn and config.up_attention == "last_block":
                attns.append(attn(cur))
            pyramid = {}
            if config.progressive_output == "output_skip":
                pyramid["pyramid_norm"] = _group_norm(cur, groups, rngs)
                pyramid["pyramid_conv"] = _conv(cur, out_ch, 3, rngs=rngs, init_scale=init_scale)
            elif config.progressive_output == "residual":
                if pyramid_ch is None:
                    pyramid["pyramid_norm"] = _group_norm(cur, groups, rngs)
                    pyramid["pyramid_conv"] = _conv(cur, cur, 3, rngs=rngs)
                else:
                    pyramid["pyramid_resample"] = Upsample(
                        pyramid_ch, out_ch=cur, fir=fir, rngs=rngs
                    )
                pyramid_ch = cur
            resample = None
            if i != 0:
                if config.resblock_updown:
                    resample = res(cur, cur, resample="up")
                else:
                    resample = Upsample(cur, rngs=rngs, fir=fir)
            up.append(_Level(blocks, attns, resample, **pyramid))
        assert not skip_ch
        self.up = nnx.List(up)

        if config.progressive_output != "output_skip":
            self.norm_out = _group_norm(cur, groups, rngs)
            self.conv_out = _conv(cur, out_ch, 3, rngs=rngs, init_scale=init_scale)
        self._num_res_blocks_total = num_blocks

    def _embed_time(self, t, dtype):
        ch = self.config.channels
        if self.config.time_embedding == "fourier":
            freqs = gaussian_fourier_frequencies(
                ch, scale=self.config.fourier_scale, seed=self.config.fourier_seed
            )
            temb = gaussian_fourier_embedding(t, freqs)
        else:
            temb = sinusoidal_embedding(t, ch)
        return temb.astype(dtype)

    def _residual_sum(self, a, b):
        return (a + b) / _SQRT2 if self.config.skip_rescale else a + b

    def __call__(
        self,
        x: jax.Array,
        t: jax.Array,
        *,
        y: jax.Array | None = None,
        key: jax.Array | None = None,
    ) -> jax.Array:
        """Apply the network.

        Args:
          x: inputs of shape ``(B, H, W, C)`` = ``(B, *image_shape)``, float.
          t: conditioning of shape ``(B,)``, integer or float: the DDPM timestep, or for
            score SDEs a float such as ``999 t`` (VP / sub-VP, sinusoidal embedding) or
            ``log sigma`` (VE / EDM's ``c_noise``, Fourier embedding).
          y: class labels of shape ``(B,)``, integer in ``[0, num_classes)``; required when
            ``config.num_classes > 0`` and refused otherwise.
          key: PRNG key for dropout; ``None`` gives the deterministic network (no dropout).

        Returns:
          An array of shape ``(B, H, W, out_channels)``.
        """
        x, t = jnp.asarray(x), jnp.asarray(t)
        expected = tuple(self.image_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"UNet expects x of shape (B, {', '.join(map(str, expected))}), got {x.shape}"
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"UNet expects a float x, got dtype {x.dtype}")
        batch = x.shape[0]
        if t.shape != (batch,):
            raise ValueError(
                f"UNet expects t of shape ({batch},) for x of batch {batch}, got {t.shape}"
            )
        if not (jnp.issubdtype(t.dtype, jnp.floating) or jnp.issubdtype(t.dtype, jnp.integer)):
            raise ValueError(f"UNet expects an integer or float t, got dtype {t.dtype}")
        if self.class_embed is None:
            if y is not None:
                raise ValueError("this UNet is unconditional (num_classes = 0) but y was given")
        else:
            if y is None:
                raise ValueError(
                    f"this UNet is class-conditional (num_classes = {self.config.num_classes}); "
                    "pass y"
                )
            y = jnp.asarray(y)
            if y.shape != (batch,) or not jnp.issubdtype(y.dtype, jnp.integer):
                raise ValueError(
                    f"UNet expects integer labels y of shape ({batch},), "
                    f"got shape {y.shape} dtype {y.dtype}"
                )

        cfg = self.config
        temb = self._embed_time(t, x.dtype)
        temb = self.temb_dense1(jax.nn.silu(self.temb_dense0(temb)))
        if self.class_embed is not None:
            temb = temb + self.class_embed(y).astype(temb.dtype)

        keys = iter([None] * self._num_res_blocks_total)
        if key is not None and cfg.dropout > 0:
            keys = iter(jax.random.split(key, self._num_res_blocks_total))
        fir = cfg.resample_filter == "fir"

        def resample(layer, h):
            if cfg.resblock_updown:
                return layer(h, temb, key=next(keys))
            return layer(h)

        hs = [self.conv_in(x)]
        pyramid = x
        for level in self.down:
            for j, block in enumerate(level.res):
                h = block(hs[-1], temb, key=next(keys))
                if len(level.attn):
                    h = level.attn[j](h)
                hs.append(h)
            if level.resample is not None:
                h = resample(level.resample, hs[-1])
                if cfg.progressive_input == "input_skip":
                    pyramid = _resample_fn("down", fir)(pyramid)
                    h = h + level.pyramid_conv(pyramid)
                elif cfg.progressive_input == "residual":
                    pyramid = self._residual_sum(level.pyramid_resample(pyramid), h)
                    h = pyramid
                hs.append(h)

        h = hs[-1]
        h = self.mid_res1(h, temb, key=next(keys))
        h = self.mid_attn(h)
        h = self.mid_res2(h, temb, key=next(keys))

        pyramid = None
        for level in self.up:
            for j, block in enumerate(level.res):
                h = block(jnp.concatenate([h, hs.pop()], axis=-1), temb, key=next(keys))
                if len(level.attn) and cfg.up_attention == "every_block":
                    h = level.attn[j](h)
            if len(level.attn) and cfg.up_attention == "last_block":
                h = level.attn[0](h)
            if cfg.progressive_output == "output_skip":
                head = level.pyramid_conv(jax.nn.silu(level.pyramid_norm(h)))
                pyramid = head if pyramid is None else _resample_fn("up", fir)(pyramid) + head
            elif cfg.progressive_output == "residual":
                if pyramid is None:
                    pyramid = level.pyramid_conv(jax.nn.silu(level.pyramid_norm(h)))
                else:
                    pyramid = self._residual_sum(level.pyramid_resample(pyramid), h)
                    h = pyramid
            if level.resample is not None:
                h = resample(level.resample, h)
        assert not hs

        if cfg.progressive_output == "output_skip":
            return pyramid
        return self.conv_out(jax.nn.silu(self.norm_out(h)))
