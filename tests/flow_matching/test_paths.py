"""Paths: endpoints, derivatives, log-SNR inverses, the Lipman et al. conversion, the
endpoint checks, and the time samplers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import flow_matching as fm

PATHS = [
    fm.LinearPath(),
    fm.LinearPath(sigma_min=1e-2),
    fm.CosinePath(),
    fm.VPPath(),
    fm.CustomPath(lambda t: (1.0 - t) ** 2, lambda t: 1.0 - (1.0 - t) ** 2),
]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: type(p).__name__)
def test_path_coefficients(x64, path):
    t = jnp.linspace(0.05, 0.95, 7)
    # Derivatives against central differences.
    h = 1e-6
    for f, df in ((path.alpha, path.alpha_dot), (path.sigma, path.sigma_dot)):
        fd = (f(t + h) - f(t - h)) / (2 * h)
        np.testing.assert_allclose(df(t), fd, rtol=1e-6, atol=1e-8)
    # log-SNR decreasing, and its inverse.
    lam = path.log_snr(t)
    assert np.all(np.diff(np.asarray(lam)) < 0)
    np.testing.assert_allclose(lam, 2 * jnp.log(path.alpha(t) / path.sigma(t)), rtol=1e-10)
    np.testing.assert_allclose(path.t_from_log_snr(lam), t, atol=1e-9)
    # Ends: data at 0, pure source at 1.
    ends = jnp.array([0.0, 1.0])
    np.testing.assert_allclose(path.alpha(ends), [1.0, 0.0], atol=path.endpoint_atol)
    np.testing.assert_allclose(path.sigma(ends), [path.sigma_min, 1.0], atol=path.endpoint_atol)


def test_linear_path_is_lipman_eq_20_on_the_reversed_clock(x64):
    """Lipman et al. (eq. 20-23): mu_s = s x1, sigma_s = 1 - (1 - sigma_min) s, target
    u_s = x1 - (1 - sigma_min) x0 with x0 the source, x1 the data and s = 1 - t; our velocity
    is minus theirs."""
    smin = 0.05
    path = fm.LinearPath(sigma_min=smin)
    key1, key2 = jax.random.split(jax.random.key(0))
    data, source = jax.random.normal(key1, (5, 3)), jax.random.normal(key2, (5, 3))
    t = jnp.linspace(0.0, 1.0, 5)
    s = 1.0 - t
    theirs_x = s[:, None] * data + (1 - (1 - smin) * s)[:, None] * source
    theirs_u = data - (1 - smin) * source
    np.testing.assert_allclose(path.interpolate(data, source, t), theirs_x, atol=1e-12)
    np.testing.assert_allclose(path.target_velocity(data, source, t), -theirs_u, atol=1e-12)
    x_t, target = fm.flow_matching_target(path, data, source, t)
    np.testing.assert_allclose(target, -theirs_u, atol=1e-12)


def test_paths_that_miss_their_ends_are_refused():
    with pytest.raises(ValueError, match=r"alpha\(1\) = 0.*got alpha\(1\) = 0.5"):
        fm.CustomPath(lambda t: 1.0 - 0.5 * t, lambda t: t)
    with pytest.raises(ValueError, match=r"alpha\(0\) = 1.*got alpha\(0\) = 2"):
        fm.CustomPath(lambda t: 2.0 * (1.0 - t), lambda t: t)
    with pytest.raises(ValueError, match=r"sigma\(0\) = sigma_min = 0.*got .*sigma\(0\) = 0.1"):
        fm.CustomPath(lambda t: 1.0 - t, lambda t: 0.1 + 0.9 * t)
    with pytest.raises(ValueError, match=r"sigma\(1\) = 0.5"):
        fm.CustomPath(lambda t: 1.0 - t, lambda t: 0.5 * t)
    with pytest.raises(ValueError, match=r"VPPath.*alpha\(1\) = 0.75"):
        fm.VPPath(beta_min=0.1, beta_max=1.0)
    with pytest.raises(ValueError, match=r"sigma_min must be a finite number in \[0, 1\)"):
        fm.LinearPath(sigma_min=1.0)
    with pytest.raises(ValueError, match="path must be one of"):
        fm.make_path("ot")
    # the same check accepts a path that reaches both ends (negative control)
    fm.CustomPath(lambda t: 1.0 - t, lambda t: 0.1 + 0.9 * t, sigma_min=0.1)


def test_time_samplers(x64):
    n = 20000
    t_u = fm.sample_time(jax.random.key(1), n, sampler="uniform", t_min=0.2, t_max=0.6)
    assert 0.2 <= float(t_u.min()) and float(t_u.max()) <= 0.6
    assert abs(float(t_u.mean()) - 0.4) < 4.5 * 0.4 / np.sqrt(12 * n)
    t_ln = fm.sample_time(jax.random.key(2), n, sampler="logit_normal", loc=0.5, scale=0.8)
    logits = np.log(np.asarray(t_ln) / (1 - np.asarray(t_ln)))
    assert abs(logits.mean() - 0.5) < 4.5 * 0.8 / np.sqrt(n)
    assert abs(logits.std() - 0.8) < 4.5 * 0.8 / np.sqrt(2 * n)
    with pytest.raises(ValueError, match="time_sampler must be one of"):
        fm.sample_time(jax.random.key(0), 4, sampler="beta")
    with pytest.raises(ValueError, match="t_min < t_max"):
        fm.sample_time(jax.random.key(0), 4, t_min=0.5, t_max=0.5)


def test_paths_are_pytrees():
    t = jnp.array([0.25, 0.5])
    for path in (fm.LinearPath(sigma_min=0.1), fm.VPPath(), PATHS[-1]):
        leaves, treedef = jax.tree.flatten(path)
        again = jax.tree.unflatten(treedef, leaves)
        got = jax.jit(lambda p, tt: p.coefficients(tt))(path, t)
        np.testing.assert_allclose(jnp.stack(got), jnp.stack(again.coefficients(t)), rtol=1e-6)
    # a leaf is a hyperparameter: differentiable
    grad = jax.grad(lambda p: p.sigma(0.5))(fm.LinearPath(sigma_min=0.1))
    np.testing.assert_allclose(grad.sigma_min, 0.5)
