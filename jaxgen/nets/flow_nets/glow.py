"""Glow on images (Kingma and Dhariwal 2018, sec. 3, Fig. 2) and its data-dependent ActNorm
initialization; see :mod:`jaxgen.nets.flow_nets`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.flows.actnorm import actnorm_data_init, actnorm_forward, actnorm_inverse
from jaxgen.flows.invertible_conv import (
    invertible_conv_forward,
    invertible_conv_inverse,
    lu_init,
)
from jaxgen.flows.multiscale import (
    concat_channels,
    flatten_latents,
    split_channels,
    unflatten_latents,
)
from jaxgen.flows.objective import flow_log_prob
from jaxgen.flows.squeezing import squeeze, unsqueeze
from jaxgen.nets.flow_nets.layers import (
    ZEROS,
    AffineCoupling,
    GlowConditioner,
    ImageFlow,
    check_image_shape,
    check_positive,
)

__all__ = ["Glow", "GlowStep", "data_init_params"]


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


class Glow(ImageFlow):
    """Glow on images ``(B, H, W, C)`` in ``[0, 1]`` (see :mod:`jaxgen.nets.flow_nets`)."""

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
        h, w, c = check_image_shape(image_shape, "Glow")
        check_positive(
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
                    priors.append(nnx.Conv(c, 2 * c, (3, 3), kernel_init=ZEROS, rngs=rngs))
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
        """``jaxgen.flows.flow_log_prob(self.forward_standardized, x)`` (a convenience)."""
        return flow_log_prob(self.forward_standardized, x)

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

    def inverse_standardized(self, eps: jax.Array) -> jax.Array:
        """Images from standardized latents ``eps`` (B, D), the inverse of
        :meth:`forward_standardized`: each part ``z = m + exp(log_s) eps`` with the prior
        computed from the part kept at its split (as :meth:`inverse` without the learned
        prior). ``jaxgen.flows.sample(glow.inverse_standardized, key, (B, D))`` samples."""
        parts = unflatten_latents(self._check_z(eps), self.latent_shapes)

        def part(level, kept):
            prior = self._prior(level, kept, parts[level])
            if prior is None:
                return parts[level]
            mean, log_std = prior
            return mean + jnp.exp(log_std) * parts[level]

        return self._decode(part)


def data_init_params(
    graphdef: nnx.GraphDef, params: Any, x: jax.Array, *, axis_name: str | None = None
) -> Any:
    """Pure form of ``Glow.data_init``: the parameter dict with every ActNorm set from ``x``
    (jit it; inside ``shard_map`` pass ``axis_name`` for global statistics; under ``jit``
    over a batch sharded across devices the statistics are global already)."""
    module = nnx.merge(graphdef, params)
    module.data_init(x, axis_name=axis_name)
    return nnx.to_pure_dict(nnx.state(module))
