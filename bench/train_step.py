"""Train-step throughput against this machine's measured matmul peak, in one run.

    python bench/train_step.py                      # digits DDPM config, batch 128
    python bench/train_step.py --config experiments/ddpm_cifar10.py --batch-size 8 --steps 2 \
        --mock-data

Reports images/s of the compiled engine step (forward, backward, Adam, EMA), the step's
FLOPs from XLA's cost analysis, and the fraction of the peak that a large float32
``jnp.dot`` reaches on the same devices in the same process. Nothing here is a test:
the numbers belong in notes and the README, with this command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jaxgen.config import apply_overrides, load_experiment  # noqa: E402
from jaxgen.engine import sharding  # noqa: E402
from jaxgen.engine.trainer import abstract_train_state  # noqa: E402
from jaxgen.run import build_recipe, load_train_dataset  # noqa: E402
from jaxgen.run.data import init_batch_for  # noqa: E402


def _time(fn, *, repeats: int) -> float:
    """Best wall time of ``fn()`` (which must block) over ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(
    sizes=(1024, 2048, 4096), repeats: int = 5, dtype: str = "float32"
) -> dict[str, float]:
    """Best GFLOP/s of an n x n ``dtype`` matmul over a few sizes (2 n^3 FLOPs each)."""
    out = {}
    dot = jax.jit(jnp.dot)
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        b = jax.random.normal(jax.random.key(1), (n, n), dtype)
        dot(a, b).block_until_ready()
        seconds = _time(lambda a=a, b=b: dot(a, b).block_until_ready(), repeats=repeats)
        out[f"matmul_{n}_gflops"] = 2 * n**3 / seconds / 1e9
    out["peak_gflops"] = max(out.values())
    return out


def step_throughput(
    config_path: str, overrides: list[str], *, batch_size: int | None, steps: int
) -> dict:
    config = load_experiment(config_path)
    if batch_size:
        overrides = [*overrides, f"data.batch_size={batch_size}"]
    config = apply_overrides(config, overrides)
    mesh = sharding.make_mesh()
    dataset = load_train_dataset(config)
    recipe = build_recipe(config, dataset)
    init_batch = init_batch_for(recipe, dataset)
    tx, init_fn, _, shardings = abstract_train_state(recipe, config, mesh, init_batch=init_batch)
    state = jax.jit(init_fn, out_shardings=shardings)(init_batch)
    b = config.data.batch_size
    images = np.resize(
        dataset.source.get(np.arange(min(b, len(dataset.source))))["image"],
        (b, *dataset.image_shape),
    )
    batch = {"image": jax.device_put(images, sharding.batch_sharding(mesh))}
    step = jax.jit(
        recipe.make_train_step(tx),
        in_shardings=(shardings, sharding.batch_sharding(mesh)),
        out_shardings=(shardings, sharding.replicated(mesh)),
        donate_argnums=0,
    )
    t0 = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", float("nan")))
    state, metrics = compiled(state, batch)  # warm-up
    jax.block_until_ready(metrics)

    holder = {"state": state}

    def run():
        s = holder["state"]
        for _ in range(steps):
            s, m = compiled(s, batch)
        jax.block_until_ready(m)
        holder["state"] = s

    seconds = _time(run, repeats=3) / steps
    params = sum(x.size for x in jax.tree.leaves(state.params))
    return {
        "config": pathlib.Path(config_path).name,
        "batch_size": b,
        "image_shape": list(dataset.image_shape),
        "parameters": int(params),
        "devices": int(mesh.size),
        "compile_seconds": compile_s,
        "step_seconds": seconds,
        "images_per_sec": b / seconds,
        "step_gflop": flops / 1e9,
        "achieved_gflops": flops / seconds / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(ROOT / "experiments" / "ddpm_digits.py"))
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--mock-data",
        action="store_true",
        help="random TFDS records (tfds.testing.mock_data) for datasets not downloaded here",
    )
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    peak = matmul_peak()
    with contextlib.ExitStack() as stack:
        if args.mock_data:
            import tensorflow_datasets as tfds

            stack.enter_context(tfds.testing.mock_data(num_examples=max(args.batch_size or 128, 8)))
        result = step_throughput(
            args.config, args.overrides, batch_size=args.batch_size, steps=args.steps
        )
    result.update(peak)
    result["fraction_of_matmul_peak"] = result["achieved_gflops"] / peak["peak_gflops"]
    result["backend"] = jax.default_backend()
    result["device_kind"] = jax.devices()[0].device_kind
    print(json.dumps(result, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
