"""The ELBO (``jaxgen.vae.elbo``) against probabilistic PCA, where everything is closed form.

With the linear-Gaussian decoder ``p(x | z) = N(W z + b, s^2 I)`` and prior ``N(0, I)``, the
evidence ``log p(x)``, the posterior ``p(z | x)`` and the gap ``log p(x) - ELBO(q) =
KL(q || p(z | x))`` are exact (:class:`ProbabilisticPCA`). Monte Carlo checks use z-scores
with the estimator's own standard error (Bonferroni thresholds); each has a negative control.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.distributions.linear_gaussian import ProbabilisticPCA
from jaxgen.vae.elbo import FREE_BITS_MODES, KL_ESTIMATORS, elbo_loss, kl_warmup
from jaxgen.vae.gaussian import DiagonalGaussian
from jaxgen.vae.likelihoods import log_likelihood
from tests.diffusion.stats import bonferroni_z

DATA_DIM, LATENT_DIM, NOISE_STD = 5, 3, 0.5
NUM_X, REPEATS = 6, 2000


def _decoder(model):
    def decoder_fn(z):
        return z @ model.weight.T + model.bias[None, :]

    return decoder_fn


LOG_LIK = functools.partial(log_likelihood, "gaussian_fixed", fixed_std=NOISE_STD)


@functools.partial(jax.jit, static_argnums=0)
def _model_and_data(orthogonal: bool):
    model = ProbabilisticPCA.random(
        jax.random.key(0), DATA_DIM, LATENT_DIM, noise_std=NOISE_STD, orthogonal_columns=orthogonal
    )
    return model, model.sample(jax.random.key(1), NUM_X)


@jax.jit
def _oracle(model, x):
    """Exact quantities: log p(x), the posterior mean, the exact diagonal log std (B, d) and
    the best diagonal q's log std (variances 1 / (posterior precision)_jj)."""
    mean, cov = model.posterior(x)
    exact = jnp.broadcast_to(0.5 * jnp.log(jnp.diag(cov)), mean.shape)
    best = jnp.broadcast_to(-0.5 * jnp.log(jnp.diag(jnp.linalg.inv(cov))), mean.shape)
    return {"log_px": model.log_prob(x), "mean": mean, "exact": exact, "best": best}


_posterior_kl = jax.jit(ProbabilisticPCA.posterior_kl)


def _table_encoder(mean, log_std):
    """An encoder that looks up fixed (mean, log_std) rows: example i is the copy of
    data point ``i % NUM_X`` (inputs are ``jnp.tile(x, (R, 1))``)."""

    def encoder_fn(xb):
        reps = xb.shape[0] // mean.shape[0]
        return DiagonalGaussian(jnp.tile(mean, (reps, 1)), jnp.tile(log_std, (reps, 1)))

    return encoder_fn


def _per_x_z(values, expected):
    """z-scores of the per-data-point means of ``values`` (R * NUM_X,) against ``expected``."""
    v = np.asarray(values).reshape(-1, NUM_X)
    se = v.std(0, ddof=1) / np.sqrt(v.shape[0])
    return (v.mean(0) - np.asarray(expected)) / se


@functools.partial(jax.jit, static_argnames=("kl_estimator",))
def _elbo_terms(model, q_mean, q_log_std, x, key, kl_estimator):
    """elbo_loss on REPEATS copies of x with the pPCA decoder and the table encoder."""
    encoder = _table_encoder(q_mean, q_log_std)
    x_rep = jnp.tile(x, (REPEATS, 1))
    return elbo_loss(encoder, _decoder(model), LOG_LIK, x_rep, key, kl_estimator=kl_estimator)


def _perturbed(oracle):
    mean = oracle["mean"]
    rng = np.random.default_rng(5)
    q_mean = mean + 0.4 * jnp.asarray(rng.normal(size=mean.shape))
    q_log_std = oracle["exact"] + jnp.asarray(rng.uniform(-0.4, 0.4, size=mean.shape))
    return q_mean, q_log_std


