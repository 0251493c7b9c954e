"""Digit FD: a Frechet distance for 8x8 digit samples (the analogue of FID).

Samples are embedded with a small CNN trained on the real digits ``train`` split
(:class:`jaxgen.nets.digit_classifier.DigitClassifier`, shipped weights
``digit_classifier.npz``, 128 penultimate ReLU features, the analogue of Inception's
pool3), a Gaussian is fitted to the features, and the Frechet distance to the Gaussian
of the held-out real ``test`` split is reported. Lower is better; 0 means the fitted
Gaussians coincide.

Reading a score
---------------
* The ``test`` split has only **360 images**, so the reference statistics are noisy.
* Like FID, the empirical digit FD is **biased upward by finite sample size** (and
  the bias depends on the number of samples): only compare runs scored with the same
  number of samples. Use **360 or more samples** (360 matches the reference and the
  calibration numbers below).
* Inputs must be float images (N, 8, 8, 1) scaled like :func:`jaxgen.data.load_digits`:
  background -1, ink +1.

Calibration: ``reference_scores()`` (seed 0) with the shipped weights. Every row but
the first is the mean over 10 random 360-image subsets of the real ``train`` split,
transformed as stated, scored against the 360 ``test`` images:

==============================================  ==========
samples                                          digit FD
==============================================  ==========
real train, all 1437 images                         6.6
real train, 360 (noise floor)                       9.9 +- 3.2 (std)
real train + Gaussian noise (std 0.1, clipped)     12.3
real train, shifted by up to 1 pixel               21.4
real train, only classes 0-4 (half the modes)      71.0
real train, pixels shuffled within each image     382
uniform noise in [-1, 1]                          543
real train, 3x3 box blur                          616
==============================================  ==========

So at 360 samples, scores up to ~15 are within the real-vs-real noise (the metric
cannot tell such samples from real digits; note that mild pixel noise lands there
too), tens mean visible defects or missing modes, and hundreds mean not digits. Over
50 subsets the real-vs-real score had 5th/50th/95th percentiles 6.4 / 9.3 / 13.3: a
difference of a few points between two runs is within the noise of one evaluation.

The shipped classifier (65,354 parameters) reaches 100.0% train and 98.9% test accuracy
(``digit_classifier_accuracy``). Retrain it, bit-for-bit on the same machine, with
``python -m jaxgen.evaluation.train_digit_classifier``.
"""

from __future__ import annotations

import functools
import pathlib
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from numpy.typing import ArrayLike

from jaxgen.data.digits import IMAGE_SHAPE, NUM_TEST, SPLITS, load_digits
from jaxgen.evaluation.frechet import frechet_distance, gaussian_statistics
from jaxgen.nets.digit_classifier import DigitClassifier

WEIGHTS_PATH = pathlib.Path(__file__).resolve().parent / "digit_classifier.npz"
"""The shipped classifier weights: flattened param paths ("conv1/kernel") -> arrays."""

BATCH_SIZE = 512
"""Forward-pass batch; the last batch is padded, so any N compiles only once."""

RANGE_TOLERANCE = 0.5
"""Images may stray this far outside [-1, 1] (unclipped samples) before being rejected."""


# ----------------------------------------------------------------------------- params


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested param dict -> {"conv1/kernel": array, ...}."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, prefix=name + "/"))
        else:
            flat[name] = value
    return flat


def unflatten_params(flat: dict[str, Any]) -> dict[str, Any]:
    """{"conv1/kernel": array, ...} -> nested param dict (inverse of ``flatten_params``)."""
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def load_classifier_params(path: str | pathlib.Path = WEIGHTS_PATH) -> tuple[Any, dict]:
    """(graphdef, params) of a DigitClassifier with weights from an .npz file.

    Checks that the file has exactly the module's parameter paths, shapes and dtypes.
    """
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: DigitClassifier(rngs=nnx.Rngs(0))))
    expected = flatten_params(nnx.to_pure_dict(abstract))
    with np.load(path) as f:
        flat = {name: f[name] for name in f.files}
    if set(flat) != set(expected):
        raise ValueError(
            f"{path}: parameter names {sorted(flat)} do not match the module's {sorted(expected)}"
        )
    for name, spec in expected.items():
        if flat[name].shape != spec.shape or flat[name].dtype != spec.dtype:
            raise ValueError(
                f"{path}: {name} is {flat[name].dtype}{flat[name].shape}; "
                f"the module expects {spec.dtype}{spec.shape}"
            )
    params = jax.tree.map(jnp.asarray, unflatten_params(flat))
    return graphdef, params


@functools.lru_cache(maxsize=1)
def _classifier():
    graphdef, params = load_classifier_params()

    @jax.jit
    def forward(p, x):
        model = nnx.merge(graphdef, p)
        feats = model.features(x)
        return feats, model.head(feats)

    return params, forward


# ----------------------------------------------------------------------------- features


def _validate_images(images: ArrayLike) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3 and x.shape[1:] == IMAGE_SHAPE[:2]:
        raise ValueError(
            f"images must be (N, 8, 8, 1); got {x.shape}. Add the channel axis: x[..., None]"
        )
    if x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"images must be (N, 8, 8, 1) NHWC digits; got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("images is empty (N = 0)")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"images must be floating point scaled to [-1, 1] (as load_digits returns); "
            f"got dtype {x.dtype}. For 0..16 grey levels use levels / 8 - 1; "
            f"for 0..255 use pixels / 127.5 - 1"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN or inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 - RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        raise ValueError(
            f"images must be scaled to [-1, 1] (background -1, ink +1); got values in "
            f"[{lo:.3g}, {hi:.3g}]. Rescale, or clip samples with np.clip(x, -1, 1)"
        )
    if lo >= 0.0:
        warnings.warn(
            "all image values are >= 0; digit FD expects [-1, 1] scaling with background "
            "-1 (did you pass [0, 1] images? use 2 * x - 1)",
            stacklevel=3,
        )
    return x.astype(np.float32)


