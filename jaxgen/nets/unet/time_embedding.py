"""The U-Net's fixed (untrained) features of the time / noise level.

``config.time_embedding`` chooses the features of the conditioning input ``t``:

* ``"sinusoidal"``: the Transformer embedding of DDPM (Ho et al. 2020, appendix B), ``ch``
  features, of the integer step ``t`` or of ``999 t`` (DDPM++ for VP / sub-VP SDEs);
* ``"fourier"``: Gaussian Fourier features ``[sin(2 pi w t), cos(2 pi w t)]`` with
  ``ch`` fixed frequencies ``w_i ~ N(0, fourier_scale^2)`` (Tancik et al. 2020), ``2 ch``
  features, of ``t = log sigma`` (NCSN++, Song et al. 2021, appendix H.1).

The features are a fixed function of the config, recomputed at trace time: no parameter.
The U-Net's two-layer MLP (``temb_dense0``, ``temb_dense1``) maps them to the ``4 ch``
timestep embedding every residual block projects.
"""

from __future__ import annotations

import jax

from jaxgen.nets.embeddings import (
    gaussian_fourier_embedding,
    gaussian_fourier_frequencies,
    sinusoidal_embedding,
)
from jaxgen.nets.unet.config import UNetConfig

__all__ = ["time_feature_width", "time_features"]


def time_feature_width(config: UNetConfig) -> int:
    """The number of features of ``time_features``: ``ch`` (sinusoidal) or ``2 ch``."""
    return config.channels if config.time_embedding == "sinusoidal" else 2 * config.channels


def time_features(t: jax.Array, config: UNetConfig, dtype) -> jax.Array:
    """``(B, time_feature_width(config))`` features of ``t`` (shape ``(B,)``) in ``dtype``."""
    ch = config.channels
    if config.time_embedding == "fourier":
        freqs = gaussian_fourier_frequencies(
            ch, scale=config.fourier_scale, seed=config.fourier_seed
        )
        temb = gaussian_fourier_embedding(t, freqs)
    else:
        temb = sinusoidal_embedding(t, ch)
    return temb.astype(dtype)
