"""Ladder VAE (``jaxgen.vae.hierarchical``) against a linear-Gaussian chain with closed forms.

The oracle is a chain with elementwise (diagonal) maps in ``D = 3`` dimensions::

    z_L ~ N(0, 1),  z_l = a_l z_{l+1} + c_l + s_l eps  (l < L),  x = w z_1 + b + s_0 eps.

By induction ``p(x | z_l) = N(x; A_l z_l + B_l, V_l)`` with ``A_1 = w``, ``B_1 = b``,
``V_1 = s_0^2``, ``A_{l+1} = A_l a_l``, ``B_{l+1} = A_l c_l + B_l``, ``V_{l+1} = V_l + A_l^2
s_l^2``, so ``log p(x) = log N(x; B_L, V_L + A_L^2)``. The exact posterior factorizes as
``p(z_L | x) prod_l p(z_l | z_{l+1}, x)`` with ``p(z_l | z_{l+1}, x) ~ p(z_l | z_{l+1})
p(x | z_l)``; so the ladder posterior is exact when message ``l < L`` is the likelihood factor
``N((x - B_l) / A_l, V_l / A_l^2)`` (the merge multiplies in ``p(z_l | z_{l+1})``) and the top
message is the posterior ``p(z_L | x)`` itself (it is never merged with ``N(0, I)``, so a
likelihood factor there would drop the prior).

* Exact messages: every importance weight is ``p(x)``, so the K-sample estimate equals
  ``log p(x)`` (1e-8, ``L = 1, 3``; K = 10 in padded chunks of 3). The analytic-KL ELBO
  is not constant in the sample (``log p(x | z_1)`` varies with ``z_1``), so it is checked
  twice: the one-sample ELBO equals, sample by sample, the hand formula built from the conditional
  ``p(z_1 | z_2, x)`` of the 3-variable joint Gaussian (1e-10), and its mean is ``log p(x)``
  (z-test). Negative controls: a likelihood factor as the top message, or the posterior
  ``p(z_1 | x)`` as message 1, give non-constant weights.
* Wrong messages: the mean ELBO gap equals ``KL(q || p(z | x))`` between the 2-D Gaussians
  (per dim) of the ladder posterior and the exact posterior (z-test; gap vs 0 is the control).
* Importance sampling with a poor proposal: ``E[p^_K] = p(x)`` for every K, ``E[log w] =
  log p(x) - KL``, and at large K the bias matches the delta-method value ``relvar / 2K``
  with ``relvar = E_q[(p(z|x)/q)^2] - 1`` in closed form.
* ``ladder_sample``'s moments match the model's marginals (z-tests, with temperature).
* ``L = 1`` is the plain VAE ELBO with the analytic KL, computed by hand.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.vae.gaussian import DiagonalGaussian
from jaxgen.vae.hierarchical import (
    ladder_elbo_loss,
    ladder_importance_log_likelihood,
    ladder_sample,
    ladder_sample_with_latents,
)
from tests.diffusion.stats import bonferroni_z, max_abs_z_mean_var

D = 3
W = np.array([1.5, -0.7, 2.0])
B0 = np.array([0.1, 0.3, -0.5])
S0 = np.array([0.5, 0.8, 0.3])
A = [np.array([0.8, -1.3, 0.5]), np.array([1.1, 0.6, -0.9])]  # z_l = a_l z_{l+1} + ...
C = [np.array([0.2, -0.4, 1.0]), np.array([-0.3, 0.5, 0.0])]
S = [np.array([0.6, 0.9, 0.4]), np.array([0.7, 0.5, 1.2])]
LOG_2PI = math.log(2.0 * math.pi)


def _row(v, like):
    """The (D,) constant ``v`` as a (1, D) row in ``like``'s dtype."""
    return jnp.asarray(v, like.dtype)[None, :]


def top_down_fns(num_layers):
    def make(i):
        return lambda z: DiagonalGaussian(
            _row(A[i], z) * z + _row(C[i], z), jnp.broadcast_to(_row(np.log(S[i]), z), z.shape)
        )

    return [make(i) for i in range(num_layers - 1)]


def decoder_fn(z1):
    return _row(W, z1) * z1 + _row(B0, z1)


