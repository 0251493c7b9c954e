"""Closed-form reference distributions used as oracles (exact densities, scores, samples)."""

from jaxgen.distributions.gaussian_mixture import GaussianMixture, ddpm_eps_oracle
from jaxgen.distributions.linear_gaussian import ProbabilisticPCA

__all__ = ["GaussianMixture", "ProbabilisticPCA", "ddpm_eps_oracle"]
