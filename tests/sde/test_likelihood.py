"""Probability-flow ODE likelihood (Song et al. 2021, Sec. 4.3): exact log-densities of
Gaussian-mixture data under VP / sub-VP / VE, unbiased Hutchinson divergences, the
dequantisation bound against exact discrete probabilities, sharding, nfe and warnings.

The oracle: with the exact mixture score the ODE computes ``log p_{t_min}`` of the noised
mixture, which :func:`jaxgen.sde.mixture_log_prob_fn` gives in closed form. Two error sources
are separated: the solver's (checked with the exact ``log p_T`` at the returned latent ``z``)
and the prior mismatch ``log p_T(z) - log N(z; 0, prior_std^2 I)`` of the method itself.
"""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from scipy.stats import f as f_dist

from jaxgen.distributions import GaussianMixture
from jaxgen.sde import VESDE, VPSDE, SubVPSDE, likelihood, mixture_log_prob_fn, mixture_score_fn
from tests.diffusion.mixture_oracle import MIXTURE
from tests.diffusion.stats import bonferroni_z

T_MIN = likelihood.LIKELIHOOD_T_MIN
SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE()}
LN2 = math.log(2.0)


def _mixture_8d(dtype=jnp.float64) -> GaussianMixture:
    """Three components in D = 8 with full (correlated) covariances."""
    rng = np.random.default_rng(0)
    means = rng.uniform(-0.6, 0.6, size=(3, 8))
    a = rng.normal(size=(3, 8, 8))
    cov = 0.02 * np.einsum("kij,klj->kil", a, a) / 8 + 0.01 * np.eye(8)[None]
    return GaussianMixture(
        jnp.asarray([0.5, 0.3, 0.2], dtype), jnp.asarray(means, dtype), jnp.asarray(cov, dtype)
    )


def _as(mixture: GaussianMixture, dtype) -> GaussianMixture:
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), mixture)


def _shifted(mixture: GaussianMixture, by: float = 0.1) -> GaussianMixture:
    return mixture._replace(means=mixture.means + by)


@functools.partial(jax.jit, static_argnames=("divergence",))
def _log_likelihood(sde, mixture, x, key, *, divergence):
    # SDE and mixture are traced: the true and the shifted (wrong) model share a compilation.
    score_fn = mixture_score_fn(mixture, sde)
    return likelihood.log_likelihood(score_fn, sde, x, key, divergence=divergence)


@jax.jit
def _exact_log_p(sde, mixture, x, t):
    return mixture_log_prob_fn(mixture, sde)(x, jnp.full((x.shape[0],), t, x.dtype))


def _bpd(nats, dim):
    return np.asarray(nats) / (dim * LN2)


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("dim", [2, 8])
@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_exact_divergence_matches_exact_log_density(x64, name, dim):
    """ODE log-likelihood with exact divergence vs the closed-form log p_{t_min}."""
    sde = SDES[name]
    mixture = _as(MIXTURE, jnp.float64) if dim == 2 else _mixture_8d()
    x = mixture.sample(jax.random.key(11), 64 if dim == 2 else 128)  # shapes shared below
    log_p, terms = _log_likelihood(sde, mixture, x, None, divergence="exact")
    exact = _exact_log_p(sde, mixture, x, T_MIN)
    # The ODE part alone: exact log p_T at the latent plus the divergence integral.
    exact_prior = _exact_log_p(sde, mixture, terms["z"], sde.T)
    solver_err = np.max(np.abs(np.asarray(exact_prior + terms["delta_log_p"] - exact)))
    total_err = np.max(_bpd(np.abs(log_p - exact), dim))
    # Negative control: the score of a shifted mixture.
    wrong, wrong_terms = _log_likelihood(sde, _shifted(mixture), x, None, divergence="exact")
    wrong_err = np.median(_bpd(np.abs(wrong - exact), dim))
    wrong_prior = _exact_log_p(sde, mixture, wrong_terms["z"], sde.T)
    wrong_solver = np.median(np.abs(np.asarray(wrong_prior + wrong_terms["delta_log_p"] - exact)))
    nfe = np.asarray(terms["nfe"])
    print(
        f"{name} D={dim}: max |err| {total_err:.2e} bits/dim (solver part {solver_err:.1e} nats); "
        f"wrong score median {wrong_err:.3f} bits/dim ({wrong_solver:.2f} nats); "
        f"nfe {nfe.min()}..{nfe.max()}"
    )
    assert bool(np.all(terms["success"]))
    assert solver_err < 1e-3 < wrong_solver
    assert total_err < 0.01 < wrong_err
    np.testing.assert_array_equal(nfe, 1 + 6 * np.asarray(terms["num_steps"]))
    np.testing.assert_allclose(log_p, terms["prior_log_p"] + terms["delta_log_p"], rtol=1e-12)


