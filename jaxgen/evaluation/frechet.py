"""Frechet distance between Gaussians fitted to feature sets (the math behind FID).

For N(m1, C1) and N(m2, C2) the squared 2-Wasserstein (Frechet) distance is::

    ||m1 - m2||^2 + Tr(C1 + C2 - 2 (C1 C2)^{1/2})

The cross term is computed without a general (non-symmetric) matrix square root:
``C1 C2`` is similar to the symmetric PSD matrix ``C1^{1/2} C2 C1^{1/2}``, so
``Tr (C1 C2)^{1/2}`` is the sum of the square roots of that matrix's eigenvalues.
Both steps use a symmetric eigendecomposition (``numpy.linalg.eigh``), and tiny
negative eigenvalues from rounding are clipped to zero. This is stable for singular
covariances (fewer samples than features, dead ReLU units), where
``scipy.linalg.sqrtm(C1 @ C2)`` can return complex values or NaNs.

Everything runs on the host in float64 NumPy, deliberately: the distance is a small
difference of large traces (Tr C1 + Tr C2 - 2 Tr(...)), so float32, JAX's default,
loses several significant digits exactly when two distributions are close; the
matrices are only features x features (128 x 128 for digit FD), so the cost is
negligible; and a metric is read once per evaluation, not differentiated.

References:
  Dowson & Landau, "The Frechet distance between multivariate normal distributions",
  J. Multivariate Analysis 12 (1982).
  Heusel et al., "GANs trained by a two time-scale update rule converge to a local
  Nash equilibrium" (FID), NeurIPS 2017.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def gaussian_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and unbiased covariance (F, F), in float64, of features (N, F).

    Args:
      features: (N, F) array, one row per example; N >= 2.

    Returns:
      ``(mean, cov)`` with ``cov`` normalised by N - 1 (as ``numpy.cov``).
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, F); got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 examples for a covariance; got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or inf")
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / (x.shape[0] - 1)
    return mean, cov


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative eigenvalues -> 0)."""
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(cov1: ArrayLike, cov2: ArrayLike) -> float:
    """``Tr (C1 C2)^{1/2}`` for symmetric PSD C1, C2, via ``eig(C1^{1/2} C2 C1^{1/2})``."""
    c1 = np.asarray(cov1, dtype=np.float64)
    c2 = np.asarray(cov2, dtype=np.float64)
    s1 = _psd_sqrt(0.5 * (c1 + c1.T))
    m = s1 @ c2 @ s1
    w = np.linalg.eigvalsh(0.5 * (m + m.T))
    return float(np.sum(np.sqrt(np.clip(w, 0.0, None))))


def frechet_distance(mean1: ArrayLike, cov1: ArrayLike, mean2: ArrayLike, cov2: ArrayLike) -> float:
    """Frechet distance ``||m1 - m2||^2 + Tr(C1 + C2 - 2 (C1 C2)^{1/2})``.

    Args:
      mean1, cov1: mean (F,) and symmetric PSD covariance (F, F) of the first Gaussian.
      mean2, cov2: the same for the second.

    Returns:
      The distance as a Python float (squared units of the features; FID convention).
      Rounding can make the exact formula a hair below zero for identical inputs;
      the result is clipped at 0.
    """
    m1 = np.asarray(mean1, dtype=np.float64)
    m2 = np.asarray(mean2, dtype=np.float64)
    c1 = np.asarray(cov1, dtype=np.float64)
    c2 = np.asarray(cov2, dtype=np.float64)
    f = m1.shape[0] if m1.ndim == 1 else -1
    for name, shape, want in (
        ("mean1", m1.shape, (f,)),
        ("mean2", m2.shape, (f,)),
        ("cov1", c1.shape, (f, f)),
        ("cov2", c2.shape, (f, f)),
    ):
        if shape != want:
            raise ValueError(
                f"{name} has shape {shape}; expected {want} (means (F,), covariances (F, F))"
            )
    diff = m1 - m2
    value = float(diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * trace_sqrt_product(c1, c2))
    return max(value, 0.0)


def frechet_distance_from_features(features1: ArrayLike, features2: ArrayLike) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N1, F), (N2, F)."""
    return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))
