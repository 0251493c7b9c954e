"""A RealNVP on flat data ``(B, dim)`` with MLP conditioners; see :mod:`jaxgen.nets.flow_nets`."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.flows.objective import flow_log_prob
from jaxgen.nets.flow_nets.layers import AffineCoupling, check_positive
from jaxgen.nets.mlp import MLP

__all__ = ["RealNVP2D"]


class RealNVP2D(nnx.Module):
    """A RealNVP on flat data ``(B, dim)`` with MLP conditioners (see the package doc)."""

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
        check_positive("RealNVP2D", num_couplings=num_couplings)
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
        """``jaxgen.flows.flow_log_prob(self.forward, x)`` (a convenience)."""
        return flow_log_prob(self.forward, x)