def test_float32_with_default_tolerances():
    """The common case: float32 data and the default rtol = atol = 1e-5 (VP, 2-D mixture)."""
    sde = SDES["vp"]
    x = MIXTURE.sample(jax.random.key(11), 64)
    log_p, terms = _log_likelihood(sde, MIXTURE, x, None, divergence="exact")
    assert log_p.dtype == jnp.float32
    exact = _exact_log_p(sde, MIXTURE, x, T_MIN)
    solver_err = float(
        jnp.max(jnp.abs(_exact_log_p(sde, MIXTURE, terms["z"], 1.0) + terms["delta_log_p"] - exact))
    )
    total_err = float(np.max(_bpd(np.abs(log_p - exact), 2)))
    wrong, _ = _log_likelihood(sde, _shifted(MIXTURE), x, None, divergence="exact")
    wrong_err = float(np.median(_bpd(np.abs(wrong - exact), 2)))
    print(f"float32: max |err| {total_err:.1e} bits/dim, solver part {solver_err:.1e} nats")
    assert solver_err < 1e-3
    assert total_err < 0.01 < wrong_err


# --------------------------------------------------------------------------- Hutchinson


def test_hutchinson_estimates_are_unbiased_and_rademacher_has_lower_variance(x64):
    """VP, D = 8 mixture with correlated covariances: 2 points x 64 independent probe draws
    (one per row, so one call). The probe is fixed over each solve, so an estimate is
    ``eps^T M eps`` with ``M`` the integrated Jacobian: unbiased, with variance
    ``2 sum_{i != j} M_ij^2`` (Rademacher) vs ``2 sum_{i, j} M_ij^2`` (Gaussian)."""
    sde, mixture = SDES["vp"], _mixture_8d()
    points, reps = 2, 64
    x = jnp.repeat(mixture.sample(jax.random.key(3), points), reps, axis=0)  # (128, 8)
    exact, _ = _log_likelihood(sde, mixture, x, None, divergence="exact")
    exact = np.asarray(exact).reshape(points, reps)[:, 0]
    # Negative control target: the exact value under a mixture shifted by 0.3 (~16 nats
    # away, > 10 standard errors even for the Gaussian probes).
    wrong, _ = _log_likelihood(sde, _shifted(mixture, 0.3), x, None, divergence="exact")
    wrong = np.asarray(wrong).reshape(points, reps)[:, 0]
    estimates = {}
    for name, key in (("rademacher", 1), ("gaussian", 2), ("gaussian_again", 3)):
        divergence = name.removesuffix("_again")
        est, _ = _log_likelihood(sde, mixture, x, jax.random.key(key), divergence=divergence)
        estimates[name] = np.asarray(est).reshape(points, reps)

    z_max = bonferroni_z(2 * points)
    for name in ("rademacher", "gaussian"):
        est = estimates[name]
        se = est.std(axis=1, ddof=1) / math.sqrt(reps)
        z = (est.mean(axis=1) - exact) / se
        z_wrong = (est.mean(axis=1) - wrong) / se  # negative control: a different target
        print(f"{name}: std {est.std(axis=1, ddof=1)}, z vs exact {z}, z vs wrong {z_wrong}")
        assert np.all(np.abs(z) < z_max)
        assert np.all(np.abs(z_wrong) > z_max)

    # Variance: one-sided F-test per point at level 1e-4 / points; exact for Gaussian
    # estimates, and the quadratic forms here are close to that (chi-square-like tails make
    # the F statistic's spread larger, so the margin we see is what matters).
    f_crit = f_dist.isf(1e-4 / points, reps - 1, reps - 1)
    var = {k: v.var(axis=1, ddof=1) for k, v in estimates.items()}
    ratio = var["gaussian"] / var["rademacher"]
    control = var["gaussian"] / var["gaussian_again"]
    print(f"Var(gauss)/Var(rad) {ratio}, Var(gauss)/Var(gauss') {control}, F crit {f_crit:.2f}")
    assert np.all(ratio > f_crit)
    # Negative control: two Gaussian runs with different keys show no such reduction.
    assert not np.any(control > f_crit)