def _forward_all(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    params, forward = _classifier()
    n = x.shape[0]
    feats, logits = [], []
    for start in range(0, n, BATCH_SIZE):
        batch = x[start : start + BATCH_SIZE]
        m = batch.shape[0]
        if m < BATCH_SIZE:
            pad = np.full((BATCH_SIZE - m, *IMAGE_SHAPE), -1.0, dtype=np.float32)
            batch = np.concatenate([batch, pad])
        f, lg = forward(params, batch)
        feats.append(np.asarray(f)[:m])
        logits.append(np.asarray(lg)[:m])
    return np.concatenate(feats), np.concatenate(logits)


def digit_features(images: ArrayLike) -> np.ndarray:
    """Classifier features (N, 128) float32 of images (N, 8, 8, 1) float in [-1, 1].

    Raises:
      ValueError: wrong shape, non-float dtype, NaN/inf, or values far outside [-1, 1].
    """
    return _forward_all(_validate_images(images))[0]


def digit_logits(images: ArrayLike) -> np.ndarray:
    """Class logits (N, 10) of the shipped classifier for images (N, 8, 8, 1) in [-1, 1],
    in padded batches (one compile). Unlike :func:`digit_features` it does not refuse
    non-finite images (a sampler's failures are scored, not rejected)."""
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"images must be (N, 8, 8, 1) NHWC digits; got shape {x.shape}")
    return _forward_all(x)[1]


def digit_classifier_accuracy(split: str = "test") -> float:
    """Accuracy of the shipped classifier on a digits split ("train", "test", "all")."""
    images, labels = load_digits(split)
    logits = _forward_all(images)[1]
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


@functools.lru_cache(maxsize=len(SPLITS))
def _reference_statistics(split: str) -> tuple[np.ndarray, np.ndarray]:
    images, _ = load_digits(split)
    return gaussian_statistics(digit_features(images))


def digit_fd(samples: ArrayLike, *, reference: str = "test") -> float:
    """Digit FD of samples (N, 8, 8, 1) in [-1, 1] against a real digits split.

    Args:
      samples: generated images, float, scaled like ``load_digits`` (background -1).
        Use N >= 360 and the same N for every run you compare: the estimate is biased
        upward by finite N (see the module docstring for calibration numbers).
      reference: the real split to compare with; ``"test"`` (360 held-out images,
        the default and the one to report) or ``"train"``/``"all"``.

    Returns:
      The Frechet distance between Gaussians fitted to the two feature sets.
    """
    if reference not in SPLITS:
        raise ValueError(f"unknown reference split {reference!r}; expected one of {SPLITS}")
    feats = digit_features(samples)
    if feats.shape[0] < 2:
        raise ValueError("digit FD needs at least 2 samples (360 or more recommended)")
    return frechet_distance(*gaussian_statistics(feats), *_reference_statistics(reference))


# ----------------------------------------------------------------------------- calibration


def _box_blur(images: np.ndarray) -> np.ndarray:
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-1.0)
    out = np.zeros_like(images)
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy : dy + 8, dx : dx + 8]
    return out / 9.0


def _shift(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-1.0)
    out = np.empty_like(images)
    for i, (dy, dx) in enumerate(rng.integers(0, 3, size=(images.shape[0], 2))):
        out[i] = padded[i, dy : dy + 8, dx : dx + 8]
    return out


def reference_scores(*, seed: int = 0, num_subsets: int = 10) -> dict[str, float]:
    """Digit FD vs. the test split of reference sample sets, to read a score against.

    Each set has 360 images (the test split's size) built from a random 360-image
    subset of the real ``train`` split; the value is the mean over ``num_subsets``
    subsets, and ``real_train_360_std`` is the spread of the real-vs-real score, i.e.
    the noise floor of one 360-sample evaluation. ``real_train_all`` uses all 1437
    train images (lower: less finite-sample bias). Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    train, train_labels = load_digits("train")
    low = np.flatnonzero(train_labels < 5)
    transforms = {
        "real_train_360": lambda x: x,
        "shifted_1px": lambda x: _shift(x, rng),
        "gaussian_noise_0.1": lambda x: np.clip(
            x + 0.1 * rng.standard_normal(x.shape, dtype=np.float32), -1.0, 1.0
        ),
        "classes_0_to_4": lambda x: train[rng.choice(low, NUM_TEST, replace=False)],
        "box_blur_3x3": _box_blur,
        "pixels_shuffled": lambda x: rng.permuted(x.reshape(x.shape[0], -1), axis=1).reshape(
            x.shape
        ),
        "uniform_noise": lambda x: rng.uniform(-1, 1, size=x.shape).astype(np.float32),
    }
    scores: dict[str, list[float]] = {name: [] for name in transforms}
    for _ in range(num_subsets):
        subset = train[rng.choice(train.shape[0], NUM_TEST, replace=False)]
        for name, transform in transforms.items():
            scores[name].append(digit_fd(transform(subset), reference="test"))
    out = {"real_train_all": digit_fd(train, reference="test")}
    out.update({name: float(np.mean(values)) for name, values in scores.items()})
    out["real_train_360_std"] = float(np.std(scores["real_train_360"]))
    return out
