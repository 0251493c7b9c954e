"""Flow-matching samplers on the exact Gaussian-mixture comparison of ``sde_samplers.py``.

    python bench/flow_samplers.py            # full run (n = 8192, 7 min on 2 busy cores)
    python bench/flow_samplers.py --quick    # smoke run (~1.5 min): n = 1024, budgets 5 and
                                             # 20, fewer configs, written to /tmp

Needs only jaxgen (no torch, no diffusers): diffusers' numbers are *read* from
``bench/results/sde_samplers_cpu.json``, not rerun.

**Set-up.** The two mixtures (``grid2d``: 25 modes on a 5 x 5 grid, std 0.05; ``gmm16d``: 6
anisotropic components in 16-D), the exact reference set (key 2024), the MMD^2 estimator
(unbiased, a sum of RBF kernels at (1/16 .. 2) x the median pairwise distance) and the
noise floor (keys 100..104) are *imported* from ``bench/sde_samplers.py`` (which imports
torch only inside its diffusers functions), so every number here is on the same scale as
there; at its ``n`` (8192) the bandwidths and the noise floor are asserted equal to the
ones stored in its JSON.

The model is the *exact* marginal velocity ``u*(x, t) = alpha' E[x_data|x_t] + sigma'
E[x_source|x_t]`` of each mixture (time convention: data at ``t = 0``, source ``N(0, I)``
at ``t = 1``) on three paths of :mod:`jaxgen.flow_matching.paths`: ``linear`` (rectified
flow / conditional OT, ``sigma_min = 0``), ``cosine`` and ``vp`` (``beta`` 0.1..20, the
path of the VPSDE of ``sde_samplers``). As there, the oracle is written here with the
covariances eigendecomposed once (``jaxgen.flow_matching.mixture_velocity_fn`` does a
batched Cholesky per call) and ``E[x_source|x_t]`` as ``sigma sum_k r_k C_k^{-1}(x - alpha
mu_k)`` (no cancellation as ``sigma -> 0``); it is checked against
``mixture_velocity_fn`` on every path before the run.

Samplers, each at the largest step count whose static ``nfe`` (``jax.eval_shape``) fits the
budget (5, 10, 20, 50 velocity evaluations):

* the fixed-step ODE solvers of :mod:`jaxgen.flow_matching.samplers` (Euler, midpoint, Heun,
  RK4: 1, 2, 2, 4 evaluations a step) on each path, from ``t = 1`` to ``t = 0`` (``vp``: to
  ``t = 1e-3``, the VPSDE's ``t_min``, because ``sigma'(0)`` is infinite there; its
  ``alpha(1) = 0.0066`` start mismatch is left as is);
* on the linear path, the flow model seen as a diffusion model through
  :class:`jaxgen.flow_matching.PathSDE` and ``velocity_to_score``: DPM-Solver++ 2M/3M with
  the spacings and ``+denoise`` variants of ``sde_samplers`` and EDM's Heun (Karras rho =
  7), on PathSDE's default noise range (EDM's, ``sigma/alpha`` 80 to 0.002).

All flow samplers start from the same per-example noise (key 7), so they are paired with
each other. They are *not* paired with the stored ``sde_samplers`` rows: that run drew its
start from key 7 with the code of its time, before the per-example keys of the shared core,
and the current SDE samplers reproduce its few-step MMD^2 only to 5-20% (checked on four
5- and 10-step DPM++ configs) and its at-the-floor values only to about one floor-std. Wall
times (one run after compiling, not best-of) are in the JSON but are not the point here.

**Headline** (``results/flow_samplers_cpu.md``): per data set and budget, the best flow
sampler (path, sampler), the best fixed-step flow ODE solver, the best jaxgen SDE sampler
and diffusers' best (both from the stored ``sde_samplers`` run), and the noise floor;
``vs diffusers`` is ``ok`` when the best flow sampler's MMD^2 is at most diffusers' best plus
2 floor-stds (the criterion of ``sde_samplers``).

**Findings** (n = 8192, 2 shared cores, 423 s). At 5 and 10 evaluations the best flow
sampler is DPM-Solver++ 2M on the linear path through PathSDE (``time_quadratic`` spacing,
i.e. quadratic in the linear path's ``t``, a different log-SNR grid than on the VPSDE):
3.0e-3 / 2.1e-3 on grid2d and 1.4e-2 / 5.8e-4 on gmm16d, against diffusers' best 3.4e-2 /
4.6e-3 and 4.2e-2 / 2.7e-3 (2-11x lower) and at or below the stored jaxgen-SDE best. The
fixed-step ODE solvers also beat diffusers' best at 5 and 10 (cosine Euler at 5: 2.6e-2 and
3.0e-2; midpoint at 10: 3.6e-3 and 1.6e-3) but trail DPM++ at 5 by 2-9x; the VP path is
the worst for them (its ``sigma' ~ 1 / sigma`` near the data end). At 20 and 50 every
good sampler sits within 2 floor-stds of the floor; the exact ODE map of these 8192 starts
(RK4, 200-400 evaluations, linear and cosine paths alike) gives 1.9e-4 on gmm16d, the
value the 20- and 50-evaluation rows there settle at.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sde_samplers as sde_bench  # noqa: E402

from jaxgen.distributions import GaussianMixture  # noqa: E402
from jaxgen.flow_matching import (  # noqa: E402
    CosinePath,
    GaussianPath,
    LinearPath,
    PathSDE,
    VPPath,
    euler_sample,
    heun_sample,
    midpoint_sample,
    mixture_velocity_fn,
    rk4_sample,
    velocity_to_score,
)
from jaxgen.sde.samplers.dpm_solver import dpm_solver_sample  # noqa: E402
from jaxgen.sde.samplers.edm import edm_sample  # noqa: E402

BUDGETS = sde_bench.BUDGETS
SDE_RESULTS = ROOT / "bench" / "results" / "sde_samplers_cpu.json"
PATH_T_MIN = {"linear": 0.0, "cosine": 0.0, "vp": 1e-3}
FLOW_SAMPLERS: dict[str, Callable] = {
    "euler": euler_sample,
    "midpoint": midpoint_sample,
    "heun": heun_sample,
    "rk4": rk4_sample,
}

Fn = Callable[[jax.Array, jax.Array], jax.Array]


def make_paths() -> dict[str, GaussianPath]:
    return {"linear": LinearPath(sigma_min=0.0), "cosine": CosinePath(), "vp": VPPath()}


# ----------------------------------------------------------------------------- oracle


def fast_mixture_velocity(mixture: GaussianMixture, path: GaussianPath) -> Fn:
    """The exact velocity of ``mixture`` on ``path``, with ``Sigma_k = U diag(lam) U^T`` once:
    ``C_k = U diag(alpha^2 lam + sigma^2) U^T``, ``E[x_data|x, k] = mu_k + alpha U (lam / var)
    U^T (x - alpha mu_k)``, ``E[x_source|x] = sigma sum_k r_k U (1 / var) U^T (x - alpha
    mu_k)``; finite at ``alpha = 0`` and at ``sigma = 0``."""
    lam, u = np.linalg.eigh(np.asarray(mixture.covariances, np.float64))
    lam = jnp.asarray(np.maximum(lam, 0.0), jnp.float32)  # (K, D)
    u = jnp.asarray(u, jnp.float32)  # (K, D, D)
    means, log_w = mixture.means.astype(jnp.float32), jnp.log(mixture.weights)

    def velocity(x: jax.Array, t: jax.Array) -> jax.Array:
        alpha, sigma, alpha_dot, sigma_dot = (c.astype(x.dtype) for c in path.coefficients(t))
        a, s = alpha[:, None, None], sigma[:, None, None]
        var = jnp.square(a) * lam[None] + jnp.square(s)  # (B, K, D)
        white = jnp.einsum("bkd,kdj->bkj", x[:, None, :] - a * means[None], u)
        scaled = white / var
        log_joint = log_w - 0.5 * jnp.sum(white * scaled + jnp.log(var), axis=-1)  # (B, K)
        resp = jax.nn.softmax(log_joint, axis=-1)[..., None]  # (B, K, 1)
        x_data = jnp.sum(resp * means[None], axis=1) + alpha[:, None] * jnp.einsum(
            "bkj,kdj->bd", resp * lam[None] * scaled, u
        )
        x_source = sigma[:, None] * jnp.einsum("bkj,kdj->bd", resp * scaled, u)
        return alpha_dot[:, None] * x_data + sigma_dot[:, None] * x_source

    return velocity


def oracle_check(
    mixture: GaussianMixture, paths: dict[str, GaussianPath], num: int = 256
) -> dict[str, float]:
    """Max over paths and times of ``|u - u_ref| / max(1, |u_ref|)`` against
    ``jaxgen.flow_matching.mixture_velocity_fn`` at ``x_t`` drawn from the path's marginal."""
    x0 = mixture.sample(jax.random.key(1), num)
    z = jax.random.normal(jax.random.key(3), x0.shape)
    out = {}
    for name, path in paths.items():
        ours, ref = fast_mixture_velocity(mixture, path), mixture_velocity_fn(mixture, path)
        worst = 0.0
        for t in (PATH_T_MIN[name] or 1e-3, 0.01, 0.1, 0.5, 0.9, 1.0):
            tb = jnp.full((num,), t, jnp.float32)
            x = path.interpolate(x0, z, tb)
            a, b = np.asarray(ours(x, tb)), np.asarray(ref(x, tb))
            worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))))
        if PATH_T_MIN[name] == 0.0:  # the data end itself
            tb = jnp.zeros((num,), jnp.float32)
            a, b = np.asarray(ours(x0, tb)), np.asarray(ref(x0, tb))
            worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))))
        out[name] = worst
    return out


