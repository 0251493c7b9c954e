"""Consistency-model maths against Gaussian closed forms (Song et al. 2023; Song & Dhariwal
2024): the exact boundary, the probability-flow step's order, the CD and CT losses' limits,
and multistep sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.distillation import (
    consistency_coefficients,
    consistency_distillation_loss,
    consistency_function,
    consistency_training_loss,
    multistep_consistency_sample,
    probability_flow_step,
)
from tests.distillation.oracle import (
    gaussian_consistency,
    gaussian_denoiser,
    gaussian_flow,
)

MU, V, SMIN = 0.5, 0.25, 0.002


def test_boundary_is_exact_even_for_a_broken_denoiser():
    x = jax.random.normal(jax.random.key(0), (4, 3)) * 7.0
    sigma = jnp.array([SMIN, 0.3, SMIN, 5.0], jnp.float32)
    for bad in (jnp.inf, -jnp.inf, jnp.nan):
        f = consistency_function(lambda x, s, bad=bad: jnp.full_like(x, bad), sigma_min=SMIN)
        for fn in (f, jax.jit(f)):
            out = np.asarray(fn(x, sigma))
            np.testing.assert_array_equal(out[[0, 2]], np.asarray(x)[[0, 2]])  # bit for bit
            assert not np.any(np.isfinite(out[[1, 3]]))  # the denoiser is used elsewhere
    c_skip, c_out = consistency_coefficients(jnp.asarray([SMIN, 1.0]), sigma_min=SMIN)
    assert c_skip[0] == 1.0 and c_out[0] == 0.0


def test_consistency_function_tends_to_the_denoiser():
    # f = a x + b D with b = 1 - sigma_min / s: at s >> sigma_data it is the one-step denoiser
    x = jnp.linspace(-3.0, 3.0, 7)[:, None]
    denoiser = gaussian_denoiser(MU, V)
    f = consistency_function(denoiser, sigma_min=SMIN)
    s = jnp.full((7,), 80.0)
    np.testing.assert_allclose(f(x, s), denoiser(x, s), atol=1e-4)


@pytest.mark.usefixtures("x64")
def test_consistency_function_is_song_et_al_parameterisation_of_an_edm_network():
    """With D = c_skip^EDM x + c_out^EDM F (EDM preconditioning of a raw network F), the
    consistency function is Song et al.'s c_skip x + c_out F (their App. C)."""
    sd = 0.5
    x = jax.random.normal(jax.random.key(1), (5, 2), jnp.float64)
    s = jnp.array([0.003, 0.05, 0.7, 3.0, 60.0])

    def raw(x, sigma):
        return jnp.sin(2.0 * x) + jnp.log(sigma)[:, None]

    def edm_denoiser(x, sigma):
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / jnp.sqrt(sigma**2 + sd**2)
        return c_skip[:, None] * x + c_out[:, None] * raw(x, sigma)

    c_skip, c_out = consistency_coefficients(s, sigma_min=SMIN, sigma_data=sd)
    want = c_skip[:, None] * x + c_out[:, None] * raw(x, s)
    got = consistency_function(edm_denoiser, sigma_min=SMIN, sigma_data=sd)(x, s)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c_out, sd * (s - SMIN) / jnp.sqrt(sd**2 + s**2), rtol=1e-14)


@pytest.mark.usefixtures("x64")
def test_probability_flow_step_orders():
    """Local error of one step from s = 1 towards 0: O(h^2) Euler, O(h^3) Heun."""
    x = jnp.linspace(-2.0, 3.0, 6)[:, None]
    denoiser = gaussian_denoiser(MU, V)
    for solver, order in (("euler", 1), ("heun", 2)):
        errors = []
        for h in (0.04, 0.02, 0.01):
            s0, s1 = jnp.full((6,), 1.0), jnp.full((6,), 1.0 - h)
            out, nfe = probability_flow_step(denoiser, x, s0, s1, solver=solver)
            assert nfe == order
            errors.append(float(jnp.max(jnp.abs(out - gaussian_flow(x, 1.0, 1.0 - h, MU, V)))))
        slopes = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
        np.testing.assert_allclose(slopes, order + 1, atol=0.15)
    # to s = 0 Heun's correction is skipped: one Euler (= DDIM) step returns D(x, s) exactly
    s0 = jnp.full((6,), 0.7)
    out, _ = probability_flow_step(denoiser, x, s0, jnp.zeros(6), solver="heun")
    np.testing.assert_allclose(out, denoiser(x, s0), rtol=1e-15)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(("solver", "rate"), [("euler", 4), ("heun", 6)])