def log_likelihood_fn(out, x):
    u = (x - out) / _row(S0, x)
    return jnp.sum(-0.5 * (u * u + LOG_2PI) - _row(np.log(S0), x), axis=1)


def _gauss_log_pdf(x, mean, var):
    return -0.5 * ((x - mean) ** 2 / var + np.log(var) + LOG_2PI)


def likelihood_factors(num_layers):
    """``[(A_l, B_l, V_l)]`` for ``l = 1..L`` with ``p(x | z_l) = N(A_l z_l + B_l, V_l)``."""
    out = [(W, B0, S0**2)]
    for i in range(num_layers - 1):
        a_, b_, v_ = out[-1]
        out.append((a_ * A[i], a_ * C[i] + b_, v_ + a_**2 * S[i] ** 2))
    return out


def log_marginal(x, num_layers):
    a_, b_, v_ = likelihood_factors(num_layers)[-1]
    return _gauss_log_pdf(np.asarray(x), b_, v_ + a_**2).sum(axis=1)


def exact_messages(num_layers, top="posterior", first="factor"):
    """Affine message parameters ``((P_l, Q_l, log_std_l), ...)``, message ``l`` being
    ``N(P_l x + Q_l, exp(log_std_l)^2)``, that make the ladder posterior exact; or a broken
    variant: ``top="factor"`` uses the likelihood factor of z_L as the top message (no
    prior); ``first="posterior"`` uses the marginal posterior p(z_1 | x) as message 1."""
    out = []
    for l_, (a_, b_, v_) in enumerate(likelihood_factors(num_layers), start=1):
        p_, q_, var = 1.0 / a_, -b_ / a_, v_ / a_**2  # the likelihood factor of z_l
        if l_ == num_layers and top == "posterior":  # merge with the prior N(0, 1)
            prec = 1.0 + a_**2 / v_
            p_, q_, var = (a_ / v_) / prec, -(a_ / v_) * b_ / prec, 1.0 / prec
        if l_ == 1 and first == "posterior" and num_layers > 1:
            marginal_var = A[0] ** 2 + S[0] ** 2  # p(z_1) = N(c_1, a_1^2 + s_1^2)
            prec = 1.0 / marginal_var + 1.0 / var
            p_, q_ = p_ / var / prec, (C[0] / marginal_var + q_ / var) / prec
            var = 1.0 / prec
        out.append((p_, q_, 0.5 * np.log(var)))
    return tuple(out)


def perturbed_messages(shift, log_scale):
    """Exact two-layer messages, each mean shifted by ``shift`` of its std and each log_std
    moved by ``log_scale``."""
    return tuple(
        (p_, q_ + s * np.exp(ls), ls + t)
        for (p_, q_, ls), s, t in zip(exact_messages(2), shift, log_scale, strict=True)
    )


def bottom_up_fn(params):
    """The bottom-up pass of affine message parameters (traced arrays inside jit)."""

    def bottom_up(x):
        return [
            DiagonalGaussian(_row(p_, x) * x + _row(q_, x), jnp.broadcast_to(_row(ls, x), x.shape))
            for p_, q_, ls in params
        ]

    return bottom_up


# ---- two-layer joint-Gaussian oracle: (z2, z1, x) per dimension, conditioned on x


def joint_posterior(x):
    """Mean (B, D, 2) and covariance (D, 2, 2) of ``p(z2, z1 | x)`` by Gaussian conditioning."""
    a, c, s1 = A[0], C[0], S[0]
    var1 = a**2 + s1**2
    mu = np.stack([np.zeros(D), c, W * c + B0], axis=-1)  # (D, 3)
    cov = np.zeros((D, 3, 3))
    cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1] = 1.0, a, var1
    cov[:, 0, 2], cov[:, 1, 2], cov[:, 2, 2] = W * a, W * var1, W**2 * var1 + S0**2
    cov = cov + np.swapaxes(np.triu(cov, 1), 1, 2)
    gain = cov[:, :2, 2] / cov[:, 2, 2][:, None]  # (D, 2)
    mean = mu[None, :, :2] + gain[None] * (np.asarray(x) - mu[None, :, 2])[..., None]
    post_cov = cov[:, :2, :2] - gain[:, :, None] * cov[:, None, 2, :2]
    return mean, post_cov


