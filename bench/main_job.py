"""The main job's compute and train-step throughput, today's config against the new one.

    python bench/main_job.py                    # writes bench/results/main_job_cpu.{json,md}

Issue 20 asks for the digits DDPM main job (``experiments/ddpm_digits.py``) at the same
quality in at most a third of the compute, both measured in one run on one machine. Here,
in one process:

* the compute of each config, ``C = steps x batch x F``, where ``F`` is the FLOPs per image
  of one compiled engine step (forward, backward, Adam, EMA) from XLA's cost analysis,
  ``F = flops(step) / batch``;
* the images/s of that step (best of three timed loops, ``bench/train_step.py``'s
  :func:`step_throughput`), so the projected training time is ``steps x seconds/step``
  (plus the measured compile time);
* this machine's float32 matmul peak (``bench/train_step.py``'s :func:`matmul_peak`),
  measured before and after the step timings, so a reader can scale the times to a
  machine with another peak: ``t' = t x peak / peak'`` to first order.

"Today's" config is the one the issue measured (git ``HEAD`` before this change): the new
``experiments/ddpm_digits.py`` with :data:`OLD_OVERRIDES` applied. The quality numbers are
not measured here (an eval takes minutes): :data:`QUALITY` records the digit FD (360
samples, ancestral 1000 steps) and test bits/dim of ``jaxgen eval`` on trained runs, with
the commands that produced them, and the results file repeats them.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from train_step import matmul_peak, step_throughput  # noqa: E402

from jaxgen.config import apply_overrides, load_experiment  # noqa: E402

CONFIG = ROOT / "experiments" / "ddpm_digits.py"
# Today's main job (git HEAD before issue 20) as overrides of the new config.
OLD_OVERRIDES = [
    "train.num_steps=2500",
    "data.batch_size=128",
    "optim.learning_rate=1e-3",
    "optim.warmup_steps=200",
    "optim.ema_decay=0.999",
    "model.unet.channels=32",
    "model.parameterization=eps",
]
# Measured with `jaxgen eval --workdir <run> --quiet` (digit FD on 360 samples of the
# config's 1000-step ancestral sampler; test bits/dim, 17 levels) on runs trained with
# `nice -n 5 jaxgen train <config> --workdir <run> --quiet` on this 2-core machine.
QUALITY: dict[str, list[dict]] = {
    "today": [
        {
            "seed": 0,
            "digit_fd": 7.94,
            "bits_per_dim": 2.954,
            "digit_fd_by_eval_seed": {"1": 10.43, "2": 10.91},
            "command": "jaxgen train experiments/ddpm_digits.py (git HEAD) "
            "--workdir runs/ddpm_digits; jaxgen eval --workdir runs/ddpm_digits",
        },
    ],
    "new": [
        {
            "seed": 0,
            "digit_fd": 9.35,
            "bits_per_dim": 2.935,
            "digit_fd_by_eval_seed": {"1": 12.16, "2": 12.38},
            "command": "jaxgen train experiments/ddpm_digits.py --workdir /tmp/mj_e; "
            "jaxgen eval --workdir /tmp/mj_e",
        },
        {
            "seed": 1,
            "digit_fd": 8.45,
            "bits_per_dim": 2.910,
            "digit_fd_by_eval_seed": {"0": 8.30},
            "command": "jaxgen train experiments/ddpm_digits.py train.seed=1 --workdir /tmp/mj_e1; "
            "jaxgen eval --workdir /tmp/mj_e1 --seed 1",
        },
        {
            "seed": 2,
            "digit_fd": 13.11,
            "bits_per_dim": 2.939,
            "digit_fd_by_eval_seed": {"0": 8.68},
            "command": "jaxgen train experiments/ddpm_digits.py train.seed=2 --workdir /tmp/mj_e2; "
            "jaxgen eval --workdir /tmp/mj_e2 --seed 2",
        },
    ],
}
# (FD at other draws: `jaxgen eval --workdir <run> --seed S --no-likelihood`; the same
# model's FD moves by 2 to 4 between draws of 360 samples.)
# What was tried, each at a third of today's compute (seed 0, evaluated as above): the
# overrides of today's config, then (digit FD, bits/dim).
TRIED = [
    ("channels 32, 830 x 128, lr 2e-3, warmup 100, EMA 0.995", 11.62, 3.138),
    ("channels 24 (0.57x FLOPs/image), 1460 x 128, lr 2e-3, warmup 100, EMA 0.998", 9.73, 3.069),
    ("channels 16 (0.26x FLOPs/image), 3200 x 128, lr 2e-3, warmup 100", 7.56, 2.986),
    ("the same with schedule=cosine", 6.89, 4.221),
    ("the 3200 x 128 run evaluated with model_variance=posterior", 7.31, 3.172),
    ("channels 16, 6400 x 64, lr 2e-3, warmup 100 (the new config)", 9.35, 2.935),
]
# The bar: no worse than today's README numbers.
BAR = {"digit_fd": 9.1, "bits_per_dim": 2.95}
RESULTS = ROOT / "bench" / "results"


def describe(config_path: str, overrides: list[str]) -> dict:
    """The schedule of a config: steps, batch, learning rate, EMA, width."""
    config = apply_overrides(load_experiment(config_path), overrides)
    return {
        "num_steps": config.train.num_steps,
        "batch_size": config.data.batch_size,
        "learning_rate": config.optim.learning_rate,
        "warmup_steps": config.optim.warmup_steps,
        "ema_decay": config.optim.ema_decay,
        "channels": config.model.unet.channels,
        "parameterization": config.model.parameterization,
    }


def measure(config_path: str, overrides: list[str], *, steps: int) -> dict:
    """Schedule, FLOPs/image, compute and throughput of one config (see module doc)."""
    out = describe(config_path, overrides)
    out.update(step_throughput(config_path, overrides, batch_size=None, steps=steps))
    flops_per_image = out["step_gflop"] * 1e9 / out["batch_size"]
    out["flops_per_image"] = flops_per_image
    out["images_seen"] = out["num_steps"] * out["batch_size"]
    out["compute_tflop"] = out["images_seen"] * flops_per_image / 1e12
    out["projected_train_seconds"] = out["num_steps"] * out["step_seconds"]
    out["projected_seconds_with_compile"] = out["projected_train_seconds"] + out["compile_seconds"]
    return out


def _mean_fd(quality: list[dict]) -> float:
    """Mean digit FD over every (training seed, eval seed) draw recorded."""
    values = [q["digit_fd"] for q in quality]
    values += [v for q in quality for v in q.get("digit_fd_by_eval_seed", {}).values()]
    return sum(values) / len(values)


def markdown(result: dict) -> str:
    """The results as a short report with one table."""
    old, new = result["today"], result["new"]
    peak = result["peak_gflops"]
    lines = [
        "# Main job: today's config against the new one (one run, one machine)",
        "",
        f"Command: `{result['command']}`. Matmul peak {peak['before']:.0f} GFLOP/s before, "
        f"{peak['after']:.0f} after the step timings (float32 `jnp.dot`); load average "
        f"{result['load_average']:.2f} at the start (2 cores shared with other runs: "
        "throughputs are lower bounds).",
        "",
        "| config | steps x batch | lr / warmup / EMA | width | MFLOP/image | compute (TFLOP) "
        "| images/s | projected train s | digit FD (seeds) | bits/dim (seeds) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in (("today", old), ("new", new)):
        quality = result["quality"][name]
        fds = ", ".join(f"{q['digit_fd']:.2f}" for q in quality) or "-"
        if len(quality) > 1:
            fds += f" (mean {sum(q['digit_fd'] for q in quality) / len(quality):.2f})"
        bpds = ", ".join(f"{q['bits_per_dim']:.3f}" for q in quality) or "-"
        lines.append(
            f"| {name} | {row['num_steps']} x {row['batch_size']} | {row['learning_rate']:g} / "
            f"{row['warmup_steps']} / {row['ema_decay']} | {row['channels']} | "
            f"{row['flops_per_image'] / 1e6:.1f} | {row['compute_tflop']:.2f} | "
            f"{row['images_per_sec']:.0f} | {row['projected_train_seconds']:.0f} "
            f"(+{row['compile_seconds']:.0f} compile) | {fds} | {bpds} |"
        )
    lines += [
        "",
        f"Compute ratio new / today: {result['compute_ratio']:.3f} (bar: <= 1/3); "
        f"projected training-time ratio {result['time_ratio']:.3f}.",
        f"Quality bar: digit FD <= {BAR['digit_fd']}, bits/dim <= {BAR['bits_per_dim']} "
        "(360 samples, 2 seeds).",
        "",
        "Mean digit FD over every draw (training seeds x eval seeds): "
        + ", ".join(f"{name} {_mean_fd(result['quality'][name]):.2f}" for name in ("today", "new"))
        + "; the same model's FD moves by 2 to 4 between draws of 360 samples.",
        "",
        "Quality runs:",
        "",
    ]
    for name in ("today", "new"):
        for q in result["quality"][name]:
            by_seed = q.get("digit_fd_by_eval_seed", {})
            spread = ", ".join(f"eval seed {k}: {v:.2f}" for k, v in by_seed.items())
            lines.append(
                f"- {name}, seed {q['seed']}: FD {q['digit_fd']:.2f}, {q['bits_per_dim']:.3f} "
                f"bits/dim; `{q['command']}`"
                + (f" (FD at other draws: {spread})" if spread else "")
            )
    lines += ["", "Tried at a third of the compute (seed 0): digit FD, bits/dim", ""]
    lines += [f"- {what}: {fd:.2f}, {bpd:.3f}" for what, fd, bpd in TRIED]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per loop")
    parser.add_argument(
        "--new-overrides", nargs="*", default=[], help="overrides of the new config (trials)"
    )
    parser.add_argument("--out", default=str(RESULTS / "main_job_cpu"), help="path stem")
    parser.add_argument(
        "--quality-only",
        action="store_true",
        help="keep the measurements of the existing results file; rewrite the quality numbers",
    )
    args = parser.parse_args()
    stem = pathlib.Path(args.out)
    if args.quality_only:
        result = json.loads(stem.with_suffix(".json").read_text())
    else:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        before = matmul_peak()["peak_gflops"]
        today = measure(str(CONFIG), OLD_OVERRIDES, steps=args.steps)
        new = measure(str(CONFIG), args.new_overrides, steps=args.steps)
        after = matmul_peak()["peak_gflops"]
        result = {
            "command": " ".join(["python bench/main_job.py", *sys.argv[1:]]),
            "load_average": load,
            "peak_gflops": {"before": before, "after": after},
            "today": today,
            "new": new,
            "compute_ratio": new["compute_tflop"] / today["compute_tflop"],
            "time_ratio": new["projected_train_seconds"] / today["projected_train_seconds"],
            "bench_seconds": time.perf_counter() - t0,
        }
    result["quality"] = QUALITY
    result["tried"] = [{"what": w, "digit_fd": fd, "bits_per_dim": b} for w, fd, b in TRIED]
    result["bar"] = BAR
    print(json.dumps({k: result[k] for k in ("compute_ratio", "time_ratio")}, indent=2))
    text = markdown(result)
    print(text)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
