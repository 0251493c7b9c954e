"""The ``jaxgen`` command: train, sample and evaluate experiments.

jaxgen train experiments/ddpm_digits.py --workdir runs/ddpm_digits train.num_steps=2000
jaxgen train experiments/ddpm_digits.py --workdir runs/ddpm_digits --restart
jaxgen sample --workdir runs/ddpm_digits --num-samples 64 --sampler ddim --steps 50
jaxgen sample --workdir runs/ddpm_cfg_digits --class 3 --guidance-scale 2
jaxgen sample --workdir runs/ddpm_cfg_digits --class-grid --guidance-interval 0.3,5
jaxgen eval --workdir runs/ddpm_digits [eval.max_examples=100 ...]
jaxgen eval --workdir runs/ddpm_cfg_digits --guidance-scales 0,1,2,3,5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys
import typing

from jaxgen.cli import arguments, cascade
from jaxgen.cli.checks import UsageError, check_before_imports, check_train_workdir


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
    logging.getLogger("absl").addFilter(_drop_read_only_notes)


def _drop_read_only_notes(record: logging.LogRecord) -> bool:
    """Orbax's warnings that a manager opened read-only (as ``sample`` and ``eval`` open
    ``checkpoints/``) changes its save options: expected, and not for the user."""
    message = record.getMessage()
    return not ("read_only=True" in message or "Given directory is read only" in message)


class _Parser(argparse.ArgumentParser):
    """Prints a usage error as ONE line, ``jaxgen <cmd>: error: ...``, and exits with 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


# command-line flag -> the sample option of ``Recipe.sample`` it sets.
SAMPLE_FLAGS = {
    "sampler": "sampler",
    "steps": "num_steps",
    "eta": "eta",
    "temperature": "temperature",
    "augmentation_level": "augmentation_level",
    "top_k": "top_k",
    "top_p": "top_p",
    "text": "text",
}


def _guidance(args: argparse.Namespace) -> dict[str, object]:
    """The guidance flags given (left-out flags are not passed)."""
    flags = {
        "guidance_scale": getattr(args, "guidance_scale", None),
        "guidance_interval": args.guidance_interval,
        "guidance_rescale": args.guidance_rescale,
    }
    return {k: v for k, v in flags.items() if v is not None}


def _sample_options(args: argparse.Namespace) -> dict[str, object]:
    """The sample options given on the command line (flags left out are not passed)."""
    return {
        option: getattr(args, flag)
        for flag, option in SAMPLE_FLAGS.items()
        if getattr(args, flag, None) is not None
    }