def ladder_joint(msgs):
    """Mean (B, D, 2) and covariance (B, D, 2, 2) of the ladder posterior q(z2, z1 | x)."""
    m1, v1 = np.asarray(msgs[0].mean), np.exp(2 * np.asarray(msgs[0].log_std))
    m2, v2 = np.asarray(msgs[1].mean), np.exp(2 * np.asarray(msgs[1].log_std))
    lam = v1 / (v1 + S[0] ** 2)  # weight of the prior mean a z2 + c in the merge
    alpha, beta = lam * A[0], lam * C[0] + (1 - lam) * m1
    vq1 = v1 * S[0] ** 2 / (v1 + S[0] ** 2)
    mean = np.stack([m2, alpha * m2 + beta], axis=-1)
    cov = np.stack(
        [np.stack([v2, alpha * v2], -1), np.stack([alpha * v2, alpha**2 * v2 + vq1], -1)], -2
    )
    return mean, cov


def kl_gauss(mq, cq, mp, cp):
    """KL(N(mq, cq) || N(mp, cp)) over the last axis, summed over D."""
    k = mq.shape[-1]
    icp = np.linalg.inv(cp)
    d = (mp - mq)[..., None]
    quad = (np.swapaxes(d, -1, -2) @ icp @ d)[..., 0, 0]
    tr = np.trace(icp @ cq, axis1=-2, axis2=-1)
    logdet = np.linalg.slogdet(cp)[1] - np.linalg.slogdet(cq)[1]
    return (0.5 * (tr + quad - k + logdet)).sum(axis=-1)


def relative_variance(mq, cq, mp, cp):
    """``E_q[(p / q)^2] - 1`` for Gaussians p, q (needs 2 cp^-1 - cq^-1 > 0), product over D."""
    pp, pq = np.linalg.inv(cp), np.linalg.inv(cq)
    lam = 2 * pp - pq
    eta = (2 * pp @ mp[..., None] - pq @ mq[..., None])[..., 0]
    const = 2 * np.einsum("...i,...ij,...j", mp, pp, mp) - np.einsum("...i,...ij,...j", mq, pq, mq)
    quad = np.einsum("...i,...ij,...j", eta, np.linalg.inv(lam), eta)
    log_i = (
        0.5 * np.linalg.slogdet(cq)[1]
        - np.linalg.slogdet(cp)[1]
        - 0.5 * np.linalg.slogdet(lam)[1]
        - 0.5 * (const - quad)
    )
    return np.exp(log_i.sum(axis=-1)) - 1.0


def _data(n, seed=0):
    """``n`` draws of x from the two-layer chain."""
    z = np.random.default_rng(seed).standard_normal((n, 3, D))
    z2 = z[:, 0]
    z1 = A[0] * z2 + C[0] + S[0] * z[:, 1]
    return jnp.asarray(W * z1 + B0 + S0 * z[:, 2])


def _z(values, expected):
    values = np.asarray(values, np.float64)
    return (values.mean(0) - expected) / (values.std(0, ddof=1) / np.sqrt(values.shape[0]))


@functools.partial(jax.jit, static_argnames=("k", "chunk"))
def _iwae(params, x, key, *, k, chunk):
    return ladder_importance_log_likelihood(
        bottom_up_fn(params), top_down_fns(len(params)), decoder_fn, log_likelihood_fn, x, key,
        num_samples=k, chunk_size=chunk,
    )  # fmt: skip


@jax.jit
def _elbo(params, x, key, beta=1.0):
    return ladder_elbo_loss(
        bottom_up_fn(params),
        top_down_fns(len(params)),
        decoder_fn,
        log_likelihood_fn,
        x,
        key,
        beta=beta,
    )


# ----------------------------------------------------------------- exact posterior


