"""One resolution level of the U-Net, down and up, with the progressive input/output pyramid.

A level of the down path is ``num_res_blocks`` residual blocks (each followed by
attention at the attention resolutions), then, except at the lowest resolution, a 2x
downsampling; every block's output and the downsampled features are pushed on the skip
stack. A level of the up path is ``num_res_blocks + 1`` residual blocks, each fed the
concatenation of the features and one popped skip activation, attention (after every
block for DDPM, once after the last block for DDPM++ / NCSN++), then, except at the highest
resolution, a 2x upsampling.

NCSN++'s pyramids (Song et al. 2021, appendix H.1; ``UNetConfig`` documents the options)
live in the levels: ``progressive_input`` after each downsampling, ``progressive_output``
after each up level's blocks.

:class:`BlockOptions` holds what every block of one U-Net shares, so that a level builds its
blocks from a width alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.nets.unet.blocks import AttentionBlock, Downsample, ResBlock, Upsample
from jaxgen.nets.unet.config import UNetConfig
from jaxgen.nets.unet.layers import conv, group_norm, residual_sum
from jaxgen.nets.unet.resampling import resample_fn

__all__ = ["BlockOptions", "DownLevel", "UpLevel"]

Key = jax.Array | None


@dataclasses.dataclass(frozen=True)
class BlockOptions:
    """The settings every residual / attention / resampling block of a U-Net shares."""

    temb_ch: int
    num_groups: int
    num_heads: int
    dropout: float
    fir: bool
    skip_rescale: bool
    init_scale: float
    resblock_updown: bool

    @classmethod
    def from_config(cls, config: UNetConfig) -> BlockOptions:
        return cls(
            temb_ch=4 * config.channels,
            num_groups=config.num_groups,
            num_heads=config.num_heads,
            dropout=config.dropout,
            fir=config.resample_filter == "fir",
            skip_rescale=config.skip_rescale,
            init_scale=config.init_scale,
            resblock_updown=config.resblock_updown,
        )

    def res_block(
        self, in_ch: int, out_ch: int, *, rngs: nnx.Rngs, resample: str | None = None
    ) -> ResBlock:
        return ResBlock(
            in_ch,
            out_ch,
            self.temb_ch,
            num_groups=self.num_groups,
            dropout=self.dropout,
            rngs=rngs,
            resample=resample,
            fir=self.fir,
            skip_rescale=self.skip_rescale,
            init_scale=self.init_scale,
        )

    def attention(self, ch: int, *, rngs: nnx.Rngs) -> AttentionBlock:
        return AttentionBlock(
            ch,
            num_heads=self.num_heads,
            num_groups=self.num_groups,
            rngs=rngs,
            skip_rescale=self.skip_rescale,
            init_scale=self.init_scale,
        )

    def resampler(self, ch: int, direction: str, *, rngs: nnx.Rngs) -> nnx.Module:
        """The 2x ``"down"`` / ``"up"`` layer: a BigGAN residual block with
        ``resblock_updown``, else :class:`Downsample` / :class:`Upsample`."""
        if self.resblock_updown:
            return self.res_block(ch, ch, rngs=rngs, resample=direction)
        layer = Downsample if direction == "down" else Upsample
        return layer(ch, rngs=rngs, fir=self.fir)


def _resample(layer: nnx.Module, h: jax.Array, temb: jax.Array, keys: Sequence[Key]) -> jax.Array:
    """Apply a level's resampling layer; a residual one takes the level's last dropout key."""
    if isinstance(layer, ResBlock):
        return layer(h, temb, key=keys[-1])
    return layer(h)


class DownLevel(nnx.Module):
    """Residual blocks (+ attention) at one resolution, then the downsampling (if any) and
    the input pyramid's layer of the level (``pyramid_conv`` for ``"input_skip"``,
    ``pyramid_resample`` for ``"residual"``)."""

    def __init__(
        self,
        in_ch: int,
        width: int,
        *,
        num_blocks: int,
        attention: bool,
        downsample: bool,
        progressive_input: str,
        pyramid_ch: int,
        options: BlockOptions,
        rngs: nnx.Rngs,
    ):
        res, attn = [], []
        for j in range(num_blocks):
            res.append(options.res_block(in_ch if j == 0 else width, width, rngs=rngs))
            if attention:
                attn.append(options.attention(width, rngs=rngs))
        self.res = nnx.List(res)
        self.attn = nnx.List(attn)  # empty, or one block per residual block
        self.resample = options.resampler(width, "down", rngs=rngs) if downsample else None
        pyramid_conv = pyramid_resample = None
        if downsample and progressive_input == "input_skip":
            pyramid_conv = conv(pyramid_ch, width, 1, rngs=rngs)
        elif downsample and progressive_input == "residual":
            pyramid_resample = Downsample(pyramid_ch, out_ch=width, fir=options.fir, rngs=rngs)
        self.pyramid_conv = pyramid_conv
        self.pyramid_resample = pyramid_resample
        self.progressive_input = progressive_input
        self.options = options

    @property
    def num_res_blocks(self) -> int:
        """Residual blocks of the level (one dropout key each), the resampling one included."""
        return len(self.res) + isinstance(self.resample, ResBlock)

    def __call__(
        self, h: jax.Array, temb: jax.Array, pyramid: jax.Array, keys: Sequence[Key]
    ) -> tuple[list[jax.Array], jax.Array]:
        """The activations pushed on the skip stack, and the input pyramid after the level.

        ``keys``: ``num_res_blocks`` dropout keys (or ``None``s), in block order.
        """
        skips = []
        for j, block in enumerate(self.res):
            h = block(h, temb, key=keys[j])
            if len(self.attn):
                h = self.attn[j](h)
            skips.append(h)
        if self.resample is None:
            return skips, pyramid
        h = _resample(self.resample, h, temb, keys)
        if self.progressive_input == "input_skip":
            pyramid = resample_fn("down", fir=self.options.fir)(pyramid)
            h = h + self.pyramid_conv(pyramid)
        elif self.progressive_input == "residual":
            pyramid = residual_sum(
                self.pyramid_resample(pyramid), h, skip_rescale=self.options.skip_rescale
            )
            h = pyramid
        skips.append(h)
        return skips, pyramid


class UpLevel(nnx.Module):
    """Residual blocks on [features, skip] (+ attention) at one resolution, the output
    pyramid's layers of the level, then the upsampling (if any).

    Output pyramid layers: ``"output_skip"``: a head ``pyramid_conv(SiLU(pyramid_norm(h)))``
    to the output channels; ``"residual"``: the first (lowest-resolution) level starts the
    pyramid with ``pyramid_norm`` / ``pyramid_conv``, the others upsample it with
    ``pyramid_resample``.
    """

    def __init__(
        self,
        in_ch: int,
        skip_chs: Sequence[int],
        width: int,
        *,
        attention: bool,
        up_attention: str,
        upsample: bool,
        progressive_output: str,
        pyramid_ch: int | None,
        out_ch: int,
        options: BlockOptions,
        rngs: nnx.Rngs,
    ):
        per_block = attention and up_attention == "every_block"
        res, attn = [], []
        for j, skip_ch in enumerate(skip_chs):
            res.append(options.res_block((in_ch if j == 0 else width) + skip_ch, width, rngs=rngs))
            if per_block:
                attn.append(options.attention(width, rngs=rngs))
        if attention and up_attention == "last_block":
            attn.append(options.attention(width, rngs=rngs))
        self.res = nnx.List(res)
        self.attn = nnx.List(attn)  # empty, one block per residual block, or one per level
        self.attention_per_block = per_block
        pyramid_norm = pyramid_conv = pyramid_resample = None
        if progressive_output == "output_skip":
            pyramid_norm = group_norm(width, options.num_groups, rngs)
            pyramid_conv = conv(width, out_ch, 3, rngs=rngs, init_scale=options.init_scale)
        elif progressive_output == "residual" and pyramid_ch is None:
            pyramid_norm = group_norm(width, options.num_groups, rngs)
            pyramid_conv = conv(width, width, 3, rngs=rngs)
        elif progressive_output == "residual":
            pyramid_resample = Upsample(pyramid_ch, out_ch=width, fir=options.fir, rngs=rngs)
        self.pyramid_norm = pyramid_norm
        self.pyramid_conv = pyramid_conv
        self.pyramid_resample = pyramid_resample
        self.resample = options.resampler(width, "up", rngs=rngs) if upsample else None
        self.progressive_output = progressive_output
        self.options = options

    @property
    def num_res_blocks(self) -> int:
        """Residual blocks of the level (one dropout key each), the resampling one included."""
        return len(self.res) + isinstance(self.resample, ResBlock)

    def __call__(
        self,
        h: jax.Array,
        temb: jax.Array,
        skips: Sequence[jax.Array],
        pyramid: jax.Array | None,
        keys: Sequence[Key],
    ) -> tuple[jax.Array, jax.Array | None]:
        """The features and the output pyramid after the level.

        ``skips``: one popped skip activation per residual block, in pop order; ``keys``:
        ``num_res_blocks`` dropout keys (or ``None``s), in block order.
        """
        for j, block in enumerate(self.res):
            h = block(jnp.concatenate([h, skips[j]], axis=-1), temb, key=keys[j])
            if self.attention_per_block:
                h = self.attn[j](h)
        if len(self.attn) and not self.attention_per_block:
            h = self.attn[0](h)
        if self.progressive_output == "output_skip":
            head = self.pyramid_conv(jax.nn.silu(self.pyramid_norm(h)))
            up = resample_fn("up", fir=self.options.fir)
            pyramid = head if pyramid is None else up(pyramid) + head
        elif self.progressive_output == "residual" and self.pyramid_resample is None:
            pyramid = self.pyramid_conv(jax.nn.silu(self.pyramid_norm(h)))
        elif self.progressive_output == "residual":
            pyramid = residual_sum(
                self.pyramid_resample(pyramid), h, skip_rescale=self.options.skip_rescale
            )
            h = pyramid
        if self.resample is not None:
            h = _resample(self.resample, h, temb, keys)
        return h, pyramid
