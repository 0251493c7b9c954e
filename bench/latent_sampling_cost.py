"""Sampling cost per image of latent diffusion against the pixel DDPM, on the digits.

    python bench/latent_sampling_cost.py \
        --pixel runs/ddpm_digits --latent runs/latent_diffusion_digits
    # writes bench/results/latent_sampling_cost_cpu.{json,md}

Both runs draw with their configs' sampler (the pixel DDPM: 1000 ancestral steps; the latent
DDPM: 100 DDIM steps), or another one given as eval-time overrides (``--pixel-overrides
model.sampler=ddim model.sample_steps=100``). For each, in one process on one machine:

* ``network GFLOP per image``: XLA's cost analysis of one compiled network call on a batch,
  divided by the batch (the U-Net on 8x8x1 pixels; the U-Net on the 4x4x3 latents), times
  the number of network calls the sampler makes, plus one decoder call for the latent model
  (the first stage's decoder, costed the same way);
* ``seconds per image``: the best of two timed draws of ``--num-samples`` images through the
  recipe's ``sample`` (compiled once, excluded), divided by the number drawn;
* this machine's float32 matmul peak measured in the same run (``bench/train_step.py``'s
  :func:`matmul_peak`), so the times scale to another machine by the ratio of peaks.

The ratios latent / pixel are what the issue asks for ("lower sampling cost per image"); the
digit FDs are those ``jaxgen eval`` measured on the same runs (the results file records
them as given with ``--pixel-fd`` / ``--latent-fd``). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from train_step import matmul_peak  # noqa: E402

from jaxgen.run import load_run  # noqa: E402


def _flops(fn, *args) -> float:
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, list):  # older JAX returned one dict per computation
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0))


def network_costs(run, batch: int) -> dict[str, float]:
    """GFLOP per image of one denoiser call and (latent runs) one decoder call."""
    recipe, params = run.recipe, run.ema_params
    inner, inner_params = recipe, params
    if run.config.family == "latent_diffusion":
        inner, inner_params = recipe.inner, params["denoiser"]
    shape = (batch, *inner.data_shape)
    x = jnp.zeros(shape, jnp.float32)
    t = jnp.full((batch,), 500, jnp.int32)
    out = {"denoiser_gflop": _flops(lambda p, x, t: inner.model_fn(p)(x, t), inner_params, x, t)}
    out["denoiser_gflop"] /= batch * 1e9
    out["decoder_gflop"] = 0.0
    if run.config.family == "latent_diffusion":
        out["decoder_gflop"] = _flops(recipe.decode, params, x) / (batch * 1e9)
    return out


def time_sampling(run, num_samples: int, repeats: int = 2) -> tuple[float, int]:
    """Best seconds per image of ``num_samples`` draws, and the sampler's nfe."""
    draw = jax.jit(lambda p, k: run.recipe.sample(p, k, num_samples))
    out = draw(run.ema_params, jax.random.key(0))
    jax.block_until_ready(out.samples)
    best = float("inf")
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(draw(run.ema_params, jax.random.key(i + 1)).samples)
        best = min(best, time.perf_counter() - t0)
    return best / num_samples, int(out.nfe)


def measure(workdir: str, num_samples: int, overrides: list[str] = ()) -> dict:
    run = load_run(workdir, overrides=list(overrides))
    costs = network_costs(run, batch=num_samples)
    seconds, nfe = time_sampling(run, num_samples)
    calls = nfe - (1 if run.config.family == "latent_diffusion" else 0)
    return {
        "workdir": workdir,
        "overrides": list(overrides),
        "family": run.config.family,
        "network_calls": calls,
        **costs,
        "gflop_per_image": calls * costs["denoiser_gflop"] + costs["decoder_gflop"],
        "seconds_per_image": seconds,
    }


def markdown(result: dict) -> str:
    p, q = result["pixel"], result["latent"]
    lines = [
        f"Machine: {result['device']}; float32 matmul peak {result['peak_gflops'][0]:.0f} "
        f"GFLOP/s before, {result['peak_gflops'][1]:.0f} after the timings.",
        "",
        "| model | calls | GFLOP / call / image | decoder GFLOP | GFLOP / image | ms / image "
        "| digit FD |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in (("pixel DDPM", p), ("latent DDPM", q)):
        lines.append(
            f"| {name} (`{r['workdir']}` {' '.join(r['overrides'])}) | {r['network_calls']} | "
            f"{r['denoiser_gflop']:.5f} | "
            f"{r['decoder_gflop']:.5f} | {r['gflop_per_image']:.3f} | "
            f"{1e3 * r['seconds_per_image']:.2f} | {r.get('digit_fd', '')} |"
        )
    lines += [
        "",
        f"latent / pixel: {result['flop_ratio']:.3f} of the FLOPs per image, "
        f"{result['time_ratio']:.3f} of the time per image.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pixel", default="runs/ddpm_digits")
    parser.add_argument("--latent", default="runs/latent_diffusion_digits")
    parser.add_argument("--pixel-fd", type=float, default=None)
    parser.add_argument("--latent-fd", type=float, default=None)
    parser.add_argument("--num-samples", type=int, default=360)
    parser.add_argument(
        "--pixel-overrides", nargs="*", default=[], help="eval-time overrides (another sampler)"
    )
    parser.add_argument("--latent-overrides", nargs="*", default=[])
    parser.add_argument("--out", default=str(ROOT / "bench/results/latent_sampling_cost_cpu"))
    args = parser.parse_args()
    before = matmul_peak()["peak_gflops"]
    pixel = measure(args.pixel, args.num_samples, args.pixel_overrides)
    latent = measure(args.latent, args.num_samples, args.latent_overrides)
    after = matmul_peak()["peak_gflops"]
    if args.pixel_fd is not None:
        pixel["digit_fd"] = args.pixel_fd
    if args.latent_fd is not None:
        latent["digit_fd"] = args.latent_fd
    result = {
        "device": str(jax.devices()[0].device_kind),
        "peak_gflops": [before, after],
        "num_samples": args.num_samples,
        "pixel": pixel,
        "latent": latent,
        "flop_ratio": latent["gflop_per_image"] / pixel["gflop_per_image"],
        "time_ratio": latent["seconds_per_image"] / pixel["seconds_per_image"],
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
