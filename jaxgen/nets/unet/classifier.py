"""The noise-aware classifier ``p_phi(c | x_t, t)`` of classifier guidance (Dhariwal and
Nichol 2021, Sec. 4 and appendix: "the downsampling trunk of the UNet model").

``x -> conv_in -> down levels -> res, attention, res -> GN, SiLU -> mean over H, W -> dense``:
the U-Net's encoder (the same blocks, levels and timestep embedding as
:class:`~jaxgen.nets.unet.UNet`, so the same ``UNetConfig`` fields apply) followed by
GroupNorm, SiLU, global average pooling and a dense layer to the class logits. Dhariwal and
Nichol pool with attention; the spatial average is their simpler "adaptive" pooling variant.
Classifier guidance needs ``grad_x log p_phi(c | x_t)``, which is ``jax.grad`` of
``log_softmax(logits)[c]``.

References:
  Dhariwal and Nichol, "Diffusion models beat GANs on image synthesis", NeurIPS 2021.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.nets.unet.config import UNetConfig
from jaxgen.nets.unet.layers import conv, group_norm, linear
from jaxgen.nets.unet.levels import BlockOptions
from jaxgen.nets.unet.model import build_down_path, level_heights
from jaxgen.nets.unet.time_embedding import time_feature_width, time_features

__all__ = ["NoisyClassifier"]


class NoisyClassifier(nnx.Module):
    """Logits of ``p_phi(c | x_t, t)``: the U-Net's down path and middle block, then
    GroupNorm, SiLU, global average pool and a dense layer.

    Args:
      config: the encoder's hyperparameters (widths, blocks, attention, dropout, time
        embedding, BigGAN resampling, FIR, input pyramid). The decoder's fields
        (``progressive_output``, ``up_attention``, ``out_channels``) are unused;
        ``config.num_classes`` and ``config.embedding_dim`` must be 0 (the classifier is not
        conditioned on a class).
      image_shape: ``(H, W, C)`` of the inputs.
      num_classes: number of classes ``K`` (logits per example), at least 2.
      rngs: used for parameter initialisation only (not stored).
    """

    def __init__(
        self,
        config: UNetConfig,
        *,
        image_shape: tuple[int, int, int],
        num_classes: int,
        rngs: nnx.Rngs,
    ):
        if not isinstance(config, UNetConfig):
            raise TypeError(f"config must be a UNetConfig, got {type(config).__name__}")
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(
                f"NoisyClassifier.num_classes must be an integer >= 2, got {num_classes!r}"
            )
        if config.num_classes or config.embedding_dim:
            raise ValueError(
                "NoisyClassifier's config must be unconditional (num_classes = 0, "
                f"embedding_dim = 0), got num_classes = {config.num_classes}, "
                f"embedding_dim = {config.embedding_dim}; give the classes as num_classes="
            )
        image_shape = tuple(image_shape)
        heights = level_heights(config, image_shape)
        self.config = config
        self.image_shape = image_shape
        self.num_classes = num_classes
        options = BlockOptions.from_config(config)
        width = config.channels * config.channel_mult[-1]

        self.temb_dense0 = linear(time_feature_width(config), options.temb_ch, rngs=rngs)
        self.temb_dense1 = linear(options.temb_ch, options.temb_ch, rngs=rngs)
        self.conv_in = conv(image_shape[-1], config.channels, 3, rngs=rngs)
        down, _ = build_down_path(config, heights, image_shape[-1], options, rngs=rngs)
        self.down = nnx.List(down)
        self.mid_res1 = options.res_block(width, width, rngs=rngs)
        self.mid_attn = options.attention(width, rngs=rngs)
        self.mid_res2 = options.res_block(width, width, rngs=rngs)
        self.norm_out = group_norm(width, config.num_groups, rngs)
        self.dense_out = linear(width, num_classes, rngs=rngs)
        self._num_res_blocks_total = 2 + sum(level.num_res_blocks for level in down)

    def __call__(self, x: jax.Array, t: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """The logits ``f_phi(x_t, t)``, ``log p_phi(c | x_t, t) = log_softmax(f_phi)_c``.

        Args:
          x: noisy inputs of shape ``(B, *image_shape)``, float.
          t: ``(B,)``, integer or float, the time / noise-level input as the U-Net takes it.
          key: PRNG key for dropout; ``None`` gives the deterministic network.

        Returns:
          Logits of shape ``(B, num_classes)``.
        """
        x, t = jnp.asarray(x), jnp.asarray(t)
        expected = tuple(self.image_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"NoisyClassifier expects x of shape (B, {', '.join(map(str, expected))}), "
                f"got {x.shape}"
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"NoisyClassifier expects a float x, got dtype {x.dtype}")
        batch = x.shape[0]
        if t.shape != (batch,):
            raise ValueError(
                f"NoisyClassifier expects t of shape ({batch},) for x of batch {batch}, "
                f"got {t.shape}"
            )
        if not (jnp.issubdtype(t.dtype, jnp.floating) or jnp.issubdtype(t.dtype, jnp.integer)):
            raise ValueError(f"NoisyClassifier expects an integer or float t, got dtype {t.dtype}")

        features = time_features(t, self.config, x.dtype)
        temb = self.temb_dense1(jax.nn.silu(self.temb_dense0(features)))
        n = self._num_res_blocks_total
        keys = [None] * n if key is None or self.config.dropout == 0 else jax.random.split(key, n)
        keys = list(keys)

        h, pyramid = self.conv_in(x), x
        for level in self.down:
            skips, pyramid = level(h, temb, pyramid, keys[: level.num_res_blocks])
            h = skips[-1]
            keys = keys[level.num_res_blocks :]
        h = self.mid_res1(h, temb, key=keys[0])
        h = self.mid_attn(h)
        h = self.mid_res2(h, temb, key=keys[1])
        h = jax.nn.silu(self.norm_out(h))
        return self.dense_out(jnp.mean(h, axis=(1, 2)))
