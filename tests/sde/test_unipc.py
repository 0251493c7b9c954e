"""UniPC (Zhao et al. 2023): the coefficients against the Taylor-matching conditions of the
paper's Theorem 3.1 (exact for polynomial data predictions), the convergence orders on a
Gaussian whose probability-flow ODE has a closed-form solution, exact model-call counts and
option checks. Negative controls: the predictor alone (UniP) has one order less; the
one-difference coefficient 1/2 is not exact for a quadratic."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.distributions import GaussianMixture
from jaxgen.sde import VPSDE, mixture_score_fn
from jaxgen.sde.samplers.euler_maruyama import prior_and_step_keys
from jaxgen.sde.samplers.unipc import unipc_coefficients, unipc_sample
from jaxgen.sde.sdes import SDE

MU, STD = 0.7, 0.3
ORDER_STEPS = (40, 80)
_coefficients = jax.jit(unipc_coefficients, static_argnames="variant")


def gaussian_score(sde: SDE, mean: float, std: float):
    """The exact score of N(mean, std^2) data under ``sde``, ``-(x - alpha mean) / (alpha^2
    std^2 + sigma^2)`` (cheaper to compile than the mixture oracle's eigendecomposition)."""

    def score(x, t):
        alpha, sigma = sde.alpha(t)[:, None], sde.sigma(t)[:, None]
        return -(x - alpha * mean) / (jnp.square(alpha * std) + jnp.square(sigma))

    return score


def test_gaussian_score_is_the_mixture_oracle():
    sde, x, t = VPSDE(), jnp.array([[0.1], [-2.0]]), jnp.array([0.3, 0.9])
    mixture = GaussianMixture.isotropic(jnp.array([1.0]), jnp.array([[MU]]), STD)
    np.testing.assert_allclose(
        gaussian_score(sde, MU, STD)(x, t), mixture_score_fn(mixture, sde)(x, t), rtol=1e-5
    )


def _exact_integral(c, h):
    """``int_0^h e^{-(h - u)} (c0 + c1 u + c2 u^2) du`` in closed form."""
    i0 = 1 - np.exp(-h)
    i1 = h - 1 + np.exp(-h)
    i2 = h * h - 2 * i1
    return i0 * c[0] + i1 * c[1] + i2 * c[2]


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_coefficients_integrate_polynomial_data_predictions_exactly(variant, x64):
    """With K differences the update ``(1 - e^-h) x0(0) + B(h) sum a_m D_m / r_m`` equals the
    exact integral for a polynomial ``x0(u)`` of degree K (Theorem 3.1's matching
    conditions), for any node ratios ``r`` (predictor: r < 0; corrector: last r = 1)."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        h = float(rng.uniform(0.01, 1.5))
        c = rng.normal(size=3)
        for r in (np.array([-0.7, -1.9, 0.0]), np.array([-1.3, 1.0, 0.0]), np.array([-1, -2, 1.0])):
            num = 2 if r[2] == 0.0 else 3  # K >= 2 differences: exact for a quadratic

            def x0(u, cc=c):
                return cc[0] + cc[1] * u + cc[2] * u * u

            coef = np.asarray(
                unipc_coefficients(jnp.asarray(r), jnp.asarray(h), num, variant=variant)
            )
            diffs = np.array([x0(rm * h) - x0(0.0) for rm in r[:num]])
            approx = (1 - np.exp(-h)) * x0(0.0) + np.sum(coef[:num] * diffs / r[:num])
            np.testing.assert_allclose(approx, _exact_integral(c, h), rtol=1e-9, atol=1e-12)
    # One difference: a_1 = 1/2 (the paper's choice) is exact only to O(h^2) for a quadratic:
    # the negative control, and the place where bh1 and bh2 differ.
    h, c = 0.8, np.array([0.3, -1.0, 2.0])
    coef = np.asarray(
        unipc_coefficients(jnp.asarray([1.0, 0, 0]), jnp.asarray(h), 1, variant=variant)
    )
    approx = (1 - np.exp(-h)) * c[0] + coef[0] * (c[1] + c[2])
    assert abs(approx - _exact_integral(c, h)) > 1e-3
    b = h if variant == "bh1" else 1 - np.exp(-h)
    np.testing.assert_allclose(coef[0], 0.5 * b)


# (order, variant, corrector): bh1 = bh2 for order 3 (two or more differences: B cancels).
CASES = ((1, "bh1", True), (1, "bh2", True), (2, "bh1", True), (2, "bh2", True), (3, "bh2", True))
CASES += ((1, "bh2", False),)


@jax.jit
def _order_runs(key):
    sde = VPSDE()
    score = gaussian_score(sde, MU, STD)
    shape = (8, 1)
    runs = {}
    for n in ORDER_STEPS:
        for order, variant, corrector in CASES:
            runs[(order, variant if corrector else "predictor", n)] = unipc_sample(
                score, sde, key, shape, num_steps=n, order=order, variant=variant,
                corrector=corrector, lower_order_final=False,
            ).samples  # fmt: skip
    # Closed form: for N(mu, s0^2) data x~ - mu scales by sqrt(s0^2 + s^2) along the flow.
    x_t, _ = prior_and_step_keys(sde, key, shape, 1)
    big_t, t_min = jnp.asarray(sde.T), jnp.asarray(sde.t_min)
    s_big, s_min = sde.sigma_ratio(big_t), sde.sigma_ratio(t_min)
    scaled = x_t / sde.alpha(big_t)
    ratio = jnp.sqrt(STD**2 + s_min**2) / jnp.sqrt(STD**2 + s_big**2)
    exact = sde.alpha(t_min) * (MU + (scaled - MU) * ratio)
    return runs, exact


def test_convergence_orders_on_a_gaussian(x64):
    """Slope of log max-error vs log N between N = 40 and 80 (VP, float64) against the
    exact flow of N(0.7, 0.3^2) data. Measured (VP and VE alike): UniPC-1 2.11 (bh1) /
    1.99 (bh2), UniPC-2 3.07 / 2.97, UniPC-3 3.36 (bh1 = bh2); the predictor alone UniP-1
    0.98 (UniP-2 2.08). UniPC-p has order p + 1 in the bulk; for p = 3 the warm-up's first
    steps (orders 1 and 2 with their correctors) bound the asymptotic order to 3 (slope 2.5
    from 20 to 40, 3.4 from 40 to 80). Windows: [1.7, 2.5] for p = 1, [2.6, 3.5] for p = 2,
    [2.8, 4.5] for p = 3; UniP-1 falls outside the p = 1 window (negative control)."""
    runs, exact = _order_runs(jax.random.key(0))
    steps = np.log(np.array(ORDER_STEPS, float))

    def order_of(order, variant):
        errors = [float(jnp.max(jnp.abs(runs[(order, variant, n)] - exact))) for n in ORDER_STEPS]
        return -float(np.polyfit(steps, np.log(errors), 1)[0])

    fitted = {(o, v if c else "predictor"): 0.0 for o, v, c in CASES}
    fitted = {key: order_of(*key) for key in fitted}
    print("fitted orders:", {k: round(v, 2) for k, v in fitted.items()})
    for variant in ("bh1", "bh2"):
        assert 1.7 <= fitted[(1, variant)] <= 2.5
        assert 2.6 <= fitted[(2, variant)] <= 3.5
    assert 2.8 <= fitted[(3, "bh2")] <= 4.5
    assert not 1.7 <= fitted[(1, "predictor")] <= 2.5
    # The variants differ (bh1 != bh2 where a_1 = 1/2 is used), not just by rounding.
    assert abs(fitted[(1, "bh1")] - fitted[(1, "bh2")]) > 0.05


def test_nfe_counts_model_calls_and_options_are_checked():
    calls: dict[str, int] = {}

    def counting(tag):
        def score(x, t):
            jax.debug.callback(lambda: calls.__setitem__(tag, calls.get(tag, 0) + 1))
            return -x

        return score

    sde, key, shape = VPSDE(), jax.random.key(0), (3, 2)
    outs = jax.jit(
        lambda: {
            "u6": unipc_sample(counting("u6"), sde, key, shape, num_steps=6, order=3),
            "u6d": unipc_sample(counting("u6d"), sde, key, shape, num_steps=6, denoise=True),
            "u1": unipc_sample(counting("u1"), sde, key, shape, num_steps=1),
        }
    )()
    jax.effects_barrier()
    for name, expected in (("u6", 6), ("u6d", 7), ("u1", 1)):
        assert outs[name].nfe == calls[name] == expected, (name, calls)
    assert np.all(np.isfinite(np.asarray(outs["u6"].samples)))
    score = counting("unused")
    with pytest.raises(ValueError, match=r"order.*\(1, 2, 3\)"):
        unipc_sample(score, sde, key, shape, order=4)
    with pytest.raises(ValueError, match=r"variant.*bh1.*bh2"):
        unipc_sample(score, sde, key, shape, variant="bh3")
    with pytest.raises(ValueError, match="spacing"):
        unipc_sample(score, sde, key, shape, spacing="cosine")
    with pytest.raises(ValueError, match="num_steps"):
        unipc_sample(score, sde, key, shape, num_steps=0)
