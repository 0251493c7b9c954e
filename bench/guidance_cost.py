"""The cost of one classifier-free-guided network evaluation against an unguided one, and
the evaluations a guidance interval saves.

    python bench/guidance_cost.py                     # digits and CIFAR-10 U-Nets
    python bench/guidance_cost.py --only digits --batch-size 256

For each U-Net (the digits main job's and the DDPM CIFAR-10 network, both class-conditional)
it compiles three model calls at the same batch size:

* ``unguided``: the conditional network, ``D(x, t, c)`` (what a sampler calls without
  guidance);
* ``batched``: classifier-free guidance with both passes in one call on ``2B`` examples;
* ``two_pass``: classifier-free guidance as two calls on ``B`` examples;

and reports the best wall time of each, its ratio to ``unguided``, and the peak temporary
memory XLA plans for the compiled call (``memory_analysis().temp_size_in_bytes``), which is
what batching the two passes trades against time. Then it counts the network passes of a
50-step DDIM draw on the DDPM schedule with and without the guidance interval of
Kynkaanniemi et al. (2024) (EDM sigma in (0.28, 5.42]), by a host callback inside the
network, i.e. what was actually executed: outside the interval the unconditional pass is
skipped. Nothing here is a test; the numbers go in notes and the README with this command.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
from flax import nnx

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jaxgen import diffusion, guidance  # noqa: E402
from jaxgen.nets import UNet, UNetConfig  # noqa: E402

NETWORKS = {
    "digits": (
        UNetConfig(
            channels=32,
            channel_mult=(1, 2),
            num_res_blocks=1,
            attention_resolutions=(4,),
            dropout=0.0,
            num_groups=8,
            num_classes=10,
        ),
        (8, 8, 1),
    ),
    "cifar10": (
        UNetConfig(
            channels=128,
            channel_mult=(1, 2, 2, 2),
            num_res_blocks=2,
            attention_resolutions=(16,),
            dropout=0.1,
            num_groups=32,
            num_classes=10,
        ),
        (32, 32, 3),
    ),
}
INTERVAL = (0.28, 5.42)  # Kynkaanniemi et al. 2024, EDM2-S on ImageNet-512


def _best_time(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def _conditional_model(graphdef, params):
    def model(x, t, labels):
        return nnx.merge(graphdef, params)(x, t, y=labels)

    return model


def step_costs(name: str, batch_size: int, repeats: int) -> dict[str, float]:
    config, shape = NETWORKS[name]
    unet = UNet(config, image_shape=shape, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(unet)
    x = jax.random.normal(jax.random.key(1), (batch_size, *shape))
    t = jnp.full((batch_size,), 500, jnp.int32)
    labels = jnp.arange(batch_size, dtype=jnp.int32) % config.num_classes
    null = jnp.full_like(labels, guidance.NULL_LABEL)

    def unguided(params, x, t, labels, scale):
        del scale
        return _conditional_model(graphdef, params)(x, t, labels)

    def guided(batched):
        def fn(params, x, t, labels, scale):
            model = _conditional_model(graphdef, params)
            cfg = guidance.classifier_free_guidance(
                model, labels, null, scale=scale, batched=batched
            )
            return cfg(x, t)

        return fn

    out: dict[str, float] = {"batch_size": batch_size}
    args = (params, x, t, labels, jnp.float32(2.0))
    for label, fn in (
        ("unguided", unguided),
        ("batched", guided(True)),
        ("two_pass", guided(False)),
    ):
        compiled = jax.jit(fn).lower(*args).compile()
        memory = compiled.memory_analysis()
        out[f"{label}_s"] = _best_time(compiled, *args, repeats=repeats)
        out[f"{label}_temp_mib"] = (
            memory.temp_size_in_bytes / 2**20 if memory is not None else float("nan")
        )
    for label in ("batched", "two_pass"):
        out[f"{label}_time_ratio"] = out[f"{label}_s"] / out["unguided_s"]
    return out


def interval_passes(num_steps: int = 50, batch_size: int = 16) -> dict[str, float]:
    """Network passes (examples x calls, counted on the host) of a guided DDIM draw with and
    without the guidance interval, on the digits U-Net and the linear DDPM schedule."""
    config, shape = NETWORKS["digits"]
    unet = UNet(config, image_shape=shape, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(unet)
    schedule = diffusion.linear_schedule(1000)
    labels = jnp.arange(batch_size, dtype=jnp.int32) % config.num_classes
    null = jnp.full_like(labels, guidance.NULL_LABEL)
    passes = {"n": 0}

    def count(n):
        passes["n"] += int(n)

    def model(x, t, y):
        jax.debug.callback(count, jnp.asarray(x.shape[0]) // batch_size)
        return nnx.merge(graphdef, params)(x, t, y=y)

    out = {}
    for label, interval in (
        ("no_interval", None),
        ("interval", guidance.GuidanceInterval(*INTERVAL)),
    ):
        passes["n"] = 0
        cfg = guidance.classifier_free_guidance(
            model, labels, null, scale=2.0, interval=interval, path=schedule, batched=True
        )
        result = diffusion.ddim_sample(
            cfg, schedule, jax.random.key(0), (batch_size, *shape), num_steps=num_steps
        )
        jax.block_until_ready(result.samples)
        jax.effects_barrier()
        out[f"{label}_network_passes"] = passes["n"]
        out[f"{label}_sampler_nfe"] = int(result.nfe)
    out["passes_saved"] = out["no_interval_network_passes"] - out["interval_network_passes"]
    out["fraction_saved"] = out["passes_saved"] / out["no_interval_network_passes"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(NETWORKS), help="one network only")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 128 / 8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "guidance_cost.json"))
    args = parser.parse_args()
    results: dict[str, object] = {"devices": [str(d) for d in jax.devices()]}
    for name in [args.only] if args.only else list(NETWORKS):
        batch = args.batch_size or (128 if name == "digits" else 8)
        results[name] = step_costs(name, batch, args.repeats)
        print(name, json.dumps(results[name], indent=1), flush=True)
    results["interval"] = interval_passes()
    print("interval", json.dumps(results["interval"], indent=1))
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=float))
    print("wrote", path)


if __name__ == "__main__":
    main()
