"""Few-step samplers: jaxgen's SDE samplers against the diffusers schedulers, on CPU.

    python bench/sde_samplers.py            # full run (25-55 min on 2 busy cores)
    python bench/sde_samplers.py --quick    # smoke run (~2 min): n = 1024, 2 budgets, few
                                            # configs, 1 repeat, written to /tmp

Needs ``bench/requirements.txt`` (torch 2.13.0 CPU, diffusers); nothing in jaxgen does.

**Set-up.** Two Gaussian-mixture data sets with closed-form scores: ``grid2d``, 25 modes on
a 5 x 5 grid in [-1, 1]^2 (spacing 0.5, std 0.05: modes ten stds apart), and ``gmm16d``, 6
components in 16 dimensions with random means (N(0, 0.5^2 I)), random rotations and
eigenvalue stds log-uniform in [0.02, 0.2], random weights. The model is the *exact*
denoiser on both sides, so only the samplers differ:

* diffusers: the standard DDPM discrete VP process (1000 training steps, linear betas
  1e-4..0.02, ``prediction_type="epsilon"``), driven by the exact epsilon
  ``eps(x, t) = -sqrt(1 - abar_t) grad log p_t(x)`` of the mixture noised with
  ``alpha = sqrt(abar_t)``, ``sigma = sqrt(1 - abar_t)``, written in torch. The
  Karras-style schedulers evaluate the model at fractional ``t`` (their ``_sigma_to_t``
  interpolates ``log(sigma / alpha)`` linearly between integer steps); the oracle inverts
  that same interpolation, so it is exact at the noise level the scheduler meant.
* jaxgen: the continuous VPSDE (``beta`` 0.1..20 on [0, 1], the limit of that chain:
  ``sigma/alpha`` runs from 157 at ``T`` to 0.0105 at ``t_min = 1e-3``, diffusers' from 157
  to 0.0100) with the exact score in JAX. The two oracles run the same arithmetic (the
  covariances eigendecomposed once, then two batched matmuls, a softmax over components);
  ``jaxgen.sde.mixture_score_fn`` redoes the eigendecomposition on every call, which would
  handicap our side, so the JAX one is written here too and checked against it.

Both start from the *same* ``x_T`` (the one jaxgen's samplers draw from the key; diffusers
gets it times ``init_noise_sigma``), so the comparison is paired.

**Budgets.** 5, 10, 20 and 50 model calls. Each sampler gets the largest step count whose
*counted* model calls fit the budget: for diffusers ``len(scheduler.timesteps)`` after
``set_timesteps`` (one call per entry; Heun/KDPM2 interleave their second stage), checked
against a counter in the model during the run; for jaxgen the static ``nfe`` of the
:class:`SamplerOutput` (``jax.eval_shape``), which the tests check against counted calls.

**Quality.** Unbiased MMD^2 (Gretton et al. 2012) to ``n`` exact samples with a fixed kernel:
a sum of RBF kernels with bandwidths (1/16, 1/8, 1/4, 1/2, 1, 2) times the median pairwise
distance of the exact samples, fixed once per data set (the small bandwidths resolve the
within-mode spread, which is what few-step samplers get wrong). The noise floor is MMD^2 of
independent exact sets of the same size against the same reference set (mean and std over
replicates; its mean is not exactly zero because the reference set is fixed); values within
about 2 floor-stds of each other are not resolved, and the quality target counts ours as
"at least as good" when it is at most diffusers' best plus 2 floor-stds. Samples are paired
(same x_T, same reference set), so differences between samplers are resolved better than
the floor suggests. ``inf`` marks a sampler whose output was not finite.

**Wall time.** Time to draw the ``n`` samples: jaxgen jitted (compile time reported
separately; then the best of ``--repeats`` runs with ``block_until_ready``), diffusers'
``set_timesteps`` + loop in torch (including the draw of the initial noise, as jaxgen's
samplers do), with ``torch.set_num_threads`` at the core count (the usual setting; one run)
and at 1 (best of ``--repeats``), credited with the faster: on this shared 2-core machine
torch's spinning worker threads made the core-count setting 8-40x slower per model call.
The per-budget ratio is diffusers' best sampler's time over ours. Each oracle is also timed
alone (per call), which estimates the share of a wall time spent in model calls, and the
two best samplers of each budget are timed again with a near-free model (the exact score of
N(0, I) data) to measure the samplers' own cost.

**Findings** (``results/sde_samplers_cpu.md``, n = 8192, 2 shared cores). Quality: at 5 and
10 calls our best beats diffusers' best by 2-6x in MMD^2 on both mixtures (the ``log_snr``
and ``time_quadratic`` grids with ``lower_order_final``); at 20 and 50 both sit at the noise
floor. Our EDM Heun and diffusers' "Heun Karras" (the same algorithm) agree at every
budget, a cross-check of both set-ups. Wall time: only 1.1-1.3x faster, short of the 10x
target, because the exact oracle takes essentially all of it on both sides and costs about
the same per call in XLA and in torch (4.0 vs 5.5 ms on the 2-D grid, 2.3 vs 2.1 ms in 16-D,
torch at one thread); the samplers' own cost, timed with a near-free model, is 3-8x (2-D)
and 1-2x (16-D, where the per-step arithmetic on 8192 x 16 arrays, not Python, dominates
diffusers' overhead too) smaller for ours.

Notes: the predictor-corrector sampler needs more than ``beta_max = 20`` steps on the VPSDE
(its discretised chain), so it only runs at 50 calls; the adaptive probability-flow solver
has a data-dependent cost and is left out; DPMSolverSDE needs ``torchsde`` (not installed)
and the EDM-specific diffusers schedulers assume EDM's noise range and preconditioning, not
the DDPM process, so both are left out.

Results go to ``bench/results/sde_samplers_cpu.json`` (``--out``) and a markdown table
(printed, and written next to the JSON).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import os
import pathlib
import platform
import sys
import time
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jaxgen.distributions import GaussianMixture  # noqa: E402
from jaxgen.sde import SDE, VPSDE, mixture_score_fn  # noqa: E402
from jaxgen.sde.samplers.euler_maruyama import prior_and_step_keys  # noqa: E402

BUDGETS = (5, 10, 20, 50)
BANDWIDTH_FACTORS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0)
NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02


# ----------------------------------------------------------------------------- data


def make_datasets() -> dict[str, GaussianMixture]:
    grid = np.linspace(-1.0, 1.0, 5)
    means = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2)
    grid2d = GaussianMixture.isotropic(
        jnp.full((25,), 1 / 25), jnp.asarray(means, jnp.float32), 0.05
    )
    rng = np.random.default_rng(0)
    dim, k = 16, 6
    means = 0.5 * rng.normal(size=(k, dim))
    stds = np.exp(rng.uniform(np.log(0.02), np.log(0.2), size=(k, dim)))
    rotations = np.linalg.qr(rng.normal(size=(k, dim, dim)))[0]
    covs = np.einsum("kij,kj,klj->kil", rotations, stds**2, rotations)
    weights = rng.dirichlet(5.0 * np.ones(k))
    gmm16d = GaussianMixture(
        jnp.asarray(weights, jnp.float32),
        jnp.asarray(means, jnp.float32),
        jnp.asarray(0.5 * (covs + covs.transpose(0, 2, 1)), jnp.float32),
    )
    return {"grid2d": grid2d, "gmm16d": gmm16d}


# ----------------------------------------------------------------------------- MMD


class MMD:
    """Unbiased MMD^2 to a fixed exact sample set, with the exact-exact term cached."""

    def __init__(self, exact: jax.Array, *, chunk: int = 1024):
        self.exact = exact
        self.chunk = chunk
        sub = np.asarray(exact[:2000], np.float64)
        d = np.sqrt(np.maximum(((sub[:, None] - sub[None]) ** 2).sum(-1), 0.0))
        self.median = float(np.median(d[np.triu_indices(len(sub), 1)]))
        self.bandwidths = jnp.asarray(self.median * np.array(BANDWIDTH_FACTORS), jnp.float32)
        self._sum = jax.jit(self._kernel_sum, static_argnames=("exclude_diagonal",))
        self.kyy = self._mean(exact, exact, same=True)

    def _kernel_sum(self, a, b, *, exclude_diagonal):
        inv = 1.0 / (2.0 * jnp.square(self.bandwidths))
        n = a.shape[0]
        if n % self.chunk:
            raise ValueError(f"the sample count must be a multiple of {self.chunk}, got {n}.")
        blocks = a.reshape(n // self.chunk, self.chunk, a.shape[1])
        b_sq = jnp.sum(jnp.square(b), axis=1)

        def block(i_and_rows):
            i, rows = i_and_rows
            d2 = jnp.sum(jnp.square(rows), axis=1)[:, None] + b_sq[None] - 2.0 * rows @ b.T
            d2 = jnp.maximum(d2, 0.0)
            k = jnp.sum(jnp.exp(-d2[None] * inv[:, None, None]), axis=0)
            total = jnp.sum(k)
            if exclude_diagonal:  # k(a_i, a_i) = number of bandwidths
                total = total - self.chunk * inv.shape[0]
            return total

        idx = jnp.arange(n // self.chunk)
        return jnp.sum(jax.lax.map(block, (idx, blocks)))

    def _mean(self, a, b, *, same: bool) -> float:
        n, m = a.shape[0], b.shape[0]
        total = float(self._sum(a, b, exclude_diagonal=same))
        return total / (n * (n - 1)) if same else total / (n * m)

    def __call__(self, samples) -> float:
        x = jnp.asarray(np.asarray(samples), jnp.float32)
        if not np.all(np.isfinite(np.asarray(x))):
            return float("inf")
        return self._mean(x, x, same=True) + self.kyy - 2.0 * self._mean(x, self.exact, same=False)


# ----------------------------------------------------------------------------- jaxgen


def _optional(module: str, name: str):
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def jaxgen_configs(quick: bool) -> list[tuple[str, Callable, Callable[[int], dict]]]:
    """``(name, sampler, kwargs(num_steps))``; the step count is chosen per budget."""
    from jaxgen.sde.samplers.dpm_solver import dpm_solver_sample
    from jaxgen.sde.samplers.edm import edm_sample

    configs = []
    spacings = ("log_snr", "time_quadratic") if quick else (
        "log_snr", "time_quadratic", "time_uniform", "karras"
    )  # fmt: skip
    for order in (2, 3):
        for spacing in spacings:
            for denoise in (False, True):
                name = f"dpm++{order}M {spacing}" + (" +denoise" if denoise else "")
                configs.append(
                    (
                        name,
                        dpm_solver_sample,
                        lambda n, o=order, s=spacing, d=denoise: dict(
                            num_steps=n, order=o, spacing=s, denoise=d
                        ),
                    )
                )
    configs.append(("edm heun (karras rho=7)", edm_sample, lambda n: dict(num_steps=n)))
    if quick:
        return configs
    # The other SDE samplers, if present in this checkout.
    pf = _optional("jaxgen.sde.samplers.probability_flow", "probability_flow_sample")
    if pf is not None:
        for method in ("euler", "heun"):
            for denoise in (False, True):
                configs.append(
                    (
                        f"pf-ode {method} (uniform t)" + (" +denoise" if denoise else ""),
                        pf,
                        lambda n, m=method, d=denoise: dict(num_steps=n, method=m, denoise=d),
                    )
                )
    em = _optional("jaxgen.sde.samplers.euler_maruyama", "euler_maruyama_sample")
    if em is not None:
        configs.append(
            ("reverse-SDE euler-maruyama +denoise", em, lambda n: dict(num_steps=n, denoise=True))
        )
    pc = _optional("jaxgen.sde.samplers.predictor_corrector", "pc_sample")
    if pc is not None:
        configs.append(
            (
                "PC reverse-diffusion+langevin +denoise",
                pc,
                lambda n: dict(num_steps=n, langevin_step="batch_mean", denoise=True),
            )
        )
    return configs


def _fit_steps(nfe_of: Callable[[int], int], budget: int) -> int | None:
    """Largest ``n`` with ``nfe_of(n) <= budget`` (nfe increases with n), or None."""
    best = None
    for n in range(1, budget + 1):
        try:
            nfe = nfe_of(n)
        except ValueError:
            continue
        if nfe <= budget:
            best = n
        elif best is not None:
            break
    return best


def jax_mixture_score(mixture: GaussianMixture, sde: SDE):
    """``score_fn(x, t)``: the exact score, the arithmetic of :class:`TorchMixtureEps`."""
    lam, u = np.linalg.eigh(np.asarray(mixture.covariances, np.float64))
    lam = jnp.asarray(np.maximum(lam, 0.0), jnp.float32)  # (K, D)
    u = jnp.asarray(u, jnp.float32)  # (K, D, D)
    means, log_w = mixture.means, jnp.log(mixture.weights)

    def score_fn(x, t):
        alpha, sigma = sde.alpha(t)[:, None, None], sde.sigma(t)[:, None, None]  # (B, 1, 1)
        var = jnp.square(alpha) * lam[None] + jnp.square(sigma)  # (B, K, D)
        white = jnp.einsum("bkd,kdj->bkj", x[:, None, :] - alpha * means[None], u)
        scaled = white / var
        log_joint = log_w - 0.5 * jnp.sum(white * scaled + jnp.log(var), axis=-1)  # (B, K)
        resp = jax.nn.softmax(log_joint, axis=-1)
        return -jnp.einsum("bkj,kdj->bd", scaled * resp[..., None], u)

    return score_fn


def _best_time(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def jax_gaussian_score(sde: SDE):
    """The exact score of N(0, I) data, ``-x / (alpha^2 + sigma^2)``: a model that costs
    next to nothing, for timing the samplers' own work."""

    def score_fn(x, t):
        var = jnp.square(sde.alpha(t)) + jnp.square(sde.sigma(t))
        return -x / var[:, None]

    return score_fn