# --------------------------------------------------------------------------- dequantisation

NUM_LEVELS = 256
WIDTH = 2.0 / (NUM_LEVELS - 1)


@jax.jit
def _bits_per_dim(sde, mixture, x, key):
    score_fn = mixture_score_fn(mixture, sde)
    return likelihood.bits_per_dim(score_fn, sde, x, key, num_levels=NUM_LEVELS, divergence="exact")


def _exact_bin_log_prob(sde, mixture, points, num_nodes=40):
    """``log int_{bin} p_{t_min}(y) dy`` over the square bins of side ``WIDTH`` centred at
    ``points (N, 2)``: tensor Gauss-Legendre quadrature of the exact density."""
    nodes, weights = np.polynomial.legendre.leggauss(num_nodes)
    offsets = 0.5 * WIDTH * nodes
    grid = np.stack(np.meshgrid(offsets, offsets, indexing="ij"), -1).reshape(-1, 2)
    log_w2 = np.log(np.outer(weights, weights).reshape(-1) * (0.5 * WIDTH) ** 2)
    y = (np.asarray(points)[:, None, :] + grid[None]).reshape(-1, 2)
    log_p = np.asarray(_exact_log_p(sde, mixture, jnp.asarray(y), T_MIN))
    log_p = log_p.reshape(len(points), -1) + log_w2[None]
    top = log_p.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(log_p - top).sum(axis=1, keepdims=True)))[:, 0]


DEQ_MEANS = np.round((np.array([[-0.5, -0.3], [0.4, -0.2], [0.0, 0.5]]) + 1) * 127.5) / 127.5 - 1
DEQ_WEIGHTS = np.array([0.5, 0.3, 0.2])


def _to_grid(x):
    k = np.clip(np.round((np.asarray(x) + 1.0) * (NUM_LEVELS - 1) / 2.0), 0, NUM_LEVELS - 1)
    return 2.0 * k / (NUM_LEVELS - 1) - 1.0


def _grid_points(mixture, key, n):
    """The component means (on the grid) first, then other occupied grid points."""
    modes = np.asarray(mixture.means)
    others = np.unique(_to_grid(mixture.sample(key, 4 * n)), axis=0)
    others = others[~np.any(np.all(np.isclose(others[:, None], modes[None]), -1), -1)]
    return np.concatenate([modes, others[: n - len(modes)]])


