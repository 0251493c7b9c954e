"""The U-Net's hyperparameters: :class:`UNetConfig`, checked when it is made.

The defaults are the DDPM network (Ho et al. 2020, appendix B). The options of the DDPM++ /
NCSN++ networks (Song et al. 2021, appendix H.1) all default to that network:

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
* ``resample_filter="fir"``: anti-aliased resampling with the [1, 3, 3, 1] FIR filter
  (:mod:`jaxgen.nets.unet.resampling`). The conv layers of a resampling layer become
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
"""

from __future__ import annotations

import dataclasses
import math

__all__ = [
    "PROGRESSIVE_INPUTS",
    "PROGRESSIVE_OUTPUTS",
    "RESAMPLE_FILTERS",
    "TIME_EMBEDDINGS",
    "UNetConfig",
    "UP_ATTENTIONS",
]

TIME_EMBEDDINGS = ("sinusoidal", "fourier")
RESAMPLE_FILTERS = ("none", "fir")
PROGRESSIVE_INPUTS = ("none", "input_skip", "residual")
PROGRESSIVE_OUTPUTS = ("none", "output_skip", "residual")
UP_ATTENTIONS = ("every_block", "last_block")


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
      num_classes: the number of classes ``K``, *without* the null class; 0 for no class
        input. ``K > 0`` adds a learned class embedding of ``K + 1`` rows (the last is the
        learned null class, label ``-1``; classifier-free guidance) to the timestep
        embedding, and the call then takes ``y`` (see ``jaxgen.nets.ConditionEmbedding``).
      embedding_dim: width of a general condition vector (a token or text encoder's
        output); 0 for none. ``> 0`` adds ``MLP(embedding)`` (a learned null vector where
        ``embedding_keep`` is False) to the timestep embedding and the call then takes
        ``embedding``.
      condition_channels: channels of an image condition concatenated with ``x`` at the
        input (SR3, Saharia et al. 2022: the low-resolution image enlarged to the output
        size); 0 for none. ``> 0`` widens ``conv_in`` and the call then takes
        ``image_condition``.
      augmentation_embedding: the call takes ``augmentation_level`` (``(B,)`` in
        ``[0, 1]``, the noise-conditioning augmentation level of the image condition; Ho et
        al. 2022), embedded by ``ch`` sinusoidal features of ``1000 s`` (whatever
        ``time_embedding`` is) and its own two-layer MLP, and added to the timestep
        embedding.
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
    embedding_dim: int = 0
    condition_channels: int = 0
    augmentation_embedding: bool = False
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
        check_int("embedding_dim", self.embedding_dim, minimum=0)
        check_int("condition_channels", self.condition_channels, minimum=0)
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

        for name in ("resblock_updown", "skip_rescale", "augmentation_embedding"):
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