@pytest.mark.parametrize("num_layers", [1, 3])  # L = 2: test_importance_estimate_...
def test_exact_messages_give_constant_importance_weights(x64, num_layers):
    """With exact messages q = p(z | x), so log p(x, z) - log q(z | x) = log p(x) for every z."""
    x = _data(6, seed=num_layers)
    logp = log_marginal(x, num_layers)
    # K = 10 in chunks of 3 (a padded last chunk): logsumexp of K equal weights - log K.
    est, terms = _iwae(exact_messages(num_layers), x, jax.random.key(0), k=10, chunk=3)
    err = float(np.max(np.abs(np.asarray(est) - logp)))
    print(f"L={num_layers}: max |log p^_K - log p(x)| = {err:.1e}")
    assert err < 1e-8
    # Equal weights: ESS = K (the 2 padded draws of the last chunk are left out), and the
    # mean and max log weight are log p(x).
    np.testing.assert_allclose(terms["effective_sample_size"], 10.0, rtol=1e-8)
    np.testing.assert_allclose(terms["elbo"], logp, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(terms["max_log_weight"], logp, rtol=1e-8, atol=1e-8)
    # Negative control: a likelihood factor as the top message drops p(z_L) -> not exact.
    for bad in [exact_messages(num_layers, top="factor")] + (
        [exact_messages(num_layers, first="posterior")] if num_layers > 1 else []
    ):
        est, terms = _iwae(bad, x, jax.random.key(9), k=10, chunk=3)
        err = float(np.max(np.abs(np.asarray(est) - logp)))
        print(f"L={num_layers} broken message: max |log p^_K - log p(x)| = {err:.2f}")
        assert err > 1e-2
        ess = np.asarray(terms["effective_sample_size"])
        assert np.all((ess >= 1.0) & (ess < 10.0 - 1e-3)), ess  # unequal weights


def test_exact_messages_elbo_per_sample_and_in_mean(x64):
    """One-sample ELBO = log p(x|z1) - KL(p(z1|z2,x) || p(z1|z2)) - KL(p(z2|x) || N(0,1)) at
    z2, z1 drawn with the documented keys from the conditionals of the joint Gaussian; its mean
    over draws is log p(x) (the gap is KL(q || p(z|x)) = 0)."""
    n_copies = 4000
    x = jnp.repeat(_data(2, seed=11), n_copies, axis=0)
    key = jax.random.key(3)
    loss, terms = _elbo(exact_messages(2), x, key, 0.5)
    # Hand computation from the 3-variable joint (independent of the merge formula).
    mean, cov = joint_posterior(x)
    k1, k2 = jax.random.split(key, 2)
    z2 = mean[..., 0] + np.sqrt(cov[:, 0, 0]) * np.asarray(jax.random.normal(k2, x.shape))
    gain = cov[:, 0, 1] / cov[:, 0, 0]
    m1 = mean[..., 1] + gain * (z2 - mean[..., 0])
    v1 = cov[:, 1, 1] - gain * cov[:, 0, 1]
    z1 = m1 + np.sqrt(v1) * np.asarray(jax.random.normal(k1, x.shape))
    rec = -_gauss_log_pdf(np.asarray(x), W * z1 + B0, S0**2).sum(1)
    pm, pv = A[0] * z2 + C[0], S[0] ** 2
    kl1 = (0.5 * (v1 / pv + (m1 - pm) ** 2 / pv - 1 - np.log(v1 / pv))).sum(1)
    v2 = cov[:, 0, 0]
    kl2 = (0.5 * (v2 + mean[..., 0] ** 2 - 1 - np.log(v2))).sum(1)
    for name, want in [("reconstruction", rec), ("kl_1", kl1), ("kl_2", kl2)]:
        np.testing.assert_allclose(terms[name], want, rtol=1e-10, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(terms["kl"], kl1 + kl2, rtol=1e-10)
    np.testing.assert_allclose(terms["elbo"], -(rec + kl1 + kl2), rtol=1e-10)
    np.testing.assert_allclose(loss, rec + 0.5 * (kl1 + kl2), rtol=1e-10)
    # In mean: ELBO = log p(x) for each of the two data points.
    logp = log_marginal(x, 2)
    elbo = np.asarray(terms["elbo"]).reshape(2, n_copies).T
    z = _z(elbo, logp.reshape(2, n_copies)[:, 0])
    print(f"exact messages: ELBO vs log p(x) z-scores {np.round(z, 2)}")
    assert np.max(np.abs(z)) < bonferroni_z(2)


# ----------------------------------------------------------------- wrong posterior


def test_wrong_messages_gap_is_kl_to_the_posterior(x64):
    n_copies = 4000
    x = jnp.repeat(_data(2, seed=12), n_copies, axis=0)
    params = perturbed_messages(shift=(0.8, -0.6), log_scale=(0.2, -0.3))
    _, terms = _elbo(params, x, jax.random.key(4))
    gap = (log_marginal(x, 2) - np.asarray(terms["elbo"])).reshape(2, n_copies).T
    q, post = ladder_joint(bottom_up_fn(params)(x)), joint_posterior(x)
    kl = kl_gauss(*q, *post).reshape(2, n_copies)[:, 0]
    z, z0 = _z(gap, kl), _z(gap, 0.0)
    print(f"wrong messages: KL(q || post) = {np.round(kl, 4)}, mean gap {gap.mean(0).round(4)}")
    print(f"  z vs KL {np.round(z, 2)}; negative control z vs 0 {np.round(z0, 1)}")
    z_max = bonferroni_z(4)
    assert np.max(np.abs(z)) < z_max
    assert np.min(np.abs(z0)) > z_max  # a wrong posterior is detected
    # The oracle KL vanishes for the exact messages (sanity of the 2-D Gaussian oracle).
    exact = bottom_up_fn(exact_messages(2))(x)
    assert np.max(np.abs(kl_gauss(*ladder_joint(exact), *joint_posterior(x)))) < 1e-9


# ----------------------------------------------------------------- importance sampling


def test_importance_estimate_converges_with_k(x64):
    reps = 256
    x = jnp.repeat(_data(2, seed=13), reps, axis=0)
    params = perturbed_messages(shift=(0.5, -0.5), log_scale=(0.2, 0.15))
    logp = log_marginal(x, 2).reshape(2, reps)[:, 0]
    q, post = ladder_joint(bottom_up_fn(params)(x)), joint_posterior(x)
    kl = kl_gauss(*q, *post).reshape(2, reps)[:, 0]
    relvar = relative_variance(*q, *post).reshape(2, reps)[:, 0]
    assert np.max(np.abs(relative_variance(*post, *post))) < 1e-9  # oracle sanity
    z_max = bonferroni_z(2 * 5)
    gaps = {}
    for seed, (k, chunk) in enumerate([(1, 1), (1000, 100)]):
        est, terms = _iwae(params, x, jax.random.key(20 + seed), k=k, chunk=chunk)
        est = np.asarray(est).reshape(2, reps).T
        # Same draws: mean log weight <= max log weight; logmeanexp in between; ESS in [1, K].
        elbo, top = np.asarray(terms["elbo"]), np.asarray(terms["max_log_weight"])
        flat, ess = est.T.reshape(-1), np.asarray(terms["effective_sample_size"])
        assert np.all(elbo <= flat + 1e-12) and np.all(flat <= top + 1e-12)
        assert np.all((ess >= 1.0 - 1e-12) & (ess <= k + 1e-9))
        if k == 1:  # one draw: every statistic is its log weight
            np.testing.assert_allclose(elbo, flat, rtol=1e-12)
            np.testing.assert_allclose(top, flat, rtol=1e-12)
        gaps[k] = logp - est.mean(0)
        z_unbiased = _z(np.exp(est - logp), 1.0)  # E[p^_K] = p(x)
        print(f"K={k}: gap {np.round(gaps[k], 4)}, z(E[p^/p] = 1) {np.round(z_unbiased, 2)}")
        assert np.max(np.abs(z_unbiased)) < z_max
        if k == 1:
            z_kl = _z(est, logp - kl)  # E[log w] = log p(x) - KL(q || p(z|x))
            print(
                f"  KL {np.round(kl, 4)}: z {np.round(z_kl, 2)}; vs 0: {np.round(_z(est, logp), 1)}"
            )
            assert np.max(np.abs(z_kl)) < z_max
            assert np.min(np.abs(_z(est, logp))) > z_max  # the poor proposal is detected
        if k == 1000:  # delta method: log p^_K - log p ~ N(-relvar / 2K, relvar / K)
            z_bias = _z(est, logp - relvar / (2 * k))
            sd_ratio = est.std(0, ddof=1) / np.sqrt(relvar / k)
            print(f"  relvar {np.round(relvar, 3)}: z {np.round(z_bias, 2)}, sd ratio {sd_ratio}")
            assert np.max(np.abs(z_bias)) < z_max
            assert np.all(np.abs(sd_ratio - 1.0) < 0.3)
    assert np.all(gaps[1000] < 0.1 * gaps[1])


# ----------------------------------------------------------------- ancestral sampling


@functools.partial(jax.jit, static_argnames=("n", "num_layers"))
def _sample(key, temperature, *, n, num_layers):
    return ladder_sample_with_latents(
        top_down_fns(num_layers), decoder_fn, key, (n, D), temperature=temperature
    )


def test_ladder_sample_matches_model_marginals(x64):
    n = 4000
    z_max = bonferroni_z(4 * 2)
    for seed, temperature in enumerate([1.0, 0.5]):
        sampled, (z1, z2) = _sample(jax.random.key(30 + seed), temperature, n=n, num_layers=2)
        assert sampled.nfe == 2  # one top-down pass and the decoder
        out = sampled.samples
        np.testing.assert_allclose(out, decoder_fn(z1), rtol=1e-12)
        t2 = temperature**2
        z_top = max_abs_z_mean_var(z2, 0.0, t2)
        z_mid = max_abs_z_mean_var(z1, C[0], t2 * (A[0] ** 2 + S[0] ** 2))
        # z1 - a z2 = c + T s1 eps: independent of z2, checks the conditional too.
        z_res = max_abs_z_mean_var(np.asarray(z1) - A[0] * np.asarray(z2), C[0], t2 * S[0] ** 2)
        x_var = W**2 * t2 * (A[0] ** 2 + S[0] ** 2)
        z_out = max_abs_z_mean_var(out, W * C[0] + B0, x_var)
        print(f"T={temperature}: z {z_top:.2f} {z_mid:.2f} {z_res:.2f} {z_out:.2f}")
        assert max(z_top, z_mid, z_res, z_out) < z_max
        # Negative controls: the temperature-free marginal, and z1's var without s1.
        if temperature != 1.0:
            assert max_abs_z_mean_var(z2, 0.0, 1.0) > z_max
        assert max_abs_z_mean_var(z1, C[0], t2 * A[0] ** 2) > z_max
    # Three layers: z2's marginal is N(c_2, a_2^2 + s_2^2) ... and z1 - a_1 z2 ~ N(c_1, s_1^2).
    sampled, (z1, z2, z3) = _sample(jax.random.key(40), 1.0, n=n, num_layers=3)
    assert z3.shape == (n, D) and sampled.nfe == 3
    assert max_abs_z_mean_var(z2, C[1], A[1] ** 2 + S[1] ** 2) < z_max
    assert max_abs_z_mean_var(np.asarray(z1) - A[0] * np.asarray(z2), C[0], S[0] ** 2) < z_max
    # Temperature 0 is the mean path.
    _, (z1, z2) = _sample(jax.random.key(41), 0.0, n=n, num_layers=2)
    np.testing.assert_allclose(z2, 0.0)
    np.testing.assert_allclose(z1, np.broadcast_to(C[0], (n, D)))


# ----------------------------------------------------------------- L = 1 and plumbing


def test_single_layer_is_the_plain_vae_elbo(x64):
    x = _data(5, seed=14)
    enc_mean = lambda x: 0.3 * x - 0.2  # noqa: E731
    enc_log_std = lambda x: -0.5 + 0.1 * x  # noqa: E731

    def bottom_up(x):
        return [DiagonalGaussian(enc_mean(x), enc_log_std(x))]

    key, beta = jax.random.key(5), 0.7
    loss, terms = jax.jit(
        lambda x, key: ladder_elbo_loss(
            bottom_up, [], decoder_fn, log_likelihood_fn, x, key, beta=beta
        )
    )(x, key)
    mu, s = np.asarray(enc_mean(x)), np.exp(np.asarray(enc_log_std(x)))
    eps = np.asarray(jax.random.normal(jax.random.split(key, 1)[0], x.shape))
    z = mu + s * eps
    rec = -_gauss_log_pdf(np.asarray(x), W * z + B0, S0**2).sum(1)
    kl = (0.5 * (s**2 + mu**2 - 1.0) - np.log(s)).sum(1)  # Kingma & Welling, appendix B
    np.testing.assert_allclose(terms["reconstruction"], rec, rtol=1e-12)
    np.testing.assert_allclose(terms["kl_1"], kl, rtol=1e-12)
    np.testing.assert_allclose(terms["kl"], kl, rtol=1e-12)
    np.testing.assert_allclose(terms["elbo"], -(rec + kl), rtol=1e-12)
    np.testing.assert_allclose(loss, rec + beta * kl, rtol=1e-12)
    assert set(terms) == {"reconstruction", "kl", "kl_1", "elbo"}
    # Negative control: the KL without its -log s term is detectably different.
    assert not np.allclose(terms["kl_1"], (0.5 * (s**2 + mu**2 - 1.0)).sum(1), rtol=1e-6)


def test_shapes_terms_and_float32_dtypes():
    x = _data(4, seed=15).astype(jnp.float32)
    loss, terms = jax.eval_shape(_elbo, exact_messages(3), x, jax.random.key(0))
    assert loss.shape == (4,) and loss.dtype == jnp.float32
    assert set(terms) == {"reconstruction", "kl", "kl_1", "kl_2", "kl_3", "elbo"}
    assert all(v.shape == (4,) and v.dtype == jnp.float32 for v in terms.values())
    est, est_terms = jax.eval_shape(
        functools.partial(_iwae, k=10, chunk=3), exact_messages(3), x, jax.random.key(1)
    )
    assert est.shape == (4,) and est.dtype == jnp.float32
    assert set(est_terms) == {"elbo", "effective_sample_size", "max_log_weight"}
    assert all(v.shape == (4,) and v.dtype == jnp.float32 for v in est_terms.values())


def _trace(fn, *args, **kwargs):
    """Trace ``fn`` abstractly: the checks run at trace time, and nothing is compiled."""
    return jax.eval_shape(lambda: fn(*args, **kwargs))


def test_error_messages():
    x = _data(4)
    bu2 = bottom_up_fn(exact_messages(2))
    args = (decoder_fn, log_likelihood_fn, x, jax.random.key(0))
    with pytest.raises(ValueError, match=r"top_down_fns must have L - 1 = 1 entries .* got 2"):
        _trace(ladder_elbo_loss, bu2, top_down_fns(3), *args)
    with pytest.raises(ValueError, match=r"no messages"):
        _trace(ladder_elbo_loss, lambda x: [], [], *args)
    with pytest.raises(ValueError, match=r"sequence of DiagonalGaussian"):
        _trace(ladder_elbo_loss, lambda x: bu2(x)[0], [], *args)
    with pytest.raises(ValueError, match=r"message 1 has batch size 2"):
        _trace(
            ladder_elbo_loss,
            lambda x: [DiagonalGaussian(m.mean[:2], m.log_std[:2]) for m in bu2(x)],
            top_down_fns(2),
            *args,
        )
    with pytest.raises(ValueError, match=r"top_down_fns\[0\] .* mean shape \(4, 2\)"):
        _trace(ladder_elbo_loss, bu2, [lambda z: DiagonalGaussian(z[:, :2], z[:, :2])], *args)
    with pytest.raises(ValueError, match=r"log_likelihood_fn must return shape \(4,\)"):
        _trace(
            ladder_elbo_loss, bu2, top_down_fns(2), decoder_fn, lambda o, x: o, x, jax.random.key(0)
        )
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        _trace(ladder_importance_log_likelihood, bu2, top_down_fns(2), *args, num_samples=0)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        _trace(
            ladder_importance_log_likelihood,
            bu2,
            top_down_fns(2),
            *args,
            num_samples=3,
            chunk_size=0,
        )
    with pytest.raises(ValueError, match=r"shape must be a non-empty tuple of positive ints"):
        _trace(ladder_sample, top_down_fns(2), decoder_fn, jax.random.key(0), ())
    with pytest.raises(ValueError, match="temperature must be non-negative"):
        _trace(ladder_sample, top_down_fns(2), decoder_fn, jax.random.key(0), (2, D),
                      temperature=-1.0)  # fmt: skip
