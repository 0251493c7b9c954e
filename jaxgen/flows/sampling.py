"""Sampling a flow: one draw from the base density pushed through the inverse.

``x = f^{-1}(T eps)`` with ``eps ~ N(0, I)``: ``T = 1`` samples the model; ``T < 1`` is
Glow's reduced-temperature sampling (Kingma and Dhariwal 2018, sec. 5 / Fig. 8), drawing
``z`` from ``N(0, T^2 I)``, i.e. from ``p(z)^(1 / T^2)`` renormalised. One inverse pass:
``nfe = 1``. Example ``b``'s noise comes from its own key only
(:func:`jaxgen.core.sampling.normal` over :func:`jaxgen.core.as_example_keys`), so the
``i``-th sample of a seed does not depend on the batch size.

References:
  Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1 Convolutions. NeurIPS 2018.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax

from jaxgen.core.sampling import SamplerOutput, as_example_keys, normal
from jaxgen.core.validation import check_sample_shape

__all__ = ["sample"]


def sample(
    inverse_fn: Callable[[jax.Array], jax.Array],
    key: jax.Array,
    shape: Sequence[int],
    *,
    temperature: float | jax.Array = 1.0,
    dtype=None,
) -> SamplerOutput:
    """``inverse_fn(T eps)`` for ``eps ~ N(0, I)`` of ``shape``.

    Args:
      inverse_fn: the flow's inverse, latents ``shape`` -> data (for jaxgen's flows the
        flat latent ``(B, D)``; for Glow with a learned prior its
        ``inverse_standardized``, which takes the standardized latent).
      key: one key (example ``i`` uses ``fold_in(key, i)``) or ``(B,)`` per-example keys.
      shape: the latent's shape ``(B, *event)``.
      temperature: ``T >= 0`` (a Python number is checked).
      dtype: the noise's float dtype (default: JAX's default float).

    Returns:
      ``SamplerOutput(samples, nfe=1)``.
    """
    shape = check_sample_shape(shape)
    if isinstance(temperature, (int, float)) and not (
        math.isfinite(temperature) and temperature >= 0
    ):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    keys = as_example_keys(key, shape[0])
    eps = normal(keys, shape[1:], dtype)
    return SamplerOutput(inverse_fn(temperature * eps), 1)