def run_jaxgen(mixture, mmd, key, num_samples, budgets, repeats, quick, *, select=None):
    """All jaxgen configs at all budgets (quality and time); with ``select`` (a set of
    ``(sampler, budget)``), only those, timed with the near-free Gaussian model instead."""
    sde = VPSDE()
    score = jax_mixture_score(mixture, sde) if select is None else jax_gaussian_score(sde)
    shape = (num_samples, mixture.dim)
    rows = []
    for name, sampler, kwargs_of in jaxgen_configs(quick):
        for budget in budgets:
            if select is not None and (name, budget) not in select:
                continue

            def nfe_of(n, sampler=sampler, kwargs_of=kwargs_of):
                out = jax.eval_shape(lambda: sampler(score, sde, key, shape, **kwargs_of(n)))
                return int(out.nfe)

            try:
                n = _fit_steps(nfe_of, budget)
                if n is None:
                    continue
                kwargs = kwargs_of(n)
                fn = jax.jit(lambda k, sampler=sampler, kwargs=kwargs: sampler(
                    score, sde, k, shape, **kwargs))  # fmt: skip
                t0 = time.perf_counter()
                compiled = fn.lower(key).compile()
                compile_s = time.perf_counter() - t0
                out = compiled(key)
                samples = out.samples.block_until_ready()
                wall = _best_time(lambda c=compiled: c(key).samples.block_until_ready(), repeats)
            except Exception as err:  # report and go on with the other samplers
                print(f"  jaxgen {name} B={budget}: failed ({type(err).__name__}: {err})")
                continue
            rows.append(
                dict(
                    library="jaxgen",
                    sampler=name,
                    budget=budget,
                    num_steps=n,
                    nfe=int(out.nfe),
                    mmd2=mmd(samples) if select is None else math.nan,
                    wall_s=wall,
                    compile_s=compile_s,
                )
            )
            print(f"  jaxgen   {name:44s} B={budget:2d} n={n:2d} nfe={out.nfe:2d} "
                  f"mmd2={rows[-1]['mmd2']:.5f} wall={wall * 1e3:7.1f} ms "
                  f"(compile {compile_s:.1f} s)", flush=True)  # fmt: skip
    return rows