def test_dequantized_bound_vs_exact_discrete_probability(x64):
    """E_u[log p(x + w(u - 1/2))] + D log w <= log P(bin(x)) (Jensen), checked per grid
    point against quadrature of the exact density over the bin, with 8-bit data (L = 256
    levels, w = 2 / 255) in 2-D:

    * wide mixture (std 0.35 >> w): the gap is ~ (w / std)^2 / 24 per dim (~1e-5
      nats), so the bound must match the exact bits/dim within 0.01;
    * narrow mixture (std 0.003 < w): the bound still holds, with gaps up to ~1 bit/dim
      in the tails, where log p varies strongly across a bin.

    The prior mismatch of the method (a few 1e-3 nats) is removed with the exact
    ``log p_T(z)`` so that only dequantisation is compared. A second negative control: the
    density at the grid point itself plus D log w (no dequantisation) exceeds log P, i.e.
    violates the bound direction checked here (at the narrow mixture's modes).
    """
    sde, dim, reps, n = SDES["vp"], 2, 32, 8
    means, weights = DEQ_MEANS, DEQ_WEIGHTS
    z_max = bonferroni_z(2 * n)
    for label, std in (("wide", 0.35), ("narrow", 0.003)):
        mixture = GaussianMixture.isotropic(weights, means, std)
        points = _grid_points(mixture, jax.random.key(4), n)
        x = jnp.asarray(np.repeat(points, reps, axis=0))
        bpd, terms = _bits_per_dim(sde, mixture, x, jax.random.key(5))
        offset = dim * math.log(WIDTH)
        assert terms["offset"].shape == (x.shape[0],)  # per example, like every term
        np.testing.assert_allclose(terms["offset"], offset, rtol=1e-12)
        assert likelihood.dequantization_offset(NUM_LEVELS, dim) == pytest.approx(offset)
        np.testing.assert_allclose(bpd, -(terms["log_p"] + offset) / (dim * LN2), rtol=1e-12)
        assert float(jnp.max(jnp.abs(terms["z"] - x))) > 1.0  # dequantised, solved inputs
        exact_prior = _exact_log_p(sde, mixture, terms["z"], sde.T)
        log_p = terms["log_p"] - terms["prior_log_p"] + exact_prior
        bound = np.asarray(-(log_p + offset) / (dim * LN2)).reshape(n, reps)
        exact_bpd = -_exact_bin_log_prob(sde, mixture, points) / (dim * LN2)
        gap = bound.mean(axis=1) - exact_bpd
        se = bound.std(axis=1, ddof=1) / math.sqrt(reps)
        undeq = -(np.asarray(_exact_log_p(sde, mixture, jnp.asarray(points), T_MIN)) + offset)
        undeq_gap = undeq / (dim * LN2) - exact_bpd
        print(
            f"{label}: gap (bound - exact) bits/dim {np.round(gap, 4)} (se max {se.max():.1e}); "
            f"no dequantisation {np.round(undeq_gap, 3)}"
        )
        solver_slack = 1e-3 / (dim * LN2)
        assert np.all(gap > -z_max * se - solver_slack)  # the bound holds
        if label == "wide":
            assert np.all(np.abs(gap) < 0.01)  # and is tight
            # Negative control for the offset: the half-width convention w = 1 / (L - 1)
            # shifts every value by exactly 1 bit/dim, which the tightness check rejects.
            assert np.all(np.abs(gap + math.log(2.0) * dim / (dim * LN2)) > 0.01)
        else:
            # At the modes (the first three points, bins centred on the peaks) the density
            # at the grid point without dequantisation overestimates log P (midpoint rule on
            # a peak): it violates the bound that the check above enforces.
            assert np.all(undeq_gap[: len(means)] < -0.1)


# --------------------------------------------------------------------------- sharding


def _on_mesh(x):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    return jax.device_put(x, NamedSharding(mesh, P("data")))


