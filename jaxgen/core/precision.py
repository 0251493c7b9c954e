"""Mixed precision: the dtype networks compute in while a training step is traced.

The policy is that of Micikevicius et al. (2018), "Mixed Precision Training": the parameters
(the master weights), their gradients, the optimizer state and the EMA stay float32; the
networks compute in a lower precision (matmuls and convolutions, where the time goes); and
every reduction that becomes a loss or a metric (the mean over the batch, the named terms) is
taken in float32, after the per-example values are cast up. The cast of a float32 parameter
to the compute dtype inside the network is differentiated like any other op, so gradients
arrive in float32. bfloat16 needs no loss scaling: its 8-bit exponent has float32's range, so
small gradients do not underflow as they do in float16 (which this module does not offer).

The compute dtype is a context, not an argument: the engine's step enters
:func:`compute_dtype_scope` while it traces the loss, and the code that builds a network from
its parameters (``jaxgen.nets.precision.merge``) reads :func:`current_compute_dtype`. Outside
a scope (sampling, evaluation, initialisation) nothing changes and everything is float32.
The scope is read when a function is *traced*: a step built for bfloat16 enters it inside its
own body, so its compiled program is bfloat16 whatever the caller's context.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

COMPUTE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")

_COMPUTE_DTYPE: contextvars.ContextVar[np.dtype | None] = contextvars.ContextVar(
    "jaxgen_compute_dtype", default=None
)


def parse_compute_dtype(name: str) -> np.dtype:
    """The dtype named ``name``, one of :data:`COMPUTE_DTYPES` (``ValueError`` otherwise),
    so a config string is checked once, where it is read."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {name!r}")
    return jnp.dtype(name)


def resolve_compute_dtype(dtype: Any) -> np.dtype | None:
    """A compute dtype given as None, a name or a dtype, as the engine stores it: None for
    "no change" (None or float32), else the floating dtype (``ValueError`` for a name not
    in :data:`COMPUTE_DTYPES` or a dtype that is not floating)."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        dtype = parse_compute_dtype(dtype)
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"a compute dtype must be a floating dtype, got {dtype}")
    return None if dtype == jnp.float32 else dtype


@contextlib.contextmanager
def compute_dtype_scope(dtype: Any) -> Iterator[None]:
    """Networks built from parameters inside this block compute in ``dtype`` (a dtype or a
    name; None or float32: no change, which also switches off an enclosing scope)."""
    token = _COMPUTE_DTYPE.set(resolve_compute_dtype(dtype))
    try:
        yield
    finally:
        _COMPUTE_DTYPE.reset(token)


def current_compute_dtype() -> np.dtype | None:
    """The compute dtype of the innermost :func:`compute_dtype_scope`; None outside any
    (or in a float32 one): networks then compute in their parameters' dtype."""
    return _COMPUTE_DTYPE.get()


def cast_floating(tree: Any, dtype: Any) -> Any:
    """``tree`` with every floating-point leaf cast to ``dtype``; integer, boolean and key
    leaves are kept (labels, counts and PRNG keys must not become floats)."""
    dtype = jnp.dtype(dtype)

    def cast(leaf: Any) -> Any:
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            return jnp.asarray(leaf).astype(dtype)
        return leaf

    return jax.tree.map(cast, tree)
