"""Building a network from its parameters in the active compute dtype (mixed precision).

Flax NNX layers (``nnx.Linear``, ``nnx.Conv``, ``nnx.ConvTranspose``, ``nnx.Embed``,
``nnx.LayerNorm``, ``nnx.GroupNorm``, ...) keep two dtypes: ``param_dtype``, the dtype their
parameters are stored in, and ``dtype``, the dtype they compute in (inputs and parameters
are cast to it before the matmul or convolution). :func:`merge` is ``nnx.merge`` followed,
inside a :func:`jaxgen.core.precision.compute_dtype_scope`, by setting ``dtype`` on every
submodule that has one; the parameters stay float32 and are cast inside each layer, so
their gradients come back float32. Flax's normalisation layers take their mean and
variance in float32 whatever ``dtype`` is. Layers written by hand with ``jnp`` on their
parameters have no ``dtype``; where a bfloat16 activation meets a float32 parameter in
``jnp`` maths, JAX promotes to float32, so they simply compute in float32 (PixelCNN's masked
convolutions, Glow's ActNorm and 1x1 convolutions, DCGAN's batch norm). ``jax.lax``
primitives do not promote: a layer that calls ``lax.conv_general_dilated`` itself must cast
its input to its kernel's dtype first.

Networks are not rebuilt: their constructors are unchanged and the same graph definition
serves both precisions. Outside a scope :func:`merge` is exactly ``nnx.merge``.
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from jaxgen.core.precision import current_compute_dtype


def set_compute_dtype(module: nnx.Module, dtype: Any) -> nnx.Module:
    """``module`` with ``dtype`` set on itself and every submodule that has a ``dtype``
    attribute (modules without one are left alone); returns ``module``, changed in place."""
    module.set_attributes(dtype=dtype, raise_if_not_found=False)
    return module


def merge(graphdef: nnx.GraphDef, params: Any) -> nnx.Module:
    """``nnx.merge(graphdef, params)``, computing in the active compute dtype (see the
    module docstring); the recipes build the networks they train through this."""
    module = nnx.merge(graphdef, params)
    dtype = current_compute_dtype()
    if dtype is not None:
        set_compute_dtype(module, dtype)
    return module