def test_sharded_batch_matches_single_device_and_examples_are_independent(x64):
    """The batch sharded over the 8 CPU devices under jit gives the single-device numbers:
    dequantised bits/dim of 256 2-D points (uniform noise drawn inside jit) and Rademacher
    estimates for 128 8-D points (probes drawn inside jit). The jitted functions are the ones
    of the tests above, so only the sharded variants compile here.

    Float64: the per-device batch shape changes the vectorised code and hence rounding, and
    an adaptive controller can turn a rounding difference into a different accept/reject
    decision. In float32 that was seen for 1 of 16 examples (one extra step, a 1e-6 relative
    change); in float64 the margins are ~1e-16 and the results agree to about 1e-12 (the
    suite's unoptimized XLA code rounds differently from optimized code: 1.4e-12 was seen)."""
    sde = SDES["vp"]
    mixture = GaussianMixture.isotropic(DEQ_WEIGHTS, DEQ_MEANS, 0.35)
    x = jnp.asarray(_to_grid(mixture.sample(jax.random.key(7), 256)))
    key = jax.random.key(8)
    single, terms = _bits_per_dim(sde, mixture, x, key)
    sharded, sharded_terms = _bits_per_dim(sde, mixture, _on_mesh(x), key)
    assert len(sharded.sharding.device_set) == 8
    diff = float(jnp.max(jnp.abs(sharded - single)))
    np.testing.assert_allclose(sharded, single, rtol=1e-11)
    np.testing.assert_array_equal(sharded_terms["nfe"], terms["nfe"])
    assert np.all(np.isfinite(single)) and np.all(np.asarray(terms["success"]))
    # Negative control: another key (other dequantisation noise) moves the values far more
    # than the tolerance.
    other, _ = _bits_per_dim(sde, mixture, _on_mesh(x), jax.random.key(9))
    assert float(jnp.max(jnp.abs(other - single))) > 1e-3

    mixture8 = _mixture_8d()
    x8 = jnp.repeat(mixture8.sample(jax.random.key(3), 2), 64, axis=0)
    est, _ = _log_likelihood(sde, mixture8, x8, jax.random.key(1), divergence="rademacher")
    est_sharded, _ = _log_likelihood(
        sde, mixture8, _on_mesh(x8), jax.random.key(1), divergence="rademacher"
    )
    diff8 = float(jnp.max(jnp.abs(est_sharded - est)))
    print(f"sharded vs one device: max |diff| {diff:.1e} bits/dim, {diff8:.1e} nats (8-D)")
    np.testing.assert_allclose(est_sharded, est, rtol=1e-11)

    # Per-example solves: example 0's result does not depend on the rest of the batch, even
    # when all the others are replaced by points that take other step sequences.
    x_other = x.at[1:].set(jnp.full((255, 2), 0.99))
    alone, alone_terms = _bits_per_dim(sde, mixture, x_other, key)
    nfe_max, nfe_other_max = int(terms["nfe"].max()), int(alone_terms["nfe"].max())
    print(f"max nfe in the batch {nfe_max}, with the other points {nfe_other_max}")
    assert nfe_other_max != nfe_max  # the batched loop really ran for another number of steps
    np.testing.assert_array_equal(alone[0], single[0])
    np.testing.assert_array_equal(alone_terms["nfe"][0], terms["nfe"][0])


# --------------------------------------------------------------------------- nfe


_CALLS = []


def _count(_):
    _CALLS.append(1)


def _gaussian_log_p(x, var):
    return -0.5 * jnp.sum(x**2, axis=-1) / var - 0.5 * x.shape[-1] * jnp.log(2 * jnp.pi * var)


@functools.partial(jax.jit, static_argnames=("solver",))
def _gaussian_data_log_likelihood(x, data_std, *, solver):
    """Data N(0, data_std^2 I) under VP: p_t = N(0, v(t) I), v = alpha^2 data_std^2 + sigma^2,
    score -x / v(t); the score counts its calls."""
    sde = VPSDE()

    def score_fn(x, t):
        jax.debug.callback(_count, t)
        var = jnp.square(sde.alpha(t) * data_std) + jnp.square(sde.sigma(t))
        return -x / var[:, None]

    return likelihood.log_likelihood(score_fn, sde, x, None, divergence="exact", solver=solver)


