"""Exponential moving average of parameters (Polyak averaging), as used for DDPM samples."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def ema_update(ema_params: Any, params: Any, *, decay: float | jax.Array) -> Any:
    """``ema <- decay * ema + (1 - decay) * params``, leaf by leaf, in the EMA's dtype."""
    return jax.tree.map(
        lambda e, p: (decay * e + (1.0 - decay) * p.astype(e.dtype)).astype(e.dtype),
        ema_params,
        params,
    )


def ema_decay_at(step: jax.Array, *, decay: float) -> jax.Array:
    """Decay with a warmup, ``min(decay, (1 + s) / (10 + s))``, so early EMA tracks the
    parameters instead of the random initialisation (the TensorFlow EMA convention)."""
    s = step.astype(jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1.0 + s) / (10.0 + s))
