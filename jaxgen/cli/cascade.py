"""``jaxgen train|sample|eval`` on a cascade file (``experiments/cascade_digits.py``): the
commands of :mod:`jaxgen.run.cascade`."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

__all__ = ["eval_cascade", "sample_cascade", "train_cascade"]


def train_cascade(args: argparse.Namespace) -> int:
    """Train (or resume) every stage of the cascade in order."""
    from jaxgen.run.cascade import load_cascade, train_cascade

    if args.workdir or args.overrides:
        from jaxgen.cli.checks import UsageError

        raise UsageError(
            "a cascade trains each stage in its own workdir (named in the cascade file); "
            "--workdir and overrides apply to one experiment, not a cascade"
        )
    results = train_cascade(load_cascade(args.config), restart=args.restart)
    print(json.dumps(results, indent=2))
    return 0


def sample_cascade(args: argparse.Namespace) -> int:
    """Run the chain once: every stage's grid and ``.npy`` under ``--out``."""
    from jaxgen.run.cascade import (
        check_cascade,
        load_cascade,
        sample_cascade,
        write_cascade_samples,
    )

    cascade = load_cascade(args.cascade)
    runs = check_cascade(cascade)
    outputs, labels = sample_cascade(
        runs,
        cascade,
        num_samples=args.num_samples,
        seed=args.seed,
        label=args.label,
        augmentation_level=args.augmentation_level,
    )
    out = pathlib.Path(args.out or pathlib.Path("runs") / cascade.name / "samples")
    stem = f"cascade_seed{args.seed}"
    if args.augmentation_level is not None:
        stem += f"_level{args.augmentation_level:g}"
    print(json.dumps(write_cascade_samples(runs, outputs, out, stem, labels)))
    return 0


def eval_cascade(args: argparse.Namespace) -> int:
    """The cascade's sample-quality score, at each ``--augmentation-levels`` level."""
    from jaxgen.run.cascade import cascade_table, evaluate_cascade, load_cascade

    cascade = load_cascade(args.cascade)
    result = evaluate_cascade(
        cascade,
        levels=args.augmentation_levels,
        num_samples=args.num_samples,
        seed=args.seed,
    )
    print(cascade_table(result["rows"]), end="")
    print(f"written: runs/{cascade.name}/eval/cascade_eval.{{json,md}}", file=sys.stderr)
    return 0
