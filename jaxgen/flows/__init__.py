"""Normalizing flows as pure JAX functions (no Flax): bijectors that return
``(output, log_det)`` with ``log_det`` per example (B,) = ``log |det d output / d input|``,
and inverses that return the log-determinant of the inverse map.

* ``coupling``: affine (RealNVP; tanh / sigmoid / exp log-scales) and additive (NICE)
  coupling layers; checkerboard and channel masks.
* ``squeezing``: space-to-depth squeeze / unsqueeze of multi-scale flows.
* ``actnorm``: Glow's ActNorm with its data-dependent initialization (global over devices
  with ``axis_name``).
* ``invertible_conv``: Glow's invertible 1x1 convolution, LU-parameterized.
* ``preprocessing``: levels <-> images, uniform dequantization, the logit bijector and
  discrete bits/dim in the same unit as every other jaxgen family.
* ``multiscale``: factoring out half the channels, latent (un)flattening, the standard and
  learned (conditional) Gaussian base densities.
* ``objective``: the flows' objective as pure functions of the bijection
  ``forward_fn(x) -> (z, log_det)``: ``flow_log_prob`` (change of variables) and
  ``flow_nll`` (the dequantized discrete negative log-likelihood in nats, with its terms
  and bits/dim).
* ``sampling``: ``sample(inverse_fn, key, shape, *, temperature)``, one inverse pass of
  per-example base noise, returning ``jaxgen.core.SamplerOutput``.

The networks (RealNVP, Glow, a 2-D RealNVP) are Flax NNX modules in
``jaxgen.nets.flow_nets``; they hold the bijection only (``forward`` / ``inverse``).
"""

from jaxgen.flows import (
    actnorm,
    coupling,
    invertible_conv,
    multiscale,
    objective,
    preprocessing,
    sampling,
    squeezing,
)
from jaxgen.flows.actnorm import actnorm_data_init, actnorm_forward, actnorm_inverse
from jaxgen.flows.coupling import (
    SCALE_FNS,
    additive_coupling_forward,
    additive_coupling_inverse,
    affine_coupling_forward,
    affine_coupling_inverse,
    channel_mask,
    checkerboard_mask,
    coupling_log_scale,
)
from jaxgen.flows.invertible_conv import (
    LU_KEYS,
    invertible_conv_forward,
    invertible_conv_inverse,
    lu_init,
    lu_weight,
)
from jaxgen.flows.multiscale import (
    concat_channels,
    flatten_latents,
    gaussian_log_prob,
    split_channels,
    standard_normal_log_prob,
    unflatten_latents,
)
from jaxgen.flows.objective import flow_log_prob, flow_nll
from jaxgen.flows.preprocessing import (
    bits_per_dim,
    discrete_log_prob_bound,
    images_to_levels,
    levels_to_images,
    logit_forward,
    logit_inverse,
    uniform_dequantize,
    unit_to_levels,
)
from jaxgen.flows.sampling import sample
from jaxgen.flows.squeezing import squeeze, unsqueeze

__all__ = [
    "LU_KEYS",
    "SCALE_FNS",
    "actnorm",
    "actnorm_data_init",
    "actnorm_forward",
    "actnorm_inverse",
    "additive_coupling_forward",
    "additive_coupling_inverse",
    "affine_coupling_forward",
    "affine_coupling_inverse",
    "bits_per_dim",
    "channel_mask",
    "checkerboard_mask",
    "concat_channels",
    "coupling",
    "coupling_log_scale",
    "discrete_log_prob_bound",
    "flatten_latents",
    "flow_log_prob",
    "flow_nll",
    "gaussian_log_prob",
    "images_to_levels",
    "invertible_conv",
    "invertible_conv_forward",
    "invertible_conv_inverse",
    "levels_to_images",
    "logit_forward",
    "logit_inverse",
    "lu_init",
    "lu_weight",
    "multiscale",
    "objective",
    "preprocessing",
    "sample",
    "sampling",
    "split_channels",
    "squeeze",
    "squeezing",
    "standard_normal_log_prob",
    "unflatten_latents",
    "uniform_dequantize",
    "unit_to_levels",
    "unsqueeze",
]
