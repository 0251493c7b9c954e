"""The flow networks' shared parts: conditioners, the masked affine coupling, and the image
flows' preprocessing and input checks (see :mod:`jaxgen.nets.flow_nets`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.flows.coupling import (
    SCALE_FNS,
    affine_coupling_forward,
    affine_coupling_inverse,
    channel_mask,
    checkerboard_mask,
)
from jaxgen.flows.objective import flow_log_prob
from jaxgen.flows.preprocessing import logit_forward, logit_inverse

__all__ = ["AffineCoupling", "GlowConditioner", "ResNetConditioner"]

ZEROS = nnx.initializers.zeros_init()
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
            hidden_channels, out_channels, (3, 3), kernel_init=ZEROS, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv_in(x)
        for block in self.blocks:
            h = block(h)
        return self.conv_out(jax.nn.relu(h))


class GlowConditioner(nnx.Module):
    """Glow's ``NN()``: 3x3 conv, ReLU, 1x1 conv, ReLU, zero-initialised 3x3 conv."""

    def __init__(
        self, in_channels: int, out_channels: int, *, hidden_channels: int, rngs: nnx.Rngs
    ):
        self.conv1 = nnx.Conv(in_channels, hidden_channels, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(hidden_channels, hidden_channels, (1, 1), rngs=rngs)
        self.conv_out = nnx.Conv(
            hidden_channels, out_channels, (3, 3), kernel_init=ZEROS, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(self.conv1(x))
        return self.conv_out(jax.nn.relu(self.conv2(h)))


# ------------------------------------------------------------------------------- coupling


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


# --------------------------------------------------------------------------- checks


def check_image_shape(image_shape: Sequence[int], name: str) -> tuple[int, int, int]:
    if len(image_shape) != 3 or any(int(s) != s or s < 1 for s in image_shape):
        raise ValueError(f"{name}: image_shape must be (H, W, C) positive ints, got {image_shape}")
    return tuple(int(s) for s in image_shape)


def check_positive(name: str, **values: int) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name}: {key} must be an integer >= 1, got {value!r}")


# --------------------------------------------------------------------------- image flows


class ImageFlow(nnx.Module):
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
        """``log p(x)`` (B,): ``jaxgen.flows.flow_log_prob(self.forward, x)`` (a convenience;
        the objective is the pure function)."""
        return flow_log_prob(self.forward, x)