# ----------------------------------------------------------------------------- configs


def configs(quick: bool) -> list[tuple[str, str, tuple[str, Callable], Callable[[int], dict]]]:
    """``(path, sampler name, (kind, sampler), kwargs(num_steps))``: kind ``"flow"`` (a flow
    ODE solver on the velocity) or ``"sde"`` (a score-SDE sampler through PathSDE)."""
    out = []
    paths = ("linear", "cosine") if quick else ("linear", "cosine", "vp")
    for path in paths:
        for method, fn in FLOW_SAMPLERS.items():
            out.append((path, method, ("flow", fn), lambda n, p=path: dict(
                num_steps=n, t_min=PATH_T_MIN[p])))  # fmt: skip
    spacings = ("log_snr", "time_quadratic") if quick else (
        "log_snr", "time_quadratic", "time_uniform", "karras"
    )  # fmt: skip
    for order in (2, 3):
        for spacing in spacings:
            for denoise in (False, True):
                name = f"dpm++{order}M {spacing}" + (" +denoise" if denoise else "")
                out.append((
                    "linear", name, ("sde", dpm_solver_sample),
                    lambda n, o=order, s=spacing, d=denoise: dict(
                        num_steps=n, order=o, spacing=s, denoise=d),
                ))  # fmt: skip
    out.append(("linear", "edm heun (karras rho=7)", ("sde", edm_sample),
                lambda n: dict(num_steps=n)))  # fmt: skip
    return out