@pytest.mark.parametrize("solver,stages", [("tsit5", 7), ("bosh3", 4)])
def test_nfe_counts_score_evaluations(x64, solver, stages):
    """One example, so the vmapped solve runs exactly that example's steps: a counter in
    the score equals the reported nfe = 1 + (stages - 1) * num_steps (FSAL, rejected steps
    included). Gaussian data also give a closed-form log p_{t_min}."""
    sde, std = VPSDE(), 0.2
    x = jnp.asarray([[0.3, -0.2, 0.1]])
    _CALLS.clear()
    log_p, terms = _gaussian_data_log_likelihood(x, std, solver=solver)
    jax.block_until_ready(log_p)
    jax.effects_barrier()
    counted = len(_CALLS)
    nfe, steps = int(terms["nfe"][0]), int(terms["num_steps"][0])

    def var(t):
        return float(sde.alpha(t) * std) ** 2 + float(sde.sigma(t)) ** 2

    exact = float(_gaussian_log_p(x, var(T_MIN))[0])
    solver_part = float(_gaussian_log_p(terms["z"], var(1.0))[0] + terms["delta_log_p"][0])
    wrong = _gaussian_data_log_likelihood(x, 0.25, solver=solver)[1]  # negative control
    wrong_part = float(_gaussian_log_p(wrong["z"], var(1.0))[0] + wrong["delta_log_p"][0])
    print(
        f"{solver}: counted {counted}, nfe {nfe}, attempted steps {steps}, "
        f"solver error {solver_part - exact:.1e}, total {float(log_p[0]) - exact:.1e}"
    )
    assert counted == nfe == 1 + (stages - 1) * steps
    assert abs(solver_part - exact) < 1e-4 < abs(wrong_part - exact)


@jax.jit
def _gaussian_image_log_likelihood(x, data_std, key):
    """Gaussian data with a (2, 3) event and Rademacher probes, 3 per example."""
    sde = VPSDE()

    def score_fn(y, t):
        var = jnp.square(sde.alpha(t) * data_std) + jnp.square(sde.sigma(t))
        return -y / var.reshape((-1,) + (1,) * (y.ndim - 1))

    return likelihood.log_likelihood(score_fn, sde, x, key, num_probes=3)


def test_multiple_probes_and_multi_dimensional_events(x64):
    """For N(0, s^2 I) data the Jacobian of v is a multiple of I, so every Rademacher probe
    gives the exact trace: with 3 probes per example and (2, 3) events the estimate equals
    the closed-form log p_{t_min} up to the solver error."""
    sde, std = VPSDE(), 0.2
    x = 0.2 * jax.random.normal(jax.random.key(0), (4, 2, 3))
    log_p, terms = _gaussian_image_log_likelihood(x, std, jax.random.key(1))
    assert log_p.shape == (4,) and terms["z"].shape == x.shape

    def log_normal(y, t):
        var = float(sde.alpha(t) * std) ** 2 + float(sde.sigma(t)) ** 2
        flat = np.asarray(y).reshape(y.shape[0], -1)
        return -0.5 * np.sum(flat**2, axis=1) / var - 0.5 * flat.shape[1] * np.log(2 * np.pi * var)

    err = np.abs(
        log_normal(terms["z"], 1.0) + np.asarray(terms["delta_log_p"]) - log_normal(x, T_MIN)
    )
    wrong = _gaussian_image_log_likelihood(x, 0.25, jax.random.key(1))[1]  # negative control
    wrong_err = np.abs(log_normal(wrong["z"], 1.0) + wrong["delta_log_p"] - log_normal(x, T_MIN))
    print(f"3 Rademacher probes, (2, 3) events: max error {err.max():.1e} nats")
    assert err.max() < 1e-4 < wrong_err.min()


# --------------------------------------------------------------------------- warnings, errors


@jax.jit
def _continuous_bpd(x):
    return likelihood.bits_per_dim(lambda y, t: -y, VPSDE(), x, None, divergence="exact")


def _discrete_warnings(x) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jax.block_until_ready(_continuous_bpd(x))
        jax.effects_barrier()
    return [
        str(w.message) for w in caught if issubclass(w.category, likelihood.DiscreteDataWarning)
    ]


