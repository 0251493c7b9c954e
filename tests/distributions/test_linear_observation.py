"""LinearObservation: the posterior against brute-force joint-Gaussian conditioning (also for
r = 0 and after augmentation), the information form, the marginal of z, the noised posterior
score against autodiff of a dense log-density, Tweedie's denoiser against conditioning on
(x_t, z), sampled moments, per-example keys, the downsampling matrix, and bad input."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core.resize import downsample_mean
from jaxgen.distributions import LinearObservation, downsample_matrix
from tests.diffusion.stats import bonferroni_z, max_abs_z_mean_var

HIGH = (4, 4, 1)  # x: a 4x4x1 image, D = 16; z: its 2x2 mean-pooled version, M = 4
D, M = 16, 4


@jax.jit
def _random_prior(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A random well-conditioned prior: eigenvalues 0.2..1.5 in a random basis."""
    k_rot, k_mean = jax.random.split(key)
    rotation, _ = jnp.linalg.qr(jax.random.normal(k_rot, (D, D)))
    cov = (rotation * jnp.linspace(0.2, 1.5, D)[None, :]) @ rotation.T
    return 0.5 * jax.random.normal(k_mean, (D,)), cov


def _model(noise_std: float, scale: float = 1.0, seed: int = 0) -> LinearObservation:
    mean, cov = _random_prior(jax.random.key(seed))
    a = downsample_matrix(HIGH, 2)
    return LinearObservation.create(mean, cov, a, scale=scale, noise_std=noise_std)


@functools.partial(jax.jit, static_argnames="num")
def _posterior_parts(model: LinearObservation, key: jax.Array, num: int):
    """``z`` draws, ``p(x | z)`` and ``p(z)`` in one compiled call (eager ops compile one by
    one, which dominates the cost of small tests)."""
    z = model.sample_observation(key, num)
    return z, model.posterior(z), model.observation_marginal()


def _np(model: LinearObservation):
    return tuple(np.asarray(v, np.float64) for v in model)


def _conditional(joint_mean, joint_cov, observed_index, observed_values):
    """Brute force: condition a joint Gaussian on some coordinates (a linear solve)."""
    n = joint_mean.shape[0]
    keep = np.setdiff1d(np.arange(n), observed_index)
    c_ko = joint_cov[np.ix_(keep, observed_index)]
    c_oo = joint_cov[np.ix_(observed_index, observed_index)]
    resid = observed_values - joint_mean[observed_index][None, :]
    mean = joint_mean[keep][None, :] + np.linalg.solve(c_oo, resid.T).T @ c_ko.T
    cov = joint_cov[np.ix_(keep, keep)] - c_ko @ np.linalg.solve(c_oo, c_ko.T)
    return mean, cov


def _joint(model: LinearObservation):
    """The joint of (x, z): [[S, c S A^T], [c A S, c^2 A S A^T + r^2 I]]."""
    m, s, a, c, r = _np(model)
    cross = c * s @ a.T
    zz = c**2 * a @ s @ a.T + r**2 * np.eye(M)
    cov = np.block([[s, cross], [cross.T, zz]])
    return np.concatenate([m, c * a @ m]), cov


