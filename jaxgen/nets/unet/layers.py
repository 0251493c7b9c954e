"""The U-Net's layer factories: the paper code's initialisers, GroupNorm and residual sums.

Every convolution and dense layer of the DDPM / score-SDE code is initialised by variance
scaling with scale 1, ``fan_avg``, uniform (the TF default for ``tf.layers``); the layers
that start a residual branch's output (last conv of residual blocks, attention output
projections, output convolutions) use ``init_scale`` instead, ``0`` being an exact zero
initialisation, so a fresh network outputs exactly zero and every block starts as the
identity (Ho et al. 2020, appendix B; Song et al. 2021, appendix H).
"""

from __future__ import annotations

import math

import jax
from flax import nnx

__all__ = ["GROUPNORM_EPS", "conv", "group_norm", "linear", "output_init", "residual_sum"]

DEFAULT_INIT = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform")
ZERO_INIT = nnx.initializers.zeros_init()
GROUPNORM_EPS = 1e-6
SQRT2 = math.sqrt(2.0)


def output_init(init_scale: float):
    """The initialiser of a zero-started output layer: zeros for ``init_scale == 0``, else
    variance scaling (``fan_avg``, uniform) with that scale."""
    if init_scale == 0:
        return ZERO_INIT
    return nnx.initializers.variance_scaling(init_scale, "fan_avg", "uniform")


def conv(
    in_ch: int,
    out_ch: int,
    kernel: int,
    *,
    rngs: nnx.Rngs,
    strides: int = 1,
    padding="SAME",
    input_dilation: int = 1,
    init_scale: float | None = None,
) -> nnx.Conv:
    """A conv with the default init, or the output-layer init of ``init_scale`` if given."""
    return nnx.Conv(
        in_ch,
        out_ch,
        (kernel, kernel),
        strides=strides,
        padding=padding,
        input_dilation=input_dilation,
        kernel_init=DEFAULT_INIT if init_scale is None else output_init(init_scale),
        rngs=rngs,
    )


def linear(
    in_ch: int, out_ch: int, *, rngs: nnx.Rngs, init_scale: float | None = None
) -> nnx.Linear:
    """A dense (or 1x1 conv) layer with the default init, or the output-layer init."""
    init = DEFAULT_INIT if init_scale is None else output_init(init_scale)
    return nnx.Linear(in_ch, out_ch, kernel_init=init, rngs=rngs)


def group_norm(ch: int, num_groups: int, rngs: nnx.Rngs) -> nnx.GroupNorm:
    """GroupNorm (Wu and He 2018) with the paper code's epsilon ``1e-6``."""
    return nnx.GroupNorm(ch, num_groups=num_groups, epsilon=GROUPNORM_EPS, rngs=rngs)


def residual_sum(a: jax.Array, b: jax.Array, *, skip_rescale: bool) -> jax.Array:
    """``a + b``, or ``(a + b) / sqrt(2)`` with ``skip_rescale``: the sum of two
    unit-variance branches keeps unit variance (Karras et al. 2018; Song et al. 2021)."""
    return (a + b) / SQRT2 if skip_rescale else a + b
