"""Small statistics helpers shared by the oracle tests.

Thresholds are z-scores: with ``M`` simultaneous two-sided comparisons at threshold ``z``,
the chance that any fails by accident is at most ``M * 2 * Phi(-z)`` (Bonferroni), e.g.
``z = 4.5`` gives ``<= 7e-6`` per comparison. Every test also runs a negative control
through the same check to show it can fail.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def max_abs_z_mean_var(samples: np.ndarray, mean: np.ndarray, var: np.ndarray) -> float:
    """Largest |z| of the sample mean and sample variance (axis 0) against Gaussian truths.

    Standard errors: ``sqrt(var / n)`` for the mean and ``var sqrt(2 / (n - 1))`` for the
    variance (exact for Gaussian samples).
    """
    samples = np.asarray(samples, np.float64)
    n = samples.shape[0]
    mean = np.broadcast_to(np.asarray(mean, np.float64), samples.shape[1:])
    var = np.broadcast_to(np.asarray(var, np.float64), samples.shape[1:])
    z_mean = (samples.mean(0) - mean) / np.sqrt(var / n)
    z_var = (samples.var(0, ddof=1) - var) / (var * np.sqrt(2.0 / (n - 1)))
    return float(max(np.max(np.abs(z_mean)), np.max(np.abs(z_var))))


def bonferroni_z(num_comparisons: int, false_alarm: float = 1e-4) -> float:
    """z threshold so that ``num_comparisons`` two-sided tests all pass with prob >= 1 - fa."""
    return float(norm.isf(false_alarm / (2.0 * num_comparisons)))