def test_cd_loss_of_the_exact_consistency_function_vanishes_at_the_solver_rate(solver, rate):
    """With the exact f* of Gaussian data and the exact teacher, the CD loss (squared metric)
    is the squared local error of the teacher step: O(h^{2(p+1)}) for a solver of order p."""
    f_star = gaussian_consistency(MU, V, SMIN)
    x0 = MU + jnp.sqrt(V) * jax.random.normal(jax.random.key(0), (512, 2), jnp.float64)
    index = jnp.zeros(512, jnp.int32)
    means = []
    for h in (0.08, 0.04, 0.02):
        loss, terms = consistency_distillation_loss(
            f_star,
            f_star,
            gaussian_denoiser(MU, V),
            x0,
            jax.random.key(1),
            levels=jnp.array([0.5, 0.5 + h]),
            solver=solver,
            index=index,
        )
        assert terms["sigma"].shape == (512,) and np.all(terms["sigma"] == 0.5 + h)
        means.append(float(jnp.mean(loss)))
    slopes = np.log2(np.array(means[:-1]) / np.array(means[1:]))
    np.testing.assert_allclose(slopes, rate, atol=0.3)
    # negative control: a wrong consistency function keeps an O(1) loss
    wrong = gaussian_consistency(MU + 0.1, V, SMIN)
    loss, _ = consistency_distillation_loss(
        f_star,
        wrong,
        gaussian_denoiser(MU, V),
        x0,
        jax.random.key(1),
        levels=jnp.array([0.5, 0.52]),
    )
    assert float(jnp.mean(loss)) > 1e3 * means[-1]


@pytest.mark.usefixtures("x64")
def test_ct_loss_expectation_of_the_exact_consistency_function():
    """CT uses x0 + s_n z and x0 + s_{n+1} z (same z). For f*(x, s) = mu + (x - mu) a(s):
    E[L] = v (a(s') - a(s))^2 + (s' a(s') - s a(s))^2 per coordinate (squared metric)."""
    f_star = gaussian_consistency(MU, V, SMIN)
    n = 4096
    x0 = MU + jnp.sqrt(V) * jax.random.normal(jax.random.key(2), (n, 1), jnp.float64)
    s_lo, s_hi = 0.5, 0.6
    loss, terms = consistency_training_loss(
        f_star,
        f_star,
        x0,
        jax.random.key(3),
        levels=jnp.array([s_lo, s_hi]),
        metric="squared",
        weighting="inverse_gap",
    )
    np.testing.assert_allclose(terms["weight"], 1.0 / (s_hi - s_lo))

    def a(s):
        return np.sqrt((V + SMIN**2) / (V + s**2))

    expected = V * (a(s_hi) - a(s_lo)) ** 2 + (s_hi * a(s_hi) - s_lo * a(s_lo)) ** 2
    dist = np.asarray(terms["distance"])
    stderr = dist.std() / np.sqrt(n)
    assert abs(dist.mean() - expected) < 4 * stderr, (dist.mean(), expected, stderr)
    # a traced curriculum N with the lognormal index: runs under jit, indices in range
    fn = jax.jit(
        lambda num: consistency_training_loss(
            f_star, f_star, x0[:64], jax.random.key(4), num_levels=num, max_levels=32
        )
    )
    loss, terms = fn(jnp.asarray(11))
    assert loss.shape == (64,) and np.all(np.asarray(terms["index"]) <= 9)
    assert np.all(np.isfinite(np.asarray(loss)))