@pytest.mark.parametrize("kl_estimator", KL_ESTIMATORS)
def test_elbo_expectation_is_log_evidence_minus_posterior_kl(x64, kl_estimator):
    """E[elbo] = log p(x) - KL(q || p(z | x)) for a perturbed q, per data point; the terms:
    E[reconstruction] in closed form, the analytic "kl" exactly."""
    model, x = _model_and_data(False)
    oracle = _oracle(model, x)
    q_mean, q_log_std = _perturbed(oracle)
    loss, terms = _elbo_terms(model, q_mean, q_log_std, x, jax.random.key(2), kl_estimator)
    assert all(v.shape == (REPEATS * NUM_X,) for v in (loss, *terms.values()))
    np.testing.assert_allclose(terms["elbo"], -loss, rtol=1e-12)  # beta = 1, no free bits

    log_px = oracle["log_px"]
    gap = _posterior_kl(model, x, q_mean, q_log_std)
    z_max = bonferroni_z(3 * NUM_X)
    z_elbo = _per_x_z(terms["elbo"], log_px - gap)
    z_no_gap = _per_x_z(terms["elbo"], log_px)
    # E[-log p(x | z)] = (|x - b - W m|^2 + tr(W diag(v) W^T)) / (2 s^2) + D log(s sqrt(2 pi)).
    resid = x - q_mean @ model.weight.T - model.bias[None]
    trace = jnp.exp(2 * q_log_std) @ jnp.sum(jnp.square(model.weight), axis=0)
    expected_rec = (jnp.sum(resid**2, axis=1) + trace) / (2 * NOISE_STD**2) + DATA_DIM * (
        np.log(NOISE_STD) + 0.5 * np.log(2 * np.pi)
    )
    z_rec = _per_x_z(terms["reconstruction"], expected_rec)
    print(
        f"{kl_estimator}: gap KL(q||post) = {np.round(np.asarray(gap), 3)}; max |z| elbo "
        f"{np.max(np.abs(z_elbo)):.2f}, reconstruction {np.max(np.abs(z_rec)):.2f}; "
        f"negative control (no gap) min |z| {np.min(np.abs(z_no_gap)):.1f}"
    )
    assert np.max(np.abs(z_elbo)) < z_max and np.max(np.abs(z_rec)) < z_max
    assert np.min(np.abs(z_no_gap)) > z_max  # the gap is real and detected for every x
    if kl_estimator == "analytic":
        kl = DiagonalGaussian(q_mean, q_log_std).kl()
        np.testing.assert_allclose(terms["kl"].reshape(REPEATS, NUM_X)[7], kl, rtol=1e-12)
        np.testing.assert_array_equal(terms["kl_penalty"], terms["kl"])


def test_elbo_is_exact_for_every_sample_at_the_exact_posterior(x64):
    """Orthogonal W: q = p(z | x) is diagonal and the Monte Carlo ELBO log p(x, z) - log q(z)
    equals log p(x) for every z (zero variance). Negative control: with a non-orthogonal W
    even the best diagonal q leaves the Hadamard gap, detected by z-score."""
    model, x = _model_and_data(True)
    oracle = _oracle(model, x)
    exact = (model, oracle["mean"], oracle["exact"], x, jax.random.key(3))
    _, terms = _elbo_terms(*exact, "monte_carlo")
    err = float(jnp.max(jnp.abs(terms["elbo"] - jnp.tile(oracle["log_px"], REPEATS))))
    assert err < 1e-8, err
    # The analytic-KL estimator is unbiased but not zero-variance there.
    _, analytic = _elbo_terms(*exact, "analytic")
    assert float(jnp.std(analytic["elbo"].reshape(REPEATS, NUM_X)[:, 0])) > 0.1

    model, x = _model_and_data(False)
    oracle = _oracle(model, x)
    gap = _posterior_kl(model, x, oracle["mean"], oracle["best"])
    _, terms = _elbo_terms(
        model, oracle["mean"], oracle["best"], x, jax.random.key(4), "monte_carlo"
    )
    z_max = bonferroni_z(2 * NUM_X)
    z_gap = _per_x_z(terms["elbo"], oracle["log_px"] - gap)
    z_zero = _per_x_z(terms["elbo"], oracle["log_px"])
    spread = float(jnp.std(terms["elbo"]))
    print(
        f"exact posterior: max |elbo - log p(x)| = {err:.1e}; non-orthogonal best diagonal q: "
        f"gap {float(gap[0]):.4f} nats, elbo std {spread:.3f}, |z| vs log p(x) - gap "
        f"{np.max(np.abs(z_gap)):.2f}, vs log p(x) {np.min(np.abs(z_zero)):.1f}"
    )
    assert float(gap[0]) > 0.05 and spread > 0.05
    assert np.max(np.abs(z_gap)) < z_max and np.min(np.abs(z_zero)) > z_max


