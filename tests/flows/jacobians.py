"""Brute-force Jacobians for the flow tests: ``slogdet`` of ``jax.jacfwd`` per example."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def per_example_jacobians(fn, x: jax.Array) -> jax.Array:
    """``(B, n, n)``: the Jacobian of ``fn`` (batched ``(B, ...) -> (B, ...)``, same number
    of values per example) at each example of ``x``, flattened to ``n`` coordinates."""
    batch = x.shape[0]
    event = x.shape[1:]

    def single(flat):
        return jnp.reshape(fn(flat.reshape((1, *event))), (-1,))

    return jax.vmap(jax.jacfwd(single))(x.reshape(batch, -1))


def per_example_log_abs_det(fn, x: jax.Array) -> jax.Array:
    """``log |det J_fn(x_b)|`` for every example, (B,)."""
    return jnp.linalg.slogdet(per_example_jacobians(fn, x))[1]
