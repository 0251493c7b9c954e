"""The 2-D Gaussian-mixture oracle shared by the sampler tests, and its MMD^2 threshold.

Three well-separated modes (std 0.1, distances >= 1) inside [-1, 1]^2. The threshold for
"a sampler reproduces the data" is set from the null distribution of the unbiased MMD^2
between two independent *exact* sample sets of the same size: ``mean + 5 std`` over 20
replicate pairs. Under the null, ``n MMD^2_u`` tends to a centred weighted sum of
chi-square(1) variables; the worst case (a single term) puts ``mean + 5 std`` at the
``chi2_1 >= 8.07`` quantile, p = 0.0045, and a spread of terms makes it much rarer. The
kernel (bandwidths) is fixed once, from the median heuristic, so every comparison uses the
same statistic.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.distributions import GaussianMixture
from jaxgen.evaluation.two_sample import median_heuristic_bandwidth, mmd_squared

MIXTURE = GaussianMixture.isotropic(
    jnp.array([0.5, 0.3, 0.2]), jnp.array([[-0.6, -0.4], [0.6, -0.4], [0.0, 0.6]]), 0.1
)
NUM_SAMPLES = 1000
NUM_NULL_REPLICATES = 20
Z_NULL = 5.0


@functools.lru_cache(maxsize=1)
def reference() -> tuple[jax.Array, jax.Array, float, dict[str, float]]:
    """(exact samples, bandwidths, threshold, null stats) in float32."""
    exact = MIXTURE.sample(jax.random.key(1234), NUM_SAMPLES)
    bandwidths = median_heuristic_bandwidth(exact, exact) * jnp.array([0.25, 0.5, 1.0, 2.0, 4.0])

    @jax.jit
    def null_mmd(key):
        k1, k2 = jax.random.split(key)
        x = MIXTURE.sample(k1, NUM_SAMPLES)
        y = MIXTURE.sample(k2, NUM_SAMPLES)
        return mmd_squared(x, y, bandwidths=bandwidths)

    keys = jax.random.split(jax.random.key(99), NUM_NULL_REPLICATES)
    null = np.asarray(jax.lax.map(null_mmd, keys))
    threshold = float(null.mean() + Z_NULL * null.std(ddof=1))
    stats = {"mean": float(null.mean()), "std": float(null.std(ddof=1)), "max": float(null.max())}
    return exact, bandwidths, threshold, stats


def mmd_to_exact(samples: jax.Array) -> float:
    exact, bandwidths, _, _ = reference()
    return float(mmd_squared(samples, exact, bandwidths=bandwidths))