@pytest.mark.parametrize(("noise_std", "scale"), [(0.0, 1.0), (0.3, 1.0), (0.5, 0.7)])
def test_posterior_is_joint_gaussian_conditioning(x64, noise_std, scale):
    model = _model(noise_std, scale)
    z, (mean, cov), (z_mean, z_cov) = _posterior_parts(model, jax.random.key(1), 6)
    assert mean.shape == (6, D) and cov.shape == (D, D)
    jm, jc = _joint(model)
    ref_mean, ref_cov = _conditional(jm, jc, np.arange(D, D + M), np.asarray(z))
    assert np.max(np.abs(np.asarray(mean) - ref_mean)) < 1e-10
    assert np.max(np.abs(np.asarray(cov) - ref_cov)) < 1e-10
    # The marginal of z is the A-transformed prior: N(c A m, c^2 A S A^T + r^2 I).
    assert np.allclose(z_mean, jm[D:], atol=1e-12) and np.allclose(z_cov, jc[D:, D:], atol=1e-12)
    m, s, a, c, r = _np(model)
    if noise_std > 0:
        # Information form (Bayes' rule on densities): S_post^-1 = S^-1 + c^2/r^2 A^T A.
        precision = np.linalg.inv(s) + c**2 / r**2 * a.T @ a
        info_mean = np.linalg.solve(
            precision, np.linalg.solve(s, m)[:, None] + c / r**2 * a.T @ np.asarray(z).T
        ).T
        assert np.max(np.abs(np.linalg.inv(precision) - np.asarray(cov))) < 1e-10
        assert np.max(np.abs(info_mean - np.asarray(mean))) < 1e-10
    else:
        # r = 0: the posterior mean reproduces z exactly and the covariance is degenerate
        # along the row space of A (A S_post = 0, rank D - M).
        assert np.max(np.abs(np.asarray(mean) @ a.T - np.asarray(z))) < 1e-12
        assert np.max(np.abs(a @ np.asarray(cov))) < 1e-12
        eig = np.linalg.eigvalsh(np.asarray(cov))
        assert np.sum(eig < 1e-10) == M and np.min(eig[M:]) > 1e-3
    # Negative control: the prior (ignoring z) is not the posterior.
    assert np.max(np.abs(np.asarray(cov) - s)) > 0.05


AUG_LEVELS = (0.3, 0.0, 1.0, 0.2)


@jax.jit
def _augmented_parts(base: LinearObservation, key: jax.Array):
    """z_s draws of level 0.3 and, for each of AUG_LEVELS (traced, vmapped), the augmented
    model's (c_s, r_s) and its posterior given those z_s."""
    z_s = base.augmented(AUG_LEVELS[0]).sample_observation(key, 5)

    def one(level):
        aug = base.augmented(level)
        return aug.scale, aug.noise_std, aug.posterior(z_s)

    return z_s, jax.vmap(one)(jnp.asarray(AUG_LEVELS))


@pytest.mark.parametrize("noise_std", [0.0, 0.3])
def test_augmented_model_is_conditioning_on_the_augmented_observation(x64, noise_std):
    """z_s = cos(pi s/2) z + sin(pi s/2) e': condition the joint of (x, z_s) on z_s."""
    level = AUG_LEVELS[0]
    base = _model(noise_std)
    z_s, (scales, noise_stds, (means, covs)) = _augmented_parts(base, jax.random.key(2))
    cos, sin = math.cos(math.pi * level / 2), math.sin(math.pi * level / 2)
    jm, jc = _joint(base)
    # (x, z) -> (x, z_s): z_s = cos z + sin e', e' independent.
    lin = np.block([[np.eye(D), np.zeros((D, M))], [np.zeros((M, D)), cos * np.eye(M)]])
    cov = lin @ jc @ lin.T + np.diag(np.concatenate([np.zeros(D), sin**2 * np.ones(M)]))
    ref_mean, ref_cov = _conditional(lin @ jm, cov, np.arange(D, D + M), np.asarray(z_s))
    assert np.max(np.abs(np.asarray(means[0]) - ref_mean)) < 1e-10
    assert np.max(np.abs(np.asarray(covs[0]) - ref_cov)) < 1e-10
    assert np.isclose(float(scales[0]), cos)
    assert np.isclose(float(noise_stds[0]), math.sqrt(cos**2 * noise_std**2 + sin**2))
    # Level 0 is the model itself, bit for bit; level 1 makes z_s pure noise (posterior =
    # prior); a wrong level (0.2) is detected.
    assert scales[1] == base.scale and noise_stds[1] == base.noise_std
    assert np.max(np.abs(np.asarray(covs[2]) - np.asarray(base.covariance))) < 1e-10
    assert np.max(np.abs(np.asarray(covs[3]) - ref_cov)) > 1e-3