# ----------------------------------------------------------------------------- diffusers


class TorchMixtureEps:
    """Exact epsilon of a Gaussian mixture under the discrete DDPM schedule, in torch.

    ``eps(x, t) = -sigma_t grad log q_t(x)``, ``q_t = sum_k w_k N(alpha_t mu_k, alpha_t^2
    Sigma_k + sigma_t^2 I)`` with ``alpha_t = sqrt(abar_t)``, ``sigma_t = sqrt(1 - abar_t)``.
    For fractional ``t`` (Karras-style schedulers), ``log(sigma_t / alpha_t)`` is linearly
    interpolated between integer steps, the inverse of diffusers' ``_sigma_to_t``. The
    covariances are eigendecomposed once (``Sigma_k = U diag(lam) U^T``).
    """

    def __init__(self, mixture: GaussianMixture, alphas_cumprod, torch):
        self.torch = torch
        f64 = torch.float64
        cov = torch.tensor(np.asarray(mixture.covariances, np.float64), dtype=f64)
        lam, u = torch.linalg.eigh(cov)
        self.lam = lam.clamp_min(0.0).float()  # (K, D)
        self.u = u.float()  # (K, D, D)
        self.means = torch.tensor(np.asarray(mixture.means), dtype=torch.float32)
        self.log_w = torch.log(torch.tensor(np.asarray(mixture.weights), dtype=torch.float32))
        abar = torch.as_tensor(alphas_cumprod, dtype=f64)
        self.log_ratio = 0.5 * torch.log((1.0 - abar) / abar)  # log(sigma / alpha)
        self.calls = 0

    def alpha_sigma(self, t) -> tuple[float, float]:
        t = float(t)
        lo = int(math.floor(t))
        hi = min(lo + 1, len(self.log_ratio) - 1)
        frac = t - lo
        log_r = (1 - frac) * float(self.log_ratio[lo]) + frac * float(self.log_ratio[hi])
        ratio2 = math.exp(2.0 * log_r)
        abar = 1.0 / (1.0 + ratio2)
        return math.sqrt(abar), math.sqrt(1.0 - abar)

    def __call__(self, x, t):
        torch = self.torch
        self.calls += 1
        alpha, sigma = self.alpha_sigma(t)
        var = alpha**2 * self.lam + sigma**2  # (K, D)
        diff = x[None] - alpha * self.means[:, None, :]  # (K, B, D)
        white = torch.bmm(diff, self.u)  # (K, B, D): U_k^T (x - alpha mu_k), row form
        scaled = white / var[:, None, :]
        # log w_k + log N(x; alpha mu_k, C_k) up to the 2 pi term, which is common to all k
        log_joint = self.log_w[:, None] - 0.5 * (
            (white * scaled).sum(-1) + torch.log(var).sum(-1)[:, None]
        )  # (K, B)
        resp = torch.softmax(log_joint, dim=0)
        score = -torch.bmm(scaled * resp[..., None], self.u.transpose(1, 2)).sum(0)  # (B, D)
        return -sigma * score


