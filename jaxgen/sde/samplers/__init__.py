"""Samplers of score-based models: pure, jittable functions of a ``score_fn(x, t)``.

Every sampler is ``fn(score_fn, sde, key, shape, *, num_steps, ...) -> SamplerOutput`` with
the samples and the exact number of score evaluations (``nfe``). ``key`` is one key or a
``(B,)`` batch of per-example keys; every random number of example ``b`` comes from its own
key (:func:`prior_and_step_keys`, :mod:`jaxgen.core.sampling`), so a sample depends only on
the seed and its index, and samplers given the same key start from the same ``x_T``:

* :func:`euler_maruyama_sample`: the reverse SDE (Song et al. 2021, eq. 6), Euler-Maruyama.
* :func:`pc_sample`: predictor-corrector (Song et al. Alg. 1-5): Euler-Maruyama,
  reverse-diffusion or ancestral predictors; Langevin corrector with a signal-to-noise step.
* :func:`probability_flow_sample`: the probability-flow ODE (eq. 13) with fixed-step Euler
  or Heun, or adaptive Runge-Kutta (diffrax Tsit5/Dopri5); :func:`probability_flow_solve`
  maps a state between any two times (encoding, likelihood).
* :func:`dpm_solver_sample`: DPM-Solver++ 2M / 3M (Lu et al. 2022), few-step.
* :func:`edm_sample`: Karras et al. (2022) Heun sampler with Karras steps (and churn).
* :func:`unipc_sample`: UniPC (Zhao et al. 2023), predictor-corrector of orders 1-3.
* :func:`recommended_sampler`: the measured best sampler and grid for a budget of calls.
* :func:`multistep_orders`, :func:`check_grid_stability`: the step-ratio rule of the
  multistep solvers.
* :func:`pc_inpaint`, :func:`pc_colorize`: controllable generation (Song et al. App. I).
* :func:`time_steps`: step grids uniform in time, quadratic, uniform in log-SNR, or Karras.
"""

from jaxgen.sde.samplers.controllable import COLOR_BASIS, pc_colorize, pc_inpaint
from jaxgen.sde.samplers.dpm_solver import dpm_solver_sample
from jaxgen.sde.samplers.edm import edm_sample, edm_sigma_ratios
from jaxgen.sde.samplers.euler_maruyama import (
    euler_maruyama_sample,
    euler_maruyama_step,
    prior_and_step_keys,
    tweedie_denoise,
)
from jaxgen.sde.samplers.predictor_corrector import (
    CORRECTORS,
    LANGEVIN_STEPS,
    PREDICTORS,
    ancestral_predictor,
    euler_maruyama_predictor,
    langevin_corrector,
    pc_loop,
    pc_nfe,
    pc_sample,
    reverse_diffusion_predictor,
)
from jaxgen.sde.samplers.probability_flow import (
    ADAPTIVE_SOLVERS,
    METHODS,
    probability_flow_sample,
    probability_flow_solve,
)
from jaxgen.sde.samplers.recommended import RECOMMENDED, recommended_sampler
from jaxgen.sde.samplers.time_steps import (
    MAX_STEP_RATIO,
    SPACINGS,
    check_grid_stability,
    multistep_orders,
    multistep_step_ratios,
    time_steps,
)
from jaxgen.sde.samplers.unipc import UNIPC_ORDERS, UNIPC_VARIANTS, unipc_sample

__all__ = [
    "ADAPTIVE_SOLVERS",
    "COLOR_BASIS",
    "CORRECTORS",
    "LANGEVIN_STEPS",
    "MAX_STEP_RATIO",
    "METHODS",
    "PREDICTORS",
    "RECOMMENDED",
    "SPACINGS",
    "UNIPC_ORDERS",
    "UNIPC_VARIANTS",
    "ancestral_predictor",
    "check_grid_stability",
    "dpm_solver_sample",
    "edm_sample",
    "edm_sigma_ratios",
    "euler_maruyama_predictor",
    "euler_maruyama_sample",
    "euler_maruyama_step",
    "langevin_corrector",
    "multistep_orders",
    "multistep_step_ratios",
    "pc_colorize",
    "pc_inpaint",
    "pc_loop",
    "pc_nfe",
    "pc_sample",
    "prior_and_step_keys",
    "probability_flow_sample",
    "probability_flow_solve",
    "recommended_sampler",
    "reverse_diffusion_predictor",
    "time_steps",
    "tweedie_denoise",
    "unipc_sample",
]
