"""Normalizing-flow networks as Flax NNX modules: RealNVP, Glow and a 2-D RealNVP.

The maths (couplings, masks, squeeze, ActNorm, 1x1 convolutions, logit, factoring out) are
the pure functions of ``jaxgen.flows``; these modules hold the parameters (``nnx.Param``
only) and compose them. Every flow exposes pure-call methods:

* ``forward(x) -> (z, log_det)``: ``z`` the flat ``(B, D)`` latent, the concatenation of the
  factored-out parts, finest scale first, each flattened per example
  (``jaxgen.flows.flatten_latents``; per-example part shapes in ``latent_shapes``), and
  ``log_det`` (B,) the log-determinant of the whole map from the data ``x`` to ``z``,
  preprocessing included;
* ``inverse(z) -> x``;
* ``log_prob(x) -> (B,)``: ``log p(x) = log p_Z(z) + log_det``, the density of the data the
  flow is given (for images: of ``y`` in ``[0, 1]^D``, see below);
* ``sample(key, n, *, temperature=1.0) -> x``: ``z ~ N(0, T^2 I)`` (Glow's reduced
  temperature, Kingma and Dhariwal 2018, qualitative experiments: sampling from
  ``p(z)^(1/T^2)``, renormalized) pushed through the inverse.

**Image flows and their data.** ``RealNVP`` and ``Glow`` model images ``y`` in ``[0, 1]`` of
shape ``(B, H, W, C)``: dequantized levels ``y = (k + u) / L``
(``jaxgen.flows.uniform_dequantize``), whose discrete bits/dim
``jaxgen.flows.bits_per_dim(log_prob(y), num_dims=D, num_levels=L)`` are in the same unit as
every other jaxgen family. The first bijector is the preprocessing: with
``logit_alpha=a`` (default 0.05, RealNVP sec. 4.1) the logit ``logit(a + (1 - 2a) y)``
(``jaxgen.flows.logit_forward``), whose log-determinant is part of ``log_det``; with
``logit_alpha=None`` the shift ``y - 1/2`` (Glow's preprocessing; log-determinant 0).
``inverse`` and ``sample`` return data in the same ``[0, 1]`` scale (a sample may fall
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
``sample`` draws ``eps ~ N(0, T^2 I)``.

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

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.flows.actnorm import actnorm_data_init, actnorm_forward, actnorm_inverse
from jaxgen.flows.coupling import (
    SCALE_FNS,
    affine_coupling_forward,
    affine_coupling_inverse,
    channel_mask,
    checkerboard_mask,
)
from jaxgen.flows.invertible_conv import (
    invertible_conv_forward,
    invertible_conv_inverse,
    lu_init,
)
from jaxgen.flows.multiscale import (
    concat_channels,
    flatten_latents,
    split_channels,
    standard_normal_log_prob,
    unflatten_latents,
)
from jaxgen.flows.preprocessing import logit_forward, logit_inverse
from jaxgen.flows.squeezing import squeeze, unsqueeze
from jaxgen.nets.mlp import MLP

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

_ZEROS = nnx.initializers.zeros_init()
MASK_KINDS = ("checkerboard", "channel")


# --------------------------------------------------------------------------- conditioners


class _ResBlock(nnx.Module):
    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(channels, channels, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        return h + self.conv2(jax.nn.relu(self.conv1(jax.nn.relu(h))))


class ResNetConditioner(nnx.Module):
    """RealNVP's conditioner: ``(B, H, W, C_in) -> (B, H, W, C_out)``, zero at init."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        hidden_channels: int,
        num_res_blocks: int,
        rngs: nnx.Rngs,
    ):
        self.conv_in = nnx.Conv(in_channels, hidden_channels, (3, 3), rngs=rngs)
        self.blocks = nnx.List(
            [_ResBlock(hidden_channels, rngs=rngs) for _ in range(num_res_blocks)]
        )
        self.conv_out = nnx.Conv(
            hidden_channels, out_channels, (3, 3), kernel_init=_ZEROS, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv_in(x)
        for block in self.blocks:
            h = block(h)
        return self.conv_out(jax.nn.relu(h))


class GlowConditioner(nnx.Module):
    """Glow's ``NN()``: 3x3 conv, ReLU, 1x1 conv, ReLU, zero-initialised 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int, *, hidden_channels: int, rngs):
        self.conv1 = nnx.Conv(in_channels, hidden_channels, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(hidden_channels, hidden_channels, (1, 1), rngs=rngs)
        self.conv_out = nnx.Conv(
            hidden_channels, out_channels, (3, 3), kernel_init=_ZEROS, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(self.conv1(x))
        return self.conv_out(jax.nn.relu(self.conv2(h)))


# ------------------------------------------------------------------------------- layers


class AffineCoupling(nnx.Module):
    """One masked affine coupling around a conditioner ``net`` with ``2 C`` outputs
    (shift, raw log-scale), on inputs of per-example shape ``shape`` (``(H, W, C)`` or
    ``(D,)``)."""

    def __init__(
        self,
        net: nnx.Module,
        *,
        shape: tuple[int, ...],
        mask_kind: str,
        parity: int,
        scale_fn: str = "tanh",
    ):
        if mask_kind not in MASK_KINDS:
            raise ValueError(f"mask_kind must be one of {MASK_KINDS}, got {mask_kind!r}")
        if scale_fn not in SCALE_FNS:
            raise ValueError(f"scale_fn must be one of {SCALE_FNS}, got {scale_fn!r}")
        if mask_kind == "checkerboard" and len(shape) != 3:
            raise ValueError(f"a checkerboard mask needs shape (H, W, C), got {shape}")
        self.net = net
        self.shape = tuple(int(s) for s in shape)
        self.mask_kind = mask_kind
        self.parity = parity
        self.scale_fn = scale_fn
        self.mask()  # validate early
        channels = self.shape[-1]
        self.scale_factor = (
            nnx.Param(jnp.ones((channels,), jnp.float32)) if scale_fn == "tanh" else None
        )

    def mask(self):
        if self.mask_kind == "checkerboard":
            return checkerboard_mask(self.shape[0], self.shape[1], parity=self.parity)
        return channel_mask(self.shape[-1], parity=self.parity)

    def _conditioner(self, masked: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = self.net(masked)
        c = self.shape[-1]
        return out[..., :c], out[..., c:]

    def _options(self) -> dict[str, Any]:
        factor = None if self.scale_factor is None else self.scale_factor[...]
        return {"scale_fn": self.scale_fn, "scale_factor": factor}

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return affine_coupling_forward(x, self.mask(), self._conditioner, **self._options())

    def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        return affine_coupling_inverse(y, self.mask(), self._conditioner, **self._options())


class GlowStep(nnx.Module):
    """ActNorm -> invertible 1x1 convolution (LU) -> affine coupling on ``C`` channels."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        *,
        hidden_channels: int,
        scale_fn: str = "sigmoid",
        rngs: nnx.Rngs,
    ):
        channels = shape[-1]
        self.actnorm_log_scale = nnx.Param(jnp.zeros((channels,), jnp.float32))
        self.actnorm_bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        lu = lu_init(rngs.params(), channels)
        self.lu_p = nnx.Param(lu["p"])
        self.lu_l = nnx.Param(lu["l"])
        self.lu_u = nnx.Param(lu["u"])
        self.lu_log_s = nnx.Param(lu["log_s"])
        self.lu_sign_s = nnx.Param(lu["sign_s"])
        net = GlowConditioner(channels, 2 * channels, hidden_channels=hidden_channels, rngs=rngs)
        self.coupling = AffineCoupling(
            net, shape=shape, mask_kind="channel", parity=0, scale_fn=scale_fn
        )

    def _lu(self) -> dict[str, jax.Array]:
        return {
            "p": self.lu_p[...],
            "l": self.lu_l[...],
            "u": self.lu_u[...],
            "log_s": self.lu_log_s[...],
            "sign_s": self.lu_sign_s[...],
        }

    def forward(
        self, h: jax.Array, *, init: bool = False, axis_name: str | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """``(h', log_det)``; with ``init=True`` first set the ActNorm from ``h``."""
        if init:
            log_scale, bias = actnorm_data_init(h, axis_name=axis_name)
            self.actnorm_log_scale.set_value(log_scale.astype(self.actnorm_log_scale.dtype))
            self.actnorm_bias.set_value(bias.astype(self.actnorm_bias.dtype))
        h, ld_norm = actnorm_forward(h, self.actnorm_log_scale[...], self.actnorm_bias[...])
        h, ld_conv = invertible_conv_forward(h, self._lu())
        h, ld_coupling = self.coupling.forward(h)
        return h, ld_norm + ld_conv + ld_coupling

    def inverse(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        h, ld_coupling = self.coupling.inverse(h)
        h, ld_conv = invertible_conv_inverse(h, self._lu())
        h, ld_norm = actnorm_inverse(h, self.actnorm_log_scale[...], self.actnorm_bias[...])
        return h, ld_norm + ld_conv + ld_coupling


# --------------------------------------------------------------------------- image flows


def _check_image_shape(image_shape: Sequence[int], name: str) -> tuple[int, int, int]:
    if len(image_shape) != 3 or any(int(s) != s or s < 1 for s in image_shape):
        raise ValueError(f"{name}: image_shape must be (H, W, C) positive ints, got {image_shape}")
    return tuple(int(s) for s in image_shape)


def _check_positive(name: str, **values: int) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name}: {key} must be an integer >= 1, got {value!r}")


class _ImageFlow(nnx.Module):
    """Shared preprocessing and input checks of the image flows."""

    image_shape: tuple[int, int, int]
    logit_alpha: float | None

    def _check_alpha(self, logit_alpha: float | None) -> None:
        if logit_alpha is not None and not 0.0 <= logit_alpha < 0.5:
            raise ValueError(f"logit_alpha must be None or in [0, 0.5), got {logit_alpha}")

    def _check_x(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.ndim != 4 or x.shape[1:] != self.image_shape:
            raise ValueError(
                f"{type(self).__name__} expects images (B, *{self.image_shape}), got {x.shape}"
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"images must be floats in [0, 1], got {x.dtype}")
        return x

    def _preprocess(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = self._check_x(x)
        if self.logit_alpha is None:
            return x - 0.5, jnp.zeros(x.shape[:1], x.dtype)
        return logit_forward(x, alpha=self.logit_alpha)

    def _postprocess(self, h: jax.Array) -> jax.Array:
        if self.logit_alpha is None:
            return h + 0.5
        return logit_inverse(h, alpha=self.logit_alpha)[0]

    @property
    def num_dims(self) -> int:
        h, w, c = self.image_shape
        return h * w * c

    def _check_z(self, z: jax.Array) -> jax.Array:
        z = jnp.asarray(z)
        if z.ndim != 2 or z.shape[1] != self.num_dims:
            raise ValueError(f"z must have shape (B, {self.num_dims}), got {z.shape}")
        return z

    def log_prob(self, x: jax.Array) -> jax.Array:
        """``log p(x)`` (B,): the base log-density of the latent plus ``log_det``."""
        z, log_det = self.forward(x)
        return standard_normal_log_prob(z) + log_det

    def sample(self, key: jax.Array, n: int, *, temperature: float = 1.0) -> jax.Array:
        """``n`` samples: ``z = T * jax.random.normal(key, (n, D))`` through :meth:`inverse`."""
        _check_positive(type(self).__name__, n=n)
        z = temperature * jax.random.normal(key, (n, self.num_dims), jnp.float32)
        return self.inverse(z)


class _RealNVPScale(nnx.Module):
    def __init__(self, checkerboard: list[AffineCoupling], channel: list[AffineCoupling]):
        self.checkerboard = nnx.List(checkerboard)
        self.channel = nnx.List(channel)


class RealNVP(_ImageFlow):
    """RealNVP on images ``(B, H, W, C)`` in ``[0, 1]`` (see the module docstring)."""

    def __init__(
        self,
        image_shape: Sequence[int],
        *,
        num_scales: int = 2,
        num_couplings: int = 3,
        hidden_channels: int = 64,
        num_res_blocks: int = 2,
        logit_alpha: float | None = 0.05,
        scale_fn: str = "tanh",
        rngs: nnx.Rngs,
    ):
        h, w, c = _check_image_shape(image_shape, "RealNVP")
        _check_positive(
            "RealNVP",
            num_scales=num_scales,
            num_couplings=num_couplings,
            hidden_channels=hidden_channels,
        )
        if (
            isinstance(num_res_blocks, bool)
            or int(num_res_blocks) != num_res_blocks
            or (num_res_blocks < 0)
        ):
            raise ValueError(f"RealNVP: num_res_blocks must be >= 0, got {num_res_blocks!r}")
        factor = 2 ** (num_scales - 1)
        if h % factor or w % factor or (h // factor) * (w // factor) < 2:
            raise ValueError(
                f"RealNVP: with num_scales={num_scales}, H and W must be divisible by {factor} "
                f"and the last scale must keep at least 2 positions; got image_shape "
                f"{(h, w, c)}"
            )
        self._check_alpha(logit_alpha)
        self.image_shape = (h, w, c)
        self.logit_alpha = logit_alpha
        self.num_scales = num_scales

        def coupling(shape, kind, parity):
            net = ResNetConditioner(
                shape[-1],
                2 * shape[-1],
                hidden_channels=hidden_channels,
                num_res_blocks=num_res_blocks,
                rngs=rngs,
            )
            return AffineCoupling(
                net, shape=shape, mask_kind=kind, parity=parity, scale_fn=scale_fn
            )

        scales, latent_shapes = [], []
        for s in range(num_scales):
            last = s == num_scales - 1
            n_checker = num_couplings + 1 if last else num_couplings
            checker = [coupling((h, w, c), "checkerboard", i % 2) for i in range(n_checker)]
            channel = []
            if not last:
                squeezed = (h // 2, w // 2, 4 * c)
                channel = [coupling(squeezed, "channel", i % 2) for i in range(num_couplings)]
                h, w, c = h // 2, w // 2, 2 * c
            latent_shapes.append((h, w, c))
            scales.append(_RealNVPScale(checker, channel))
        self.scales = nnx.List(scales)
        self.latent_shapes = tuple(latent_shapes)

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(z (B, D), log_det (B,))`` from images ``x`` in ``[0, 1]``."""
        h, log_det = self._preprocess(x)
        parts = []
        for s, scale in enumerate(self.scales):
            for layer in scale.checkerboard:
                h, ld = layer.forward(h)
                log_det = log_det + ld
            if s < self.num_scales - 1:
                h = squeeze(h)
                for layer in scale.channel:
                    h, ld = layer.forward(h)
                    log_det = log_det + ld
                h, factored = split_channels(h)
                parts.append(factored)
        parts.append(h)
        return flatten_latents(parts), log_det

    def inverse(self, z: jax.Array) -> jax.Array:
        """Images from latents ``z`` (B, D)."""
        parts = unflatten_latents(self._check_z(z), self.latent_shapes)
        h = parts[-1]
        for s in reversed(range(self.num_scales)):
            scale = self.scales[s]
            if s < self.num_scales - 1:
                h = concat_channels(h, parts[s])
                for layer in reversed(scale.channel):
                    h = layer.inverse(h)[0]
                h = unsqueeze(h)
            for layer in reversed(scale.checkerboard):
                h = layer.inverse(h)[0]
        return self._postprocess(h)


class Glow(_ImageFlow):
    """Glow on images ``(B, H, W, C)`` in ``[0, 1]`` (see the module docstring)."""

    def __init__(
        self,
        image_shape: Sequence[int],
        *,
        num_levels: int = 2,
        num_steps: int = 4,
        hidden_channels: int = 64,
        learn_prior: bool = False,
        logit_alpha: float | None = None,
        scale_fn: str = "sigmoid",
        rngs: nnx.Rngs,
    ):
        h, w, c = _check_image_shape(image_shape, "Glow")
        _check_positive(
            "Glow", num_levels=num_levels, num_steps=num_steps, hidden_channels=hidden_channels
        )
        factor = 2**num_levels
        if h % factor or w % factor:
            raise ValueError(
                f"Glow: with num_levels={num_levels}, H and W must be divisible by {factor}; "
                f"got image_shape {(h, w, c)}"
            )
        self._check_alpha(logit_alpha)
        self.image_shape = (h, w, c)
        self.logit_alpha = logit_alpha
        self.num_levels = num_levels
        self.learn_prior = bool(learn_prior)
        levels, priors, latent_shapes = [], [], []
        for level in range(num_levels):
            h, w, c = h // 2, w // 2, 4 * c
            steps = [
                GlowStep((h, w, c), hidden_channels=hidden_channels, scale_fn=scale_fn, rngs=rngs)
                for _ in range(num_steps)
            ]
            levels.append(nnx.List(steps))
            if level < num_levels - 1:
                c //= 2
                if self.learn_prior:
                    priors.append(nnx.Conv(c, 2 * c, (3, 3), kernel_init=_ZEROS, rngs=rngs))
            latent_shapes.append((h, w, c))
        self.levels = nnx.List(levels)
        self.split_priors = nnx.List(priors)
        if self.learn_prior:
            self.top_mean = nnx.Param(jnp.zeros((c,), jnp.float32))
            self.top_log_std = nnx.Param(jnp.zeros((c,), jnp.float32))
        else:
            self.top_mean = self.top_log_std = None
        self.latent_shapes = tuple(latent_shapes)

    # The prior of each latent part: (mean, log_std), or None for N(0, I).

    def _prior(self, level: int, kept: jax.Array | None, like: jax.Array):
        if not self.learn_prior:
            return None
        if level < self.num_levels - 1:
            out = self.split_priors[level](kept)
            c = like.shape[-1]
            return out[..., :c], out[..., c:]
        shape = (1,) * (like.ndim - 1) + (like.shape[-1],)
        mean = jnp.broadcast_to(self.top_mean[...].reshape(shape).astype(like.dtype), like.shape)
        log_std = jnp.broadcast_to(
            self.top_log_std[...].reshape(shape).astype(like.dtype), like.shape
        )
        return mean, log_std

    def _encode(self, x: jax.Array, *, init: bool = False, axis_name: str | None = None):
        """``(parts, standardized parts, log_det, log_det of the standardization)``."""
        h, log_det = self._preprocess(x)
        parts, eps, std_log_det = [], [], jnp.zeros_like(log_det)
        for level, steps in enumerate(self.levels):
            h = squeeze(h)
            for step in steps:
                h, ld = step.forward(h, init=init, axis_name=axis_name)
                log_det = log_det + ld
            if level < self.num_levels - 1:
                h, z = split_channels(h)
                prior = self._prior(level, h, z)
            else:
                z = h
                prior = self._prior(level, None, z)
            parts.append(z)
            if prior is None:
                eps.append(z)
            else:
                mean, log_std = prior
                eps.append((z - mean) * jnp.exp(-log_std))
                std_log_det = std_log_det - jnp.sum(log_std.reshape(z.shape[0], -1), axis=1)
        return parts, eps, log_det, std_log_det

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(z (B, D), log_det (B,))`` from images ``x`` in ``[0, 1]``."""
        parts, _, log_det, _ = self._encode(x)
        return flatten_latents(parts), log_det

    def forward_standardized(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(eps (B, D), log_det (B,))`` of the map to the standardized latent: with the
        learned prior ``eps = (z - m) / exp(log_s)`` and ``log_det`` includes
        ``-sum(log_s)``, so ``log p(x) = log N(eps; 0, I) + log_det``; without it, as
        :meth:`forward`."""
        _, eps, log_det, std_log_det = self._encode(x)
        return flatten_latents(eps), log_det + std_log_det

    def log_prob(self, x: jax.Array) -> jax.Array:
        eps, log_det = self.forward_standardized(x)
        return standard_normal_log_prob(eps) + log_det

    def data_init(self, x: jax.Array, *, axis_name: str | None = None) -> None:
        """Set every ActNorm from the batch ``x`` (layer by layer, Glow sec. 3.1)."""
        self._encode(x, init=True, axis_name=axis_name)

    def _decode(self, part_fn: Callable[[int, jax.Array | None], jax.Array]) -> jax.Array:
        """Run the flow backwards; ``part_fn(level, kept)`` gives each latent part (kept is
        None for the last level)."""
        h = None
        for level in reversed(range(self.num_levels)):
            if level == self.num_levels - 1:
                h = part_fn(level, None)
            else:
                h = concat_channels(h, part_fn(level, h))
            for step in reversed(self.levels[level]):
                h = step.inverse(h)[0]
            h = unsqueeze(h)
        return self._postprocess(h)

    def inverse(self, z: jax.Array) -> jax.Array:
        """Images from latents ``z`` (B, D) (the latent itself, not standardized)."""
        parts = unflatten_latents(self._check_z(z), self.latent_shapes)
        return self._decode(lambda level, kept: parts[level])

    def sample(self, key: jax.Array, n: int, *, temperature: float = 1.0) -> jax.Array:
        """``n`` samples with standardized latents ``eps ~ N(0, T^2 I)``."""
        _check_positive("Glow", n=n)
        keys = jax.random.split(key, self.num_levels)

        def part(level, kept):
            shape = (n, *self.latent_shapes[level])
            eps = temperature * jax.random.normal(keys[level], shape, jnp.float32)
            prior = self._prior(level, kept, eps)
            if prior is None:
                return eps
            mean, log_std = prior
            return mean + jnp.exp(log_std) * eps

        return self._decode(part)


def data_init_params(
    graphdef: nnx.GraphDef, params: Any, x: jax.Array, *, axis_name: str | None = None
) -> Any:
    """Pure form of ``Glow.data_init``: the parameter dict with every ActNorm set from ``x``
    (jit it; inside ``shard_map`` pass ``axis_name`` for global statistics)."""
    module = nnx.merge(graphdef, params)
    module.data_init(x, axis_name=axis_name)
    return nnx.to_pure_dict(nnx.state(module))


# ------------------------------------------------------------------------------ 2-D flow


class RealNVP2D(nnx.Module):
    """A RealNVP on flat data ``(B, dim)`` with MLP conditioners (see the module doc)."""

    def __init__(
        self,
        dim: int = 2,
        *,
        num_couplings: int = 4,
        hidden: int | Sequence[int] = (64, 64),
        activation: str = "relu",
        scale_fn: str = "tanh",
        rngs: nnx.Rngs,
    ):
        _check_positive("RealNVP2D", num_couplings=num_couplings)
        if isinstance(dim, bool) or int(dim) != dim or dim < 2:
            raise ValueError(f"RealNVP2D: dim must be an integer >= 2, got {dim!r}")
        hidden = (hidden, hidden) if isinstance(hidden, int) else tuple(hidden)
        self.dim = int(dim)
        self.couplings = nnx.List(
            [
                AffineCoupling(
                    MLP(
                        dim,
                        hidden,
                        2 * dim,
                        activation=activation,
                        zero_init_output=True,
                        rngs=rngs,
                    ),
                    shape=(dim,),
                    mask_kind="channel",
                    parity=i % 2,
                    scale_fn=scale_fn,
                )
                for i in range(num_couplings)
            ]
        )

    @property
    def num_dims(self) -> int:
        return self.dim

    def _check(self, x: jax.Array, what: str) -> jax.Array:
        x = jnp.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.dim or not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(
                f"RealNVP2D expects {what} of shape (B, {self.dim}), got {x.dtype} {x.shape}"
            )
        return x

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(z, log_det)``, both per example."""
        h = self._check(x, "x")
        log_det = jnp.zeros(h.shape[:1], h.dtype)
        for layer in self.couplings:
            h, ld = layer.forward(h)
            log_det = log_det + ld
        return h, log_det

    def inverse(self, z: jax.Array) -> jax.Array:
        h = self._check(z, "z")
        for layer in reversed(self.couplings):
            h = layer.inverse(h)[0]
        return h

    def log_prob(self, x: jax.Array) -> jax.Array:
        z, log_det = self.forward(x)
        return standard_normal_log_prob(z) + log_det

    def sample(self, key: jax.Array, n: int, *, temperature: float = 1.0) -> jax.Array:
        """``n`` samples: ``z = T * jax.random.normal(key, (n, dim))`` through :meth:`inverse`."""
        _check_positive("RealNVP2D", n=n)
        return self.inverse(temperature * jax.random.normal(key, (n, self.dim), jnp.float32))