def test_analytic_kl_equals_monte_carlo_kl(x64):
    model, x = _model_and_data(False)
    q_mean, q_log_std = _perturbed(_oracle(model, x))
    _, terms = _elbo_terms(model, q_mean, q_log_std, x, jax.random.key(5), "monte_carlo")
    analytic = DiagonalGaussian(q_mean, q_log_std).kl()
    z = _per_x_z(terms["kl"], analytic)
    # Negative control: the reversed KL(p || q), a classic slip.
    q = DiagonalGaussian(q_mean, q_log_std)
    reversed_kl = DiagonalGaussian(jnp.zeros_like(q_mean), jnp.zeros_like(q_log_std)).kl(q)
    z_rev = _per_x_z(terms["kl"], reversed_kl)
    z_max = bonferroni_z(NUM_X)
    print(
        f"MC KL vs analytic: max |z| {np.max(np.abs(z)):.2f}; reversed KL min |z| "
        f"{np.min(np.abs(z_rev)):.1f}"
    )
    assert np.max(np.abs(z)) < z_max and np.min(np.abs(z_rev)) > z_max


@pytest.mark.parametrize("kl_estimator", KL_ESTIMATORS)
def test_elbo_gradient_vanishes_at_the_exact_posterior(x64, kl_estimator):
    """The reparameterized gradient of the ELBO w.r.t. the encoder's mean and log std has
    mean zero at q = p(z | x) (orthogonal W) and mean -grad KL(q || p(z | x)) (closed form)
    at a perturbed q; per-example gradients give the standard errors. Negative control: the
    perturbed gradient is detected as nonzero."""
    model, x = _model_and_data(True)
    oracle = _oracle(model, x)
    q_mean, q_log_std = _perturbed(oracle)
    x_rep = jnp.tile(x, (REPEATS, 1))

    @jax.jit
    def per_example_grads(base_mean, base_log_std, key):
        # Per-example offsets: d sum_i elbo_i / d offset_i is example i's own gradient.
        def total(offsets):
            d_mean, d_log_std = offsets

            def encoder(xb):
                return DiagonalGaussian(
                    jnp.tile(base_mean, (REPEATS, 1)) + d_mean,
                    jnp.tile(base_log_std, (REPEATS, 1)) + d_log_std,
                )

            _, terms = elbo_loss(
                encoder, _decoder(model), LOG_LIK, x_rep, key, kl_estimator=kl_estimator
            )
            return jnp.sum(terms["elbo"])

        zeros = jnp.zeros((REPEATS * NUM_X, LATENT_DIM))
        return jax.grad(total)((zeros, zeros))

    def z_scores(grads, expected):
        out = []
        for g, e in zip(grads, expected, strict=True):
            g = np.asarray(g).reshape(REPEATS, NUM_X, LATENT_DIM)
            se = g.std(0, ddof=1) / np.sqrt(REPEATS)
            out.append((g.mean(0) - np.asarray(e)) / se)
        return np.stack(out)

    z_max = bonferroni_z(3 * 2 * NUM_X * LATENT_DIM)
    zero = jnp.zeros((NUM_X, LATENT_DIM))
    exact_grads = per_example_grads(oracle["mean"], oracle["exact"], jax.random.key(6))
    z_exact = z_scores(exact_grads, (zero, zero))
    # At the perturbed q: E[grad elbo] = -grad_q KL(q || p(z | x)) (ELBO = log p(x) - KL).
    neg_kl = lambda m, s: -jnp.sum(_posterior_kl(model, x, m, s))  # noqa: E731
    expected = jax.grad(neg_kl, argnums=(0, 1))(q_mean, q_log_std)
    grads = per_example_grads(q_mean, q_log_std, jax.random.key(7))
    z_pert = z_scores(grads, expected)
    z_not_zero = z_scores(grads, (zero, zero))
    print(
        f"{kl_estimator}: max |z| of the gradient at the exact posterior "
        f"{np.abs(z_exact).max():.2f}, at a perturbed q vs closed form "
        f"{np.abs(z_pert).max():.2f}; negative control (perturbed vs 0) max |z| "
        f"{np.abs(z_not_zero).max():.1f}"
    )
    assert np.abs(z_exact).max() < z_max and np.abs(z_pert).max() < z_max
    assert np.abs(z_not_zero).max() > z_max


