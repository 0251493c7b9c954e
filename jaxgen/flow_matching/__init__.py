"""Flow matching and rectified flow as pure JAX functions (Lipman et al. 2023; Liu et al.
2023; Albergo and Vanden-Eijnden 2023; Tong et al. 2024).

**Time convention (the library's one): data at t = 0, source at t = 1.**
``x_t = alpha(t) x_data + sigma(t) x_source``, velocity ``u = dx_t/dt = alpha' x_data +
sigma' x_source``, sampling integrates ``dx/dt = u`` from ``t = 1`` to ``t = 0`` (as
:mod:`jaxgen.core.parameterization`, SD3 and diffusers' flow-matching schedulers). Lipman et
al. and Liu et al. write ``t' = 1 - t`` with ``x_0`` the source and ``x_1`` the data; their
velocity is ``-u``: a model ``v`` of theirs is ``u(x, t) = -v(x, 1 - t)`` here.

* :mod:`~jaxgen.flow_matching.paths`: linear (conditional-OT, ``sigma_min``), VP, cosine and
  user-supplied Gaussian paths; uniform and logit-normal time samplers.
* :mod:`~jaxgen.flow_matching.loss`: the conditional flow-matching loss (velocity, x0, eps
  or v targets through the core's converters), ``(per_example, terms)``.
* :mod:`~jaxgen.flow_matching.couplings`: independent, minibatch-OT (exact or Sinkhorn) and
  user-paired couplings; any source distribution.
* :mod:`~jaxgen.flow_matching.samplers`: Euler, midpoint, Heun, RK4 and adaptive samplers,
  ``fn(velocity_fn, key, shape, *, source=None, ...) -> SamplerOutput``.
* :mod:`~jaxgen.flow_matching.convert`: flow <-> diffusion models (score, eps, ...) and
  :class:`PathSDE`, through which the score-SDE samplers sample a flow model.
* :mod:`~jaxgen.flow_matching.likelihood`: exact log-likelihood and bits/dim.
* :mod:`~jaxgen.flow_matching.rectified`: reflow pairs, straightness, one-step distillation.
* :mod:`~jaxgen.flow_matching.oracle`: the exact velocity of Gaussian-mixture data.

Nothing here imports Flax or another family; models are callables ``f(x, t)`` with
``x (B, *event)`` and float ``t (B,)``.
"""

from jaxgen.core.sampling import SamplerOutput
from jaxgen.flow_matching import (
    convert,
    couplings,
    likelihood,
    loss,
    oracle,
    paths,
    rectified,
    samplers,
)
from jaxgen.flow_matching.convert import (
    PathSDE,
    convert_model,
    score_to_velocity,
    velocity_to_score,
)
from jaxgen.flow_matching.couplings import (
    OT_METHODS,
    independent_coupling,
    ot_coupling,
    paired_coupling,
    sinkhorn_plan,
    transport_cost,
)
from jaxgen.flow_matching.likelihood import bits_per_dim, log_likelihood
from jaxgen.flow_matching.loss import (
    FM_PARAMETERIZATIONS,
    flow_matching_loss,
    flow_matching_loss_at,
    flow_matching_target,
)
from jaxgen.flow_matching.oracle import mixture_denoiser, mixture_velocity_fn
from jaxgen.flow_matching.paths import (
    PATHS,
    TIME_SAMPLERS,
    CosinePath,
    CustomPath,
    GaussianPath,
    LinearPath,
    VPPath,
    make_path,
    sample_time,
)
from jaxgen.flow_matching.rectified import (
    ReflowPairs,
    distillation_loss,
    one_step_sample,
    reflow_pairs,
    straightness,
)
from jaxgen.flow_matching.samplers import (
    FIXED_STEP_METHODS,
    adaptive_sample,
    euler_sample,
    flow_solve,
    heun_sample,
    midpoint_sample,
    rk4_sample,
)

__all__ = [
    "FIXED_STEP_METHODS",
    "FM_PARAMETERIZATIONS",
    "OT_METHODS",
    "PATHS",
    "TIME_SAMPLERS",
    "CosinePath",
    "CustomPath",
    "GaussianPath",
    "LinearPath",
    "PathSDE",
    "ReflowPairs",
    "SamplerOutput",
    "VPPath",
    "adaptive_sample",
    "bits_per_dim",
    "convert",
    "convert_model",
    "couplings",
    "distillation_loss",
    "euler_sample",
    "flow_matching_loss",
    "flow_matching_loss_at",
    "flow_matching_target",
    "flow_solve",
    "heun_sample",
    "independent_coupling",
    "likelihood",
    "log_likelihood",
    "loss",
    "make_path",
    "midpoint_sample",
    "mixture_denoiser",
    "mixture_velocity_fn",
    "one_step_sample",
    "oracle",
    "ot_coupling",
    "paired_coupling",
    "paths",
    "rectified",
    "reflow_pairs",
    "rk4_sample",
    "sample_time",
    "samplers",
    "score_to_velocity",
    "sinkhorn_plan",
    "straightness",
    "transport_cost",
    "velocity_to_score",
]
