"""Shared oracles of the flow-matching tests: the 3-mode 2-D mixture of the sampler tests
(``tests.diffusion.mixture_oracle.MIXTURE``, std 0.1, with its exact-vs-exact MMD^2
threshold) and a broad mixture (std 0.5) whose exact velocity is smooth enough for the
convergence-order tests.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxgen.distributions import GaussianMixture
from tests.diffusion.mixture_oracle import MIXTURE, mmd_to_exact, reference

BROAD = GaussianMixture.isotropic(jnp.array([0.6, 0.4]), jnp.array([[-1.0, 0.5], [1.0, -0.5]]), 0.5)
WRONG = MIXTURE._replace(means=MIXTURE.means + jnp.array([[0.1, -0.1]]))

__all__ = ["BROAD", "MIXTURE", "WRONG", "mmd_to_exact", "reference"]
