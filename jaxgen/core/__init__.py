"""The core every family stands on: what they share, in one place each.

* :mod:`~jaxgen.core.sampling`: :class:`SamplerOutput` (samples and counted network
  evaluations) and the per-example key convention (samples depend only on the seed and
  the example's index).
* :mod:`~jaxgen.core.parameterization`: eps / x0 (denoiser) / score / v / velocity
  predictions on any Gaussian path ``x_t = alpha x_0 + sigma eps`` and exact converters.
* :mod:`~jaxgen.core.units`: nats <-> bits/dim and dequantization offsets.
* :mod:`~jaxgen.core.levels`: images in ``[-1, 1]`` <-> integer levels.
* :mod:`~jaxgen.core.validation`: the shared argument checks.
* :mod:`~jaxgen.core.ode_likelihood`: exact log-likelihoods of continuous-time flows
  (instantaneous change of variables with ``diffrax``), shared by the score-SDE and
  flow-matching families; imported on first use (``jaxgen.core.ode_likelihood``), so that
  ``import jaxgen.core`` does not load ``diffrax``.

Nothing here imports a family, a network library or the engine.
"""

from jaxgen.core import levels, parameterization, sampling, units, validation
from jaxgen.core.levels import images_to_levels, levels_to_images
from jaxgen.core.parameterization import PARAMETERIZATIONS, convert, from_x0_eps, to_x0_eps
from jaxgen.core.sampling import (
    SamplerOutput,
    as_example_keys,
    example_keys,
    initial_and_step_keys,
)
from jaxgen.core.units import bits_per_dim, dequantization_offset, discrete_nll
from jaxgen.core.validation import (
    check_choice,
    check_num_levels,
    check_positive_int,
    check_range,
    check_sample_shape,
)

__all__ = [
    "PARAMETERIZATIONS",
    "SamplerOutput",
    "as_example_keys",
    "bits_per_dim",
    "check_choice",
    "check_num_levels",
    "check_positive_int",
    "check_range",
    "check_sample_shape",
    "convert",
    "dequantization_offset",
    "discrete_nll",
    "example_keys",
    "from_x0_eps",
    "images_to_levels",
    "initial_and_step_keys",
    "levels",
    "levels_to_images",
    "ode_likelihood",
    "ode_log_likelihood",
    "parameterization",
    "sampling",
    "to_x0_eps",
    "units",
    "validation",
]


def __getattr__(name: str):
    """Lazy exports: :mod:`jaxgen.core.ode_likelihood` (and its ``ode_log_likelihood``) load
    ``diffrax`` only when first used."""
    if name in ("ode_likelihood", "ode_log_likelihood"):
        import importlib

        module = importlib.import_module("jaxgen.core.ode_likelihood")
        return module if name == "ode_likelihood" else module.ode_log_likelihood
    raise AttributeError(f"module 'jaxgen.core' has no attribute {name!r}")