def diffusers_configs(quick: bool) -> list[tuple[str, str, dict]]:
    """``(name, scheduler class, extra config)``."""
    c = [
        ("DDIM (leading)", "DDIMScheduler", dict(clip_sample=False)),
        ("DDIM (trailing)", "DDIMScheduler", dict(clip_sample=False, timestep_spacing="trailing")),
        ("DPM++ 2M", "DPMSolverMultistepScheduler", dict(solver_order=2)),
        ("DPM++ 2M Karras", "DPMSolverMultistepScheduler",
         dict(solver_order=2, use_karras_sigmas=True)),
        ("DPM++ 3M", "DPMSolverMultistepScheduler", dict(solver_order=3)),
        ("DPM++ 3M Karras", "DPMSolverMultistepScheduler",
         dict(solver_order=3, use_karras_sigmas=True)),
        ("UniPC bh2 order 2", "UniPCMultistepScheduler", dict(solver_order=2)),
        ("UniPC bh2 order 3", "UniPCMultistepScheduler", dict(solver_order=3)),
    ]  # fmt: skip
    if quick:
        return c
    c += [
        ("DPM++ 2M heun-type", "DPMSolverMultistepScheduler",
         dict(solver_order=2, solver_type="heun")),
        ("DPM++ 2M lu-lambdas", "DPMSolverMultistepScheduler",
         dict(solver_order=2, use_lu_lambdas=True)),
        ("DPM++ 3M lu-lambdas", "DPMSolverMultistepScheduler",
         dict(solver_order=3, use_lu_lambdas=True)),
        ("DPM++ 2S (singlestep)", "DPMSolverSinglestepScheduler", dict(solver_order=2)),
        ("DPM++ 3S (singlestep)", "DPMSolverSinglestepScheduler", dict(solver_order=3)),
        ("DPM++ 2S Karras", "DPMSolverSinglestepScheduler",
         dict(solver_order=2, use_karras_sigmas=True)),
        ("UniPC bh2 order 2 Karras", "UniPCMultistepScheduler",
         dict(solver_order=2, use_karras_sigmas=True)),
        ("UniPC bh1 order 3", "UniPCMultistepScheduler", dict(solver_order=3, solver_type="bh1")),
        ("DEIS order 2", "DEISMultistepScheduler", dict(solver_order=2)),
        ("DEIS order 3", "DEISMultistepScheduler", dict(solver_order=3)),
        ("Euler", "EulerDiscreteScheduler", {}),
        ("Euler Karras", "EulerDiscreteScheduler", dict(use_karras_sigmas=True)),
        ("Heun", "HeunDiscreteScheduler", {}),
        ("Heun Karras", "HeunDiscreteScheduler", dict(use_karras_sigmas=True)),
        ("LMS", "LMSDiscreteScheduler", {}),
        ("LMS Karras", "LMSDiscreteScheduler", dict(use_karras_sigmas=True)),
        ("KDPM2", "KDPM2DiscreteScheduler", {}),
        ("KDPM2 Karras", "KDPM2DiscreteScheduler", dict(use_karras_sigmas=True)),
        ("PNDM (PRK+PLMS, leading)", "PNDMScheduler", {}),
        ("PLMS (skip PRK, trailing)", "PNDMScheduler",
         dict(skip_prk_steps=True, timestep_spacing="trailing")),
        ("Euler ancestral", "EulerAncestralDiscreteScheduler", {}),
        ("DDPM ancestral (trailing)", "DDPMScheduler",
         dict(clip_sample=False, timestep_spacing="trailing")),
    ]  # fmt: skip
    return c


