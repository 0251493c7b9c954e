"""The guidance trade-off: sample quality against class accuracy over guidance scales.

For each scale ``s`` (``s = 1 + w``: the guided model ``u + s (c - u)`` of Ho and Salimans
2022; with a classifier, the score ``grad log p_t(x) + s grad log p_phi(c | x_t)`` of
Dhariwal and Nichol 2021) the same ``num_samples`` examples are drawn (same seed, cyclic
labels ``i mod K``) from ONE compiled sampler whose scale is a traced argument, and scored
with the dataset's sample-quality metric (digit FD, :data:`jaxgen.run.SAMPLE_METRICS`) and
the class accuracy ``mean_i [argmax_c p(c | x_i) == label_i]`` under the dataset's fixed
classifier (the project's digit classifier). Raising ``s`` trades diversity (FD) for
class fidelity (accuracy), the curve of Ho and Salimans 2022, Fig. 4.

Samples are scored as image files hold them: clipped to [-1, 1].
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import ConfigError
from jaxgen.engine import distributed
from jaxgen.run.evaluate import SAMPLE_METRICS
from jaxgen.run.guidance import Classifier, check_guidance, guided_sampler
from jaxgen.run.inference import LoadedRun, check_sample_options

"""The digit classifier's forward batch (the last one padded, so any N compiles once)."""


def predict_digit_labels(images: np.ndarray) -> np.ndarray:
    """``argmax_c logits_c(x)`` of the project's digit classifier (the shipped weights of
    :mod:`jaxgen.evaluation.digit_fd`, 98.9% test accuracy) for images (N, 8, 8, 1) in
    [-1, 1]."""
    from jaxgen.evaluation.digit_fd import digit_logits

    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[1:] != (8, 8, 1):
        raise ValueError(f"images must be (N, 8, 8, 1) digits, got shape {x.shape}")
    return np.argmax(digit_logits(x), axis=-1)


# dataset name -> ``predict(samples) -> labels`` (N,) of a fixed classifier of the data.
CLASS_PREDICTORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "digits": predict_digit_labels,
}


def class_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """``mean_i [predicted_i == labels_i]``."""
    return float(np.mean(np.asarray(predicted) == np.asarray(labels)))