def test_beta_scales_only_the_kl(x64):
    model, x = _model_and_data(False)
    q_mean, q_log_std = _perturbed(_oracle(model, x))
    encoder = _table_encoder(q_mean, q_log_std)

    @jax.jit
    def run(beta):
        return elbo_loss(encoder, _decoder(model), LOG_LIK, x, jax.random.key(8), beta=beta)

    loss_a, terms_a = run(0.3)
    loss_b, terms_b = run(2.0)
    assert run._cache_size() == 1  # beta is traced (the warm-up weight)
    for name in ("reconstruction", "kl", "kl_penalty", "elbo"):
        np.testing.assert_array_equal(terms_a[name], terms_b[name])
    np.testing.assert_allclose(loss_b - loss_a, 1.7 * terms_a["kl"], rtol=1e-10)
    np.testing.assert_allclose(loss_a, terms_a["reconstruction"] + 0.3 * terms_a["kl"], rtol=1e-12)
    # Negative control: a beta on the reconstruction instead would change it.
    assert float(jnp.max(jnp.abs(loss_a - 0.3 * terms_a["reconstruction"] - terms_a["kl"]))) > 1
    # beta = warm-up weight, traced step.
    warm = jax.jit(lambda step: run(kl_warmup(step, warmup_steps=10))[0])(jnp.asarray(3))
    np.testing.assert_allclose(warm, terms_a["reconstruction"] + 0.3 * terms_a["kl"], rtol=1e-6)


def _free_bits_problem():
    """B = 6 examples, latents (B, 2, 3) (J = 6) with designed per-dimension KLs, and the
    closed-form KL_j = (e^{2 s} + m^2 - 1) / 2 - s with its gradients (m, e^{2 s} - 1)."""
    rng = np.random.default_rng(9)
    mean = rng.normal(scale=0.3, size=(6, 2, 3))
    log_std = rng.uniform(-0.3, 0.0, size=(6, 2, 3))
    mean[:, 0, 0] = [2.0, 1.5, 0.1, 0.0, 0.2, 0.1]  # batch mean KL above lambda
    mean[:, 1, 2] = [1.2, 0.0, 0.1, 0.1, 0.0, 0.2]  # example 0 above lambda, batch mean below
    kl_j = (0.5 * (np.exp(2 * log_std) + mean**2 - 1) - log_std).reshape(6, -1)
    kl_grads = (mean.reshape(6, -1), np.expm1(2 * log_std).reshape(6, -1))
    return mean, log_std, kl_j, kl_grads


@functools.partial(jax.jit, static_argnames=("free_bits", "mode"))
def _free_bits_eval(mean, log_std, *, free_bits, mode):
    """Terms, and the gradient of the batch-mean kl_penalty w.r.t. (mean, log_std)."""
    x = jnp.linspace(-1.0, 1.0, 24).reshape(6, 4)
    proj = jnp.linspace(-0.5, 0.5, 24).reshape(6, 4)

    def decoder_fn(z):
        return z.reshape(z.shape[0], -1) @ proj

    def terms_of(params):
        return elbo_loss(
            lambda _: DiagonalGaussian(*params), decoder_fn, LOG_LIK, x, jax.random.key(10),
            free_bits=free_bits, free_bits_mode=mode,
        )[1]  # fmt: skip

    grads = jax.grad(lambda p: jnp.mean(terms_of(p)["kl_penalty"]))((mean, log_std))
    return terms_of((mean, log_std)), [g.reshape(6, -1) for g in grads]


@pytest.mark.parametrize("mode", FREE_BITS_MODES)
def test_free_bits_identities_and_gradients(x64, mode):
    """batch: mean_x kl_penalty = sum_j max(lambda, mean_x KL_j), clamped dims contribute the
    constant lambda with zero gradient; example: kl_penalty = sum_j max(lambda, KL_j(x))
    elementwise, zero gradient where KL_j(x) < lambda; elsewhere the gradient is KL's."""
    lam = 0.5
    mean, log_std, kl_j, kl_grads = _free_bits_problem()
    terms, pen_grads = _free_bits_eval(mean, log_std, free_bits=lam, mode=mode)
    batch_kl = kl_j.mean(0)
    clamped = batch_kl < lam
    assert 0 < clamped.sum() < 6 and np.any(kl_j[:, clamped] > lam)
    np.testing.assert_allclose(terms["kl"], kl_j.sum(1), rtol=1e-12)
    plain, _ = _free_bits_eval(mean, log_std, free_bits=0.0, mode=mode)
    np.testing.assert_array_equal(terms["elbo"], plain["elbo"])  # the bound is untouched
    np.testing.assert_array_equal(plain["kl_penalty"], plain["kl"])
    other_mode = "example" if mode == "batch" else "batch"
    other, other_grads = _free_bits_eval(mean, log_std, free_bits=lam, mode=other_mode)
    if mode == "batch":
        identity = np.sum(np.maximum(lam, batch_kl))
        np.testing.assert_allclose(np.mean(terms["kl_penalty"]), identity, rtol=1e-12)
        per_example = np.sum(np.where(clamped[None], lam, kl_j), axis=1)
        np.testing.assert_allclose(terms["kl_penalty"], per_example, rtol=1e-12)
        zero_grad = np.broadcast_to(clamped[None], kl_j.shape)
        # Negative control: the example-mode mean is a different number here.
        assert abs(float(np.mean(other["kl_penalty"])) - identity) > 1e-2
    else:
        np.testing.assert_allclose(
            terms["kl_penalty"], np.sum(np.maximum(lam, kl_j), axis=1), rtol=1e-12
        )
        zero_grad = kl_j < lam
        # Negative control: batch mode zeroes gradients that example mode keeps (example 0 is
        # above lambda in a dimension whose batch mean is below).
        assert np.any((np.asarray(other_grads[0]) == 0.0) & (np.abs(pen_grads[0]) > 1e-3))
    for got, ref in zip(pen_grads, kl_grads, strict=True):
        got = np.asarray(got)
        assert np.max(np.abs(got[zero_grad])) == 0.0
        np.testing.assert_allclose(got[~zero_grad], ref[~zero_grad] / 6.0, rtol=1e-12)
    assert np.max(np.abs(kl_grads[0][zero_grad])) > 1e-3  # KL itself has gradient there


