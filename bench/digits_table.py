"""Re-measure the README's digits results: train and evaluate experiment configs in turn.

    python bench/digits_table.py vae_digits gan_digits          # named configs
    python bench/digits_table.py --all                          # every *_digits.py config

Each config runs ``jaxgen.run.train_and_evaluate`` (exactly what ``jaxgen train`` then
``jaxgen eval`` do) in ``runs/digits_table/<config>`` (an existing finished run is only
evaluated again), and its numbers (held-out likelihood, digit FD on 360 samples, the
family's own figures) and the wall time are appended to
``bench/results/digits_table.json`` and printed as a Markdown table. Nothing here is a
test; the numbers belong in the README with this command.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jaxgen.config import load_experiment  # noqa: E402
from jaxgen.run import train_and_evaluate  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "digits_table.json"
KEYS = ("bits_per_dim", "digit_fd", "nll_nats", "psnr", "squared_error")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", help="experiment names (experiments/<name>.py)")
    parser.add_argument("--all", action="store_true", help="every experiments/*_digits.py")
    parser.add_argument("--workdir", default=str(ROOT / "runs" / "digits_table"))
    args = parser.parse_args(argv)
    names = sorted(p.stem for p in (ROOT / "experiments").glob("*_digits.py")) if args.all else []
    names += args.configs
    if not names:
        parser.error("name at least one config, or --all")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in names:
        config = load_experiment(str(ROOT / "experiments" / f"{name}.py"))
        t0 = time.perf_counter()
        out = train_and_evaluate(config, pathlib.Path(args.workdir) / name)
        record = {k: float(v) for k, v in out.eval.items() if isinstance(v, (int, float))}
        record["wall_seconds"] = time.perf_counter() - t0
        results[name] = record
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True))
        print(json.dumps({name: record}), flush=True)
    print("| config | " + " | ".join(KEYS) + " | wall s |")
    print("|---" * (len(KEYS) + 2) + "|")
    for name in names:
        row = results[name]
        cells = [f"{row[k]:.4g}" if k in row else "" for k in KEYS]
        print(f"| `{name}.py` | " + " | ".join(cells) + f" | {row['wall_seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
