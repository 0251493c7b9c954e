"""Closed-form reference distributions used as oracles (exact densities, scores, samples)."""

from jaxgen.distributions.gaussian_mixture import GaussianMixture, ddpm_eps_oracle
from jaxgen.distributions.linear_gaussian import ProbabilisticPCA
from jaxgen.distributions.linear_observation import LinearObservation, downsample_matrix

__all__ = [
    "GaussianMixture",
    "LinearObservation",
    "ProbabilisticPCA",
    "ddpm_eps_oracle",
    "downsample_matrix",
]
