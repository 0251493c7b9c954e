"""Guided sampling of a trained run: which class each example gets, the guidance options,
and the noise-aware classifier of classifier guidance.

Labels are a function of the example index only (like the noise of
:class:`jaxgen.engine.sampling.ChunkedSampler`), so a draw does not depend on the chunk size:

* cyclic (the default): example ``i`` gets class ``i mod K``; a grid of ``K`` columns shows
  one class per column;
* ``label=c``: every example gets class ``c``;
* ``class_grid=True``: one row per class, ``per_row = max(1, num_samples // K)`` examples
  each, so ``K * per_row`` samples are drawn and example ``i`` gets class ``i // per_row``.

Guidance (Ho and Salimans 2022; Dhariwal and Nichol 2021) is the recipe's: this module only
checks the request against the run and passes ``guidance_scale`` (``s = 1 + w``: the guided
model is ``u + s (c - u)``), ``guidance_interval`` (EDM sigma, guided where
``lo < sigma <= hi``), ``guidance_rescale`` (phi of Lin et al. 2024) and ``classifier``
(``(log_prob_fn, params)``, the guided score ``grad log p_t(x) + s grad log p_phi(c | x_t)``).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import ConfigError
from jaxgen.engine.sampling import ChunkedSampler
from jaxgen.run.inference import LoadedRun, check_sample_options, load_run

CLASSIFIER_FAMILY = "noisy_classifier"
"""The family of the runs ``classifier=`` accepts."""

ConditionFn = Callable[[np.ndarray], Mapping[str, np.ndarray]]


def model_classes(run: LoadedRun) -> int:
    """How many classes the run's model is conditioned on (0: unconditional).

    A diffusion model is class-conditional iff its network's ``num_classes > 0`` (the
    classes without the null label)."""
    declared = getattr(run.recipe, "classes", None)  # the diffusion recipes' K (0: none)
    if isinstance(declared, int | np.integer):
        return int(declared)
    net = getattr(run.config.model, "unet", None)
    return int(getattr(net, "num_classes", 0) or 0)


def label_condition(
    num_classes: int, *, label: int | None = None, per_row: int | None = None
) -> ConditionFn:
    """``condition(indices) -> {"label": (B,) int32}``: class ``label`` for every example,
    ``min(i // per_row, K - 1)`` (one row of ``per_row`` per class), or ``i mod K``."""

    def condition(indices: np.ndarray) -> dict[str, np.ndarray]:
        i = np.asarray(indices, np.int64)
        if label is not None:
            labels = np.full(i.shape, label)
        elif per_row is not None:
            labels = np.minimum(i // per_row, num_classes - 1)
        else:
            labels = i % num_classes
        return {"label": labels.astype(np.int32)}

    return condition


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A trained noise-aware classifier: ``log_prob(params, x, t, labels) -> (B,)`` =
    ``log p_phi(labels | x_t)``, its (EMA) parameters and its run directory."""

    log_prob: Callable[..., jax.Array]
    params: Any
    num_classes: int
    workdir: pathlib.Path

    def option(self) -> tuple[Any, Any]:
        """The ``classifier`` sample option ``(log_prob_fn, params)`` (as a traced option of
        :class:`~jaxgen.engine.sampling.ChunkedSampler` the function stays static)."""
        return self.log_prob, self.params


def load_classifier(run: LoadedRun, workdir: str | pathlib.Path) -> Classifier:
    """The noisy classifier trained in ``workdir``, checked against the diffusion ``run``:
    a ``noisy_classifier`` run, of the same noise process (``recipe.noise_process()``) and
    the same classes; ``ConfigError`` naming the mismatch otherwise."""
    clf = load_run(workdir)
    if clf.config.family != CLASSIFIER_FAMILY:
        raise ConfigError(
            f"--classifier {workdir} is a {clf.config.family!r} run; classifier guidance "
            f"needs a {CLASSIFIER_FAMILY!r} run"
        )
    ours, theirs = _noise_process(run), _noise_process(clf)
    if ours != theirs:
        raise ConfigError(
            f"--classifier {workdir} was trained on the noise process {theirs}, but "
            f"{run.workdir} samples {ours}; train the classifier on the same one"
        )
    k_clf = int(clf.recipe.num_classes or 0)
    k_run = int(run.recipe.num_classes or 0)
    k_model = model_classes(run)
    if k_clf < 1 or k_clf != k_run or (k_model and k_model != k_clf):
        raise ConfigError(
            f"--classifier {workdir} has {k_clf} classes, the run {run.workdir} "
            f"{k_model or k_run}; they must be the same"
        )
    recipe = clf.recipe

    def log_prob(params: Any, x: jax.Array, t: jax.Array, labels: jax.Array) -> jax.Array:
        """``log p_phi(labels | x_t)`` (B,), the classifier's ``log_prob_fn(params)``."""
        return recipe.log_prob_fn(params)(x, t, labels)

    return Classifier(log_prob, clf.ema_params, k_clf, pathlib.Path(workdir))


def _noise_process(run: LoadedRun) -> Any:
    describe = getattr(run.recipe, "noise_process", None)
    if describe is None:
        raise ConfigError(
            f"{run.workdir} is a {run.config.family!r} run, which has no noise process to "
            f"guide with a noisy classifier"
        )
    return describe()


def check_guidance(
    run: LoadedRun,
    *,
    label: int | None = None,
    class_grid: bool = False,
    guidance_scale: float | None = None,
    guidance_interval: tuple[float, float] | None = None,
    guidance_rescale: float | None = None,
    classifier: Classifier | None = None,
) -> int:
    """Check a guided-sampling request against the run; returns the number of classes the
    labels range over (0: an unconditional draw). ``ConfigError`` (one line) for a class
    outside ``[0, K)``, a scale that is not finite, a malformed interval, a rescale outside
    [0, 1], or class/guidance options asked of an unconditional run without a classifier."""
    if label is not None and class_grid:
        raise ConfigError("give either a class or a class grid, not both")
    if guidance_scale is not None and not math.isfinite(guidance_scale):
        raise ConfigError(f"guidance scale must be a finite number, got {guidance_scale}")
    if guidance_interval is not None:
        check_interval(guidance_interval)
    if guidance_rescale is not None and not 0.0 <= guidance_rescale <= 1.0:
        raise ConfigError(f"guidance rescale must be a number in [0, 1], got {guidance_rescale}")
    asked = {
        "guidance_scale": guidance_scale,
        "guidance_interval": guidance_interval,
        "guidance_rescale": guidance_rescale,
    }
    asked = {k: v for k, v in asked.items() if v is not None}
    k_model = model_classes(run)
    if classifier is None and not k_model and (asked or label is not None or class_grid):
        names = [k.replace("_", " ") for k in asked]
        names += ["a class"] if label is not None or class_grid else []
        raise ConfigError(
            f"{' and '.join(names)} asked of {run.workdir}, an unconditional "
            f"{run.config.family!r} model (no class labels); use a class-conditional run "
            f"or a noisy classifier (--classifier)"
        )
    if classifier is not None:
        cfg_only = [
            k.replace("_", " ") for k in ("guidance_interval", "guidance_rescale") if k in asked
        ]
        if cfg_only:
            raise ConfigError(
                f"{' and '.join(cfg_only)} apply to classifier-free guidance; with a "
                "classifier only the guidance scale is taken"
            )
        asked["classifier"] = classifier.option()
    if asked:
        check_sample_options(run.recipe, asked)
    k = k_model or (classifier.num_classes if classifier is not None else 0)
    if label is not None and not 0 <= label < k:
        raise ConfigError(f"class {label} is outside the model's classes 0..{k - 1}")
    return k


def check_interval(interval: tuple[float, float]) -> tuple[float, float]:
    """``(lo, hi)`` with ``0 <= lo < hi`` finite, EDM noise levels sigma; ``ConfigError``
    otherwise."""
    if len(interval) != 2:
        raise ConfigError(f"guidance interval must be two numbers LO,HI, got {interval!r}")
    lo, hi = (float(v) for v in interval)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
        raise ConfigError(
            f"guidance interval must be noise levels 0 <= LO < HI (sigma), got {lo},{hi}"
        )
    return lo, hi


@dataclasses.dataclass
class GuidedSamples:
    """Samples, the class each was asked for (None: unconditional), and the columns of the
    grid that shows them (None: square)."""

    samples: np.ndarray
    labels: np.ndarray | None
    num_cols: int | None


def guided_sampler(
    run: LoadedRun,
    *,
    num_samples: int,
    num_classes: int,
    label: int | None = None,
    per_row: int | None = None,
    classifier: Classifier | None = None,
    traced: Mapping[str, Any] | None = None,
    batch_size: int = 256,
    **options: Any,
) -> ChunkedSampler:
    """One compiled sampler of ``num_samples`` labelled examples (:func:`label_condition`;
    none when ``num_classes == 0``). ``traced`` options (e.g. ``guidance_scale``) are jit
    arguments, overridable per call without recompiling; the classifier's parameters are
    always traced."""
    traced = dict(traced or {})
    if classifier is not None:
        traced["classifier"] = classifier.option()
    condition = run.sample_condition()
    if num_classes:
        condition = label_condition(num_classes, label=label, per_row=per_row)
    return ChunkedSampler(
        run.recipe,
        num_samples=num_samples,
        batch_size=batch_size,
        condition=condition,
        traced_options=traced or None,
        **options,
    )


def draw_guided_samples(
    run: LoadedRun,
    *,
    num_samples: int,
    seed: int = 0,
    label: int | None = None,
    class_grid: bool = False,
    guidance_scale: float | None = None,
    guidance_interval: tuple[float, float] | None = None,
    guidance_rescale: float | None = None,
    classifier: Classifier | None = None,
    batch_size: int = 256,
    **options: Any,
) -> GuidedSamples:
    """Samples of class ``label`` (or a class grid, or cyclic classes; see the module
    docstring) from the EMA parameters, guided as asked (:func:`check_guidance`).
    Sample ``i`` depends only on ``seed`` and ``i``."""
    check_sample_options(run.recipe, options)
    k = check_guidance(
        run,
        label=label,
        class_grid=class_grid,
        guidance_scale=guidance_scale,
        guidance_interval=guidance_interval,
        guidance_rescale=guidance_rescale,
        classifier=classifier,
    )
    per_row = max(1, num_samples // k) if class_grid else None
    if per_row is not None:
        num_samples = k * per_row
    if guidance_interval is not None:
        options["guidance_interval"] = tuple(float(v) for v in guidance_interval)
    traced = {}
    if guidance_scale is not None:
        traced["guidance_scale"] = jnp.float32(guidance_scale)
    if guidance_rescale is not None:
        traced["guidance_rescale"] = jnp.float32(guidance_rescale)
    sampler = guided_sampler(
        run,
        num_samples=num_samples,
        num_classes=k,
        label=label,
        per_row=per_row,
        classifier=classifier,
        traced=traced,
        batch_size=batch_size,
        **options,
    )
    samples = sampler(run.ema_params, jax.random.key(seed), progress_desc="sampling")
    labels = None
    if k:
        labels = label_condition(k, label=label, per_row=per_row)(np.arange(num_samples))
        labels = labels["label"]
    num_cols = per_row if per_row is not None else (k if k and label is None else None)
    return GuidedSamples(samples, labels, num_cols)