class TorchGaussianEps:
    """The exact epsilon of N(0, I) data under a VP schedule, ``sigma_t x`` (``alpha^2 +
    sigma^2 = 1``): the near-free counterpart of :func:`jax_gaussian_score`."""

    def __init__(self, mixture: GaussianMixture, alphas_cumprod, torch):
        self.inner = TorchMixtureEps(mixture, alphas_cumprod, torch)
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        return self.inner.alpha_sigma(t)[1] * x


def run_diffusers(mixture, mmd, x_T, budgets, repeats, quick, *, select=None):
    """All diffusers configs at all budgets; with ``select``, only those, timed with the
    near-free Gaussian model (see :func:`run_jaxgen`)."""
    import diffusers
    import torch

    # torch with as many threads as cores (the usual setting), and with one thread: on a
    # shared machine, torch's spinning worker threads can be much slower than one thread.
    # diffusers is credited with the faster of the two.
    thread_counts = sorted({os.cpu_count() or 1, 1}, reverse=True)
    base = dict(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule="linear",
        prediction_type="epsilon",
    )
    latents = torch.tensor(np.asarray(x_T), dtype=torch.float32)
    if jax.config.jax_enable_x64:
        raise RuntimeError("run the benchmark in float32")
    rows = []
    for name, cls_name, extra in diffusers_configs(quick):
        cls = getattr(diffusers, cls_name, None)
        if cls is None:
            print(f"  diffusers {name}: {cls_name} not available, skipped")
            continue
        if select is not None and not any(name == sel for sel, _ in select):
            continue
        scheduler = cls(**base, **extra)
        model_cls = TorchMixtureEps if select is None else TorchGaussianEps
        model = model_cls(mixture, scheduler.alphas_cumprod, torch)

        def calls_of(n, scheduler=scheduler):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scheduler.set_timesteps(n)
            return len(scheduler.timesteps)

        takes_generator = "generator" in inspect.signature(scheduler.step).parameters

        def sample(n, scheduler=scheduler, model=model, takes_generator=takes_generator):
            generator = torch.Generator().manual_seed(0)
            # A pipeline draws its initial noise (as jaxgen's samplers do, inside the timed
            # call); the draw is timed, then the shared x_T is used, for paired samples.
            torch.randn(latents.shape, generator=generator)
            scheduler.set_timesteps(n)
            kwargs = {"generator": generator} if takes_generator else {}
            x = latents * scheduler.init_noise_sigma
            for t in scheduler.timesteps:
                eps = model(scheduler.scale_model_input(x, t), t)
                x = scheduler.step(eps, t, x, **kwargs).prev_sample
            return x

        for budget in budgets:
            if select is not None and (name, budget) not in select:
                continue
            n = _fit_steps(calls_of, budget)
            if n is None:
                continue
            try:
                with warnings.catch_warnings(), torch.inference_mode():
                    warnings.simplefilter("ignore")
                    model.calls = 0
                    samples = sample(n)
                    calls = model.calls
                    walls = {}
                    for threads in thread_counts:
                        torch.set_num_threads(threads)
                        # One run at the core count (always far slower on this shared
                        # machine, see the model costs), best of `repeats` at one thread.
                        walls[threads] = _best_time(
                            lambda s=sample, n=n: s(n), repeats if threads == 1 else 1
                        )
                    wall = min(walls.values())
            except Exception as err:  # a scheduler that cannot run this step count
                print(f"  diffusers {name} B={budget}: failed ({type(err).__name__}: {err})")
                continue
            assert calls == calls_of(n) <= budget, (name, calls, budget)
            rows.append(
                dict(
                    library="diffusers",
                    sampler=name,
                    budget=budget,
                    num_steps=n,
                    nfe=calls,
                    mmd2=mmd(samples.numpy()) if select is None else math.nan,
                    wall_s=wall,
                    wall_s_by_threads={str(k): v for k, v in walls.items()},
                )
            )
            print(f"  diffusers {name:43s} B={budget:2d} n={n:2d} nfe={calls:2d} "
                  f"mmd2={rows[-1]['mmd2']:.5f} wall={wall * 1e3:7.1f} ms", flush=True)  # fmt: skip
    return rows


