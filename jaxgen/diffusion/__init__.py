"""DDPM mathematics as pure JAX functions: schedules, forward process, parameterisations,
losses, the variational bound and samplers (ancestral, DDIM).

Models are plain callables ``model_fn(x, t) -> prediction`` with ``x`` of shape
``(B, *event)`` and ``t`` int32 ``(B,)`` holding 0-based steps (``t = 0..T-1`` is the
paper's ``t = 1..T``). A model's ``parameterization`` (eps, x0 or v) is read through
:mod:`jaxgen.core.parameterization` at ``alpha = sqrt(abar_t)``, ``sigma = sqrt(1 - abar_t)``;
samplers return :class:`jaxgen.core.SamplerOutput` and draw every example's randomness from
its own key (:mod:`jaxgen.core.sampling`). Nothing here imports Flax.
"""

from jaxgen.core.sampling import SamplerOutput
from jaxgen.diffusion.ancestral import ancestral_sample
from jaxgen.diffusion.continuous import ContinuousSchedule, continuous_score_fn, index_path
from jaxgen.diffusion.ddim import SPACINGS, ddim_sample, ddim_timesteps
from jaxgen.diffusion.ddpm_loss import ModelFn, ddpm_loss, ddpm_loss_at
from jaxgen.diffusion.forward import expand_to, extract, q_mean_std, q_posterior, q_sample
from jaxgen.diffusion.parameterization import (
    PARAMETERIZATIONS,
    alpha_sigma,
    eps_from_v,
    eps_from_x0,
    prediction_target,
    to_eps,
    to_x0,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)
from jaxgen.diffusion.schedules import (
    SCHEDULES,
    DiffusionSchedule,
    cosine_schedule,
    linear_schedule,
    make_schedule,
    scaled_linear_schedule,
    schedule_from_betas,
)
from jaxgen.diffusion.variational_bound import (
    MODEL_VARIANCES,
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    normal_kl,
    p_mean_variance,
    variational_bound,
    variational_bound_estimate,
)

__all__ = [
    "ContinuousSchedule",
    "continuous_score_fn",
    "index_path",
    "MODEL_VARIANCES",
    "PARAMETERIZATIONS",
    "SCHEDULES",
    "SPACINGS",
    "DiffusionSchedule",
    "ModelFn",
    "SamplerOutput",
    "alpha_sigma",
    "ancestral_sample",
    "bits_per_dim",
    "cosine_schedule",
    "ddim_sample",
    "ddim_timesteps",
    "ddpm_loss",
    "ddpm_loss_at",
    "discretized_gaussian_log_likelihood",
    "eps_from_v",
    "eps_from_x0",
    "expand_to",
    "extract",
    "linear_schedule",
    "scaled_linear_schedule",
    "make_schedule",
    "normal_kl",
    "p_mean_variance",
    "prediction_target",
    "q_mean_std",
    "q_posterior",
    "q_sample",
    "schedule_from_betas",
    "to_eps",
    "to_x0",
    "v_from_x0_eps",
    "variational_bound",
    "variational_bound_estimate",
    "x0_from_eps",
    "x0_from_v",
]
