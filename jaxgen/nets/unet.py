"""The DDPM U-Net (Ho et al. 2020, appendix B) as a Flax NNX module.

A PixelCNN++-style wide-ResNet U-Net: a sinusoidal timestep embedding through a two-layer
MLP, residual blocks with GroupNorm and a per-block projection of the timestep embedding,
single- or multi-head self-attention at chosen resolutions, stride-2 convolutions down and
nearest-neighbour upsampling + convolution up, with skip connections concatenated on the
way up. As in the paper's code, the last convolution of every residual block, the output
projection of every attention block and the output convolution start at zero, so a fresh
network outputs exactly zero and every block starts as the identity.

The module keeps no ``nnx.Rngs``: its state is made only of ``nnx.Param`` leaves, and dropout
takes its PRNG key at call time. Typical pure-function use::

    model = UNet(UNetConfig(), image_shape=(32, 32, 3), rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    params = nnx.to_pure_dict(state)
    eps = jax.jit(lambda p, x, t, k: nnx.merge(graphdef, p)(x, t, key=k))(params, x, t, key)

References:
  Ho, Jain and Abbeel, "Denoising diffusion probabilistic models", NeurIPS 2020.
  Salimans et al., "PixelCNN++", ICLR 2017. Zagoruyko and Komodakis, "Wide residual
  networks", BMVC 2016. Wu and He, "Group normalization", ECCV 2018.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.nets.embeddings import sinusoidal_embedding

# Every convolution and dense layer of the paper's code: variance scaling with scale 1,
# fan_avg, uniform (the TF default for `tf.layers`). Output layers start at zero.
_default_init = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform")
_zero_init = nnx.initializers.zeros_init()
_GROUPNORM_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Hyperparameters of the DDPM U-Net. The defaults are the paper's CIFAR-10 model.

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


def _conv(in_ch, out_ch, kernel, *, rngs, strides=1, zero=False):
    return nnx.Conv(
        in_ch,
        out_ch,
        (kernel, kernel),
        strides=strides,
        padding="SAME",
        kernel_init=_zero_init if zero else _default_init,
        rngs=rngs,
    )


def _linear(in_ch, out_ch, *, rngs, zero=False):
    return nnx.Linear(in_ch, out_ch, kernel_init=_zero_init if zero else _default_init, rngs=rngs)


def _group_norm(ch, num_groups, rngs):
    return nnx.GroupNorm(ch, num_groups=num_groups, epsilon=_GROUPNORM_EPS, rngs=rngs)


class ResBlock(nnx.Module):
    """GroupNorm, SiLU, conv3x3, + Dense(SiLU(temb)), GroupNorm, SiLU, dropout, conv3x3 (zero)."""

    def __init__(self, in_ch, out_ch, temb_ch, *, num_groups, dropout, rngs: nnx.Rngs):
        self.norm1 = _group_norm(in_ch, num_groups, rngs)
        self.conv1 = _conv(in_ch, out_ch, 3, rngs=rngs)
        self.temb_proj = _linear(temb_ch, out_ch, rngs=rngs)
        self.norm2 = _group_norm(out_ch, num_groups, rngs)
        self.dropout = nnx.Dropout(dropout)
        self.conv2 = _conv(out_ch, out_ch, 3, rngs=rngs, zero=True)
        # A 1x1 convolution (network-in-network) when the width changes.
        self.skip = _linear(in_ch, out_ch, rngs=rngs) if in_ch != out_ch else None

    def __call__(self, x, temb, *, key=None):
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        proj = self.temb_proj(jax.nn.silu(temb))
        h = h + proj.reshape(proj.shape[0], 1, 1, proj.shape[1])
        h = jax.nn.silu(self.norm2(h))
        if self.dropout.rate > 0 and key is not None:
            h = self.dropout(h, deterministic=False, rngs=key)
        h = self.conv2(h)
        if self.skip is not None:
            x = self.skip(x)
        return x + h


class AttentionBlock(nnx.Module):
    """Multi-head self-attention over the H x W positions, with a residual connection.

    GroupNorm, a fused q/k/v 1x1 projection, softmax(q k^T / sqrt(d)) v per head, and a
    zero-initialised 1x1 output projection. With one head this is the paper's block.
    """

    def __init__(self, ch, *, num_heads, num_groups, rngs: nnx.Rngs):
        if ch % num_heads:
            raise ValueError(f"attention width {ch} is not divisible by num_heads = {num_heads}")
        self.num_heads = num_heads
        self.norm = _group_norm(ch, num_groups, rngs)
        self.qkv = _linear(ch, 3 * ch, rngs=rngs)
        self.proj_out = _linear(ch, ch, rngs=rngs, zero=True)

    def __call__(self, x):
        b, hgt, wid, ch = x.shape
        n, heads = hgt * wid, self.num_heads
        d = ch // heads
        qkv = self.qkv(self.norm(x)).reshape(b, n, 3, heads, d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (d**-0.5)
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, ch)
        return x + self.proj_out(out).reshape(b, hgt, wid, ch)


class Downsample(nnx.Module):
    """Stride-2 3x3 convolution ('SAME' padding: one extra row/column at the bottom/right)."""

    def __init__(self, ch, *, rngs: nnx.Rngs):
        self.conv = _conv(ch, ch, 3, strides=2, rngs=rngs)

    def __call__(self, x):
        return self.conv(x)


class Upsample(nnx.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 convolution."""

    def __init__(self, ch, *, rngs: nnx.Rngs):
        self.conv = _conv(ch, ch, 3, rngs=rngs)

    def __call__(self, x):
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return self.conv(x)


