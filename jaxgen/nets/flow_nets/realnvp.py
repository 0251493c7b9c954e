"""RealNVP on images (Dinh, Sohl-Dickstein, Bengio 2017, sec. 3.6 and 4.1); see
:mod:`jaxgen.nets.flow_nets`."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from jaxgen.flows.multiscale import (
    concat_channels,
    flatten_latents,
    split_channels,
    unflatten_latents,
)
from jaxgen.flows.squeezing import squeeze, unsqueeze
from jaxgen.nets.flow_nets.layers import (
    AffineCoupling,
    ImageFlow,
    ResNetConditioner,
    check_image_shape,
    check_positive,
)

__all__ = ["RealNVP"]


class _RealNVPScale(nnx.Module):
    def __init__(self, checkerboard: list[AffineCoupling], channel: list[AffineCoupling]):
        self.checkerboard = nnx.List(checkerboard)
        self.channel = nnx.List(channel)


class RealNVP(ImageFlow):
    """RealNVP on images ``(B, H, W, C)`` in ``[0, 1]`` (see :mod:`jaxgen.nets.flow_nets`)."""

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
        h, w, c = check_image_shape(image_shape, "RealNVP")
        check_positive(
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
