"""Few-step generation by distillation, as pure JAX functions: consistency models (Song et al.
2023; Song & Dhariwal 2024) and progressive distillation (Salimans & Ho 2022).

Everything works in the EDM frame (Karras et al. 2022): for a Gaussian path ``x_t = alpha_t
x_0 + sigma_t eps`` write ``x~ = x / alpha`` and the noise level ``s = sigma / alpha``, so
``x~ = x_0 + s eps`` and the probability-flow ODE is ``dx~/ds = (x~ - D(x~, s)) / s`` with
``D`` the denoiser (data prediction). A *denoiser* is a callable ``denoiser(x_scaled (B,
*event), sigma (B,)) -> x0_hat (B, *event)``; a *consistency function* ``f(x_scaled, sigma)``
has the same signature and maps a point of a trajectory to its end at ``sigma_min``.

* :mod:`~jaxgen.distillation.ode`: one Euler (= DDIM) or Heun step of the ODE.
* :mod:`~jaxgen.distillation.levels`: Karras levels (traced ``N`` too), iCT's curriculum,
  uniform and lognormal pair-index sampling.
* :mod:`~jaxgen.distillation.metrics`: squared, pseudo-Huber and feature distances.
* :mod:`~jaxgen.distillation.consistency`: the consistency parameterisation, consistency
  distillation and training losses ``(per_example, terms)``, multistep sampling.
* :mod:`~jaxgen.distillation.progressive`: progressive distillation's target and loss, and the
  DDIM sampler of a distilled model.

Nothing here imports Flax or another family; only :mod:`jaxgen.core`.

References:
  Song, Dhariwal, Chen, Sutskever. Consistency Models. ICML 2023.
  Song, Dhariwal. Improved Techniques for Training Consistency Models. ICLR 2024.
  Salimans, Ho. Progressive Distillation for Fast Sampling of Diffusion Models. ICLR 2022.
  Karras, Aittala, Aila, Laine. Elucidating the Design Space of Diffusion-Based Generative
  Models. NeurIPS 2022.
"""

from jaxgen.distillation import consistency, levels, metrics, ode, progressive
from jaxgen.distillation.consistency import (
    CONSISTENCY_WEIGHTINGS,
    consistency_coefficients,
    consistency_distillation_loss,
    consistency_function,
    consistency_mixing,
    consistency_training_loss,
    multistep_consistency_sample,
)
from jaxgen.distillation.levels import (
    INDEX_DISTRIBUTIONS,
    check_levels,
    ict_num_levels,
    karras_level,
    karras_levels,
    lognormal_index_logits,
    sample_level_index,
)
from jaxgen.distillation.metrics import (
    METRICS,
    consistency_metric,
    pseudo_huber,
    squared_distance,
)
from jaxgen.distillation.ode import SOLVERS, probability_flow_step
from jaxgen.distillation.progressive import (
    PROGRESSIVE_WEIGHTINGS,
    ddim_sample_levels,
    ddim_step,
    progressive_distillation_loss,
    progressive_distillation_target,
)

__all__ = [
    "CONSISTENCY_WEIGHTINGS",
    "INDEX_DISTRIBUTIONS",
    "METRICS",
    "PROGRESSIVE_WEIGHTINGS",
    "SOLVERS",
    "consistency",
    "consistency_coefficients",
    "consistency_distillation_loss",
    "consistency_function",
    "consistency_metric",
    "consistency_mixing",
    "consistency_training_loss",
    "check_levels",
    "ddim_sample_levels",
    "ddim_step",
    "ict_num_levels",
    "karras_level",
    "karras_levels",
    "levels",
    "lognormal_index_logits",
    "metrics",
    "multistep_consistency_sample",
    "ode",
    "probability_flow_step",
    "progressive",
    "progressive_distillation_loss",
    "progressive_distillation_target",
    "pseudo_huber",
    "sample_level_index",
    "squared_distance",
]