class _Level(nnx.Module):
    """One resolution level: residual blocks, each optionally followed by attention."""

    def __init__(self, res, attn, resample):
        self.res = nnx.List(res)
        self.attn = nnx.List(attn)  # empty, or one block per residual block
        self.resample = resample


class UNet(nnx.Module):
    """The DDPM U-Net: predicts an NHWC tensor (e.g. the noise) from ``x_t`` and ``t``.

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

        def res(i, o):
            return ResBlock(i, o, temb_ch, num_groups=groups, dropout=config.dropout, rngs=rngs)

        def attn(c):
            return AttentionBlock(c, num_heads=heads, num_groups=groups, rngs=rngs)

        self.temb_dense0 = _linear(ch, temb_ch, rngs=rngs)
        self.temb_dense1 = _linear(temb_ch, temb_ch, rngs=rngs)
        self.class_embed = (
            nnx.Embed(config.num_classes, temb_ch, rngs=rngs) if config.num_classes else None
        )
        self.conv_in = _conv(in_ch, ch, 3, rngs=rngs)

        # Down path; skip_ch records the width of every activation pushed on the skip stack.
        skip_ch = [ch]
        cur = ch
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
            resample = None
            if i != num_levels - 1:
                resample = Downsample(cur, rngs=rngs)
                skip_ch.append(cur)
            down.append(_Level(blocks, attns, resample))
        self.down = nnx.List(down)

        self.mid_res1 = res(cur, cur)
        self.mid_attn = attn(cur)
        self.mid_res2 = res(cur, cur)

        # Up path, from the lowest resolution to the highest.
        up = []
        for i in reversed(range(num_levels)):
            mult = config.channel_mult[i]
            use_attn = level_heights[i] in config.attention_resolutions
            blocks, attns = [], []
            for _ in range(nrb + 1):
                blocks.append(res(cur + skip_ch.pop(), ch * mult))
                cur = ch * mult
                if use_attn:
                    attns.append(attn(cur))
            resample = Upsample(cur, rngs=rngs) if i != 0 else None
            up.append(_Level(blocks, attns, resample))
        assert not skip_ch
        self.up = nnx.List(up)

        self.norm_out = _group_norm(cur, groups, rngs)
        self.conv_out = _conv(cur, out_ch, 3, rngs=rngs, zero=True)
        self._num_res_blocks_total = num_levels * (2 * nrb + 1) + 2

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
          t: timesteps of shape ``(B,)``, integer or float.
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

        ch = self.config.channels
        temb = sinusoidal_embedding(t, ch).astype(x.dtype)
        temb = self.temb_dense1(jax.nn.silu(self.temb_dense0(temb)))
        if self.class_embed is not None:
            temb = temb + self.class_embed(y).astype(temb.dtype)

        keys = iter([None] * self._num_res_blocks_total)
        if key is not None and self.config.dropout > 0:
            keys = iter(jax.random.split(key, self._num_res_blocks_total))

        hs = [self.conv_in(x)]
        for level in self.down:
            for j, block in enumerate(level.res):
                h = block(hs[-1], temb, key=next(keys))
                if len(level.attn):
                    h = level.attn[j](h)
                hs.append(h)
            if level.resample is not None:
                hs.append(level.resample(hs[-1]))

        h = hs[-1]
        h = self.mid_res1(h, temb, key=next(keys))
        h = self.mid_attn(h)
        h = self.mid_res2(h, temb, key=next(keys))

        for level in self.up:
            for j, block in enumerate(level.res):
                h = block(jnp.concatenate([h, hs.pop()], axis=-1), temb, key=next(keys))
                if len(level.attn):
                    h = level.attn[j](h)
            if level.resample is not None:
                h = level.resample(h)
        assert not hs

        return self.conv_out(jax.nn.silu(self.norm_out(h)))
