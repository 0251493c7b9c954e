"""Two-dimensional toy distributions with fixed, documented parameters.

Every distribution is sampled with ``numpy.random.default_rng(seed)``, so a
``(name, n, seed)`` triple always gives the same float32 array of shape ``(n, 2)``.

* ``moons``: two interleaved half circles of radius 1 (the scikit-learn ``make_moons``
  shape: centres (0, 0) and (1, 0.5), upper arc angles [0, pi], lower arc [pi, 2 pi]),
  Gaussian noise std 0.1 per coordinate, then mapped by ``x * 2 + (-1, -0.2)`` (as in
  the FFJORD toy data). After the map the arcs have radius 2 and centres (-1, -0.2) and
  (1, 0.8), and the noise std is 0.2. Each point picks an arc with probability 1/2.
* ``swiss_roll``: the scikit-learn swiss roll on its (x, z) plane, as in FFJORD:
  ``t ~ U[1.5 pi, 4.5 pi]``, point ``(t cos t, t sin t)`` plus Gaussian noise std 1 per
  coordinate, all divided by 5. Radius ``t / 5`` in [0.94, 2.83] before noise; the
  noise std is 0.2 after scaling.
* ``ring``: 8 equally weighted Gaussians with centres ``2 (cos a_k, sin a_k)``,
  ``a_k = 2 pi k / 8``, std 0.02 (the VEEGAN and PacGAN "2D ring").
* ``grid``: 25 equally weighted Gaussians with centres ``{-4, -2, 0, 2, 4}^2``, std 0.05
  (the PacGAN "2D grid").
* ``checkerboard``: uniform on the 8 black squares of a 4 x 4 board of 2 x 2 squares
  covering [-4, 4)^2, as in FFJORD: the square ``(i, j) = floor(x / 2)`` is occupied
  iff ``i + j`` is even.

``mixture_modes(name)`` gives the centres and std of ``ring`` and ``grid`` so that GAN
evaluations can count covered modes (e.g. a sample within 3 std of a centre).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

TOY2D_NAMES: tuple[str, ...] = ("moons", "swiss_roll", "ring", "grid", "checkerboard")
MIXTURE_NAMES: tuple[str, ...] = ("ring", "grid")

RING_NUM_MODES = 8
RING_RADIUS = 2.0
RING_STD = 0.02
GRID_LEVELS = (-4.0, -2.0, 0.0, 2.0, 4.0)
GRID_STD = 0.05
MOONS_NOISE = 0.1  # before the x2 map, so 0.2 in the returned coordinates
MOONS_SCALE = 2.0
MOONS_SHIFT = (-1.0, -0.2)
SWISS_ROLL_NOISE = 1.0  # before the /5 map, so 0.2 in the returned coordinates
SWISS_ROLL_SCALE = 0.2
CHECKERBOARD_SQUARE = 2.0


class GaussianModes(NamedTuple):
    """Centres ``(K, 2)`` float32 and the common isotropic std of a Gaussian mixture."""

    centres: np.ndarray
    std: float


def _check_name(name: str) -> None:
    if name not in TOY2D_NAMES:
        raise ValueError(f"unknown toy2d distribution {name!r}; expected one of {TOY2D_NAMES}")


def mixture_modes(name: str) -> GaussianModes:
    """Mode centres and std of the Gaussian-mixture toy distributions ("ring", "grid")."""
    _check_name(name)
    if name == "ring":
        angles = 2.0 * np.pi * np.arange(RING_NUM_MODES) / RING_NUM_MODES
        centres = RING_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return GaussianModes(centres.astype(np.float32), RING_STD)
    if name == "grid":
        xs, ys = np.meshgrid(GRID_LEVELS, GRID_LEVELS, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        return GaussianModes(centres.astype(np.float32), GRID_STD)
    raise ValueError(f"{name!r} is not a Gaussian mixture; mixtures are {MIXTURE_NAMES}")


def _mixture(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    centres, std = mixture_modes(name)
    which = rng.integers(0, centres.shape[0], size=n)
    return centres[which].astype(np.float64) + std * rng.standard_normal((n, 2))


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    lower = rng.random(n) < 0.5
    t = np.pi * rng.random(n)
    x = np.where(lower, 1.0 - np.cos(t), np.cos(t))
    y = np.where(lower, 0.5 - np.sin(t), np.sin(t))
    pts = np.stack([x, y], axis=1) + MOONS_NOISE * rng.standard_normal((n, 2))
    return pts * MOONS_SCALE + np.asarray(MOONS_SHIFT)


def _swiss_roll(n: int, rng: np.random.Generator) -> np.ndarray:
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
    pts = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    pts = pts + SWISS_ROLL_NOISE * rng.standard_normal((n, 2))
    return pts * SWISS_ROLL_SCALE


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    x1 = 4.0 * rng.random(n) - 2.0
    x2 = rng.random(n) - 2.0 * rng.integers(0, 2, size=n) + np.floor(x1) % 2
    return np.stack([x1, x2], axis=1) * CHECKERBOARD_SQUARE


def sample_toy2d(name: str, n: int, *, seed: int) -> np.ndarray:
    """``n`` samples ``(n, 2)`` float32 from the toy distribution ``name`` (see module doc)."""
    _check_name(name)
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    rng = np.random.default_rng(seed)
    if name in MIXTURE_NAMES:
        pts = _mixture(name, n, rng)
    elif name == "moons":
        pts = _moons(n, rng)
    elif name == "swiss_roll":
        pts = _swiss_roll(n, rng)
    else:
        pts = _checkerboard(n, rng)
    return pts.astype(np.float32)
