"""The ``jaxgen`` command: train, sample and evaluate experiments.

jaxgen train experiments/ddpm_digits.py --workdir runs/ddpm_digits train.num_steps=2000
jaxgen sample --workdir runs/ddpm_digits --num-samples 64 --sampler ddim --steps 50
jaxgen eval --workdir runs/ddpm_digits [eval.max_examples=100 ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys


def _configure_runtime() -> None:
    import jax

    default = str(pathlib.Path.home() / ".cache" / "jaxgen" / "xla")
    cache = os.environ.get("JAXGEN_COMPILATION_CACHE", default)
    if cache and not jax.config.jax_compilation_cache_dir:  # keep a cache set by the caller
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "orbax", "jax._src", "tensorflow_datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _cmd_train(args: argparse.Namespace) -> int:
    from jaxgen.config import apply_overrides, load_experiment
    from jaxgen.engine.trainer import train

    config = apply_overrides(load_experiment(args.config), args.overrides)
    workdir = args.workdir or os.path.join("runs", config.name)
    result = train(config, workdir)
    summary = {"workdir": str(result.workdir), "step": result.step, **result.metrics}
    if result.stopped_early:
        summary["stopped_early"] = True
    print(json.dumps(summary, indent=2))
    samples = pathlib.Path(workdir) / "samples" / "latest.png"
    if samples.exists():
        print(f"samples: {samples}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from jaxgen.engine.inference import draw_samples, load_run
    from jaxgen.images import density_picture, save_grid, save_png

    run = load_run(args.workdir, step=args.step, overrides=args.overrides)
    kwargs = {}
    if args.sampler:
        kwargs["sampler"] = args.sampler
    if args.steps:
        kwargs["num_steps"] = args.steps
    if args.eta is not None:
        kwargs["eta"] = args.eta
    samples = draw_samples(run, num_samples=args.num_samples, seed=args.seed, **kwargs)
    out = pathlib.Path(args.out or pathlib.Path(args.workdir) / "samples")
    out.mkdir(parents=True, exist_ok=True)
    stem = f"samples_step{run.step}_seed{args.seed}"
    np.save(out / f"{stem}.npy", samples)
    record = {"npy": str(out / f"{stem}.npy"), "shape": list(samples.shape)}
    if samples.ndim == 4:  # images: a grid
        record["png"] = str(save_grid(out / f"{stem}.png", samples[: min(len(samples), 256)]))
    elif hasattr(run.recipe, "decode_samples"):  # token sequences: text
        text = "\n\n-----\n\n".join(run.recipe.decode_samples(samples))
        (out / f"{stem}.txt").write_text(text)
        record["txt"] = str(out / f"{stem}.txt")
    elif samples.ndim == 2 and samples.shape[1] == 2:  # 2-D points: their density
        record["png"] = str(save_png(out / f"{stem}.png", density_picture(samples), upscale=4))
    print(json.dumps(record))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from jaxgen.engine.inference import evaluate_run, load_run

    run = load_run(args.workdir, step=args.step, overrides=args.overrides)
    kwargs = {}
    if args.sampler:
        kwargs["sampler"] = args.sampler
    if args.steps:
        kwargs["num_steps"] = args.steps
    results = evaluate_run(
        run,
        split=args.split,
        num_samples=args.num_samples,
        seed=args.seed,
        likelihood=not args.no_likelihood,
        **kwargs,
    )
    print(json.dumps(results, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxgen", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (or resume) an experiment config")
    p.add_argument("config", help="experiment file (experiments/*.py) or a run's config.json")
    p.add_argument("--workdir", help="run directory (default: runs/<config name>)")
    p.add_argument(
        "overrides", nargs="*", help="config overrides key=value, e.g. train.num_steps=100"
    )
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("sample", help="draw samples from a trained run (PNG grid and .npy)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument(
        "--sampler",
        help="override the config's sampler (ddpm: ancestral, ddim; score_sde: pc, "
        "euler_maruyama, ode_euler, ode_heun, ode_adaptive, dpm_solver, edm)",
    )
    p.add_argument("--steps", type=int, help="sampler steps")
    p.add_argument("--eta", type=float, help="DDIM eta (0 = deterministic)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step", type=int, help="checkpoint step (default: newest good one)")
    p.add_argument("--out", help="output directory (default: <workdir>/samples)")
    p.add_argument("overrides", nargs="*", help="sampling settings key=value, e.g. model.snr=0.1")
    p.set_defaults(fn=_cmd_sample)

    p = sub.add_parser("eval", help="bits/dim on held-out data and a sample-quality score")
    p.add_argument("--workdir", required=True)
    p.add_argument("--split", help="held-out split (default: the config's eval.split)")
    p.add_argument("--num-samples", type=int, help="samples for the quality score")
    p.add_argument("--sampler", help="sampler for the quality score (default: the config's)")
    p.add_argument("--steps", type=int, help="sampler steps for the quality score")
    p.add_argument(
        "--no-likelihood", action="store_true", help="skip bits/dim (only the quality score)"
    )
    p.add_argument(
        "overrides",
        nargs="*",
        help="evaluation settings key=value, e.g. eval.max_examples=100 model.likelihood_rtol=1e-4",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step", type=int)
    p.set_defaults(fn=_cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may come before or after --workdir: argparse leaves the later ones unparsed.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command not in ("train", "eval", "sample") or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    _configure_runtime()
    from jaxgen.config import ConfigError
    from jaxgen.data.tfds_images import DatasetNotFoundError
    from jaxgen.engine.checkpointing import CheckpointError
    from jaxgen.engine.trainer import NonFiniteLossError

    try:
        return args.fn(args)
    except (ConfigError, DatasetNotFoundError, CheckpointError, NonFiniteLossError) as err:
        print(f"jaxgen {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