def parse_scales(text: str) -> tuple[float, ...]:
    """``"0,1,2.5"`` -> ``(0.0, 1.0, 2.5)``: finite, distinct; ``ConfigError`` otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        scales = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"guidance scales must be comma-separated numbers like 0,1,2,3,5, got {text!r}"
        ) from None
    if not all(math.isfinite(s) for s in scales):
        raise ConfigError(f"guidance scales must be finite numbers, got {text!r}")
    if len(set(scales)) != len(scales):
        raise ConfigError(f"guidance scales must be distinct, got {text!r}")
    return scales


def guidance_sweep(
    run: LoadedRun,
    scales: Sequence[float],
    *,
    num_samples: int | None = None,
    seed: int = 0,
    classifier: Classifier | None = None,
    guidance_interval: tuple[float, float] | None = None,
    guidance_rescale: float | None = None,
    out_dir: str | pathlib.Path | None = None,
    progress: Callable[[str], None] | None = None,
    batch_size: int = 256,
    **options: Any,
) -> dict[str, Any]:
    """Sample quality (the dataset's metric) and class accuracy at each guidance scale.

    Writes ``guidance_sweep.json`` (the rows and the settings), ``guidance_sweep.md`` (the
    table) and ``guidance_sweep.png`` (FD against accuracy, scales annotated; both against
    the scale) to ``out_dir`` (default ``<workdir>/eval``) and returns the JSON's content.
    ``progress`` is told one line per scale (its time included).
    """
    scales = tuple(float(s) for s in scales)
    if not scales or not all(math.isfinite(s) for s in scales):
        raise ConfigError(f"guidance scales must be one or more finite numbers, got {scales}")
    name = run.config.data.name
    metric, predict = SAMPLE_METRICS.get(name), CLASS_PREDICTORS.get(name)
    if metric is None or predict is None:
        raise ConfigError(
            f"a guidance sweep needs a sample-quality metric and a classifier of the data; "
            f"dataset {name!r} has none (datasets with both: "
            f"{', '.join(sorted(set(SAMPLE_METRICS) & set(CLASS_PREDICTORS)))})"
        )
    check_sample_options(run.recipe, options)
    k = check_guidance(
        run,
        guidance_scale=scales[0],
        guidance_interval=guidance_interval,
        guidance_rescale=guidance_rescale,
        classifier=classifier,
    )
    num_samples = num_samples or run.config.eval.num_samples
    if guidance_interval is not None:
        options["guidance_interval"] = tuple(float(v) for v in guidance_interval)
    traced: dict[str, Any] = {"guidance_scale": jnp.float32(scales[0])}
    if guidance_rescale is not None:
        traced["guidance_rescale"] = jnp.float32(guidance_rescale)
    sampler = guided_sampler(
        run,
        num_samples=num_samples,
        num_classes=k,
        classifier=classifier,
        traced=traced,
        batch_size=batch_size,
        **options,
    )
    labels = np.arange(num_samples) % k
    rows = []
    for scale in scales:
        start = time.perf_counter()
        samples = sampler(
            run.ema_params,
            jax.random.key(seed),
            progress_desc=f"scale {scale:g}",
            guidance_scale=jnp.float32(scale),
        )
        row = {"guidance_scale": scale, **_score(samples, labels, metric, predict)}
        row["seconds"] = round(time.perf_counter() - start, 3)
        rows.append(row)
        if progress is not None:
            scores = ", ".join(f"{m} {_fmt(row.get(m))}" for m in _metric_names([row]))
            progress(
                f"guidance scale {scale:g}: {scores or 'no finite samples'}, class accuracy "
                f"{_fmt(row['class_accuracy'])} ({row['seconds']:.1f} s)"
            )
    result = {
        "step": run.step,
        "num_samples": num_samples,
        "seed": seed,
        "classifier": str(classifier.workdir) if classifier is not None else None,
        "guidance_interval": list(guidance_interval) if guidance_interval else None,
        "guidance_rescale": guidance_rescale,
        **{k_: v for k_, v in options.items() if k_ != "guidance_interval"},
        "rows": rows,
    }
    out = pathlib.Path(out_dir) if out_dir is not None else run.workdir / "eval"
    if distributed.is_main_process():  # one writer in a multi-process job
        out.mkdir(parents=True, exist_ok=True)
        (out / "guidance_sweep.json").write_text(json.dumps(result, indent=2))
        (out / "guidance_sweep.md").write_text(sweep_table(rows))
        plot_sweep(rows, out / "guidance_sweep.png")
    return result


def _score(
    samples: np.ndarray,
    labels: np.ndarray,
    metric: Callable[[np.ndarray], dict[str, float]],
    predict: Callable[[np.ndarray], np.ndarray],
) -> dict[str, Any]:
    """The metric of the finite samples (clipped to [-1, 1]) and the class accuracy
    ``mean_i [predict(x_i) == label_i]``, overall and per class (a non-finite sample counts
    as wrong); only ``num_nonfinite`` and a ``None`` accuracy when fewer than two are
    finite."""
    finite = np.isfinite(samples.reshape(len(samples), -1)).all(axis=1)
    row: dict[str, Any] = {"num_nonfinite": int((~finite).sum())}
    if finite.sum() < 2:
        return {**row, "class_accuracy": None}
    x = np.clip(samples[finite], -1.0, 1.0)
    scores = {k: v for k, v in metric(x).items() if not k.endswith("_num_samples")}
    # a non-finite sample counts as misclassified
    correct = np.zeros(len(samples), bool)
    correct[finite] = predict(x) == labels[finite]
    per_class = [float(correct[labels == c].mean()) for c in np.unique(labels)]
    return {
        **row,
        **scores,
        "class_accuracy": float(correct.mean()),
        "class_accuracy_per_class": per_class,
    }


def _title(metric: str) -> str:
    """``digit_fd`` -> ``digit FD``."""
    return metric.replace("_fd", " FD").replace("_", " ")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


_NOT_METRICS = (
    "guidance_scale",
    "class_accuracy",
    "class_accuracy_per_class",
    "seconds",
    "num_nonfinite",
)


def _metric_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The sample-quality metrics the rows hold (in first-seen order)."""
    names: dict[str, None] = {}
    for row in rows:
        names.update((k, None) for k in row if k not in _NOT_METRICS)
    return list(names)


def sweep_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table: scale, the metric, class accuracy, seconds."""
    metrics = _metric_names(rows)
    head = ["guidance scale", *map(_title, metrics), "class accuracy", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    for row in rows:
        cells = [
            f"{row['guidance_scale']:g}",
            *(_fmt(row.get(m), 4) for m in metrics),
            "n/a" if row["class_accuracy"] is None else f"{100 * row['class_accuracy']:.1f}%",
            f"{row['seconds']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(rows: Sequence[dict[str, Any]], path: str | pathlib.Path) -> pathlib.Path:
    """PNG of the trade-off: FD against class accuracy (each point labelled with its scale)
    and both against the scale (matplotlib's Agg canvas; no global backend is set)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metric = (_metric_names(rows) or ["sample quality"])[0]
    s = np.array([r["guidance_scale"] for r in rows], float)
    fd = np.array([np.nan if r.get(metric) is None else r[metric] for r in rows], float)
    acc = np.array(
        [np.nan if r["class_accuracy"] is None else 100 * r["class_accuracy"] for r in rows], float
    )
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    left.plot(acc, fd, "o-")
    for x, y, scale in zip(acc, fd, s, strict=True):
        if np.isfinite(x) and np.isfinite(y):
            left.annotate(f"s={scale:g}", (x, y), textcoords="offset points", xytext=(4, 4))
    left.set_xlabel("class accuracy (%)")
    left.set_ylabel(f"{_title(metric)} (lower is better)")
    left.set_title("quality vs. class accuracy")
    right.plot(s, fd, "o-", color="C0")
    right.set_xlabel("guidance scale s = 1 + w")
    right.set_ylabel(_title(metric), color="C0")
    twin = right.twinx()
    twin.plot(s, acc, "s--", color="C1")
    twin.set_ylabel("class accuracy (%)", color="C1")
    right.set_title("against the guidance scale")
    for axis in (left.yaxis, left.xaxis, right.yaxis, twin.yaxis):
        axis.get_major_formatter().set_useOffset(False)
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path)
    return path
