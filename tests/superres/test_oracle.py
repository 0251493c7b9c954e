"""Super-resolution samplers driven by the exact conditional model of Gaussian data.

``x ~ N(m, S)`` is a 4x4x1 image (D = 16), ``y = A x`` its 2x2 area-downsampled version
(M = 4, ``r = 0``: the low-resolution image is a linear function of the high-resolution
one), so ``p(x | y)``, ``p(x | z_s)`` for the augmented condition ``z_s`` and their noised
scores are closed form (:class:`jaxgen.distributions.LinearObservation`). An *unchanged*
sampler (DPM-Solver++ 3M on the VP SDE, 15 steps plus the final Tweedie step) is driven by
``image_conditioned(exact_model, upsample(z), level)``, where ``exact_model`` recovers ``z``
from the enlarged condition by ``downsample_mean`` (nearest upsampling is its right inverse,
up to float rounding) and returns the oracle's score for the level it is told. Sampling
stops at ``t_min = 1e-3``: for ``r = 0`` the posterior is degenerate (``A x = y``), and
``p(x_t | y)`` is regular only for ``sigma(t) > 0``.

Two-sample threshold. The energy distance (:func:`jaxgen.evaluation.two_sample.energy_distance`;
chosen over MMD^2 because at N = 2000 it costs ~0.06 s of CPU against ~0.9 s) of two
independent sets of N = 2000 exact draws of these 16-dim Gaussians has std 7e-4 to 9e-4 and
a max of 2e-3 to 3.2e-3 over 30 seeds (measured: posterior, augmented posterior, prior).
``THRESHOLD = 5e-3`` is 5 to 7 null standard deviations. The 15-step sampler lands at the
null level (|ED| < 1e-3); 10 steps already give 8e-3 to 1e-2 (rejected), and every negative
control below gives 0.025 or more.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import pytest

from jaxgen.core.resize import downsample_mean, upsample
from jaxgen.core.sampling import SamplerOutput, example_keys
from jaxgen.distributions import GaussianMixture, LinearObservation, downsample_matrix
from jaxgen.evaluation.two_sample import energy_distance
from jaxgen.sde import VPSDE
from jaxgen.sde.samplers import dpm_solver_sample
from jaxgen.superres import augment_condition, cascade_sample, image_conditioned, noise_condition

HIGH, LOW, FACTOR = (4, 4, 1), (2, 2, 1), 2
N = 2000
NUM_STEPS = 15
THRESHOLD = 5e-3
SDE = VPSDE()
# Sampling stops at t_min = SDE.t_min = 1e-3 (sigma = 0.01), then the Tweedie step
# (denoise=True) returns E[x | x_t, y], whose block means are y exactly for r = 0
# (S_post A^T = 0); what is left is float32 rounding (measured ~5e-6).
CONSTRAINT_TOL = 1e-4


@jax.jit
def _random_prior(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A random well-conditioned prior: eigenvalues 0.2..1.5 in a random rotation, a mean
    of std 0.5."""
    k_rot, k_mean = jax.random.split(key)
    rotation, _ = jnp.linalg.qr(jax.random.normal(k_rot, (16, 16)))
    cov = (rotation * jnp.linspace(0.2, 1.5, 16)[None, :]) @ rotation.T
    return 0.5 * jax.random.normal(k_mean, (16,)), cov


@pytest.fixture(scope="module")
def oracle() -> LinearObservation:
    """The prior seen through 2x2 mean pooling without noise (r = 0)."""
    mean, cov = _random_prior(jax.random.key(0))
    return LinearObservation.create(mean, cov, downsample_matrix(HIGH, FACTOR), noise_std=0.0)


def exact_model(
    base: LinearObservation,
    x: jax.Array,
    t: jax.Array,
    *,
    image_condition: jax.Array,
    augmentation_level: jax.Array,
) -> jax.Array:
    """The exact score of ``p(x_t | z_s)``: ``z_s`` from the enlarged condition, the model
    of ``z_s`` from ``base.augmented(level)`` per example."""
    z = downsample_mean(image_condition, FACTOR)

    def one(x1, z1, alpha, sigma, level):
        return base.augmented(level).noised_score(x1[None], z1[None], alpha, sigma)[0]

    return jax.vmap(one)(x, z, SDE.alpha(t), SDE.sigma(t), augmentation_level)


