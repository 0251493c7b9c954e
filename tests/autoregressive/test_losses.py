"""Autoregressive losses (``jaxgen.autoregressive.losses``) against hand-computed references.

* ``token_cross_entropy`` equals ``-sum_t [l_t[x_t] - log sum_v exp l_t[v]]`` written with
  ``math.exp`` / ``math.log`` loops, with and without a mask (float64); its terms are the
  number of scored tokens and ``bits_per_token``.
* The shift convention: a bigram (Markov-chain) model scored through ``shift_right`` gives
  exactly ``-log pi(x_0) - sum_t log A[x_{t-1}, x_t]``; scoring the unshifted tokens does not.
* Uniform logits give ``T log V`` nats, i.e. ``log2 V`` bits per token / per pixel.
* ``image_nll`` (PixelCNN's objective) is ``-log p(x)`` of a tiny image with the categorical
  probabilities written out by hand, and the hand log-softmax sum over every position of a
  random (B, H, W, C, L) logit array (float64); its ``bits_per_dim`` divides by ``H W C log 2``;
  it equals ``token_cross_entropy`` of the raster-order flattening; it is jittable.
Every check has a negative control that fails it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.autoregressive import image_nll
from jaxgen.autoregressive.losses import (
    bits_per_dim,
    bits_per_token,
    shift_right,
    token_cross_entropy,
)


def _hand_nll(logits: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    batch, length, vocab = logits.shape
    out = []
    for b in range(batch):
        total = 0.0
        for t in range(length):
            log_z = math.log(sum(math.exp(logits[b, t, v]) for v in range(vocab)))
            total -= mask[b, t] * (logits[b, t, targets[b, t]] - log_z)
        out.append(total)
    return np.array(out)


def test_token_cross_entropy_matches_hand_log_softmax(x64):
    rng = np.random.default_rng(0)
    logits = 3.0 * rng.normal(size=(3, 5, 7))
    targets = rng.integers(0, 7, size=(3, 5))
    mask = (rng.random((3, 5)) < 0.6).astype(np.float64)

    nll, terms = token_cross_entropy(jnp.asarray(logits), jnp.asarray(targets))
    count = terms["num_tokens"]
    np.testing.assert_allclose(terms["bits_per_token"], nll / (5 * math.log(2)), rtol=1e-12)
    err = float(np.max(np.abs(np.asarray(nll) - _hand_nll(logits, targets, np.ones((3, 5))))))
    assert err < 1e-12, err
    np.testing.assert_array_equal(np.asarray(count), [5.0, 5.0, 5.0])

    nll_m, terms_m = token_cross_entropy(
        jnp.asarray(logits), jnp.asarray(targets), mask=jnp.asarray(mask > 0)
    )
    count_m = terms_m["num_tokens"]
    scored = mask.sum(1) > 0
    np.testing.assert_allclose(
        np.asarray(terms_m["bits_per_token"]),
        np.where(scored, np.asarray(nll_m) / (np.maximum(mask.sum(1), 1) * math.log(2)), 0.0),
        rtol=1e-12,
    )
    err_m = float(np.max(np.abs(np.asarray(nll_m) - _hand_nll(logits, targets, mask))))
    print(f"|nll - hand| <= {err:.1e} (no mask), {err_m:.1e} (mask)")
    assert err_m < 1e-12, err_m
    np.testing.assert_array_equal(np.asarray(count_m), mask.sum(1))
    # Negative controls: the wrong targets, or ignoring the mask, change the values.
    wrong = _hand_nll(logits, (targets + 1) % 7, np.ones((3, 5)))
    assert np.max(np.abs(np.asarray(nll) - wrong)) > 0.5
    assert np.max(np.abs(np.asarray(nll_m) - np.asarray(nll))) > 0.5


def test_shift_convention_scores_a_markov_chain_exactly(x64):
    """Bigram model: the logits at input token ``a`` are ``log A[a]``, with the start row
    ``A[bos] = pi``; through ``shift_right`` the loss is the chain's exact ``-log p(x)``."""
    rng = np.random.default_rng(1)
    vocab, bos = 4, 4
    table = rng.dirichlet(np.ones(vocab), size=vocab + 1)  # rows 0..V-1: A, row V: pi
    x = np.array([[2, 0, 3, 3, 1], [1, 1, 0, 2, 2]])
    inputs = shift_right(jnp.asarray(x), bos=bos)
    np.testing.assert_array_equal(np.asarray(inputs), [[4, 2, 0, 3, 3], [4, 1, 1, 0, 2]])
    nll, _ = token_cross_entropy(jnp.log(jnp.asarray(table))[inputs], jnp.asarray(x))

    exact = []
    for row in x:
        log_p = math.log(table[bos, row[0]])
        log_p += sum(math.log(table[a, b]) for a, b in zip(row[:-1], row[1:], strict=True))
        exact.append(-log_p)
    err = float(np.max(np.abs(np.asarray(nll) - exact)))
    assert err < 1e-12, err
    # Negative control: feeding the unshifted tokens scores p(x_t | x_t), not the chain.
    unshifted, _ = token_cross_entropy(jnp.log(jnp.asarray(table))[x], jnp.asarray(x))
    assert np.max(np.abs(np.asarray(unshifted) - exact)) > 0.5


