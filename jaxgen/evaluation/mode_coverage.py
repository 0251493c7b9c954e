"""Mode-coverage diagnostics for samples from a model of a Gaussian-mixture toy distribution.

The target is an equally weighted mixture of ``K`` isotropic Gaussians with centres
``c_1 .. c_K`` (rows of ``centres``, ``(K, D)``) and a common standard deviation ``s``, such
as the 2D ring (8 modes) and 2D grid (25 modes) of ``jaxgen.data.toy2d``. For generated
samples ``x_1 .. x_N``:

* each sample goes to its nearest centre ``k(x) = argmin_k ||x - c_k||_2`` (ties go to the
  lowest index);
* a sample is *high quality* when ``||x - c_{k(x)}||_2 <= num_std * s`` (VEEGAN,
  Srivastava et al. 2017, Section 5.1: "within three standard deviations" of the nearest
  mode, ``num_std = 3``);
* ``counts[k]`` is the number of high-quality samples assigned to mode ``k``, and a mode is
  *covered* when ``counts[k] >= min_count`` (``min_count = 1``: at least one high-quality
  sample, the VEEGAN count of captured modes);
* ``high_quality_fraction = sum_k counts[k] / N``;
* ``reverse_kl = KL(q || u) = sum_k q_k log(q_k / (1 / K)) = log K - H(q)`` with
  ``q = counts / sum(counts)``, the distribution over modes of the high-quality samples, and
  ``u`` uniform over the ``K`` modes (``0 log 0 = 0``). It is 0 when the high-quality
  samples are spread evenly over all modes and ``log(K / m)`` when they are spread evenly
  over only ``m`` of them. PacGAN (Lin et al. 2018, Section 5) reports a reverse KL
  divergence between the generated distribution over modes and the (uniform) target
  distribution over modes; the paper's exact wording could not be checked here. This
  definition follows the authors' released evaluation code, whose histogram over modes (from
  which it computes an entropy and a JSD to uniform) counts the high-quality samples only.
  It is ``nan`` when no sample is high quality (``q`` is undefined).

For exact samples of a ``D``-dimensional mixture whose modes are far apart compared with
``s``, ``||x - c||^2 / s^2`` is chi-squared with ``D`` degrees of freedom, so the expected
high-quality fraction is ``P(chi2_D <= num_std^2)``; in 2-D, ``1 - exp(-num_std^2 / 2)``
(0.98889 for ``num_std = 3``).

All computations are host-side NumPy in float64; inputs may be any array-like.

References:
  Srivastava, Valkov, Russell, Gutmann, Sutton. VEEGAN: Reducing Mode Collapse in GANs using
  Implicit Variational Learning. NeurIPS 2017.
  Lin, Khetan, Fanti, Oh. PacGAN: The power of two samples in generative adversarial
  networks. NeurIPS 2018.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from jaxgen.data.toy2d import MIXTURE_NAMES, mixture_modes

__all__ = ["ModeCoverage", "mode_coverage", "toy_mode_coverage"]

_CHUNK = 8192  # samples per distance block, so memory stays O(chunk * K * D)


class ModeCoverage(NamedTuple):
    """Mode-coverage statistics of ``num_samples`` samples against ``num_modes`` modes.

    Attributes:
      num_modes: ``K``.
      modes_covered: modes with at least ``min_count`` high-quality samples.
      high_quality_fraction: fraction of samples within ``num_std * std`` of their nearest
        centre.
      counts: ``(K,)`` int64, high-quality samples per mode.
      reverse_kl: ``KL(q || uniform)`` of the high-quality samples' distribution over modes
        (``nan`` when there is no high-quality sample).
      num_samples: ``N``.
    """

    num_modes: int
    modes_covered: int
    high_quality_fraction: float
    counts: np.ndarray
    reverse_kl: float
    num_samples: int

    def as_dict(self) -> dict[str, float]:
        """Scalar statistics as floats, for logging (``counts`` is left out)."""
        return {
            "num_modes": float(self.num_modes),
            "modes_covered": float(self.modes_covered),
            "high_quality_fraction": float(self.high_quality_fraction),
            "reverse_kl": float(self.reverse_kl),
            "num_samples": float(self.num_samples),
        }


def _nearest_centres(samples: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(index (N,), distance (N,))`` of each sample's nearest centre (first on ties)."""
    n = samples.shape[0]
    index = np.empty(n, dtype=np.int64)
    distance = np.empty(n, dtype=np.float64)
    for start in range(0, n, _CHUNK):
        block = samples[start : start + _CHUNK]
        d2 = np.sum(np.square(block[:, None, :] - centres[None, :, :]), axis=-1)  # (B, K)
        nearest = np.argmin(d2, axis=1)
        index[start : start + _CHUNK] = nearest
        distance[start : start + _CHUNK] = np.sqrt(d2[np.arange(block.shape[0]), nearest])
    return index, distance