@functools.partial(jax.jit, static_argnames="num_steps")
def sr_sample(
    base: LinearObservation,
    key: jax.Array,
    low: jax.Array,
    level: jax.Array,
    num_steps: int = NUM_STEPS,
) -> jax.Array:
    """Super-resolve the (already augmented) low-resolution ``low (N, 2, 2, 1)`` told level
    ``level (N,)``, with the exact model of ``base``. Returns flat ``(N, 16)`` samples."""
    model = image_conditioned(functools.partial(exact_model, base), upsample(low, FACTOR), level)
    out = dpm_solver_sample(
        model, SDE, key, (low.shape[0], *HIGH), num_steps=num_steps, order=3, denoise=True
    )
    return out.samples.reshape(low.shape[0], -1)


@jax.jit
def exact_posterior(base: LinearObservation, key: jax.Array, z: jax.Array, level: jax.Array):
    """N exact draws of p(x | z_s) for one observation ``z (1, 4)`` of level ``level``."""
    return base.augmented(level).sample_posterior(key, jnp.broadcast_to(z, (N, 4)))


@jax.jit
def exact_marginals(base: LinearObservation, key_x: jax.Array, key_y: jax.Array):
    """N exact draws of x ~ N(m, S) and of y ~ N(A m, A S A^T)."""
    return base.sample_prior(key_x, N), base.sample_observation(key_y, N)


def _low(z: jax.Array) -> jax.Array:
    return jnp.broadcast_to(z.reshape(1, *LOW), (N, *LOW))


def _levels(level: float) -> jax.Array:
    return jnp.full((N,), level, jnp.float32)


@pytest.fixture(scope="module")
def y_fixed(oracle) -> jax.Array:
    """One typical low-resolution image, drawn from the marginal of y: (1, 4)."""
    return exact_marginals(oracle, jax.random.key(3), jax.random.key(5))[1][:1]


def test_sampler_reproduces_posterior_of_noiseless_downsampling(oracle, y_fixed):
    samples = sr_sample(oracle, jax.random.key(1), _low(y_fixed), _levels(0.0))
    exact = exact_posterior(oracle, jax.random.key(2), y_fixed, 0.0)
    dist = float(energy_distance(samples, exact))
    assert dist < THRESHOLD, dist
    # The degenerate directions: every sample's block means are y (sampling stops at
    # t_min = 1e-3, where p(x_t | y) is regular; the final Tweedie step projects).
    err = float(jnp.max(jnp.abs(samples @ oracle.matrix.T - y_fixed)))
    assert err < CONSTRAINT_TOL, err
    # Negative controls through the same threshold: the posterior of another low-resolution
    # image (y + 0.3 in one pixel), and the unconditional prior.
    shifted = y_fixed.at[0, 0].add(0.3)
    other = sr_sample(oracle, jax.random.key(1), _low(shifted), _levels(0.0))
    dist_other = float(energy_distance(other, exact))
    prior = exact_marginals(oracle, jax.random.key(3), jax.random.key(5))[0]
    dist_prior = float(energy_distance(prior, exact))
    assert dist_other > THRESHOLD and dist_prior > THRESHOLD, (dist_other, dist_prior)


def test_sampler_reproduces_posterior_of_augmented_condition(oracle, y_fixed):
    level = 0.3
    z_s = noise_condition(y_fixed.reshape(1, *LOW), level, jax.random.key(6))  # (1, 2, 2, 1)
    z_flat = z_s.reshape(1, 4)
    samples = sr_sample(oracle, jax.random.key(1), _low(z_s), _levels(level))
    exact = exact_posterior(oracle, jax.random.key(2), z_flat, level)
    dist = float(energy_distance(samples, exact))
    assert dist < THRESHOLD, dist
    # Negative control: the model of p(x | y) fed z_s (told level 0) is rejected.
    ignored = sr_sample(oracle, jax.random.key(1), _low(z_s), _levels(0.0))
    dist_ignored = float(energy_distance(ignored, exact))
    assert dist_ignored > THRESHOLD, dist_ignored


