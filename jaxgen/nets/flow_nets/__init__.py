"""Normalizing-flow networks as Flax NNX modules: RealNVP, Glow and a 2-D RealNVP.

Modules: ``layers`` (conditioners, the masked affine coupling, the image flows'
preprocessing), ``realnvp``, ``glow`` (with the pure ActNorm init ``data_init_params``),
``flow_2d``.

The maths (couplings, masks, squeeze, ActNorm, 1x1 convolutions, logit, factoring out) are
the pure functions of ``jaxgen.flows``; these modules hold the parameters (``nnx.Param``
only) and compose them into a bijection. The objective and the sampler are pure functions of
that bijection in ``jaxgen.flows`` (``flow_nll(forward_fn, ...)``, ``flow_log_prob``,
``sample(inverse_fn, key, shape, *, temperature)``), not methods. Every flow exposes:

* ``forward(x) -> (z, log_det)``: ``z`` the flat ``(B, D)`` latent, the concatenation of the
  factored-out parts, finest scale first, each flattened per example
  (``jaxgen.flows.flatten_latents``; per-example part shapes in ``latent_shapes``), and
  ``log_det`` (B,) the log-determinant of the whole map from the data ``x`` to ``z``,
  preprocessing included;
* ``inverse(z) -> x``;
* ``log_prob(x) -> (B,)``: a convenience, ``jaxgen.flows.flow_log_prob(forward, x) =
  log p_Z(z) + log_det``, the density of the data the flow is given (for images: of ``y``
  in ``[0, 1]^D``, see below).

Samples: ``jaxgen.flows.sample(flow.inverse, key, (B, D), temperature=T)`` draws
``z ~ N(0, T^2 I)`` per example (Glow's reduced temperature, Kingma and Dhariwal 2018:
sampling from ``p(z)^(1/T^2)``, renormalized) and pushes it through the inverse (Glow
with a learned prior: ``flow.inverse_standardized``).

**Image flows and their data.** ``RealNVP`` and ``Glow`` model images ``y`` in ``[0, 1]`` of
shape ``(B, H, W, C)``: dequantized levels ``y = (k + u) / L``
(``jaxgen.flows.uniform_dequantize``), whose discrete bits/dim
``jaxgen.flows.bits_per_dim(log_prob(y), num_dims=D, num_levels=L)`` are in the same unit as
every other jaxgen family. The first bijector is the preprocessing: with
``logit_alpha=a`` (default 0.05, RealNVP sec. 4.1) the logit ``logit(a + (1 - 2a) y)``
(``jaxgen.flows.logit_forward``), whose log-determinant is part of ``log_det``; with
``logit_alpha=None`` the shift ``y - 1/2`` (Glow's preprocessing; log-determinant 0).
``inverse`` (and so a sample) returns data in the same ``[0, 1]`` scale (a sample may fall
slightly outside; ``jaxgen.flows.unit_to_levels`` clips to the edge levels).

**RealNVP** (Dinh, Sohl-Dickstein, Bengio 2017, sec. 3.6 and 4.1). Each scale but the last:
``num_couplings`` affine couplings with alternating checkerboard masks, a squeeze, then
``num_couplings`` couplings with alternating channel masks, then half of the channels are
factored out; the last scale has ``num_couplings + 1`` checkerboard couplings (the paper's
3, 3 and 4). The conditioner of every coupling is a ResNet on the masked input
(3x3 convolution to ``hidden_channels``, ``num_res_blocks`` blocks
``h + conv(relu(conv(relu(h))))``, ReLU, a zero-initialised 3x3 convolution to the shift and
raw log-scale), so every coupling starts at the identity; the log-scale is
``c * tanh(raw)`` with a learned per-channel ``c`` (initialised to 1). The paper's batch
normalization and weight normalization are left out (batch statistics would make an
example's likelihood depend on its batch). Base density ``N(0, I)``.

**Glow** (Kingma and Dhariwal 2018, sec. 3, Fig. 2). ``num_levels`` levels of: squeeze,
``num_steps`` steps of flow (ActNorm -> invertible 1x1 convolution (LU) -> affine coupling
on half the channels), then a split (all levels but the last). The coupling's conditioner is
Glow's: 3x3 convolution, ReLU, 1x1 convolution, ReLU, zero-initialised 3x3 convolution (the
conditioner's own ActNorms are left out); the log-scale is ``log sigmoid(raw + 2)``
(``scale_fn="sigmoid"``, Glow's code). ActNorm needs a data-dependent initialization:
``data_init(x, axis_name=None)`` pushes a batch through the flow layer by layer and sets
every ActNorm from the activations it receives (``jaxgen.flows.actnorm_data_init``; with
``axis_name`` inside ``shard_map`` / ``pmap`` the statistics are over the global batch);
:func:`data_init_params` is the same as a pure function of a parameter dict. With
``learn_prior=True`` the base density is Glow's learned prior: each factored-out part
``z_i ~ N(m, exp(log_s)^2)`` with ``(m, log_s)`` a zero-initialised 3x3 convolution of the
kept half at its split, the last part ``N(m, exp(log_s)^2)`` with learned per-channel
``m, log_s`` (initialised to 0, so the prior starts standard normal); ``forward`` still
returns the latent ``z`` itself, ``forward_standardized`` the standardized
``eps = (z - m) / exp(log_s)`` with the log-determinant of that extra map included, and
``inverse_standardized`` its inverse (a sample draws ``eps ~ N(0, T^2 I)``).

The 1x1 convolutions' fixed permutation ``lu_p`` and signs ``lu_sign_s`` are held as
``nnx.Param`` so that the module holds Params only; they enter only through
``stop_gradient`` and are rounded back to a permutation / signs (``jaxgen.flows.lu_weight``),
so their gradient is zero and an optimizer cannot move ``W``.

**RealNVP2D**: ``num_couplings`` affine couplings on flat ``(B, D)`` data with alternating
masks over the features (``jaxgen.flows.channel_mask``: for ``D = 2`` the masks ``[1, 0]``
and ``[0, 1]``), MLP conditioners with a zero-initialised output layer, log-scale
``c * tanh(raw)``, base ``N(0, I)``, no preprocessing.

References:
  Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
  Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1 Convolutions. NeurIPS 2018.
"""

from jaxgen.nets.flow_nets.flow_2d import RealNVP2D
from jaxgen.nets.flow_nets.glow import Glow, GlowStep, data_init_params
from jaxgen.nets.flow_nets.layers import AffineCoupling, GlowConditioner, ResNetConditioner
from jaxgen.nets.flow_nets.realnvp import RealNVP

__all__ = [
    "AffineCoupling",
    "Glow",
    "GlowConditioner",
    "GlowStep",
    "RealNVP",
    "RealNVP2D",
    "ResNetConditioner",
    "data_init_params",
]