def run(
    mixture: GaussianMixture,
    mmd: sde_bench.MMD,
    key: jax.Array,
    num_samples: int,
    budgets: tuple[int, ...],
    quick: bool,
) -> list[dict]:
    """Every config at every budget (largest step count that fits): MMD^2, nfe, wall time."""
    paths = make_paths()
    shape = (num_samples, mixture.dim)
    rows = []
    for path_name, name, (kind, sampler), kwargs_of in configs(quick):
        path = paths[path_name]
        velocity = fast_mixture_velocity(mixture, path)
        if kind == "flow":

            def call(k, kw, sampler=sampler, velocity=velocity):
                return sampler(velocity, k, shape, **kw)

        else:
            score, sde = velocity_to_score(velocity, path), PathSDE(path)

            def call(k, kw, sampler=sampler, score=score, sde=sde):
                return sampler(score, sde, k, shape, **kw)

        for budget in budgets:

            def nfe_of(n, call=call, kwargs_of=kwargs_of):
                return int(jax.eval_shape(lambda: call(key, kwargs_of(n))).nfe)

            try:
                n = sde_bench._fit_steps(nfe_of, budget)
                if n is None:
                    continue
                kw = kwargs_of(n)
                t0 = time.perf_counter()
                compiled = jax.jit(lambda k, call=call, kw=kw: call(k, kw)).lower(key).compile()
                compile_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                out = compiled(key)
                samples = out.samples.block_until_ready()
                wall = time.perf_counter() - t0
            except Exception as err:  # report and go on with the other samplers
                print(f"  {path_name} {name} B={budget}: failed ({type(err).__name__}: {err})")
                continue
            rows.append(dict(path=path_name, sampler=name, kind=kind, budget=budget,
                             num_steps=n, nfe=int(out.nfe), mmd2=mmd(samples), wall_s=wall,
                             compile_s=compile_s))  # fmt: skip
            print(f"  {path_name:6s} {name:34s} B={budget:2d} n={n:2d} nfe={out.nfe:2d} "
                  f"mmd2={rows[-1]['mmd2']:.5f} wall={wall * 1e3:6.1f} ms "
                  f"(compile {compile_s:.1f} s)", flush=True)  # fmt: skip
    return rows