def _recipe_class(workdir: str) -> typing.Any:
    """The recipe class of the run in ``workdir`` (its ``config.json`` names the family)."""
    from jaxgen.run import get_recipe

    return get_recipe(
        json.loads((pathlib.Path(workdir) / "config.json").read_text()).get("family", "")
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from jaxgen.cli.checks import is_cascade_file
    from jaxgen.config import apply_overrides, load_experiment
    from jaxgen.run import model_config_class, train

    if is_cascade_file(args.config):
        return cascade.train_cascade(args)

    config = apply_overrides(
        load_experiment(args.config, resolve_model=model_config_class), args.overrides
    )
    workdir = args.workdir or os.path.join("runs", config.name)
    check_train_workdir(workdir)
    result = train(config, workdir, restart=args.restart)
    summary = {"workdir": str(result.workdir), "step": result.step, **result.metrics}
    if result.stopped_early:
        summary["stopped_early"] = True
    print(json.dumps(summary, indent=2))
    samples = pathlib.Path(workdir) / "samples" / "latest.png"
    if samples.exists():
        print(f"samples: {samples}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    if args.cascade:
        return cascade.sample_cascade(args)
    from jaxgen.run import (
        check_sample_options,
        draw_guided_samples,
        draw_samples,
        load_classifier,
        load_run,
        model_classes,
        write_samples,
    )
    from jaxgen.run.evaluate import sample_score_note

    options = _sample_options(args)
    check_sample_options(_recipe_class(args.workdir), options)  # before loading anything
    run = load_run(args.workdir, step=args.step, overrides=args.overrides)
    guidance = _guidance(args)
    stem = f"samples_step{run.step}_seed{args.seed}"
    out = pathlib.Path(args.out or pathlib.Path(args.workdir) / "samples")
    asked = guidance or args.label is not None or args.class_grid or args.classifier
    note = sample_score_note(run.config.data.name, args.num_samples)  # printed on success
    if "text" in options:  # one caption for every sample: no class path
        if args.label is not None or args.class_grid or args.classifier:
            raise UsageError(
                "--text sets every sample's caption; it takes no --class, "
                "--class-grid or --classifier"
            )
        options.update(guidance)  # guidance on the caption's logits, a plain sample option
        check_sample_options(run.recipe, options)
        asked = False
    if not asked and (not model_classes(run) or "text" in options):
        samples = draw_samples(
            run, num_samples=args.num_samples, seed=args.seed, progress_desc="sampling", **options
        )
        print(json.dumps(write_samples(run, samples, out, stem)))
        print(note or "", end="\n" if note else "", file=sys.stderr)
        return 0
    classifier = load_classifier(run, args.classifier) if args.classifier else None
    drawn = draw_guided_samples(
        run,
        num_samples=args.num_samples,
        seed=args.seed,
        label=args.label,
        class_grid=args.class_grid,
        classifier=classifier,
        **guidance,
        **options,
    )
    stem += (
        f"_class{args.label}" if args.label is not None else "_classgrid" if args.class_grid else ""
    )
    if "guidance_scale" in guidance:
        stem += f"_scale{guidance['guidance_scale']:g}"
    record = write_samples(
        run, drawn.samples, out, stem, labels=drawn.labels, num_cols=drawn.num_cols
    )
    print(json.dumps(record))
    print(note or "", end="\n" if note else "", file=sys.stderr)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.cascade:
        return cascade.eval_cascade(args)
    from jaxgen.run import check_sample_options, evaluate_run, load_run

    guidance = _guidance(args)
    kwargs = _sample_options(args)
    check_sample_options(_recipe_class(args.workdir), kwargs)  # before loading anything
    run = load_run(args.workdir, step=args.step, overrides=args.overrides)
    if args.guidance_scales is not None:
        return _guidance_sweep(run, args, guidance, kwargs)
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


def _guidance_sweep(
    run: typing.Any,
    args: argparse.Namespace,
    guidance: dict[str, typing.Any],
    options: dict[str, object],
) -> int:
    from jaxgen.run import guidance_sweep, load_classifier, sweep_table

    classifier = load_classifier(run, args.classifier) if args.classifier else None
    result = guidance_sweep(
        run,
        args.guidance_scales,
        num_samples=args.num_samples,
        seed=args.seed,
        classifier=classifier,
        progress=lambda line: print(line, flush=True),
        **guidance,
        **options,
    )
    print(sweep_table(result["rows"]), end="")
    print(f"written: {run.workdir / 'eval'}/guidance_sweep.{{json,md,png}}")
    return 0


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Fills ``{samplers}`` in a help text with the recipes' declared samplers (only when
    help is printed: it imports every recipe)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text and "{samplers}" in text:
            from jaxgen.run import sampler_help

            text = text.replace("{samplers}", sampler_help())
        return text


def _add_sample_flags(p: argparse.ArgumentParser, sampler_help: str) -> None:
    """The sample options a family may declare (``Recipe.sample_options``); a flag the
    run's family does not declare is an error (exit code 2)."""
    p.add_argument("--sampler", help=f"{sampler_help} ({{samplers}})")
    p.add_argument("--steps", type=arguments.positive_int, help="sampler steps (num_steps, >= 1)")
    p.add_argument(
        "--eta",
        type=arguments.finite_float,
        help="eta of samplers that take one (DDIM: 0 = deterministic)",
    )
    p.add_argument("--temperature", type=arguments.finite_float, help="sampling temperature")
    p.add_argument(
        "--top-k", type=arguments.positive_int, help="keep the K most likely tokens (priors)"
    )
    p.add_argument(
        "--top-p", type=arguments.finite_float, help="nucleus filtering mass (token priors)"
    )
    p.add_argument("--text", help='the caption every sample is drawn for ("a handwritten seven")')
    p.add_argument(
        "--augmentation-level",
        type=arguments.finite_float,
        metavar="S",
        help="noise-conditioning augmentation level of a super-resolution model's condition",
    )


def _add_run_or_cascade(p: argparse.ArgumentParser) -> None:
    """``--workdir RUN`` or ``--cascade FILE`` (one of them, checked before any import)."""
    p.add_argument("--workdir", help="the run directory")
    p.add_argument("--cascade", metavar="FILE", help="a cascade file (its stages' runs)")


def _add_guidance_flags(p: argparse.ArgumentParser) -> None:
    """Guidance of class-conditional diffusion runs (or unconditional ones with a classifier)."""
    p.add_argument(
        "--guidance-interval",
        type=arguments.interval,
        metavar="LO,HI",
        help="guide only where LO < sigma <= HI (EDM noise level; Kynkaanniemi et al. 2024)",
    )
    p.add_argument(
        "--guidance-rescale",
        type=arguments.unit_float,
        metavar="PHI",
        help="CFG rescale phi in [0, 1] (Lin et al. 2024)",
    )
    p.add_argument(
        "--classifier",
        metavar="CLF_WORKDIR",
        help="classifier guidance with a trained noisy_classifier run (same noise process)",
    )


def _add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars or messages on stderr")
    _add_process_flags(p)


def _add_process_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group(
        "multi-process (multi-host) jobs",
        "Start the same command in every process. --distributed alone reads the cluster's "
        "environment (Slurm, Open MPI, Cloud TPU); or name the coordinator and the processes.",
    )
    group.add_argument(
        "--distributed", action="store_true", help="join a multi-process job (jax.distributed)"
    )
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address and port")
    group.add_argument(
        "--num-processes", type=arguments.positive_int, metavar="N", help="processes in the job"
    )
    group.add_argument(
        "--process-id", type=arguments.non_negative_int, metavar="I", help="this process (0..N-1)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxgen", description=__doc__, formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "train", help="train (or resume) an experiment config", formatter_class=_HelpFormatter
    )
    p.add_argument("config", help="experiment file (experiments/*.py) or a run's config.json")
    p.add_argument("--workdir", help="run directory (default: runs/<config name>)")
    p.add_argument(
        "--restart",
        action="store_true",
        help="start over in a workdir whose every checkpoint was found damaged (quarantined)",
    )
    p.add_argument(
        "overrides", nargs="*", help="config overrides key=value, e.g. train.num_steps=100"
    )
    p.set_defaults(fn=_cmd_train)
    _add_quiet(p)

    p = sub.add_parser(
        "sample",
        help="draw samples from a trained run (PNG grid and .npy)",
        formatter_class=_HelpFormatter,
    )
    _add_run_or_cascade(p)
    p.add_argument("--num-samples", type=arguments.positive_int, default=64)
    _add_sample_flags(p, "override the config's sampler")
    p.add_argument("--seed", type=arguments.non_negative_int, default=0, help="random seed (>= 0)")
    p.add_argument(
        "--step", type=arguments.non_negative_int, help="checkpoint step (default: newest good one)"
    )
    p.add_argument("--out", help="output directory (default: <workdir>/samples)")
    classes = p.add_mutually_exclusive_group()
    classes.add_argument(
        "--class",
        dest="label",
        type=arguments.non_negative_int,
        metavar="C",
        help="every sample of class C (default for class-conditional runs: class i mod K)",
    )
    classes.add_argument(
        "--class-grid",
        action="store_true",
        help="one row per class, max(1, --num-samples // K) samples each (K rows in all)",
    )
    p.add_argument(
        "--guidance-scale",
        type=arguments.finite_float,
        metavar="S",
        help="guidance scale s = 1 + w (1: conditional, unguided; 0: unconditional)",
    )
    _add_guidance_flags(p)
    p.add_argument("overrides", nargs="*", help="sampling settings key=value, e.g. model.snr=0.1")
    p.set_defaults(fn=_cmd_sample)
    _add_quiet(p)

    p = sub.add_parser(
        "eval",
        help="bits/dim on held-out data and a sample-quality score",
        formatter_class=_HelpFormatter,
    )
    _add_run_or_cascade(p)
    p.add_argument("--split", help="held-out split (default: the config's eval.split)")
    p.add_argument(
        "--num-samples", type=arguments.positive_int, help="samples for the quality score"
    )
    _add_sample_flags(p, "sampler for the quality score (default: the config's)")
    p.add_argument(
        "--no-likelihood", action="store_true", help="skip bits/dim (only the quality score)"
    )
    p.add_argument(
        "--guidance-scales",
        type=arguments.scales,
        metavar="S1,S2,...",
        help="sweep guidance scales instead: sample quality and class accuracy at each "
        "(<workdir>/eval/guidance_sweep.{json,md,png}; --num-samples per scale)",
    )
    p.add_argument(
        "--augmentation-levels",
        type=arguments.levels,
        metavar="S1,S2,...",
        help="(with --cascade) score the cascade at each augmentation level of its "
        "super-resolution stages",
    )
    _add_guidance_flags(p)
    p.add_argument(
        "overrides",
        nargs="*",
        help="evaluation settings key=value, e.g. eval.max_examples=100 model.likelihood_rtol=1e-4",
    )
    p.add_argument("--seed", type=arguments.non_negative_int, default=0, help="random seed (>= 0)")
    p.add_argument(
        "--step", type=arguments.non_negative_int, help="checkpoint step (default: newest good one)"
    )
    p.set_defaults(fn=_cmd_eval)
    _add_quiet(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; a user's mistake is one line ``jaxgen <cmd>: error: ...`` on stderr
    and exit code 2 (argparse's own errors exit through ``SystemExit(2)``)."""
    parser = build_parser()
    # Overrides may come before or after --workdir: argparse leaves the later ones unparsed.
    args, extra = parser.parse_known_args(argv)
    if extra:
        unknown = [e for e in extra if e.startswith("-")]
        if unknown:
            parser.exit(
                2, f"jaxgen {args.command}: error: unrecognized arguments: {' '.join(unknown)}\n"
            )
        args.overrides = [*args.overrides, *extra]
    quiet = os.environ.get(QUIET_ENV)
    if args.quiet:
        os.environ[QUIET_ENV] = "1"  # read by jaxgen.engine.progress
    try:
        return _run(args)
    finally:  # (main may be called in process: leave the environment as it was)
        if quiet is None:
            os.environ.pop(QUIET_ENV, None)
        else:
            os.environ[QUIET_ENV] = quiet


def _run(args: argparse.Namespace) -> int:
    from jaxgen.config import ConfigError

    try:
        check_before_imports(args)  # no JAX, Flax, Orbax or TFDS imported yet
    except (UsageError, ConfigError) as err:
        return _report(args, " ".join(str(err).split()))
    _configure_runtime()
    from jaxgen.run import CheckpointError, DatasetNotFoundError, NonFiniteLossError

    try:
        _start_distributed(args)
    except ValueError as err:
        return _report(args, " ".join(str(err).split()))

    user_errors = (UsageError, ConfigError, DatasetNotFoundError, CheckpointError)
    try:
        return args.fn(args)
    except (*user_errors, NonFiniteLossError) as err:
        message = " ".join(str(err).split())  # one line, whatever the message holds
    except (PermissionError, FileExistsError, NotADirectoryError, IsADirectoryError) as err:
        if err.filename is None:
            raise
        message = f"{err.strerror}: {err.filename}"
    return _report(args, message)


def _start_distributed(args: argparse.Namespace) -> None:
    """Join the multi-process job the flags ask for (before any JAX computation)."""
    explicit = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and all(v is None for v in explicit):
        return
    from jaxgen.run import start_distributed

    index, _ = start_distributed(
        coordinator_address=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
    )
    if index != 0:  # process 0 speaks for the job: the others log only warnings and errors
        os.environ[QUIET_ENV] = "1"
        logging.getLogger().setLevel(logging.WARNING)


QUIET_ENV = "JAXGEN_QUIET"
"""Set by ``--quiet`` while a command runs; :mod:`jaxgen.engine.progress` then shows nothing."""


def _report(args: argparse.Namespace, message: str) -> int:
    print(f"jaxgen {args.command}: error: {message}", file=sys.stderr)
    return 2