def test_kl_warmup():
    np.testing.assert_allclose(
        [float(kl_warmup(s, warmup_steps=100)) for s in (0, 25, 50, 100, 250, -5)],
        [0.0, 0.25, 0.5, 1.0, 1.0, 0.0],
        rtol=1e-6,
    )
    np.testing.assert_allclose(float(kl_warmup(50, warmup_steps=100, start=0.2)), 0.6, rtol=1e-6)
    assert float(kl_warmup(0, warmup_steps=0)) == 1.0
    ramp = jax.jit(functools.partial(kl_warmup, warmup_steps=8, start=0.5))
    np.testing.assert_allclose(
        [float(ramp(jnp.asarray(s))) for s in (0, 2, 8, 9)], [0.5, 0.625, 1.0, 1.0], rtol=1e-6
    )
    assert ramp._cache_size() == 1
    with pytest.raises(ValueError, match="warmup_steps must be an integer >= 0"):
        kl_warmup(1, warmup_steps=-1)
    with pytest.raises(ValueError, match=r"start must lie in \[0, 1\]"):
        kl_warmup(1, warmup_steps=10, start=1.5)


def test_shapes_and_errors(x64):
    x, log_lik = jnp.zeros((NUM_X, DATA_DIM)), LOG_LIK

    def decoder_fn(z):
        return z @ jnp.ones((LATENT_DIM, DATA_DIM))

    def encoder(xb):
        return DiagonalGaussian(jnp.zeros((xb.shape[0], 3)), jnp.zeros((xb.shape[0], 3)))

    key = jax.random.key(0)
    loss, terms = elbo_loss(encoder, decoder_fn, log_lik, x, key)
    assert loss.shape == (NUM_X,) and set(terms) == {"reconstruction", "kl", "kl_penalty", "elbo"}
    assert KL_ESTIMATORS == ("analytic", "monte_carlo") and FREE_BITS_MODES == ("example", "batch")
    with pytest.raises(
        ValueError, match=r"kl_estimator must be one of \('analytic', 'monte.*got 'exact'"
    ):
        elbo_loss(encoder, decoder_fn, log_lik, x, key, kl_estimator="exact")
    with pytest.raises(
        ValueError, match=r"free_bits_mode must be one of \('example', 'batch'\), got 'dim'"
    ):
        elbo_loss(encoder, decoder_fn, log_lik, x, key, free_bits=0.1, free_bits_mode="dim")
    with pytest.raises(ValueError, match="free bits need the analytic"):
        elbo_loss(encoder, decoder_fn, log_lik, x, key, free_bits=0.1, kl_estimator="monte_carlo")
    with pytest.raises(ValueError, match="free_bits must be >= 0"):
        elbo_loss(encoder, decoder_fn, log_lik, x, key, free_bits=-0.1)
    with pytest.raises(ValueError, match="beta must be a scalar"):
        elbo_loss(encoder, decoder_fn, log_lik, x, key, beta=jnp.ones(NUM_X))
    with pytest.raises(ValueError, match=r"encoder_fn must return .* \(B=6, \*latent\)"):
        elbo_loss(lambda xb: encoder(xb[:3]), decoder_fn, log_lik, x, key)
    with pytest.raises(ValueError, match=r"log_likelihood_fn must return shape \(6,\)"):
        elbo_loss(encoder, decoder_fn, lambda o, xb: log_lik(o, xb)[:, None], x, key)
    with pytest.raises(ValueError, match="x must have shape"):
        elbo_loss(encoder, decoder_fn, log_lik, jnp.zeros(()), key)
