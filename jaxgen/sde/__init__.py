"""Score-based generative modelling through SDEs (Song et al. 2021) as pure JAX functions.

SDEs (VP, sub-VP, VE) are small pytrees; losses, samplers and the likelihood take a model
only as a callable ``score_fn(x, t)`` (or a raw network wrapped by
:func:`network_to_score`), with ``x`` of shape ``(B, *event)`` and float ``t`` of shape
``(B,)``. Nothing here imports Flax.
"""

from jaxgen.core.sampling import SamplerOutput
from jaxgen.sde import likelihood, samplers, score_matching
from jaxgen.sde.likelihood import bits_per_dim, dequantization_offset, log_likelihood
from jaxgen.sde.oracle import mixture_log_prob_fn, mixture_score_fn
from jaxgen.sde.parameterization import (
    PARAMETERIZATIONS,
    convert,
    edm_coefficients,
    from_x0_eps,
    network_to_denoiser,
    network_to_score,
    score_to_x0,
    to_x0_eps,
)
from jaxgen.sde.score_matching import WEIGHTINGS, dsm_loss, dsm_loss_at
from jaxgen.sde.sdes import SDE, SDES, VESDE, VPSDE, ScoreFn, SubVPSDE, make_sde

__all__ = [
    "PARAMETERIZATIONS",
    "SDE",
    "SDES",
    "SamplerOutput",
    "ScoreFn",
    "SubVPSDE",
    "VESDE",
    "VPSDE",
    "WEIGHTINGS",
    "bits_per_dim",
    "convert",
    "dequantization_offset",
    "dsm_loss",
    "dsm_loss_at",
    "edm_coefficients",
    "from_x0_eps",
    "likelihood",
    "log_likelihood",
    "make_sde",
    "mixture_log_prob_fn",
    "mixture_score_fn",
    "network_to_denoiser",
    "network_to_score",
    "samplers",
    "score_matching",
    "score_to_x0",
    "to_x0_eps",
]
