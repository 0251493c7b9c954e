"""Super-resolution and cascades as pure JAX (SR3, Saharia et al. 2022; Cascaded Diffusion
Models, Ho et al. 2022).

* :mod:`~jaxgen.superres.augmentation`: noise-conditioning augmentation of the
  low-resolution condition (Gaussian: ``cos(pi s / 2) y + sin(pi s / 2) e``; blur), exact
  identity at level 0.
* :mod:`~jaxgen.superres.conditioning`: :func:`image_conditioned` (the condition rides in
  the model callable, samplers unchanged) and :func:`cascade_sample` (stages in order,
  per-stage keys ``fold_in(key, k)``).

Resizing is shared with other families: :func:`jaxgen.core.resize.downsample_mean` and
:func:`jaxgen.core.resize.upsample`. The closed-form oracle (Gaussian data, a linear
low-resolution map) is :mod:`jaxgen.distributions.linear_observation`.

Pure JAX; imports only :mod:`jaxgen.core`.
"""

from jaxgen.core.resize import UPSAMPLE_METHODS, downsample_mean, upsample
from jaxgen.superres.augmentation import (
    AUGMENTATIONS,
    augment_condition,
    blur_condition,
    gaussian_augmentation_coefficients,
    noise_condition,
    uniform_levels,
)
from jaxgen.superres.conditioning import StageSampler, cascade_sample, image_conditioned

__all__ = [
    "AUGMENTATIONS",
    "UPSAMPLE_METHODS",
    "StageSampler",
    "augment_condition",
    "blur_condition",
    "cascade_sample",
    "downsample_mean",
    "gaussian_augmentation_coefficients",
    "image_conditioned",
    "noise_condition",
    "uniform_levels",
    "upsample",
]
