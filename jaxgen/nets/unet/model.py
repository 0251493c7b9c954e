"""The U-Net (DDPM, DDPM++, NCSN++): time embedding, down path, middle, up path, output.

``x -> conv_in -> down levels -> res, attention, res -> up levels -> GN, SiLU, conv_out``
(or the sum of the output pyramid's heads), the timestep embedding ``MLP(features(t))``
(+ the condition's embedding: a class label with a learned null class and / or an embedding
vector, :class:`~jaxgen.nets.conditioning.ConditionEmbedding`; + the embedding of an image
condition's augmentation level) fed to every residual block, an optional image condition
concatenated with ``x`` before ``conv_in`` (SR3), and the skip stack carrying every down
activation to one up block (Ho et al. 2020, appendix B; Song et al. 2021, appendix H).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.nets.conditioning import ConditionEmbedding
from jaxgen.nets.embeddings import sinusoidal_embedding
from jaxgen.nets.unet.config import UNetConfig
from jaxgen.nets.unet.layers import conv, group_norm, linear
from jaxgen.nets.unet.levels import BlockOptions, DownLevel, UpLevel
from jaxgen.nets.unet.time_embedding import time_feature_width, time_features

__all__ = ["AUGMENTATION_TIME_SCALE", "UNet", "build_down_path", "level_heights"]

AUGMENTATION_TIME_SCALE = 1000.0
"""The augmentation level ``s in [0, 1]`` enters the time features as ``1000 s`` (the scale
of the DDPM step the sinusoidal features were made for)."""


def level_heights(config: UNetConfig, image_shape: tuple[int, ...]) -> list[int]:
    """The feature-map height of every level, after checking ``image_shape`` fits."""
    if len(image_shape) != 3 or not all(isinstance(s, int) and s > 0 for s in image_shape):
        raise ValueError(f"image_shape must be (H, W, C) with positive integers, got {image_shape}")
    height, width, _ = image_shape
    num_levels = len(config.channel_mult)
    factor = 2 ** (num_levels - 1)
    if height % factor or width % factor:
        raise ValueError(
            f"image size {height}x{width} is not divisible by 2**(len(channel_mult) - 1) "
            f"= {factor} (channel_mult = {config.channel_mult} downsamples "
            f"{num_levels - 1} times)"
        )
    heights = [height // 2**i for i in range(num_levels)]
    missing = [r for r in config.attention_resolutions if r not in heights]
    if missing:
        raise ValueError(
            f"attention_resolutions {missing} match no level of a {height}x{width} image; "
            f"the levels' heights are {heights}"
        )
    return heights


def build_down_path(
    config: UNetConfig,
    heights: Sequence[int],
    in_ch: int,
    options: BlockOptions,
    *,
    rngs: nnx.Rngs,
) -> tuple[list[DownLevel], list[int]]:
    """The down path's levels (after ``conv_in``, whose output has ``config.channels``
    channels) and the width of every activation it pushes on the skip stack, ``conv_in``'s
    first. Shared by :class:`UNet` and the noisy classifier's encoder."""
    ch, nrb = config.channels, config.num_res_blocks
    widths = [ch * mult for mult in config.channel_mult]
    last = len(widths) - 1
    down, skip_chs, cur, pyramid_ch = [], [ch], ch, in_ch
    for i, width in enumerate(widths):
        down.append(
            DownLevel(
                cur,
                width,
                num_blocks=nrb,
                attention=heights[i] in config.attention_resolutions,
                downsample=i != last,
                progressive_input=config.progressive_input,
                pyramid_ch=pyramid_ch,
                options=options,
                rngs=rngs,
            )
        )
        skip_chs += [width] * (nrb + (i != last))
        cur = width
        if config.progressive_input == "residual" and i != last:
            pyramid_ch = width
    return down, skip_chs


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
        heights = level_heights(config, image_shape)
        self.config = config
        self.image_shape = image_shape
        in_ch = image_shape[-1]
        out_ch = config.out_channels if config.out_channels is not None else in_ch
        ch, nrb = config.channels, config.num_res_blocks
        widths = [ch * mult for mult in config.channel_mult]
        attention = [h in config.attention_resolutions for h in heights]
        options = BlockOptions.from_config(config)

        self.temb_dense0 = linear(time_feature_width(config), options.temb_ch, rngs=rngs)
        self.temb_dense1 = linear(options.temb_ch, options.temb_ch, rngs=rngs)
        # Made only for a conditional network: an unconditional one keeps the parameter tree
        # (and, for a given key, the initial values) it had before conditioning existed.
        self.condition_embed = (
            ConditionEmbedding(
                options.temb_ch,
                num_classes=config.num_classes,
                embedding_dim=config.embedding_dim,
                rngs=rngs,
            )
            if config.num_classes or config.embedding_dim
            else None
        )
        # Made only when used, like the condition embedding: other networks keep their tree.
        self.augmentation_embed = (
            nnx.Sequential(
                linear(config.channels, options.temb_ch, rngs=rngs),
                jax.nn.silu,
                linear(options.temb_ch, options.temb_ch, rngs=rngs),
            )
            if config.augmentation_embedding
            else None
        )
        self.conv_in = conv(in_ch + config.condition_channels, ch, 3, rngs=rngs)
        down, skip_chs = build_down_path(config, heights, in_ch, options, rngs=rngs)
        self.down = nnx.List(down)
        cur = widths[-1]

        self.mid_res1 = options.res_block(cur, cur, rngs=rngs)
        self.mid_attn = options.attention(cur, rngs=rngs)
        self.mid_res2 = options.res_block(cur, cur, rngs=rngs)

        # Up path, from the lowest resolution to the highest; each block pops one skip.
        up, pyramid_ch = [], None
        for i in reversed(range(len(widths))):
            up.append(
                UpLevel(
                    cur,
                    [skip_chs.pop() for _ in range(nrb + 1)],
                    widths[i],
                    attention=attention[i],
                    up_attention=config.up_attention,
                    upsample=i != 0,
                    progressive_output=config.progressive_output,
                    pyramid_ch=pyramid_ch,
                    out_ch=out_ch,
                    options=options,
                    rngs=rngs,
                )
            )
            cur = widths[i]
            if config.progressive_output == "residual":
                pyramid_ch = cur
        assert not skip_chs
        self.up = nnx.List(up)

        if config.progressive_output != "output_skip":
            self.norm_out = group_norm(cur, config.num_groups, rngs)
            self.conv_out = conv(cur, out_ch, 3, rngs=rngs, init_scale=config.init_scale)
        levels = [*down, *up]
        self._num_res_blocks_total = 2 + sum(level.num_res_blocks for level in levels)

    def _embed_time(self, t: jax.Array, dtype) -> jax.Array:
        """The fixed features of ``t`` (before the MLP); see ``time_embedding``."""
        return time_features(t, self.config, dtype)

    def _check_inputs(
        self,
        x: jax.Array,
        t: jax.Array,
        y: jax.Array | None,
        embedding: jax.Array | None,
        embedding_keep: jax.Array | None,
        image_condition: jax.Array | None = None,
        augmentation_level: jax.Array | None = None,
    ) -> None:
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
        self._check_image_condition(x, image_condition, augmentation_level)
        if self.condition_embed is None:
            if y is not None:
                raise ValueError("this UNet is unconditional (num_classes = 0) but y was given")
            if embedding is not None or embedding_keep is not None:
                raise ValueError(
                    "this UNet takes no embedding (embedding_dim = 0) but embedding or "
                    "embedding_keep was given"
                )
            return
        self.condition_embed.check(y, embedding, embedding_keep, batch_size=batch)

    def _check_image_condition(
        self, x: jax.Array, image_condition: jax.Array | None, level: jax.Array | None
    ) -> None:
        cc = self.config.condition_channels
        if cc == 0 and image_condition is not None:
            raise ValueError("this UNet takes no image condition (condition_channels = 0)")
        if cc and image_condition is None:
            raise ValueError(
                f"this UNet is image-conditional (condition_channels = {cc}): pass "
                f"image_condition of shape {(x.shape[0], *x.shape[1:3], cc)}"
            )
        if cc and tuple(image_condition.shape) != (*x.shape[:3], cc):
            raise ValueError(
                f"image_condition must have shape {(*x.shape[:3], cc)} (the output size, "
                f"condition_channels = {cc}), got {tuple(image_condition.shape)}"
            )
        if not self.config.augmentation_embedding and level is not None:
            raise ValueError(
                "this UNet takes no augmentation_level (augmentation_embedding = False)"
            )
        if self.config.augmentation_embedding:
            if level is None:
                raise ValueError(
                    "this UNet embeds an augmentation level (augmentation_embedding = True): "
                    f"pass augmentation_level of shape ({x.shape[0]},)"
                )
            if tuple(jnp.shape(level)) != (x.shape[0],):
                raise ValueError(
                    f"augmentation_level must have shape ({x.shape[0]},), got "
                    f"{tuple(jnp.shape(level))}"
                )

    def _dropout_keys(self, key: jax.Array | None) -> list[jax.Array | None]:
        """One dropout key per residual block (``None``s for the deterministic network)."""
        n = self._num_res_blocks_total
        if key is None or self.config.dropout == 0:
            return [None] * n
        return list(jax.random.split(key, n))

    def __call__(
        self,
        x: jax.Array,
        t: jax.Array,
        *,
        y: jax.Array | None = None,
        embedding: jax.Array | None = None,
        embedding_keep: jax.Array | None = None,
        image_condition: jax.Array | None = None,
        augmentation_level: jax.Array | None = None,
        key: jax.Array | None = None,
    ) -> jax.Array:
        """Apply the network.

        Args:
          x: inputs of shape ``(B, H, W, C)`` = ``(B, *image_shape)``, float.
          t: conditioning of shape ``(B,)``, integer or float: the DDPM timestep, or for
            score SDEs a float such as ``999 t`` (VP / sub-VP, sinusoidal embedding) or
            ``log sigma`` (VE / EDM's ``c_noise``, Fourier embedding).
          y: class labels of shape ``(B,)``, integer in ``[-1, num_classes)``, ``-1``
            (``NULL_LABEL``) selecting the learned null class; required when
            ``config.num_classes > 0`` and refused otherwise. Concrete labels out of range
            raise ``ValueError``; traced ones select the null row.
          embedding: condition vectors of shape ``(B, embedding_dim)``, float; required
            when ``config.embedding_dim > 0`` and refused otherwise.
          embedding_keep: ``(B,)`` bool or ``None`` (keep all); where False the learned
            null vector replaces the example's embedding.
          image_condition: ``(B, H, W, condition_channels)``, concatenated with ``x`` at the
            input; required when ``config.condition_channels > 0`` and refused otherwise.
          augmentation_level: ``(B,)`` float, the image condition's augmentation level;
            required when ``config.augmentation_embedding`` and refused otherwise.
          key: PRNG key for dropout; ``None`` gives the deterministic network (no dropout).

        Returns:
          An array of shape ``(B, H, W, out_channels)``.
        """
        x, t = jnp.asarray(x), jnp.asarray(t)
        self._check_inputs(x, t, y, embedding, embedding_keep, image_condition, augmentation_level)
        temb = self.temb_dense1(jax.nn.silu(self.temb_dense0(self._embed_time(t, x.dtype))))
        if self.condition_embed is not None:
            cond = self.condition_embed(y, embedding, embedding_keep)
            temb = temb + cond.astype(temb.dtype)
        if self.augmentation_embed is not None:
            level = jnp.asarray(augmentation_level, jnp.float32) * AUGMENTATION_TIME_SCALE
            features = sinusoidal_embedding(level, self.config.channels).astype(x.dtype)
            temb = temb + self.augmentation_embed(features)
        keys = self._dropout_keys(key)  # consumed in block order: down, middle, up

        inputs = x
        if image_condition is not None:
            inputs = jnp.concatenate([x, jnp.asarray(image_condition, x.dtype)], axis=-1)
        hs, pyramid = [self.conv_in(inputs)], x
        for level in self.down:
            skips, pyramid = level(hs[-1], temb, pyramid, keys[: level.num_res_blocks])
            hs += skips
            keys = keys[level.num_res_blocks :]

        h = self.mid_res1(hs[-1], temb, key=keys[0])
        h = self.mid_attn(h)
        h = self.mid_res2(h, temb, key=keys[1])
        keys = keys[2:]

        pyramid = None
        for level in self.up:
            skips = [hs.pop() for _ in range(len(level.res))]
            h, pyramid = level(h, temb, skips, pyramid, keys[: level.num_res_blocks])
            keys = keys[level.num_res_blocks :]
        assert not hs and not keys

        if self.config.progressive_output == "output_skip":
            return pyramid
        return self.conv_out(jax.nn.silu(self.norm_out(h)))