def test_uniform_model_gives_log2_vocab_bits():
    """Uniform logits over the 17 grey levels: 64 log 17 nats per 8x8 digit, log2 17 bits."""
    logits = jnp.zeros((2, 64, 17))
    targets = jnp.asarray(np.random.default_rng(2).integers(0, 17, size=(2, 64)))
    nll, terms = token_cross_entropy(logits, targets)
    count = terms["num_tokens"]
    np.testing.assert_allclose(np.asarray(nll), 64 * math.log(17), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(terms["bits_per_token"]), math.log2(17), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(bits_per_token(nll, count)), math.log2(17), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(bits_per_dim(nll, 64)), math.log2(17), rtol=1e-6)
    corpus = bits_per_token(jnp.sum(nll), jnp.sum(count))
    np.testing.assert_allclose(float(corpus), math.log2(17), rtol=1e-6)
    # Negative control: logits peaked on the targets score far fewer bits.
    peaked = 5.0 * jnp.eye(17)[targets]
    peaked_nll, peaked_terms = token_cross_entropy(peaked, targets)
    fewer = bits_per_token(peaked_nll, peaked_terms["num_tokens"])
    assert float(jnp.max(fewer)) < 0.5 * math.log2(17)


def test_bad_inputs_raise():
    logits = jnp.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="targets must lie in 0..3"):
        token_cross_entropy(logits, jnp.array([[0, 1, 4], [0, 0, 0]]))
    with pytest.raises(ValueError, match="logits must have shape"):
        token_cross_entropy(logits, jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(ValueError, match="integer tokens"):
        token_cross_entropy(logits, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="mask must have shape"):
        token_cross_entropy(logits, jnp.zeros((2, 3), jnp.int32), mask=jnp.ones((2,)))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        shift_right(jnp.zeros((3,), jnp.int32), bos=1)
    with pytest.raises(ValueError, match="bos"):
        shift_right(jnp.zeros((1, 3), jnp.int32), bos=-1)


def test_image_nll_of_a_tiny_image_is_its_categorical_log_likelihood(x64):
    """A 1x2x2 image (H=1, W=2, C=2), L=3 levels, probabilities chosen by hand:
    ``-log p(x) = -log(0.5 * 0.6 * 0.2 * 0.7)``."""
    probs = np.array(
        [
            [
                [[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]],  # pixel (0, 0): channels 0, 1
                [[0.2, 0.2, 0.6], [0.1, 0.2, 0.7]],  # pixel (0, 1)
            ]
        ]
    )[None]  # (1, 1, 2, 2, 3)
    x = np.array([[[[0, 1], [0, 2]]]])  # (1, 1, 2, 2): p = 0.5, 0.6, 0.2, 0.7
    nll, terms = image_nll(jnp.asarray(np.log(probs)), jnp.asarray(x))
    by_hand = -math.log(0.5 * 0.6 * 0.2 * 0.7)
    assert nll.shape == (1,) and set(terms) == {"bits_per_dim"}
    assert abs(float(nll[0]) - by_hand) < 1e-12
    assert abs(float(terms["bits_per_dim"][0]) - by_hand / (4 * math.log(2))) < 1e-12
    # Unnormalised logits (a constant added per position) give the same likelihood.
    shifted = np.log(probs) + np.arange(4.0).reshape(1, 1, 2, 2, 1)
    assert abs(float(image_nll(jnp.asarray(shifted), jnp.asarray(x))[0][0]) - by_hand) < 1e-12
    # Negative control: other levels (p = 0.25, 0.3, 0.6, 0.1) are another number.
    other, _ = image_nll(jnp.asarray(np.log(probs)), jnp.asarray([[[[1, 2], [2, 0]]]]))
    assert abs(float(other[0]) + math.log(0.25 * 0.3 * 0.6 * 0.1)) < 1e-12
    assert abs(float(other[0]) - by_hand) > 1.0


def test_image_nll_matches_hand_log_softmax_and_the_token_loss(x64):
    rng = np.random.default_rng(3)
    logits = 2.0 * rng.normal(size=(3, 2, 3, 2, 5))  # (B, H, W, C, L)
    x = rng.integers(0, 5, size=(3, 2, 3, 2))
    flat_logits, flat_x = logits.reshape(3, 12, 5), x.reshape(3, 12)
    by_hand = _hand_nll(flat_logits, flat_x, np.ones((3, 12)))  # raster order, channels inner

    nll, terms = jax.jit(image_nll)(jnp.asarray(logits), jnp.asarray(x))
    err = float(np.max(np.abs(np.asarray(nll) - by_hand)))
    print(f"|image_nll - hand| <= {err:.1e}")
    assert err < 1e-12, err
    np.testing.assert_allclose(terms["bits_per_dim"], by_hand / (12 * math.log(2)), rtol=1e-12)
    token_nll, token_terms = token_cross_entropy(jnp.asarray(flat_logits), jnp.asarray(flat_x))
    np.testing.assert_allclose(nll, token_nll, rtol=1e-12)
    np.testing.assert_allclose(terms["bits_per_dim"], token_terms["bits_per_token"], rtol=1e-12)
    # Negative controls: wrong levels, or another position's logits, change the values.
    wrong, _ = image_nll(jnp.asarray(logits), jnp.asarray((x + 1) % 5))
    assert np.min(np.abs(np.asarray(wrong) - by_hand)) > 0.1
    swapped, _ = image_nll(jnp.asarray(logits[:, ::-1]), jnp.asarray(x))
    assert np.max(np.abs(np.asarray(swapped) - by_hand)) > 0.1
    with pytest.raises(ValueError, match="0..4"):
        image_nll(jnp.asarray(logits), jnp.asarray(x + 5))