@functools.partial(jax.jit, static_argnames="batch")
def _noised_parts(model: LinearObservation, key: jax.Array, batch: int):
    """Per-example (alpha, sigma), image-shaped x_t, the oracle's score / eps / x0, the
    posterior mean, and the denoiser of a z-blind model."""
    keys = jax.random.split(key, 3)
    z = model.sample_observation(keys[0], batch)
    alpha = jax.random.uniform(keys[1], (batch,), minval=0.2, maxval=1.0)
    sigma = jnp.sqrt(1.0 - alpha**2)
    x_t = jax.random.normal(keys[2], (batch, *HIGH))  # image-shaped x, flat z
    mean, cov = model.posterior(z)
    return {
        "z": z,
        "alpha": alpha,
        "sigma": sigma,
        "x_t": x_t,
        "score": model.noised_score(x_t, z, alpha, sigma),
        "eps": model.noised_eps(x_t, z, alpha, sigma),
        "x0": model.noised_x0(x_t, z, alpha, sigma),
        "mean": mean,
        "blind_x0": model.augmented(1.0).noised_x0(x_t, z, alpha, sigma),
    }


@pytest.mark.parametrize("noise_std", [0.0, 0.3])
def test_noised_posterior_score_eps_and_denoiser(x64, noise_std):
    model = _model(noise_std)
    batch = 5
    p = {k: np.asarray(v) for k, v in _noised_parts(model, jax.random.key(3), batch).items()}
    assert p["score"].shape == p["x_t"].shape == p["x0"].shape == p["eps"].shape
    # Brute force: -C_t^-1 (x_t - alpha mu) with C_t = alpha^2 S_post + sigma^2 I, S_post
    # and mu from conditioning the joint of (x, z) (linear solves, no eigendecomposition).
    jm, jc = _joint(model)
    ref_mean, ref_cov = _conditional(jm, jc, np.arange(D, D + M), p["z"])
    assert np.max(np.abs(p["mean"] - ref_mean)) < 1e-10
    for b in range(batch):
        a, s = p["alpha"][b], p["sigma"][b]
        c_t = a**2 * ref_cov + s**2 * np.eye(D)
        ref = -np.linalg.solve(c_t, p["x_t"][b].ravel() - a * ref_mean[b])
        assert np.max(np.abs(p["score"][b].ravel() - ref)) < 1e-10, b
    assert np.max(np.abs(p["eps"] + p["sigma"][:, None, None, None] * p["score"])) < 1e-12
    # Tweedie's denoiser equals E[x | x_t, z] by conditioning the joint of (x, x_t, z).
    x0 = p["x0"].reshape(batch, D)
    for b in range(batch):
        a, s = p["alpha"][b], p["sigma"][b]
        lin = np.zeros((2 * D + M, D + M))
        lin[:D, :D] = np.eye(D)
        lin[D : 2 * D, :D] = a * np.eye(D)
        lin[2 * D :, D:] = np.eye(M)
        cov3 = lin @ jc @ lin.T
        cov3[D : 2 * D, D : 2 * D] += s**2 * np.eye(D)
        obs = np.concatenate([p["x_t"][b].ravel(), p["z"][b]])[None]
        ref_x0, _ = _conditional(lin @ jm, cov3, np.arange(D, 2 * D + M), obs)
        assert np.max(np.abs(x0[b] - ref_x0[0])) < 1e-9, b
    # Negative control: the denoiser of a model that ignores z (level 1) is far off.
    assert np.max(np.abs(p["blind_x0"] - p["x0"])) > 0.1


@functools.partial(jax.jit, static_argnames="num")
def _draws(model: LinearObservation, num: int):
    """Every sampler's draws, and one example drawn alone, in one compiled call."""
    xj, zj = model.sample_joint(jax.random.key(8), num)
    z0 = jnp.broadcast_to(zj[:1], (num, M))
    key = jax.random.key(7)
    z_mean, z_cov = model.observation_marginal()
    return {
        "xj": xj,
        "zj": zj,
        "z": model.sample_observation(jax.random.key(5), num),
        "z_mean": z_mean,
        "z_cov": z_cov,
        "post": model.sample_posterior(key, z0),  # example i: fold_in(key, i)
        "post_alone": model.sample_posterior(jax.random.fold_in(key, 5)[None], z0[:1]),
        "post_mean": model.posterior_mean(z0[:1])[0],
        "post_cov": model.posterior_covariance(),
    }


