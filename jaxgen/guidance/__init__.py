"""Guidance as pure transforms of model callables: samplers never change.

A guided model is again ``guided(x, t) -> prediction``, so it runs with every sampler of
:mod:`jaxgen.diffusion` and :mod:`jaxgen.sde.samplers` (the design of k-diffusion's wrapped
denoisers):

* :func:`classifier_free_guidance`: ``u + s (c - u) = (1 + w) c - w u`` with ``s = 1 + w``
  (Ho and Salimans 2022), with a noise-level :class:`GuidanceInterval` (Kynkaanniemi et
  al. 2024), CFG rescale (Lin et al. 2024), batched or two-pass, traced scales;
  :func:`multi_condition_guidance` (``u + sum_k s_k (c_k - u)``, negative prompts);
  :func:`drop_condition` (condition dropout for training).
* :func:`classifier_guidance`: the score shifted by ``s grad log p_phi(c | x_t)``;
  :func:`ancestral_mean_shift_guidance` for DDPM's ancestral mean (Dhariwal and Nichol 2021).
* :func:`path_coefficients`: ``t -> (alpha_t, sigma_t)`` of a DDPM schedule, an SDE or a
  callable; :data:`NULL_LABEL` (``-1``), the "no condition" label.

Pure JAX; imports only :mod:`jaxgen.core`.
"""

from jaxgen.guidance.classifier import (
    MEAN_SHIFT_VARIANCES,
    LogProbFn,
    ancestral_mean_shift_guidance,
    classifier_gradient,
    classifier_guidance,
)
from jaxgen.guidance.classifier_free import (
    ConditionalModel,
    GuidedFn,
    classifier_free_guidance,
    drop_condition,
    multi_condition_guidance,
)
from jaxgen.guidance.paths import (
    INTERVAL_KINDS,
    NULL_LABEL,
    GuidanceInterval,
    PathFn,
    check_interval_in_range,
    path_coefficients,
    path_derivatives,
)

__all__ = [
    "INTERVAL_KINDS",
    "MEAN_SHIFT_VARIANCES",
    "NULL_LABEL",
    "ConditionalModel",
    "GuidanceInterval",
    "GuidedFn",
    "LogProbFn",
    "PathFn",
    "ancestral_mean_shift_guidance",
    "check_interval_in_range",
    "classifier_free_guidance",
    "classifier_gradient",
    "classifier_guidance",
    "drop_condition",
    "multi_condition_guidance",
    "path_coefficients",
    "path_derivatives",
]
