"""The VQ-VAE objective :func:`jaxgen.vae.vqvae_loss` against hand-computed values.

Identity encoder and decoder, ``log p(x | z_q) = -1/2 ||x - z_q||^2`` and the codebook
``{-1, +1}`` (K = 2, D = 1) on a batch of three 2-position examples: the nearest code is the
sign, so with ``d = x - sign(x)`` and ``s = sum d^2`` per example, reconstruction ``= s / 2``,
commitment ``= codebook = s``, and the uniform prior gives ``-log p(k) = P log K = 2 log 2``.

* Gradient-trained codebook: ``loss = s/2 + beta s + s + 2 log 2``; the codebook's gradient
  is ``-2 sum_{k_j = i} (x_j - e_i)`` (from the codebook term only); an encoder scale ``a``
  (``z_e = a x``, at ``a = 1``) gets ``sum (-d x) + 2 beta sum (d x)`` (straight-through
  reconstruction plus commitment; the codebook term sends it nothing).
* EMA codebook: the codebook term leaves the loss (and the codebook gets no gradient); the
  state update is eqs. 6-8 by hand; a dead code is restarted to a batch vector.
* A prior callable replaces the uniform prior in the loss and in ``neg_elbo``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.vae import EMACodebookState, init_ema_codebook, vqvae_loss

X = jnp.array([[[0.2], [-0.7]], [[1.5], [0.1]], [[-1.2], [-0.4]]])  # (B=3, P=2, D=1)
CODES = jnp.array([[-1.0], [1.0]])
# sign(X) = [[1, -1], [1, 1], [-1, -1]]; d = X - sign(X):
D = np.array([[-0.8, 0.3], [0.5, -0.9], [-0.2, 0.6]])
S = (D**2).sum(1)  # [0.73, 1.06, 0.40]
BETA = 0.25
UNIFORM = 2 * math.log(2.0)


def _identity(z):
    return z


def _log_lik(out, x):
    return -0.5 * jnp.sum(jnp.square(x - out), axis=(1, 2))


def _loss(codebook, x=X, key=None, scale=1.0, **kw):
    return vqvae_loss(
        lambda v: scale * v, _identity, _log_lik, codebook, x, key, commitment_cost=BETA, **kw
    )


def test_gradient_codebook_loss_terms_and_gradients():
    loss, terms, updates = jax.jit(_loss)(CODES)
    assert updates == {}
    np.testing.assert_allclose(terms["reconstruction"], 0.5 * S, rtol=1e-6)
    np.testing.assert_allclose(terms["commitment"], S, rtol=1e-6)
    np.testing.assert_allclose(terms["codebook"], S, rtol=1e-6)
    np.testing.assert_allclose(terms["prior_nll"], UNIFORM, rtol=1e-6)
    np.testing.assert_allclose(terms["neg_elbo"], 0.5 * S + UNIFORM, rtol=1e-6)
    np.testing.assert_allclose(terms["perplexity"], 2.0, rtol=1e-6)  # 3 and 3 of 6 uses
    np.testing.assert_allclose(loss, (0.5 + BETA + 1.0) * S + UNIFORM, rtol=1e-6)
    # d sum(loss) / d e_i = -2 sum_{k_j = i} (x_j - e_i): code -1 gets -2 (-2.3 + 3) = -1.4,
    # code +1 gets -2 (1.8 - 3) = 2.4.
    grad = jax.grad(lambda c: jnp.sum(_loss(c)[0]))(CODES)
    np.testing.assert_allclose(grad, [[-1.4], [2.4]], rtol=1e-5)
    x = np.asarray(X)[..., 0]
    grad_a = jax.grad(lambda a: jnp.sum(_loss(CODES, scale=a)[0]))(1.0)
    np.testing.assert_allclose(grad_a, (-1.0 + 2 * BETA) * np.sum(D * x), rtol=1e-5)
    # Negative control: a decoder fed e_k without the straight-through copy gives the encoder
    # only the commitment gradient.
    no_st = lambda a: jnp.sum(  # noqa: E731
        vqvae_loss(
            lambda v: a * v,
            lambda z: jnp.sign(jax.lax.stop_gradient(z)),
            _log_lik,
            CODES,
            X,
            None,
            commitment_cost=BETA,
        )[0]
    )
    assert abs(float(jax.grad(no_st)(1.0)) - float(grad_a)) > 0.1


def test_ema_codebook_leaves_the_codebook_term_out_and_updates_the_state():
    state = init_ema_codebook(CODES)
    loss, terms, updates = jax.jit(
        lambda s: _loss(s, ema_decay=0.5, ema_epsilon=0.0)
    )(state)  # fmt: skip
    np.testing.assert_allclose(loss, (0.5 + BETA) * S + UNIFORM, rtol=1e-6)
    np.testing.assert_allclose(terms["codebook"], S, rtol=1e-6)  # reported, not in the loss
    assert "restarted_codes" not in terms
    # Eqs. 6-8, decay 1/2: counts n = (3, 3), sums (-2.3, 1.8); N = 1/2 + 3/2 = 2,
    # m = (-1 - 2.3) / 2, (1 + 1.8) / 2; e = m / N.
    new = updates["codebook"]
    assert isinstance(new, EMACodebookState)
    np.testing.assert_allclose(new.cluster_size, [2.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(new.embedding_sum, [[-1.65], [1.4]], rtol=1e-6)
    np.testing.assert_allclose(new.codebook, [[-0.825], [0.7]], rtol=1e-6)
    # The codebook is state: the loss sends it no gradient.
    grad = jax.grad(lambda c: jnp.sum(_loss(EMACodebookState(state[0], state[1], c))[0]))(CODES)
    np.testing.assert_array_equal(grad, 0.0)


def test_dead_code_restart_and_a_prior_callable():
    codes = jnp.array([[-1.0], [1.0], [10.0]])  # code 2 is never used
    state = EMACodebookState(jnp.array([1.0, 1.0, 1e-6]), codes, codes)
    prior = lambda k: -0.3 * jnp.sum(k, axis=(1,)) - 1.0  # noqa: E731
    loss, terms, updates = jax.jit(
        lambda s, key: _loss(
            s, key=key, ema_decay=0.5, ema_epsilon=0.0, dead_code_threshold=1e-3,
            prior_log_prob_fn=prior,
        )
    )(state, jax.random.key(0))  # fmt: skip
    prior_nll = 0.3 * np.array([1.0, 2.0, 0.0]) + 1.0  # index sums 1, 2, 0
    np.testing.assert_allclose(terms["prior_nll"], prior_nll, rtol=1e-6)
    np.testing.assert_allclose(terms["neg_elbo"], 0.5 * S + prior_nll, rtol=1e-6)
    np.testing.assert_allclose(loss, (0.5 + BETA) * S + prior_nll, rtol=1e-6)
    np.testing.assert_array_equal(terms["restarted_codes"], 1.0)
    new = updates["codebook"]
    np.testing.assert_allclose(new.codebook[:2], [[-0.825], [0.7]], rtol=1e-6)
    assert float(new.cluster_size[2]) == 1.0
    assert np.any(np.isclose(float(new.codebook[2, 0]), np.asarray(X).reshape(-1)))
    np.testing.assert_allclose(new.embedding_sum[2], new.codebook[2])
    # The uniform prior over K = 3 codes: 2 log 3 (control: K enters the bound).
    _, uniform_terms, _ = _loss(state, ema_decay=0.5)
    np.testing.assert_allclose(uniform_terms["prior_nll"], 2 * math.log(3.0), rtol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="dead_code_threshold=0.1 needs an EMACodebookState"):
        _loss(CODES, dead_code_threshold=0.1)
    with pytest.raises(ValueError, match="dead_code_threshold=0.1 needs a key"):
        _loss(init_ema_codebook(CODES), dead_code_threshold=0.1)
    with pytest.raises(ValueError, match=r"log_likelihood_fn must return shape \(3,\)"):
        vqvae_loss(_identity, _identity, lambda o, x: o, CODES, X, None)
    with pytest.raises(ValueError, match=r"prior_log_prob_fn must return shape \(3,\)"):
        _loss(CODES, prior_log_prob_fn=lambda k: jnp.zeros((3, 2)))