# ----------------------------------------------------------------------------- main


def oracle_check(mixture: GaussianMixture, num: int = 256) -> dict[str, float]:
    """Both benchmark oracles against ``jaxgen.sde.mixture_score_fn`` at points
    ``x_t ~ p_t``: max of ``|eps - eps_ref| / max(1, |eps_ref|)`` over a few times (float32
    throughout). The torch one at integer DDPM steps (``alpha = sqrt(abar_t)``), the JAX one
    on the VPSDE."""
    import torch

    betas = np.linspace(BETA_START, BETA_END, NUM_TRAIN_TIMESTEPS, dtype=np.float64)
    abar = np.cumprod(1.0 - betas)
    model = TorchMixtureEps(mixture, abar, torch)
    rng = np.random.default_rng(1)
    x0 = np.asarray(mixture.sample(jax.random.key(1), num), np.float64)

    def rel(a, b):
        return float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.maximum(1.0, np.abs(b))))

    out = {"torch": 0.0, "jax": 0.0}
    for step in (0, 10, 100, 500, 999):
        a, s = math.sqrt(abar[step]), math.sqrt(1.0 - abar[step])
        x = (a * x0 + s * rng.normal(size=x0.shape)).astype(np.float32)
        eps_ref = -s * np.asarray(mixture.noised_score(jnp.asarray(x), a, s))
        out["torch"] = max(out["torch"], rel(model(torch.tensor(x), step).numpy(), eps_ref))
    sde = VPSDE()
    ours, reference = jax_mixture_score(mixture, sde), mixture_score_fn(mixture, sde)
    for t in (1e-3, 0.01, 0.1, 0.5, 1.0):
        tb = jnp.full((num,), t, jnp.float32)
        x = sde.perturb(jnp.asarray(x0, jnp.float32), tb, jnp.asarray(rng.normal(size=x0.shape),
                        jnp.float32))  # fmt: skip
        sigma = float(sde.sigma(jnp.float32(t)))
        out["jax"] = max(out["jax"], rel(sigma * ours(x, tb), sigma * reference(x, tb)))
    return out