# ----------------------------------------------------------------------------- summary


def load_sde_results(path: pathlib.Path = SDE_RESULTS) -> dict:
    return json.loads(path.read_text())


def summarize(rows: list[dict], floor: dict, stored: dict | None) -> list[dict]:
    """Per budget: the best flow sampler (any kind), the best fixed-step flow ODE solver,
    and the stored jaxgen-SDE and diffusers bests at the same budget."""
    by_budget = {s["budget"]: s for s in (stored or {}).get("summary", [])}
    out = []
    for budget in sorted({r["budget"] for r in rows}):
        here = [r for r in rows if r["budget"] == budget]
        best = min(here, key=lambda r: r["mmd2"])
        best_ode = min((r for r in here if r["kind"] == "flow"), key=lambda r: r["mmd2"])
        s = dict(
            budget=budget,
            flow_best=f"{best['path']}, {best['sampler']}",
            flow_nfe=best["nfe"],
            flow_mmd2=best["mmd2"],
            flow_ode_best=f"{best_ode['path']}, {best_ode['sampler']}",
            flow_ode_nfe=best_ode["nfe"],
            flow_ode_mmd2=best_ode["mmd2"],
        )
        ref = by_budget.get(budget)
        if ref is not None:
            s.update(
                sde_best=ref["jaxgen_best"],
                sde_mmd2=ref["jaxgen_mmd2"],
                diffusers_best=ref["diffusers_best"],
                diffusers_mmd2=ref["diffusers_mmd2"],
                at_least_diffusers=best["mmd2"] <= ref["diffusers_mmd2"] + 2.0 * floor["std"],
            )
        out.append(s)
    return out


