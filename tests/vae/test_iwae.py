"""IWAE bounds and importance-sampled log p(x) (``jaxgen.vae.iwae``) on probabilistic PCA.

The encoder is a fixed diagonal Gaussian ``q = N(mu_post(x), c diag(S))`` where ``N(mu_post,
S)`` is the exact (correlated) posterior of a pPCA model with a non-orthogonal ``W`` and
``c = 1.1 / lambda_min`` (``lambda_min`` the smallest generalized eigenvalue of ``diag(S)``
w.r.t. ``S``), so ``q`` is wider than the posterior in every direction: the normalized
weights ``w / p(x) = p(z | x) / q(z)`` are bounded, every moment is finite and the
asymptotics of Burda et al. hold. In closed form: ``E[L_1] = log p(x) - KL(q || p(z | x))``,
``E[(w / p(x))^2] = int p(z | x)^2 / q(z) dz`` and, for large ``K``,
``log p(x) - E[L_K] ~= (E[(w / p(x))^2] - 1) / (2 K)`` and ``ESS / K -> 1 / E[(w / p(x))^2]``.
Because ``q``'s covariance and offset from the posterior mean do not depend on ``x``, the gap
``log p(x) - L_K`` has the same law for every ``x``, so estimates pool over data points.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core import bits_per_dim
from jaxgen.distributions.linear_gaussian import ProbabilisticPCA
from jaxgen.vae import iwae
from jaxgen.vae.elbo import elbo_loss
from jaxgen.vae.gaussian import DiagonalGaussian
from jaxgen.vae.iwae import importance_log_likelihood, iwae_loss
from jaxgen.vae.likelihoods import log_likelihood
from tests.diffusion.stats import bonferroni_z

DATA_DIM, LATENT_DIM, NOISE_STD, NUM_X = 5, 3, 0.5, 4
LOG_LIK = functools.partial(log_likelihood, "gaussian_fixed", fixed_std=NOISE_STD)
REPS = 500  # repeats of each data point in the Monte Carlo checks (shared compiled shapes)


@functools.partial(jax.jit, static_argnums=0)
def _model_and_posterior(orthogonal: bool):
    model = ProbabilisticPCA.random(
        jax.random.key(0), DATA_DIM, LATENT_DIM, noise_std=NOISE_STD, orthogonal_columns=orthogonal
    )
    x = model.sample(jax.random.key(1), NUM_X)
    mean, cov = model.posterior(x)
    return model, x, model.log_prob(x), mean, cov


def _widened_q(cov):
    """``c diag(S)`` with ``c = 1.1 / lambda_min`` (module doc) and E[(w / p(x))^2]."""
    cov = np.asarray(cov, np.float64)
    chol_inv = np.linalg.inv(np.linalg.cholesky(cov))
    lam_min = np.linalg.eigvalsh(chol_inv @ np.diag(np.diag(cov)) @ chol_inv.T).min()
    var_q = 1.1 / lam_min * np.diag(cov)
    # int N(z; m, S)^2 / N(z; m, V) dz = |S|^-1 |V|^1/2 |2 S^-1 - V^-1|^-1/2 (same means).
    a = 2.0 * np.linalg.inv(cov) - np.diag(1.0 / var_q)
    log_w2 = (
        -np.linalg.slogdet(cov)[1] + 0.5 * np.sum(np.log(var_q)) - 0.5 * np.linalg.slogdet(a)[1]
    )
    return 0.5 * np.log(var_q), float(np.exp(log_w2)), float(lam_min)


def _table_encoder(mean, log_std):
    """Example i gets the fixed (mean, log_std) of data point i % NUM_X."""

    def encoder_fn(xb):
        reps = xb.shape[0] // mean.shape[0]
        log_std_b = jnp.broadcast_to(log_std, mean.shape)
        return DiagonalGaussian(jnp.tile(mean, (reps, 1)), jnp.tile(log_std_b, (reps, 1)))

    return encoder_fn


def _decoder(model):
    def decoder_fn(z):
        return z @ model.weight.T + model.bias[None, :]

    return decoder_fn


@functools.partial(jax.jit, static_argnames=("reps", "num_samples"))
def _iwae(model, mean, log_std, x, key, *, reps, num_samples):
    x_rep = jnp.tile(x, (reps, 1))
    encoder = _table_encoder(mean, log_std)
    return iwae_loss(encoder, _decoder(model), LOG_LIK, x_rep, key, num_samples=num_samples)


@functools.partial(jax.jit, static_argnames=("reps", "num_samples", "chunk_size"))
def _log_px(model, mean, log_std, x, key, *, reps, num_samples, chunk_size):
    x_rep = jnp.tile(x, (reps, 1))
    encoder = _table_encoder(mean, log_std)
    return importance_log_likelihood(
        encoder, _decoder(model), LOG_LIK, x_rep, key, num_samples=num_samples,
        chunk_size=chunk_size,
    )  # fmt: skip


def test_iwae_bound_increases_with_k_towards_log_evidence(x64):
    """E[L_K] for K = 1, 5, 50, 500 (500 repeats of each of the 4 data points):
    E[L_1] = log p(x) - KL (closed form); strictly increasing from 1 to 5 to 50 and
    non-decreasing from 50 to 500; the gap at K = 50, 500 matches (E[w^2] - 1) / (2K); all
    below log p(x); ESS / K -> 1 / E[w^2]. Negative controls: the gap at K = 1 and the
    mean-log-weight ELBO at K = 500 are detected; L_K + log K (a missing 1/K) overshoots."""
    model, x, log_px, mean, cov = _model_and_posterior(False)
    log_std, e_w2, lam_min = _widened_q(cov)
    log_std = jnp.asarray(log_std)
    kl = float(jax.jit(ProbabilisticPCA.posterior_kl)(model, x, mean, jnp.tile(log_std, (4, 1)))[0])
    reps = REPS
    lp = np.tile(np.asarray(log_px), reps)
    gaps, ses, terms_500 = {}, {}, None
    for k in (1, 5, 50, 500):
        _, terms = _iwae(model, mean, log_std, x, jax.random.key(k), reps=reps, num_samples=k)
        gap = lp - np.asarray(terms["iwae_bound"])
        gaps[k], ses[k] = gap.mean(), gap.std(ddof=1) / np.sqrt(gap.size)
        if k == 500:
            terms_500 = terms
    z_max = bonferroni_z(12)
    predicted = {k: (e_w2 - 1.0) / (2 * k) for k in (50, 500)}
    print(
        f"lambda_min {lam_min:.3f}, E[w^2] = {e_w2:.4f}, KL(q || post) = {kl:.4f}; gaps "
        + ", ".join(f"K={k}: {gaps[k]:.4f} +- {ses[k]:.4f}" for k in gaps)
        + "; predicted "
        + ", ".join(f"K={k}: {v:.4f}" for k, v in predicted.items())
    )
    z_l1 = (gaps[1] - kl) / ses[1]
    assert abs(z_l1) < z_max, z_l1
    for lo, hi in ((1, 5), (5, 50), (50, 500)):
        z_step = (gaps[lo] - gaps[hi]) / math.hypot(ses[lo], ses[hi])
        print(f"E[L_{hi}] - E[L_{lo}]: z = {z_step:.1f}")
        assert z_step > (z_max if hi <= 50 else -z_max)
    for k, pred in predicted.items():
        assert abs(gaps[k] - pred) / ses[k] < z_max, (k, gaps[k], pred)
    assert all(g / s > -z_max for g, s in zip(gaps.values(), ses.values(), strict=True))
    assert gaps[500] < 0.01 * gaps[1]
    # Negative controls.
    assert gaps[1] / ses[1] > z_max  # the K = 1 gap is real
    elbo_gap = lp - np.asarray(terms_500["elbo"])
    assert elbo_gap.mean() / (elbo_gap.std() / np.sqrt(elbo_gap.size)) > z_max
    overshoot = -(gaps[500] - math.log(500))
    assert overshoot / ses[500] > z_max
    # ESS / K -> 1 / E[w^2] (O(1/K) bias; 2% tolerance), in [1, K].
    ess = np.asarray(terms_500["effective_sample_size"])
    assert ess.min() >= 1.0 and ess.max() <= 500.0
    ratio = ess.mean() / 500
    print(f"ESS / K at K = 500: {ratio:.4f} vs 1 / E[w^2] = {1 / e_w2:.4f}")
    assert abs(ratio * e_w2 - 1.0) < 0.02 and 1 / e_w2 < 0.9


def test_exact_posterior_gives_log_evidence_for_every_sample(x64):
    """Orthogonal W and q = p(z | x): every log weight equals log p(x), so L_K = log p(x)
    for every draw and ESS = K. Negative control: the widened q of the correlated model."""
    model, x, log_px, mean, cov = _model_and_posterior(True)
    exact = 0.5 * jnp.log(jnp.diag(cov))
    loss, terms = _iwae(model, mean, exact, x, jax.random.key(2), reps=1, num_samples=100)
    lp = log_px
    err = float(jnp.max(jnp.abs(terms["iwae_bound"] - lp)))
    assert err < 1e-10, err
    np.testing.assert_allclose(terms["elbo"], lp, rtol=1e-12)
    np.testing.assert_allclose(terms["effective_sample_size"], 100.0, rtol=1e-10)
    np.testing.assert_array_equal(loss, -terms["iwae_bound"])
    model, x, log_px, mean, cov = _model_and_posterior(False)
    log_std = jnp.asarray(_widened_q(cov)[0])
    _, terms = _iwae(model, mean, log_std, x, jax.random.key(2), reps=1, num_samples=100)
    assert float(jnp.max(terms["effective_sample_size"])) < 90.0
    assert float(jnp.min(jnp.abs(terms["iwae_bound"] - log_px))) > 1e-4


@functools.partial(jax.jit, static_argnames=("reps",))
def _mc_elbo(model, mean, log_std, x, key, *, reps):
    x_rep = jnp.tile(x, (reps, 1))
    encoder = _table_encoder(mean, log_std)
    return elbo_loss(encoder, _decoder(model), LOG_LIK, x_rep, key, kl_estimator="monte_carlo")


def test_k1_iwae_equals_monte_carlo_elbo_for_the_same_key(x64):
    model, x, _, mean, cov = _model_and_posterior(False)
    log_std = jnp.asarray(_widened_q(cov)[0])
    key = jax.random.key(3)
    loss, terms = _iwae(model, mean, log_std, x, key, reps=REPS, num_samples=1)
    e_loss, e_terms = _mc_elbo(model, mean, log_std, x, key, reps=REPS)
    np.testing.assert_allclose(loss, e_loss, rtol=1e-13)
    np.testing.assert_allclose(terms["iwae_bound"], e_terms["elbo"], rtol=1e-13)
    np.testing.assert_allclose(terms["elbo"], e_terms["elbo"], rtol=1e-13)
    np.testing.assert_array_equal(terms["effective_sample_size"], 1.0)
    # Negative control: another key is another draw.
    other, _ = _mc_elbo(model, mean, log_std, x, jax.random.key(4), reps=REPS)
    assert float(jnp.min(jnp.abs(other - loss))) > 1e-9


def test_importance_log_likelihood_matches_exact_log_evidence(x64):
    """K = 2000 in chunks of 100 (4 data points x 100 repeats): every estimate within
    z_max * sd + |bias| of log p(x) (sd = sqrt((E[w^2] - 1) / K), bias = (E[w^2] - 1) / (2K)),
    and the mean error consistent with the bias. Negative control: the ELBO (K = 1)."""
    model, x, log_px, mean, cov = _model_and_posterior(False)
    log_std, e_w2, _ = _widened_q(cov)
    log_std = jnp.asarray(log_std)
    num, reps = 2000, 100
    est, _ = _log_px(
        model, mean, log_std, x, jax.random.key(5), reps=reps, num_samples=num, chunk_size=100
    )
    err = np.asarray(est) - np.tile(np.asarray(log_px), reps)
    sd, bias = math.sqrt((e_w2 - 1) / num), (e_w2 - 1) / (2 * num)
    z_max = bonferroni_z(err.size)
    tol = z_max * sd + bias
    z_mean = (err.mean() + bias) / (err.std(ddof=1) / np.sqrt(err.size))
    print(
        f"K = {num}: max |log p_hat - log p| = {np.abs(err).max():.4f} (tolerance {tol:.4f}); "
        f"mean error {err.mean():.5f} (predicted {-bias:.5f}, z {z_mean:.2f}); error sd "
        f"{err.std():.4f} (predicted {sd:.4f})"
    )
    assert np.abs(err).max() < tol
    assert abs(z_mean) < bonferroni_z(1)
    _, terms = _iwae(model, mean, log_std, x, jax.random.key(6), reps=REPS, num_samples=1)
    elbo_err = np.asarray(terms["iwae_bound"]) - np.tile(np.asarray(log_px), REPS)
    assert np.mean(np.abs(elbo_err) > tol) > 0.5  # most ELBO samples are off by more


def test_chunking_is_a_running_logsumexp_over_fold_in_keys(x64):
    """importance_log_likelihood equals logsumexp_c(L_chunk(fold_in(key, c)) + log chunk) -
    log K over iwae_loss's per-chunk bounds; one chunk equals iwae_loss(fold_in(key, 0)).
    Negative control: reusing one key for every chunk (repeated draws) is detected."""
    model, x, _, mean, cov = _model_and_posterior(False)
    log_std = jnp.asarray(_widened_q(cov)[0])
    key, num, chunk = jax.random.key(7), 300, 100
    got, _ = _log_px(model, mean, log_std, x, key, reps=1, num_samples=num, chunk_size=chunk)
    bounds = [
        _iwae(model, mean, log_std, x, jax.random.fold_in(key, c), reps=1, num_samples=chunk)[1][
            "iwae_bound"
        ]
        for c in range(num // chunk)
    ]
    direct = jax.nn.logsumexp(jnp.stack(bounds) + math.log(chunk), axis=0) - math.log(num)
    err = float(jnp.max(jnp.abs(got - direct)))
    assert err < 1e-12, err
    one, one_terms = _log_px(
        model, mean, log_std, x, key, reps=1, num_samples=chunk, chunk_size=chunk
    )
    np.testing.assert_allclose(one, bounds[0], rtol=1e-13)
    # One chunk: the terms are iwae_loss's on the same draws.
    _, chunk_terms = _iwae(
        model, mean, log_std, x, jax.random.fold_in(key, 0), reps=1, num_samples=chunk
    )
    for name in ("elbo", "effective_sample_size"):
        np.testing.assert_allclose(one_terms[name], chunk_terms[name], rtol=1e-12, err_msg=name)
    same_key = [bounds[0]] * (num // chunk)
    wrong = jax.nn.logsumexp(jnp.stack(same_key) + math.log(chunk), axis=0) - math.log(num)
    assert float(jnp.min(jnp.abs(got - wrong))) > 1e-6


def test_importance_terms_are_the_statistics_of_all_chunks_log_weights(x64):
    """Over K = 300 draws in chunks of 100: "elbo" is the mean, "max_log_weight" the max and
    "effective_sample_size" (sum w)^2 / sum w^2 of the log weights recomputed by hand from
    each chunk's fold_in key; log_likelihood >= elbo and 1 <= ESS <= K. With the exact
    posterior every weight is p(x): ESS = K and elbo = max = log p(x). Negative control:
    the first chunk's statistics differ from all chunks'."""
    model, x, _, mean, cov = _model_and_posterior(False)
    log_std = jnp.asarray(_widened_q(cov)[0])
    key, num, chunk = jax.random.key(8), 300, 100
    est, terms = _log_px(model, mean, log_std, x, key, reps=1, num_samples=num, chunk_size=chunk)
    encoder, decoder = _table_encoder(mean, log_std), _decoder(model)
    posterior = encoder(x)
    log_w = np.concatenate(
        [
            np.asarray(
                iwae._log_weights(posterior, decoder, LOG_LIK, x, jax.random.fold_in(key, c), chunk)
            )
            for c in range(num // chunk)
        ]
    )  # (K, B)
    w = np.exp(log_w - log_w.max(0))
    np.testing.assert_allclose(terms["elbo"], log_w.mean(0), rtol=1e-12)
    np.testing.assert_allclose(terms["max_log_weight"], log_w.max(0), rtol=1e-12)
    ess = w.sum(0) ** 2 / (w**2).sum(0)
    np.testing.assert_allclose(terms["effective_sample_size"], ess, rtol=1e-10)
    np.testing.assert_allclose(est, np.log(w.mean(0)) + log_w.max(0), rtol=1e-12)  # logmeanexp
    assert np.all(np.asarray(est) >= np.asarray(terms["elbo"]))
    assert np.all((ess >= 1.0) & (ess <= num)) and ess.max() < 0.95 * num
    w0 = w[:chunk]
    assert np.min(np.abs(w0.sum(0) ** 2 / (w0**2).sum(0) - ess)) > 1.0
    # Exact posterior (orthogonal W): constant weights.
    model, x, log_px, mean, cov = _model_and_posterior(True)
    exact = 0.5 * jnp.log(jnp.diag(cov))
    est, terms = _log_px(model, mean, exact, x, key, reps=1, num_samples=num, chunk_size=chunk)
    np.testing.assert_allclose(est, log_px, rtol=1e-10)
    np.testing.assert_allclose(terms["effective_sample_size"], float(num), rtol=1e-8)
    np.testing.assert_allclose(terms["elbo"], log_px, rtol=1e-10)
    np.testing.assert_allclose(terms["max_log_weight"], log_px, rtol=1e-10)


def _largest_intermediate(closed_jaxpr) -> int:
    """The most elements of any value in a jaxpr, sub-jaxprs (scan, jit bodies) included."""

    def walk(jaxpr):
        sizes = [math.prod(getattr(v.aval, "shape", ())) for v in jaxpr.invars]
        for eqn in jaxpr.eqns:
            sizes += [math.prod(getattr(v.aval, "shape", ())) for v in eqn.outvars]
            for param in eqn.params.values():
                for sub in param if isinstance(param, (tuple, list)) else (param,):
                    if hasattr(sub, "eqns"):
                        sizes.append(walk(sub))
                    elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                        sizes.append(walk(sub.jaxpr))
        return max(sizes)

    return walk(closed_jaxpr.jaxpr)


def test_chunked_memory_does_not_grow_with_k():
    """The largest intermediate of the traced computation is the same for K = 400 and 4000
    in chunks of 100 (B x chunk x D decoder outputs); one chunk of 4000 (negative control)
    holds K x B x D values."""
    weight = jnp.ones((DATA_DIM, LATENT_DIM))
    batch = 8

    def encoder(xb):
        return DiagonalGaussian(xb[:, :LATENT_DIM], jnp.zeros((xb.shape[0], LATENT_DIM)))

    def largest(num, chunk):
        fn = functools.partial(
            importance_log_likelihood, encoder, lambda z: z @ weight.T, LOG_LIK,
            num_samples=num, chunk_size=chunk,
        )  # fmt: skip
        return _largest_intermediate(
            jax.make_jaxpr(fn)(jnp.zeros((batch, DATA_DIM)), jax.random.key(0))
        )

    small, large, unchunked = largest(400, 100), largest(4000, 100), largest(4000, 4000)
    print(f"largest intermediate: K=400/100 {small}, K=4000/100 {large}, K=4000/4000 {unchunked}")
    assert small == large == 100 * batch * DATA_DIM
    assert unchunked == 4000 * batch * DATA_DIM


def test_bits_per_dim_of_a_negative_log_likelihood():
    nats = jnp.array([1.0, 100.0])
    np.testing.assert_allclose(bits_per_dim(nats, 784), np.log2(np.e) * nats / 784, rtol=1e-6)
    with pytest.raises(ValueError, match="num_dims must be an integer >= 1"):
        bits_per_dim(nats, 0)


def test_errors():
    x = jnp.zeros((3, DATA_DIM))

    def encoder(xb):
        return DiagonalGaussian(jnp.zeros((xb.shape[0], 2)), jnp.zeros((xb.shape[0], 2)))

    def decoder(z):
        return jnp.zeros((z.shape[0], DATA_DIM))

    key = jax.random.key(0)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        iwae_loss(encoder, decoder, LOG_LIK, x, key, num_samples=0)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        importance_log_likelihood(encoder, decoder, LOG_LIK, x, key, num_samples=0)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        importance_log_likelihood(encoder, decoder, LOG_LIK, x, key, num_samples=10, chunk_size=0)
    with pytest.raises(ValueError, match=r"num_samples \(250\) must be a multiple of chunk_size"):
        importance_log_likelihood(encoder, decoder, LOG_LIK, x, key, num_samples=250)
    with pytest.raises(ValueError, match="encoder_fn must return"):
        iwae_loss(lambda xb: encoder(xb[:1]), decoder, LOG_LIK, x, key, num_samples=2)
    with pytest.raises(ValueError, match=r"log_likelihood_fn must return shape \(3,\)"):
        iwae_loss(encoder, decoder, lambda o, xb: jnp.zeros((3, 1)), x, key, num_samples=2)
    loss, terms = jax.eval_shape(
        functools.partial(iwae_loss, encoder, decoder, LOG_LIK, num_samples=4), x, key
    )
    assert loss.shape == (3,) and {k: v.shape for k, v in terms.items()} == {
        "iwae_bound": (3,),
        "elbo": (3,),
        "effective_sample_size": (3,),
    }
    est, terms = jax.eval_shape(
        functools.partial(importance_log_likelihood, encoder, decoder, LOG_LIK, num_samples=20,
                          chunk_size=5), x, key
    )  # fmt: skip
    assert est.shape == (3,) and {k: v.shape for k, v in terms.items()} == {
        "elbo": (3,),
        "effective_sample_size": (3,),
        "max_log_weight": (3,),
    }
