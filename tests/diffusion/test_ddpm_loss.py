"""L_simple (Ho et al. eq. 14) is minimised by the exact posterior-mean prediction.

For Gaussian-mixture data the Bayes-optimal eps is known in closed form
(``eps* = -sqrt(1 - abar_t) grad log q_t``). For a constant shift ``c`` of any model output,
``loss(f + c) - loss(f) = (2 (f - target) . c + ||c||^2) / D`` per example; its expectation is
``||c||^2 / D`` exactly when ``E[target | x_t] = f``, i.e. for the optimal ``f``. The tests
compare the paired Monte Carlo mean with ``||c||^2 / D`` at a z-threshold from its standard
error, and show that a wrong reference model (a shifted mixture's eps) fails the same check.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import diffusion
from jaxgen.distributions import ddpm_eps_oracle
from tests.diffusion.mixture_oracle import MIXTURE
from tests.diffusion.stats import bonferroni_z

SHIFT = jnp.array([[0.1, -0.1]])


def _model(eps_fn, sched, prediction):
    """Turns an eps callable into one predicting ``prediction``."""

    def fn(x, t):
        eps = eps_fn(x, t)
        x0 = diffusion.x0_from_eps(sched, x, t, eps)
        return {"eps": eps, "x0": x0, "v": diffusion.v_from_x0_eps(sched, x0, t, eps)}[prediction]

    return fn


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_exact_prediction_minimises_l_simple(x64, prediction):
    sched = diffusion.linear_schedule(1000)
    n, dim = 20000, 2
    k_data, k_noise = jax.random.split(jax.random.key(0))
    x0 = MIXTURE.sample(k_data, n)
    noise = jax.random.normal(k_noise, x0.shape, jnp.float64)
    t = jnp.full((n,), 300, jnp.int32)
    # The loss sees the model only at x_t = q_sample(x0, t, noise), fixed here, so each model
    # is evaluated once (jitted) and replayed as a constant callable; this keeps the test fast.
    xt = diffusion.q_sample(sched, x0, t, noise)
    wrong_mixture = MIXTURE._replace(means=MIXTURE.means + SHIFT)

    def frozen(mixture):
        out = jax.jit(_model(ddpm_eps_oracle(mixture, sched), sched, prediction))(xt, t)
        return lambda x, tt: out

    exact, wrong = frozen(MIXTURE), frozen(wrong_mixture)

    def loss(fn):
        out, terms = diffusion.ddpm_loss_at(fn, sched, x0, t, noise, parameterization=prediction)
        np.testing.assert_array_equal(terms["t"], t)
        np.testing.assert_allclose(terms["mse"], out)
        return np.asarray(out)

    base = loss(exact)
    base_wrong = loss(wrong)
    shifts = [jnp.array([[0.1, -0.05]]), jnp.array([[0.0, 0.2]])]
    z_max = bonferroni_z(2 * len(shifts))
    for c in shifts:
        expected = float(jnp.sum(c**2)) / dim

        def shifted(fn, c=c):
            return lambda x, tt: fn(x, tt) + c

        for reference, base_loss, should_pass in ((exact, base, True), (wrong, base_wrong, False)):
            diff = loss(shifted(reference)) - base_loss
            z = (diff.mean() - expected) / (diff.std(ddof=1) / np.sqrt(n))
            print(
                f"[{prediction}] c={np.asarray(c)[0]}: loss(f + c) - loss(f) = {diff.mean():.5f} "
                f"vs |c|^2/D = {expected:.5f} (z {z:.2f}, {'exact' if should_pass else 'wrong'} f)"
            )
            assert (abs(z) < z_max) == should_pass, (prediction, c, z)
    # The exact prediction beats perturbed models by a significant paired margin.
    for perturbed in (wrong, lambda x, tt: 0.9 * exact(x, tt), shifted(exact, shifts[0])):
        diff = loss(perturbed) - base
        assert diff.mean() > z_max * diff.std(ddof=1) / np.sqrt(n)


def test_ddpm_loss_draws_uniform_t_and_matches_loss_at():
    sched = diffusion.linear_schedule(50)
    x0 = jnp.ones((4000, 3))

    def model(x, t):
        return 0.1 * x

    key = jax.random.key(3)
    loss, terms = diffusion.ddpm_loss(model, sched, x0, key)
    assert loss.shape == (4000,)
    k_t, k_noise = jax.random.split(key)
    noise = jax.random.normal(k_noise, x0.shape)
    again, _ = diffusion.ddpm_loss_at(model, sched, x0, terms["t"], noise)
    np.testing.assert_allclose(loss, again, rtol=1e-6)
    counts = np.bincount(np.asarray(terms["t"]), minlength=50)
    assert counts.min() > 0 and counts.max() < 50 * 4000 / 50  # all steps drawn, none dominant
    # Chi-square goodness of fit to U{0..49}: 49 dof, p = 1e-4 critical value ~ 95.
    chi2 = float(((counts - 80.0) ** 2 / 80.0).sum())
    assert chi2 < 95.0


def test_ddpm_loss_errors():
    sched = diffusion.linear_schedule(10)
    x0 = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match=r"parameterization must be one of .*got 'score'"):
        diffusion.ddpm_loss(lambda x, t: x, sched, x0, jax.random.key(0), parameterization="score")
    with pytest.raises(ValueError, match="output has shape"):
        diffusion.ddpm_loss(lambda x, t: x[:, :1], sched, x0, jax.random.key(0))
    with pytest.raises(ValueError, match="float"):
        diffusion.ddpm_loss(lambda x, t: x, sched, jnp.zeros((3, 2), jnp.int32), jax.random.key(0))
    with pytest.raises(ValueError, match=r"t must have shape"):
        diffusion.ddpm_loss_at(
            lambda x, t: x, sched, x0, jnp.zeros((3, 1), jnp.int32), jnp.zeros((3, 2))
        )