def markdown(results: dict) -> str:
    n = results["num_samples"]
    lines = [
        f"# Flow-matching samplers, exact velocity ({results['device']}, n = {n})",
        "",
        "MMD^2 to exact samples (lower is better; negative values are noise around 0), the "
        "estimator and data of `sde_samplers.py`. jaxgen-SDE and diffusers columns: the "
        f"stored `sde_samplers_cpu.json` run (n = {results['sde_num_samples']}).",
        "",
    ]
    for name, ds in results["datasets"].items():
        fl = ds["noise_floor"]
        lines += [
            f"## {name} (D = {ds['dim']}, K = {ds['num_components']})",
            "",
            f"Noise floor (exact vs the exact reference set): {fl['mean']:.2e} +- {fl['std']:.1e}.",
            "",
            "| NFE | best flow sampler (path, sampler) | MMD^2 | best flow ODE solver | MMD^2 | "
            "jaxgen SDE best | MMD^2 | diffusers best | MMD^2 | vs diffusers |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in ds["summary"]:
            ref = (
                f"{s['sde_best']} | {s['sde_mmd2']:.2e} | {s['diffusers_best']} | "
                f"{s['diffusers_mmd2']:.2e} | {'ok' if s['at_least_diffusers'] else 'worse'}"
                if "sde_best" in s
                else "- | - | - | - | -"
            )
            lines.append(
                f"| {s['budget']} | {s['flow_best']} | {s['flow_mmd2']:.2e} | "
                f"{s['flow_ode_best']} | {s['flow_ode_mmd2']:.2e} | {ref} |"
            )
        lines += ["", "All flow samplers (MMD^2 at each budget):", ""]
        budgets = sorted({r["budget"] for r in ds["rows"]})
        lines.append("| path | sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |")
        lines.append("|---|---|" + "---|" * len(budgets))
        keys = list(dict.fromkeys((r["path"], r["sampler"]) for r in ds["rows"]))
        for path, sampler in keys:
            cells = []
            for b in budgets:
                hit = [r for r in ds["rows"] if (r["path"], r["sampler"], r["budget"]) ==
                       (path, sampler, b)]  # fmt: skip
                cells.append(f"{hit[0]['mmd2']:.2e} ({hit[0]['nfe']})" if hit else "-")
            lines.append(f"| {path} | {sampler} | " + " | ".join(cells) + " |")
        lines += ["", "Cells: MMD^2 (nfe used).", ""]
    return "\n".join(lines)


def headline(results: dict) -> str:
    lines = [
        "| data | NFE | best flow sampler (path, sampler) | MMD^2 | best flow ODE solver | MMD^2 "
        "| jaxgen SDE best | MMD^2 | diffusers best | MMD^2 | noise floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, ds in results["datasets"].items():
        fl = ds["noise_floor"]
        for s in ds["summary"]:
            ref = (
                f"{s['sde_best']} | {s['sde_mmd2']:.2e} | {s['diffusers_best']} | "
                f"{s['diffusers_mmd2']:.2e}"
                if "sde_best" in s
                else "- | - | - | -"
            )
            lines.append(
                f"| {name} | {s['budget']} | {s['flow_best']} | {s['flow_mmd2']:.2e} | "
                f"{s['flow_ode_best']} | {s['flow_ode_mmd2']:.2e} | {ref} | "
                f"{fl['mean']:.1e} +- {fl['std']:.1e} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--datasets", default="grid2d,gmm16d")
    parser.add_argument("--out", default=None, help="JSON path (a .md table goes next to it)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = (
            "/tmp/flow_samplers_quick.json"
            if args.quick
            else str(ROOT / "bench" / "results" / "flow_samplers_cpu.json")
        )
    if jax.config.jax_enable_x64:
        raise RuntimeError("run the benchmark in float32")
    num_samples = args.num_samples or (1024 if args.quick else 8192)
    budgets = (5, 20) if args.quick else BUDGETS
    floor_reps = 3 if args.quick else 5
    stored = load_sde_results()
    assert list(stored["bandwidth_factors"]) == list(sde_bench.BANDWIDTH_FACTORS)
    same_n = stored["num_samples"] == num_samples
    datasets = sde_bench.make_datasets()
    results = dict(
        device=f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores",
        jax=jax.__version__,
        num_samples=num_samples,
        sde_num_samples=stored["num_samples"],
        budgets=list(budgets),
        bandwidth_factors=list(sde_bench.BANDWIDTH_FACTORS),
        path_t_min=PATH_T_MIN,
        datasets={},
    )
    t_start = time.perf_counter()
    for name in args.datasets.split(","):
        mixture = datasets[name]
        ref = stored["datasets"].get(name)
        print(f"[{name}] D={mixture.dim} K={mixture.num_components}", flush=True)
        err = oracle_check(mixture, make_paths())
        print(f"  velocity oracle vs mixture_velocity_fn, max rel. diff: {err}", flush=True)
        assert max(err.values()) < 1e-3, err
        exact = mixture.sample(jax.random.key(2024), num_samples)
        mmd = sde_bench.MMD(exact)
        null = [
            mmd(mixture.sample(jax.random.key(100 + r), num_samples)) for r in range(floor_reps)
        ]
        floor = dict(mean=float(np.mean(null)), std=float(np.std(null, ddof=1)), values=null)
        print(f"  noise floor MMD^2 {floor['mean']:.2e} +- {floor['std']:.1e}", flush=True)
        if ref is not None and same_n:  # the same data, kernel and sets as the stored run
            # (equal up to float32 rounding: the stored run's XLA build may differ)
            np.testing.assert_allclose(np.asarray(mmd.bandwidths), ref["bandwidths"], rtol=1e-3)
            floor["max_abs_diff_to_stored"] = float(
                np.max(np.abs(np.asarray(null) - ref["noise_floor"]["values"]))
            )
            print(f"  noise floor values vs stored: max abs diff "
                  f"{floor['max_abs_diff_to_stored']:.1e}", flush=True)  # fmt: skip
            assert floor["max_abs_diff_to_stored"] < 0.5 * ref["noise_floor"]["std"], floor
        rows = run(mixture, mmd, jax.random.key(7), num_samples, budgets, args.quick)
        summary = summarize(rows, floor, ref)
        results["datasets"][name] = dict(
            dim=mixture.dim,
            num_components=mixture.num_components,
            oracle_max_rel_diff=err,
            bandwidths=np.asarray(mmd.bandwidths).tolist(),
            noise_floor=floor,
            rows=rows,
            summary=summary,
        )
    results["runtime_s"] = time.perf_counter() - t_start
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    out.with_suffix(".md").write_text(markdown(results) + "\n")
    print(markdown(results))
    print("\nHeadline:\n")
    print(headline(results))
    print(f"\nruntime {results['runtime_s']:.0f} s; written to {out} and {out.with_suffix('.md')}")
    return results


if __name__ == "__main__":
    main()
