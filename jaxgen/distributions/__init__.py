"""Closed-form reference distributions used as oracles (exact densities, scores, samples)."""

from jaxgen.distributions.gaussian_mixture import GaussianMixture, ddpm_eps_oracle

__all__ = ["GaussianMixture", "ddpm_eps_oracle"]
