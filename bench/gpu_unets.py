"""The CIFAR-10 U-Nets' training throughput, float32 against bfloat16, on the device at hand.

    python bench/gpu_unets.py                          # GPU/TPU: batch sizes 64, 128, 256
    python bench/gpu_unets.py --batch-sizes 32,512     # other batch sizes
    python bench/gpu_unets.py --smoke                  # a CPU check of the script (tiny nets)

For the DDPM U-Net (Ho et al. 2020, 35.7M parameters) and the DDPM++ deep U-Net (Song et
al. 2021, ``sde_ddpmpp_deep_subvp_cifar10.py``), each in float32 and in mixed precision
(``train.compute_dtype=bfloat16``: bf16 compute, f32 parameters, Adam state and
reductions), at each batch size: images per second of the engine's compiled step
(forward, backward, Adam, EMA) and its achieved FLOP/s (XLA's cost analysis of the step)
as a fraction of this device's measured bf16 matmul peak (the best ``jnp.dot`` of 4096^2 to
8192^2 bf16 matrices, measured in the same process; the float32 peak is reported too --
on NVIDIA GPUs JAX's default float32 matmul precision uses TF32 tensor cores). Data are
``tfds.testing.mock_data`` records, so nothing is downloaded. A batch that does not fit in
memory is reported as such and the sweep goes on. Writes ``--out`` (JSON and a Markdown
table for the README).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from train_step import matmul_peak, step_throughput  # noqa: E402

CONFIGS = {
    "DDPM U-Net": "experiments/ddpm_cifar10.py",
    "DDPM++ deep U-Net": "experiments/sde_ddpmpp_deep_subvp_cifar10.py",
}
SMOKE = {  # tiny networks: the script's own check on a CPU, not a measurement
    "DDPM U-Net": [
        "model.unet.channels=8", "model.unet.channel_mult=(1,)", "model.unet.num_res_blocks=1",
        "model.unet.attention_resolutions=()", "model.unet.num_groups=4",
    ],
    "DDPM++ deep U-Net": [
        "model.unet.channels=8", "model.unet.channel_mult=(1,)", "model.unet.num_res_blocks=1",
        "model.unet.attention_resolutions=()", "model.unet.num_groups=4",
    ],
}  # fmt: skip


def _row(name: str, dtype: str, result: dict, bf16_peak: float) -> dict:
    return {
        "model": name,
        "compute_dtype": dtype,
        "batch_size": result["batch_size"],
        "parameters_m": result["parameters"] / 1e6,
        "images_per_sec": result["images_per_sec"],
        "step_gflop": result["step_gflop"],
        "achieved_tflops": result["achieved_gflops"] / 1e3,
        "fraction_of_bf16_peak": result["achieved_gflops"] / bf16_peak,
    }


def table(rows: list[dict], device: str, peaks: dict) -> str:
    lines = [
        f"Device: {device}; measured matmul peak: bf16 {peaks['bfloat16'] / 1e3:.1f} TFLOP/s, "
        f"float32 {peaks['float32'] / 1e3:.1f} TFLOP/s.",
        "",
        "| model | compute | batch | params | images/s | step GFLOP | TFLOP/s | of bf16 peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['model']} | {r['compute_dtype']} | {r['batch_size']} | | "
                f"{r['error']} | | | |"
            )
            continue
        lines.append(
            f"| {r['model']} | {r['compute_dtype']} | {r['batch_size']} | "
            f"{r['parameters_m']:.1f}M | {r['images_per_sec']:.0f} | {r['step_gflop']:.0f} | "
            f"{r['achieved_tflops']:.1f} | {r['fraction_of_bf16_peak']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-sizes", default="64,128,256")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="tiny nets, batch 2, one step")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_unets"))
    args = parser.parse_args()
    sizes = (256, 512) if args.smoke else (4096, 8192)
    peaks = {
        dtype: matmul_peak(sizes=sizes, dtype=dtype)["peak_gflops"]
        for dtype in ("bfloat16", "float32")
    }
    batch_sizes = [2] if args.smoke else [int(b) for b in args.batch_sizes.split(",")]
    steps = 1 if args.smoke else args.steps
    import tensorflow_datasets as tfds

    rows = []
    with tfds.testing.mock_data(num_examples=max(batch_sizes)):
        for name, config in CONFIGS.items():
            extra = SMOKE[name] if args.smoke else []
            for batch in batch_sizes:
                for dtype in ("float32", "bfloat16"):
                    overrides = [*extra, f"train.compute_dtype={dtype}"]
                    try:
                        result = step_throughput(
                            str(ROOT / config), overrides, batch_size=batch, steps=steps
                        )
                    except Exception as err:  # noqa: BLE001 - out of memory: report, go on
                        if "RESOURCE_EXHAUSTED" not in str(err) and "memory" not in str(err):
                            raise
                        rows.append(
                            {"model": name, "compute_dtype": dtype, "batch_size": batch,
                             "error": "out of memory"}
                        )  # fmt: skip
                        continue
                    rows.append(_row(name, dtype, result, peaks["bfloat16"]))
                    print(json.dumps(rows[-1]), flush=True)
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()}, {jax.device_count()})"
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"device": device, "matmul_peak_gflops": peaks, "rows": rows, "smoke": args.smoke}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    out.with_suffix(".md").write_text(table(rows, device, peaks) + "\n")
    print(table(rows, device, peaks))


if __name__ == "__main__":
    main()