def test_level_zero_augmentation_equals_no_augmentation_through_the_sampler(oracle):
    """Per-example conditions y_i; the whole pipeline with augmentation at level 0 (each
    kind) gives the samples of the pipeline without augmentation, bit for bit."""
    y = exact_marginals(oracle, jax.random.key(7), jax.random.key(7))[1].reshape(N, *LOW)
    key = jax.random.key(8)
    plain = sr_sample(oracle, key, y, _levels(0.0))
    aug_keys = example_keys(jax.random.key(9), N)
    for kind in ("gaussian", "blur"):
        z = augment_condition(y, 0.0, aug_keys, kind=kind)
        augmented = sr_sample(oracle, key, z, _levels(0.0))
        assert bool(jnp.array_equal(augmented, plain)), kind
    # It can fail: a tiny level already changes the samples.
    z = augment_condition(y, 1e-3, aug_keys, kind="gaussian")
    assert not bool(jnp.array_equal(sr_sample(oracle, key, z, _levels(1e-3)), plain))


@functools.partial(jax.jit, static_argnames="num")
def _marginal_sample(mean: jax.Array, cov: jax.Array, key: jax.Array, num: int) -> jax.Array:
    """Stage 1: DPM-Solver++ driven by the exact noised score of y's marginal N(mean, cov)."""
    marginal = GaussianMixture(jnp.ones((1,)), mean[None], cov[None])

    def score(y, t):
        flat = marginal.noised_score(y.reshape(num, -1), SDE.alpha(t), SDE.sigma(t))
        return flat.reshape(y.shape)

    out = dpm_solver_sample(score, SDE, key, (num, *LOW), num_steps=NUM_STEPS, order=3)
    return out.samples


def _cascade(oracle, key, level, *, told_level):
    """Stage 1: y ~ N(A m, A S A^T); stage 2: x | augment(y, level), the model told
    ``told_level`` (= level for the exact cascade)."""
    y_mean, y_cov = oracle.observation_marginal()

    def stage1(k, previous):
        return SamplerOutput(_marginal_sample(y_mean, y_cov, k, N), NUM_STEPS)

    def stage2(k, previous):
        k_aug, k_sample = jax.random.split(k)
        z = augment_condition(previous, level, example_keys(k_aug, N), kind="gaussian")
        x = sr_sample(oracle, k_sample, z, _levels(told_level))
        return SamplerOutput(x.reshape(N, *HIGH), NUM_STEPS + 1)

    return cascade_sample([stage1, stage2], key)


@pytest.mark.parametrize("level", [0.0, 0.3])
def test_cascade_of_exact_stages_reproduces_the_joint(oracle, level):
    y_out, x_out = _cascade(oracle, jax.random.key(10), level, told_level=level)
    assert y_out.samples.shape == (N, *LOW) and x_out.samples.shape == (N, *HIGH)
    y = y_out.samples.reshape(N, 4)
    x = x_out.samples.reshape(N, 16)
    x_exact, y_exact = exact_marginals(oracle, jax.random.key(12), jax.random.key(11))
    dist_y = float(energy_distance(y, y_exact))
    dist_x = float(energy_distance(x, x_exact))
    assert dist_y < THRESHOLD and dist_x < THRESHOLD, (dist_y, dist_x)
    if level == 0.0:
        # Joint (x, y): the final image's block means are stage 1's y (CONSTRAINT_TOL).
        pooled = downsample_mean(x_out.samples, FACTOR).reshape(N, 4)
        err = float(jnp.max(jnp.abs(pooled - y)))
        assert err < CONSTRAINT_TOL, err


def test_cascade_whose_stage_two_ignores_augmentation_is_off(oracle):
    """Stage 2 uses the p(x | y) model on z_s (told level 0): its x has the block means z_s,
    whose law N(cos A m, cos^2 A S A^T + sin^2 I) is not y's; the same test rejects it."""
    _, x_out = _cascade(oracle, jax.random.key(10), 0.3, told_level=0.0)
    x_exact, _ = exact_marginals(oracle, jax.random.key(12), jax.random.key(11))
    dist = float(energy_distance(x_out.samples.reshape(N, 16), x_exact))
    assert dist > THRESHOLD, dist