@pytest.mark.parametrize("noise_std", [0.0, 0.3])
def test_sampled_moments_and_per_example_keys(x64, noise_std):
    """Prior, observation, posterior and joint draws against their exact moments (z-scores
    of means and variances, Bonferroni threshold; cross-covariance with its own tolerance);
    example i's draw depends only on its key."""
    model = _model(noise_std)
    n = 20_000
    d = {k: np.asarray(v, np.float64) for k, v in _draws(model, n).items()}
    thresh = bonferroni_z(4 * 2 * D + 2 * M)
    assert max_abs_z_mean_var(d["xj"], model.mean, np.diag(model.covariance)) < thresh
    assert max_abs_z_mean_var(d["z"], d["z_mean"], np.diag(d["z_cov"])) < thresh
    assert max_abs_z_mean_var(d["zj"], d["z_mean"], np.diag(d["z_cov"])) < thresh
    post_var = np.diag(d["post_cov"])
    assert max_abs_z_mean_var(d["post"], d["post_mean"], post_var) < thresh
    xj, zj = d["xj"], d["zj"]
    cross = (xj - xj.mean(0)).T @ (zj - zj.mean(0)) / (n - 1)  # c S A^T
    ref = np.asarray(model.scale * model.covariance @ model.matrix.T)
    assert np.max(np.abs(cross - ref)) < 0.04  # entries' std <= 1.5 / sqrt(n) = 0.011
    # Negative control: the posterior draws do not have the prior's moments.
    assert max_abs_z_mean_var(d["post"], model.mean, np.diag(model.covariance)) > thresh
    # Per-example keys: example 5 drawn alone with its key fold_in(key, 5) is the same.
    assert np.max(np.abs(d["post"][5] - d["post_alone"][0])) < 1e-12
    assert not np.allclose(d["post"][5], d["post"][4])


def test_downsample_matrix_is_downsample_mean(x64):
    rng = np.random.default_rng(0)
    for shape, factor in [((6, 4, 3), 2), ((6, 6, 1), 3)]:
        a = np.asarray(downsample_matrix(shape, factor))
        d = math.prod(shape)
        assert a.shape == (d // factor**2, d)
        x = rng.normal(size=(3, *shape))
        ref = np.asarray(downsample_mean(jnp.asarray(x), factor)).reshape(3, -1)
        assert np.max(np.abs(x.reshape(3, -1) @ a.T - ref)) < 1e-12, shape
        assert np.allclose(a.sum(axis=1), 1.0) and np.all((a == 0) | (a == 1 / factor**2))


def test_bad_input_raises(x64):
    model = _model(0.0)
    with pytest.raises(ValueError, match="-0.1"):
        LinearObservation.create(model.mean, model.covariance, model.matrix, noise_std=-0.1)
    with pytest.raises(ValueError, match=r"\(15, 15\)"):
        LinearObservation.create(model.mean, model.covariance[:15, :15], model.matrix)
    with pytest.raises(ValueError, match=r"\(4, 15\)"):
        LinearObservation.create(model.mean, model.covariance, model.matrix[:, :15])
    with pytest.raises(ValueError, match=r"\(2,\)"):
        model.augmented(jnp.zeros((2,)))
    z = jnp.zeros((2, M))
    with pytest.raises(ValueError, match=r"\(2, 15\)"):
        model.noised_score(jnp.zeros((2, 15)), z, 1.0, 0.5)
    with pytest.raises(ValueError, match="same batch"):
        model.noised_score(jnp.zeros((3, D)), z, 1.0, 0.5)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        model.noised_score(jnp.zeros((2, D)), z, jnp.ones((3,)), 0.5)
    with pytest.raises(ValueError, match="5"):
        downsample_matrix((5, 4, 1), 2)
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        downsample_matrix((4, 4), 2)