def model_costs(
    mixture: GaussianMixture, num_samples: int, repeats: int, calls: int = 20
) -> dict[str, float]:
    """Seconds per model call at the benchmark batch, each oracle alone: ``calls`` chained
    calls of the JAX score in one jitted loop (no per-call dispatch, as inside a sampler),
    and a Python loop of the torch epsilon at each thread count; best of ``repeats``."""
    import torch

    sde = VPSDE()
    score = jax_mixture_score(mixture, sde)
    t = jnp.full((num_samples,), 0.5)

    @jax.jit
    def chained(x):
        return jax.lax.fori_loop(0, calls, lambda i, x: x + 1e-6 * score(x, t), x)

    x = jax.random.normal(jax.random.key(0), (num_samples, mixture.dim))
    chained(x).block_until_ready()
    costs = {"jax": _best_time(lambda: chained(x).block_until_ready(), repeats) / calls}
    betas = np.linspace(BETA_START, BETA_END, NUM_TRAIN_TIMESTEPS, dtype=np.float64)
    model = TorchMixtureEps(mixture, np.cumprod(1.0 - betas), torch)
    xt = torch.tensor(np.asarray(x))

    def torch_loop():
        for _ in range(calls):
            model(xt, 500)

    for threads in sorted({os.cpu_count() or 1, 1}, reverse=True):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            costs[f"torch_{threads}_threads"] = _best_time(torch_loop, repeats) / calls
    return costs


def summarize(rows: list[dict], floor: dict, costs: dict) -> list[dict]:
    """Per budget: each side's best sampler by MMD^2, the quality target (ours at most
    theirs + 2 floor-stds: differences below that are not resolved), the wall-time ratio of
    the two best samplers, and the share of each wall time that its model calls would take
    alone (nfe x the model-only cost per call; torch at its faster thread count; noisy on a
    busy machine)."""
    torch_cost = min(v for k, v in costs.items() if k.startswith("torch"))
    out = []
    for budget in sorted({r["budget"] for r in rows}):
        ours = [r for r in rows if r["budget"] == budget and r["library"] == "jaxgen"]
        theirs = [r for r in rows if r["budget"] == budget and r["library"] == "diffusers"]
        if not ours or not theirs:
            continue
        best_ours = min(ours, key=lambda r: r["mmd2"])
        best_theirs = min(theirs, key=lambda r: r["mmd2"])
        speedup = best_theirs["wall_s"] / best_ours["wall_s"]
        out.append(
            dict(
                budget=budget,
                jaxgen_best=best_ours["sampler"],
                jaxgen_nfe=best_ours["nfe"],
                jaxgen_mmd2=best_ours["mmd2"],
                diffusers_best=best_theirs["sampler"],
                diffusers_nfe=best_theirs["nfe"],
                diffusers_mmd2=best_theirs["mmd2"],
                quality_target_met=best_ours["mmd2"] <= best_theirs["mmd2"] + 2.0 * floor["std"],
                jaxgen_wall_s=best_ours["wall_s"],
                diffusers_wall_s=best_theirs["wall_s"],
                speedup=speedup,
                speedup_target_met=speedup >= 10.0,
                # the wall time the model calls alone would take (from the per-call costs)
                jaxgen_model_share=best_ours["nfe"] * costs["jax"] / best_ours["wall_s"],
                diffusers_model_share=best_theirs["nfe"] * torch_cost / best_theirs["wall_s"],
            )
        )
    return out