def test_discrete_data_scored_as_continuous_warn_from_inside_jit():
    rng = np.random.default_rng(0)
    eight_bit = rng.integers(0, 256, size=(8, 3)) / 127.5 - 1.0
    seventeen = rng.integers(0, 17, size=(8, 3)) / 8.0 - 1.0  # e.g. the 8x8 digits, 0..16
    continuous = np.clip(rng.normal(size=(8, 3)) * 0.4, -1, 1)
    for name, x in (("8-bit", eight_bit), ("17 levels", seventeen)):
        msgs = _discrete_warnings(jnp.asarray(x, jnp.float32))
        assert len(msgs) == 1 and "num_levels" in msgs[0], name
    assert _discrete_warnings(jnp.asarray(continuous, jnp.float32)) == []
    # Continuous data: bpd = -log p / (D ln 2); here p_t = N(0, I) exactly (score -y, VP).
    bpd, terms = _continuous_bpd(jnp.asarray(continuous, jnp.float32))
    exact = 0.5 * np.sum(continuous**2, axis=1) + 1.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(bpd, exact / (3 * LN2), rtol=1e-4)
    assert terms["offset"].shape == (8,)  # per example, like every term
    np.testing.assert_array_equal(terms["offset"], 0.0)
    # A grid finer than 256 levels is not flagged (the check's stated range).
    fine = rng.integers(0, 1024, size=(8, 3)) / 511.5 - 1.0
    assert _discrete_warnings(jnp.asarray(fine, jnp.float32)) == []


def test_discrete_density_without_dequantization_warns_at_trace_time():
    x = jax.ShapeDtypeStruct((4, 2), jnp.float32)
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)

    def bpd(x, key, dequantize):
        return likelihood.bits_per_dim(
            lambda y, t: -y, VPSDE(), x, key, num_levels=256, dequantize=dequantize
        )

    with pytest.warns(likelihood.DiscreteDataWarning, match="not a likelihood"):
        jax.eval_shape(functools.partial(bpd, dequantize=False), x, key)
    with warnings.catch_warnings():
        warnings.simplefilter("error", likelihood.DiscreteDataWarning)
        jax.eval_shape(functools.partial(bpd, dequantize=True), x, key)  # no warning


def test_bad_input_raises_clear_errors(x64):
    score = lambda y, t: -y  # noqa: E731
    sde, key, x = VPSDE(), jax.random.key(0), jnp.zeros((4, 2))
    with pytest.raises(ValueError, match=r"\(B, \*event\)"):
        likelihood.log_likelihood(score, sde, jnp.zeros(4), key)
    with pytest.raises(ValueError, match="exact.*rademacher.*gaussian"):
        likelihood.log_likelihood(score, sde, x, key, divergence="hutchinson")
    with pytest.raises(ValueError, match="tsit5"):
        likelihood.log_likelihood(score, sde, x, key, solver="euler")
    with pytest.raises(ValueError, match="num_probes"):
        likelihood.log_likelihood(score, sde, x, key, num_probes=0)
    with pytest.raises(ValueError, match="PRNG key"):
        likelihood.log_likelihood(score, sde, x, None)
    with pytest.raises(ValueError, match="t_min"):
        likelihood.log_likelihood(score, sde, x, key, t_min=1.5)
    with pytest.raises(ValueError, match="num_levels"):
        likelihood.bits_per_dim(score, sde, x, key, num_levels=1)
    with pytest.raises(ValueError, match=r"\[-1, 1\].*\[1\]"):
        likelihood.bits_per_dim(score, sde, x.at[1, 0].set(1.5), key, num_levels=256)
    # Under jit the range is checked at run time and fails the computation (the function
    # compiled for the dequantisation test, which ran in-range data: the negative control).
    mixture = GaussianMixture.isotropic(DEQ_WEIGHTS, DEQ_MEANS, 0.35)
    x_bad = jnp.zeros((256, 2)).at[3, 1].set(-1.5)
    with pytest.raises(jax.errors.JaxRuntimeError, match=r"\[-1, 1\]"):
        jax.block_until_ready(_bits_per_dim(sde, mixture, x_bad, key))
        jax.effects_barrier()