def test_multistep_sampling_nfe_keys_and_exact_moments():
    f_star = gaussian_consistency(MU, V, SMIN)
    sigmas = [80.0, 0.8]
    out8 = multistep_consistency_sample(
        f_star, jax.random.key(0), (8, 2), sigmas=sigmas, sigma_min=SMIN
    )
    out4 = multistep_consistency_sample(
        f_star, jax.random.key(0), (4, 2), sigmas=sigmas, sigma_min=SMIN
    )
    assert out8.nfe == 2 and out4.nfe == 2
    np.testing.assert_allclose(out8.samples[:4], out4.samples, rtol=1e-6)
    # one step: mu + (80 z - mu) a(80), exactly N(mu (1 - a), 80^2 a^2) with a = a(80);
    # two steps: f*(x1 + sqrt(s^2 - smin^2) z, s) is affine in Gaussians, moments below
    n = 4096
    a80 = np.sqrt((V + SMIN**2) / (V + 80.0**2))
    a_s = np.sqrt((V + SMIN**2) / (V + 0.8**2))
    m1, v1 = MU * (1 - a80), (80.0 * a80) ** 2
    m2, v2 = MU + (m1 - MU) * a_s, a_s**2 * (v1 + 0.8**2 - SMIN**2)
    for sig, (m, v) in (([80.0], (m1, v1)), (sigmas, (m2, v2))):
        out = multistep_consistency_sample(
            f_star, jax.random.key(1), (n, 1), sigmas=sig, sigma_min=SMIN
        )
        assert out.nfe == len(sig)
        xs = np.asarray(out.samples, np.float64).ravel()
        # 4-sigma Monte-Carlo tolerances on the mean and variance of n samples
        assert abs(xs.mean() - m) < 4 * np.sqrt(v / n)
        assert abs(xs.var() - v) < 4 * v * np.sqrt(2 / n)
        # and both are close to the data's N(mu, v + smin^2) (the prior N(0, 80^2) is not exact)
        assert abs(v - (V + SMIN**2)) < 1e-3 and abs(m - MU) < 0.01
    with pytest.raises(ValueError, match="decreasing"):
        multistep_consistency_sample(
            f_star, jax.random.key(0), (2, 1), sigmas=[0.8, 80.0], sigma_min=SMIN
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"levels": jnp.array([1.0, 0.5])}, "strictly increasing"),
        ({"levels": jnp.array([0.5])}, "at least 2"),
        ({"levels": jnp.array([0.1, 0.5]), "index": jnp.array([1, 0])}, "index must lie"),
        ({"levels": jnp.array([0.1, 0.5]), "weighting": "snr"}, "weighting must be one of"),
        ({"levels": jnp.array([0.1, 0.5]), "solver": "rk4"}, "solver must be one of"),
        ({"levels": jnp.array([0.1, 0.5]), "metric": "feature"}, "feature_fn"),
    ],
)
def test_bad_distillation_arguments_raise(kwargs, match):
    f_star = gaussian_consistency(MU, V, SMIN)
    x0 = jnp.zeros((2, 1))
    with pytest.raises(ValueError, match=match):
        consistency_distillation_loss(
            f_star, f_star, gaussian_denoiser(MU, V), x0, jax.random.key(0), **kwargs
        )


def test_bad_training_arguments_raise():
    f_star = gaussian_consistency(MU, V, SMIN)
    x0 = jnp.zeros((2, 1))
    with pytest.raises(ValueError, match="exactly one of levels or num_levels"):
        consistency_training_loss(f_star, f_star, x0, jax.random.key(0))
    with pytest.raises(ValueError, match="max_levels"):
        jax.jit(
            lambda n: consistency_training_loss(f_star, f_star, x0, jax.random.key(0), num_levels=n)
        )(jnp.asarray(11))