def _reverse_kl_to_uniform(counts: np.ndarray) -> float:
    total = counts.sum()
    if total == 0:
        return math.nan
    q = counts[counts > 0] / total
    return float(np.sum(q * np.log(q * counts.shape[0])))


def mode_coverage(
    samples: Any,
    centres: Any,
    std: float,
    *,
    num_std: float = 3.0,
    min_count: int = 1,
) -> ModeCoverage:
    """Mode coverage of ``samples`` ``(N, D)`` against the mixture ``centres`` ``(K, D)``, ``std``.

    Args:
      samples: ``(N, D)`` finite samples, ``N >= 1``.
      centres: ``(K, D)`` finite mode centres, ``K >= 1``.
      std: the common per-coordinate standard deviation of the modes, ``> 0``.
      num_std: a sample is high quality when it lies within ``num_std * std`` (Euclidean
        distance) of its nearest centre; ``> 0``.
      min_count: a mode is covered when at least this many high-quality samples are
        assigned to it; an integer ``>= 1``.

    Returns:
      A :class:`ModeCoverage` (see the module docstring for the definitions).
    """
    samples = np.asarray(samples)
    centres = np.asarray(centres)
    if samples.ndim != 2:
        raise ValueError(f"samples must have shape (N, D), got {samples.shape}.")
    if centres.ndim != 2:
        raise ValueError(f"centres must have shape (K, D), got {centres.shape}.")
    if samples.shape[1] != centres.shape[1]:
        raise ValueError(
            f"samples (N, D) and centres (K, D) must have the same D, got samples "
            f"{samples.shape} and centres {centres.shape}."
        )
    if samples.shape[0] < 1:
        raise ValueError(f"need at least one sample (N >= 1), got samples {samples.shape}.")
    if centres.shape[0] < 1:
        raise ValueError(f"need at least one centre (K >= 1), got centres {centres.shape}.")
    if not (np.issubdtype(samples.dtype, np.number) and np.issubdtype(centres.dtype, np.number)):
        raise ValueError(
            f"samples and centres must be numeric, got dtypes {samples.dtype} and {centres.dtype}."
        )
    samples = samples.astype(np.float64)
    centres = centres.astype(np.float64)
    bad = ~np.all(np.isfinite(samples), axis=1)
    if np.any(bad):
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"samples must be finite: {int(bad.sum())} of {samples.shape[0]} rows contain NaN "
            f"or inf, the first is sample {first}: {samples[first].tolist()}."
        )
    if not np.all(np.isfinite(centres)):
        raise ValueError("centres must be finite (found NaN or inf).")
    std = float(std)
    if not (math.isfinite(std) and std > 0.0):
        raise ValueError(f"std must be a finite positive number, got {std}.")
    num_std = float(num_std)
    if not (math.isfinite(num_std) and num_std > 0.0):
        raise ValueError(f"num_std must be a finite positive number, got {num_std}.")
    if isinstance(min_count, bool) or int(min_count) != min_count or min_count < 1:
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}.")

    num_modes = centres.shape[0]
    nearest, distance = _nearest_centres(samples, centres)
    high_quality = distance <= num_std * std
    counts = np.bincount(nearest[high_quality], minlength=num_modes).astype(np.int64)
    return ModeCoverage(
        num_modes=int(num_modes),
        modes_covered=int(np.sum(counts >= int(min_count))),
        high_quality_fraction=float(np.mean(high_quality)),
        counts=counts,
        reverse_kl=_reverse_kl_to_uniform(counts),
        num_samples=int(samples.shape[0]),
    )


def toy_mode_coverage(name: str, samples: Any, **kw: Any) -> ModeCoverage:
    """:func:`mode_coverage` against the modes of the toy mixture ``name`` ("ring" or "grid").

    ``kw`` are passed on (``num_std``, ``min_count``); centres and std come from
    :func:`jaxgen.data.toy2d.mixture_modes`.
    """
    if name not in MIXTURE_NAMES:
        raise ValueError(
            f"unknown toy mixture {name!r}; mode coverage is defined for {MIXTURE_NAMES}."
        )
    centres, std = mixture_modes(name)
    return mode_coverage(samples, centres, std, **kw)