def markdown(results: dict) -> str:
    lines = [f"# SDE samplers vs diffusers ({results['device']}, n = {results['num_samples']})", ""]
    for name, ds in results["datasets"].items():
        fl = ds["noise_floor"]
        costs = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in ds["model_cost_per_call_s"].items())
        lines += [
            f"## {name} (D = {ds['dim']}, K = {ds['num_components']})",
            "",
            f"MMD^2 noise floor (exact vs the same exact reference set): {fl['mean']:.2e} +- "
            f"{fl['std']:.1e}. Model alone, per call: {costs}.",
            "",
            "| NFE | jaxgen best | MMD^2 | diffusers best | MMD^2 | quality | wall jaxgen | "
            "wall diffusers | speedup | sampler only: jaxgen / diffusers (speedup) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in ds["summary"]:
            lines.append(
                f"| {s['budget']} | {s['jaxgen_best']} | {s['jaxgen_mmd2']:.2e} | "
                f"{s['diffusers_best']} | {s['diffusers_mmd2']:.2e} | "
                f"{'ok' if s['quality_target_met'] else 'MISSED'} | "
                f"{s['jaxgen_wall_s'] * 1e3:.1f} ms | {s['diffusers_wall_s'] * 1e3:.1f} ms | "
                f"{s['speedup']:.1f}x{'' if s['speedup_target_met'] else ' (MISSED)'} | "
                + (
                    f"{s['jaxgen_sampler_only_s'] * 1e3:.1f} / "
                    f"{s['diffusers_sampler_only_s'] * 1e3:.1f} ms "
                    f"({s['sampler_only_speedup']:.0f}x) |"
                    if "sampler_only_speedup" in s
                    else "- |"
                )
            )
        lines += ["", "All samplers (MMD^2 at each budget):", ""]
        budgets = sorted({r["budget"] for r in ds["rows"]})
        lines.append("| library | sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |")
        lines.append("|---|---|" + "---|" * len(budgets))
        names = []
        for r in ds["rows"]:
            if (r["library"], r["sampler"]) not in names:
                names.append((r["library"], r["sampler"]))
        for lib, sampler in names:
            cells = []
            for b in budgets:
                hit = [r for r in ds["rows"] if (r["library"], r["sampler"], r["budget"]) ==
                       (lib, sampler, b)]  # fmt: skip
                cells.append(f"{hit[0]['mmd2']:.2e}" if hit else "-")
            lines.append(f"| {lib} | {sampler} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--datasets", default="grid2d,gmm16d")
    parser.add_argument("--out", default=None, help="JSON path (a .md table goes next to it)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = (
            "/tmp/sde_samplers_quick.json"
            if args.quick
            else str(ROOT / "bench" / "results" / "sde_samplers_cpu.json")
        )
    num_samples = args.num_samples or (1024 if args.quick else 8192)
    repeats = args.repeats or (1 if args.quick else 3)
    budgets = (5, 20) if args.quick else BUDGETS
    floor_reps = 3 if args.quick else 5

    import diffusers
    import torch

    datasets = make_datasets()
    results = dict(
        device=f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores",
        jax=jax.__version__,
        torch=torch.__version__,
        diffusers=diffusers.__version__,
        num_samples=num_samples,
        repeats=repeats,
        budgets=list(budgets),
        bandwidth_factors=list(BANDWIDTH_FACTORS),
        datasets={},
    )
    for name in args.datasets.split(","):
        mixture = datasets[name]
        print(f"[{name}] D={mixture.dim} K={mixture.num_components}", flush=True)
        err = oracle_check(mixture)
        print(f"  oracles vs jaxgen.sde.mixture_score_fn, max rel. eps diff: {err}")
        assert max(err.values()) < 1e-3, err
        costs = model_costs(mixture, num_samples, repeats)
        print(f"  model-only cost per call (s): {costs}", flush=True)
        exact = mixture.sample(jax.random.key(2024), num_samples)
        mmd = MMD(exact)
        null = [
            mmd(mixture.sample(jax.random.key(100 + r), num_samples)) for r in range(floor_reps)
        ]
        floor = dict(mean=float(np.mean(null)), std=float(np.std(null, ddof=1)), values=null)
        print(f"  noise floor MMD^2 {floor['mean']:.2e} +- {floor['std']:.1e}", flush=True)
        key = jax.random.key(7)
        x_T, _ = prior_and_step_keys(VPSDE(), key, (num_samples, mixture.dim), 1)
        rows = run_jaxgen(mixture, mmd, key, num_samples, budgets, repeats, args.quick)
        rows += run_diffusers(mixture, mmd, x_T, budgets, repeats, args.quick)
        summary = summarize(rows, floor, costs)
        # The best samplers again, with a near-free model: the samplers' own cost.
        print("  sampler-only timing (near-free Gaussian model):", flush=True)
        ours = {(s["jaxgen_best"], s["budget"]) for s in summary}
        theirs = {(s["diffusers_best"], s["budget"]) for s in summary}
        free = run_jaxgen(mixture, None, key, num_samples, budgets, repeats, args.quick,
                          select=ours)  # fmt: skip
        free += run_diffusers(mixture, None, x_T, budgets, repeats, args.quick, select=theirs)
        for s in summary:
            mine = [r for r in free if (r["library"], r["sampler"], r["budget"]) ==
                    ("jaxgen", s["jaxgen_best"], s["budget"])]  # fmt: skip
            other = [r for r in free if (r["library"], r["sampler"], r["budget"]) ==
                     ("diffusers", s["diffusers_best"], s["budget"])]  # fmt: skip
            if mine and other:
                s["jaxgen_sampler_only_s"] = mine[0]["wall_s"]
                s["diffusers_sampler_only_s"] = other[0]["wall_s"]
                s["sampler_only_speedup"] = other[0]["wall_s"] / mine[0]["wall_s"]
        results["datasets"][name] = dict(
            dim=mixture.dim,
            num_components=mixture.num_components,
            oracle_max_rel_diff=err,
            model_cost_per_call_s=costs,
            bandwidths=np.asarray(mmd.bandwidths).tolist(),
            noise_floor=floor,
            rows=rows,
            summary=summary,
            sampler_only_rows=free,
        )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    table = markdown(results)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return results


if __name__ == "__main__":
    main()
