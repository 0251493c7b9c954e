"""The flow-matching loss is minimised by the exact marginal velocity (and its x0 / eps
conversions): for a constant shift ``c`` of the model, ``loss(f + c) - loss(f) =
(2 (f - target) . c + ||c||^2) / D`` per example, whose mean is ``||c||^2 / D`` exactly when
``f = E[target | x_t]``. Checked against a paired Monte Carlo z-score, with a wrong
reference (a shifted mixture's velocity) as the failing control, as the DDPM tests do."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import flow_matching as fm
from tests.diffusion.stats import bonferroni_z
from tests.flow_matching.oracle import MIXTURE, WRONG

CASES = [
    ("linear", "velocity", "uniform"),
    ("cosine", "x0", "logit_normal"),
    ("linear_smin", "eps", "uniform"),
]
PATHS = {
    "linear": fm.LinearPath(),
    "cosine": fm.CosinePath(),
    "linear_smin": fm.LinearPath(sigma_min=0.05),
}


@pytest.mark.parametrize("path_name,parameterization,time_sampler", CASES)
def test_exact_velocity_minimises_the_loss(x64, path_name, parameterization, time_sampler):
    path = PATHS[path_name]
    n, dim = 20000, 2
    key_data, key_loss = jax.random.split(jax.random.key(0))
    x_data = MIXTURE.sample(key_data, n)
    # The loss sees the model only at the (x_t, t) it draws; evaluate each model there once.
    _, terms = fm.flow_matching_loss(
        lambda x, t: x, path, x_data, key_loss, time_sampler=time_sampler
    )
    key_t, key_source = jax.random.split(key_loss)
    source = jax.random.normal(key_source, x_data.shape, x_data.dtype)
    x_t = path.interpolate(x_data, source, terms["t"])

    def frozen(mixture):
        u = fm.mixture_velocity_fn(mixture, path)
        model = fm.convert_model(u, path, source="velocity", target=parameterization)
        out = jax.jit(model)(x_t, terms["t"])
        return lambda x, t: out

    def loss(fn):
        out, _ = fm.flow_matching_loss(
            fn,
            path,
            x_data,
            key_loss,
            parameterization=parameterization,
            time_sampler=time_sampler,
        )
        return np.asarray(out)

    exact, wrong = frozen(MIXTURE), frozen(WRONG)
    base, base_wrong = loss(exact), loss(wrong)
    shift = jnp.array([[0.1, -0.05]])
    expected = float(jnp.sum(shift**2)) / dim
    z_max = bonferroni_z(2 * len(CASES))
    for reference, base_loss, should_pass in ((exact, base, True), (wrong, base_wrong, False)):
        diff = loss(lambda x, t, f=reference: f(x, t) + shift) - base_loss
        z = (diff.mean() - expected) / (diff.std(ddof=1) / np.sqrt(n))
        assert (abs(z) < z_max) == should_pass, (path_name, parameterization, z)
    # the exact field beats the wrong one by a significant paired margin
    diff = base_wrong - base
    assert diff.mean() > z_max * diff.std(ddof=1) / np.sqrt(n)


def test_loss_matches_loss_at_and_the_parameterization_targets(x64):
    path = fm.CosinePath()
    key1, key2 = jax.random.split(jax.random.key(3))
    data, source = jax.random.normal(key1, (6, 2, 3)), jax.random.normal(key2, (6, 2, 3))
    t = jnp.linspace(0.0, 1.0, 6)
    a, s, da, ds = (c[:, None, None] for c in path.coefficients(t))
    expected = {
        "velocity": da * data + ds * source,
        "x0": data,
        "eps": source,
        "v": a * source - s * data,
    }
    for name, target in expected.items():
        x_t, got = fm.flow_matching_target(path, data, source, t, parameterization=name)
        np.testing.assert_allclose(got, target, atol=1e-12)
        np.testing.assert_allclose(x_t, a * data + s * source, atol=1e-12)
        loss, terms = fm.flow_matching_loss_at(
            lambda x, tt: jnp.zeros_like(x), path, data, source, t, parameterization=name
        )
        np.testing.assert_allclose(loss, jnp.mean(jnp.square(target), axis=(1, 2)), rtol=1e-12)
    # the random loss is loss_at with its own draws
    loss, terms = fm.flow_matching_loss(lambda x, tt: 0.5 * x, path, data, jax.random.key(7))
    _, k_source = jax.random.split(jax.random.key(7))
    src = jax.random.normal(k_source, data.shape, data.dtype)
    again, _ = fm.flow_matching_loss_at(lambda x, tt: 0.5 * x, path, data, src, terms["t"])
    np.testing.assert_allclose(loss, again, rtol=1e-12)


def test_loss_bad_inputs():
    path, model = fm.LinearPath(), (lambda x, t: x)
    data = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match=r"same shape.*source \(4, 3\) and data \(4, 2\)"):
        fm.flow_matching_loss(model, path, data, jax.random.key(0), x_source=jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"same shape.*source \(5, 2\)"):
        fm.flow_matching_loss(model, path, data, jax.random.key(0), x_source=jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\], got values in \[0, 1.5\]"):
        fm.flow_matching_loss_at(model, path, data, data, jnp.array([0.0, 0.5, 1.0, 1.5]))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\], got values in \[-0.1"):
        fm.flow_matching_loss_at(model, path, data, data, jnp.array([-0.1, 0.5, 1.0, 0.5]))
    with pytest.raises(ValueError, match="parameterization must be one of"):
        fm.flow_matching_loss(model, path, data, jax.random.key(0), parameterization="score")
    with pytest.raises(ValueError, match=r"t_max must be a finite number in \[0, 1\]"):
        fm.flow_matching_loss(model, path, data, jax.random.key(0), t_max=1.5)
    # in range: no error (the control of the checks above)
    fm.flow_matching_loss_at(model, path, data, data, jnp.array([0.0, 0.5, 1.0, 0.5]))
