"""What checkpoint checksums cost, against the save itself, on a real model's train state.

    python bench/checkpoint_checksum.py                                  # CIFAR-10 DDPM U-Net
    python bench/checkpoint_checksum.py --config experiments/ddpm_digits.py

Builds the config's full train state (parameters, Adam moments, EMA; random values, so the
files do not compress), saves it synchronously with the engine's ``Checkpointer``, and times
the SHA-256 of every file of the step (``jaxgen.engine.checkpointing.hash_files``, what every
save and restore pays) against the save. Writes ``bench/results/checkpoint_checksum.json``.
Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jaxgen.config import load_experiment  # noqa: E402
from jaxgen.engine import sharding  # noqa: E402
from jaxgen.engine.checkpointing import Checkpointer, hash_files  # noqa: E402
from jaxgen.engine.trainer import abstract_train_state  # noqa: E402
from jaxgen.run import get_recipe  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "experiments" / "ddpm_cifar10.py"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    config = load_experiment(args.config)
    # The state's shapes need only the data's shape (no dataset download for CIFAR-10).
    digits = config.data.name == "digits"
    recipe = get_recipe(config.family)(
        config,
        data_shape=(8, 8, 1) if digits else (32, 32, 3),
        num_levels=17 if digits else 256,
        num_classes=10,
    )
    _, _, abstract, _ = abstract_train_state(recipe, config, sharding.make_mesh(1))
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), abstract)
    numbers = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(abstract))
    saves, hashes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for step in range(1, args.repeats + 1):
            ckpt = Checkpointer(pathlib.Path(tmp) / "ckpt", use_async=False, max_to_keep=1)
            t0 = time.perf_counter()
            ckpt.save(step, state)
            ckpt.wait()
            saves.append(time.perf_counter() - t0)
            ckpt.close()
            step_dir = pathlib.Path(tmp) / "ckpt" / str(step)
            size = sum(p.stat().st_size for p in step_dir.rglob("*") if p.is_file())
            t0 = time.perf_counter()
            hash_files(step_dir)
            hashes.append(time.perf_counter() - t0)
    result = {
        "config": pathlib.Path(args.config).name,
        "state_numbers": numbers,
        "checkpoint_mb": size / 1e6,
        "save_seconds_best": min(saves),
        "sha256_seconds_best": min(hashes),
        "sha256_mb_per_second": size / 1e6 / min(hashes),
        "sha256_over_save": min(hashes) / min(saves),
    }
    out = ROOT / "bench" / "results" / "checkpoint_checksum.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
