"""Token filtering and sequence sampling (``jaxgen.autoregressive.sampling``).

* ``filter_logits``: top-k with k = 1 is the argmax; the nucleus of a hand example is
  the smallest prefix with mass >= p (checked by its definition, ties kept); temperature
  gives ``softmax(l / tau)`` and tends to the argmax as tau -> 0.
* Sampling a Markov chain (step function = table lookup) matches the exact joint law of
  whole sequences (chi-square over all V^T sequences), plain and filtered; the cached
  (``sample_sequence``) and uncached samplers draw identical tokens for one key, both
  count one evaluation per token, and the draw of example b at position t uses
  ``fold_in(fold_in(key, b), t)``: a batch of 16 is the first 16 rows of a batch of 64.
Every check has a negative control that fails it.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import chisquare

from jaxgen import core
from jaxgen.autoregressive.sampling import (
    filter_logits,
    sample_sequence,
    sample_sequence_uncached,
)


def _kept(filtered) -> set[int]:
    return set(np.flatnonzero(np.isfinite(np.asarray(filtered))).tolist())


def test_top_k_one_is_argmax_and_ties_are_kept():
    logits = np.random.default_rng(0).normal(size=(6, 9)).astype(np.float32)
    out = np.asarray(filter_logits(jnp.asarray(logits), top_k=1))
    for row, filtered in zip(logits, out, strict=True):
        assert _kept(filtered) == {int(np.argmax(row))}
        np.testing.assert_array_equal(filtered[np.isfinite(filtered)], row.max())
    three = np.asarray(filter_logits(jnp.asarray(logits), top_k=3))
    for row, filtered in zip(logits, three, strict=True):
        assert _kept(filtered) == set(np.argsort(row)[-3:].tolist())
    # Ties at the k-th value are all kept (documented), k >= V keeps everything.
    tied = jnp.array([1.0, 3.0, 3.0, 0.0])
    assert _kept(filter_logits(tied, top_k=1)) == {1, 2}
    assert _kept(filter_logits(tied, top_k=4)) == {0, 1, 2, 3}
    # Negative control: k = 2 keeps more than the argmax.
    assert len(_kept(filter_logits(jnp.asarray(logits[0]), top_k=2))) == 2


NUCLEUS_PROBS = np.array([0.15, 0.5, 0.1, 0.25])  # sorted: 0.5 (1), 0.25 (3), 0.15 (0), 0.1 (2)
NUCLEUS_CASES = [  # (p, hand nucleus)
    (0.3, {1}),
    (0.7, {1, 3}),
    (0.8, {0, 1, 3}),
    (0.95, {0, 1, 2, 3}),
    (1.0, {0, 1, 2, 3}),
]


def _is_nucleus(kept: set[int], probs: np.ndarray, p: float) -> bool:
    """The definition: mass(kept) >= p, and dropping its least likely member falls below p,
    and every token more likely than a kept one is kept."""
    if not kept:
        return False
    mass = probs[sorted(kept)].sum()
    smallest = min(probs[i] for i in kept)
    prefix = all(i in kept for i in range(probs.size) if probs[i] > smallest)
    return bool(mass >= p and mass - smallest < p and prefix)


@pytest.mark.parametrize(("p", "nucleus"), NUCLEUS_CASES)
def test_top_p_keeps_exactly_the_nucleus(p, nucleus):
    kept = _kept(filter_logits(jnp.log(jnp.asarray(NUCLEUS_PROBS)), top_p=p))
    assert kept == nucleus
    assert _is_nucleus(kept, NUCLEUS_PROBS, p)
    # Negative control: the "cumulative mass <= p" reading keeps too little.
    order = np.argsort(-NUCLEUS_PROBS)
    naive = set(order[np.cumsum(NUCLEUS_PROBS[order]) <= p].tolist())
    if p < 1.0:
        assert not _is_nucleus(naive, NUCLEUS_PROBS, p)


def test_top_p_ties_and_temperature_order():
    probs = np.array([0.2, 0.4, 0.2, 0.2])
    # The smallest nucleus for p = 0.5 is {0.4, one 0.2}; the tie keeps all the 0.2s.
    assert _kept(filter_logits(jnp.log(jnp.asarray(probs)), top_p=0.5)) == {0, 1, 2, 3}
    # Temperature is applied first: tau = 0.5 squares the probabilities,
    # (0.5, 0.25, 0.15, 0.1)^2 / 0.345 = (0.725, 0.181, 0.065, 0.029), so p = 0.7 keeps one.
    logits = jnp.log(jnp.asarray(NUCLEUS_PROBS))
    assert _kept(filter_logits(logits, temperature=0.5, top_p=0.7)) == {1}
    assert _kept(filter_logits(logits, top_p=0.7)) == {1, 3}  # control: without temperature
    # top-k before top-p: the nucleus of the renormalised top-2 (0.67, 0.33) for p = 0.7.
    assert _kept(filter_logits(logits, top_k=2, top_p=0.7)) == {1, 3}
    assert _kept(filter_logits(logits, top_k=2, top_p=0.6)) == {1}


def test_temperature_scaling_and_zero_limit(x64):
    logits = np.array([0.3, 1.2, -0.5, 1.0])
    gaps = []
    for tau in (2.0, 1.0, 0.1, 0.01):
        probs = np.asarray(jax.nn.softmax(filter_logits(jnp.asarray(logits), temperature=tau)))
        z = sum(math.exp((v - 1.2) / tau) for v in logits)
        hand = np.array([math.exp((v - 1.2) / tau) / z for v in logits])
        assert np.max(np.abs(probs - hand)) < 1e-14
        gaps.append(1.0 - probs[1])
    # Tends to the argmax: 1 - p(argmax) = sum_j exp(-gap_j / tau) / z -> 0, monotonically.
    assert all(a > b for a, b in itertools.pairwise(gaps))
    assert gaps[-1] < 1e-8, gaps  # exp(-0.2 / 0.01) = 2e-9
    assert gaps[1] > 0.3  # negative control: at tau = 1 the distribution is far from greedy
    # With tied maxima the limit is uniform over the tie.
    tied = np.asarray(jax.nn.softmax(filter_logits(jnp.array([2.0, 0.0, 2.0]), temperature=1e-3)))
    np.testing.assert_allclose(tied, [0.5, 0.0, 0.5], atol=1e-12)


VOCAB = 3
BOS = VOCAB
LENGTH = 3
NUM_SAMPLES = 6000
# Markov chain: row a = p(x_t | x_{t-1} = a), row BOS = p(x_0).
CHAIN = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25], [0.5, 0.3, 0.2]])


def _chain_step(carry, token, position):
    del position
    return carry, jnp.log(jnp.asarray(CHAIN, jnp.float32))[token]


def _chain_logits(inputs):
    return jnp.log(jnp.asarray(CHAIN, jnp.float32))[inputs]


def _filtered_chain(temperature=1.0, top_k=None, top_p=None) -> np.ndarray:
    """The chain's rows after filtering, renormalised (NumPy float64, by hand)."""
    out = []
    for row in CHAIN:
        tempered = row ** (1.0 / temperature)
        tempered = tempered / tempered.sum()
        keep = np.ones(VOCAB, bool)
        if top_k is not None:
            keep &= tempered >= np.sort(tempered)[-top_k]
        if top_p is not None:
            order = np.argsort(-np.where(keep, tempered, 0.0))
            masses = np.where(keep, tempered, 0.0)[order]
            before = np.concatenate([[0.0], np.cumsum(masses)[:-1]]) / masses.sum()
            keep &= tempered >= masses[before < top_p].min()
        kept = np.where(keep, tempered, 0.0)
        out.append(kept / kept.sum())
    return np.array(out)


def _sequence_probs(table: np.ndarray) -> np.ndarray:
    """Exact probability of each of the V^T sequences, in itertools.product order."""
    return np.array(
        [
            table[BOS, s[0]] * np.prod([table[a, b] for a, b in itertools.pairwise(s)])
            for s in itertools.product(range(VOCAB), repeat=LENGTH)
        ]
    )


def _counts(tokens: np.ndarray) -> np.ndarray:
    index = np.ravel_multi_index(tokens.T, (VOCAB,) * LENGTH)
    return np.bincount(index, minlength=VOCAB**LENGTH)


def _chi2_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    support = probs > 0
    assert counts[~support].sum() == 0, "a filtered-out sequence was drawn"
    return float(chisquare(counts[support], probs[support] * counts.sum()).pvalue)


@pytest.mark.parametrize(
    "options",
    [{}, {"temperature": 0.7, "top_k": 2}, {"top_p": 0.75}],
    ids=["plain", "temperature_top_k", "top_p"],
)
def test_markov_chain_frequencies_and_cached_equals_uncached(options):
    @jax.jit
    def both(key):
        shape = (NUM_SAMPLES, LENGTH)
        cached = sample_sequence(
            _chain_step, jnp.zeros((NUM_SAMPLES,)), key, shape, bos=BOS, **options
        )
        uncached = sample_sequence_uncached(_chain_logits, key, shape, bos=BOS, **options)
        assert cached.nfe == LENGTH and uncached.nfe == LENGTH
        return cached.samples, uncached.samples

    tokens, uncached = (np.asarray(a) for a in both(jax.random.key(0)))
    assert tokens.shape == (NUM_SAMPLES, LENGTH) and tokens.dtype == np.int32
    np.testing.assert_array_equal(uncached, tokens)
    exact = _sequence_probs(_filtered_chain(**options))
    p_value = _chi2_pvalue(_counts(tokens), exact)
    # Negative control: the unfiltered chain (or, unfiltered, the transposed chain).
    wrong_table = _filtered_chain() if options else CHAIN[[1, 2, 0, 3]]
    wrong = _sequence_probs(wrong_table)
    p_wrong = float(chisquare(_counts(tokens), wrong * NUM_SAMPLES).pvalue)
    print(f"{options}: chi-square p = {p_value:.3f}, against the wrong law p = {p_wrong:.1e}")
    assert p_value > 1e-4, p_value
    assert p_wrong < 1e-8, p_wrong


def test_position_t_uses_fold_in_key_t():
    """A prefix-independent model: token t of example b is
    ``categorical(fold_in(fold_in(key, b), t), logits[b])``."""
    logits = jnp.array([[0.1, -0.3, 0.9, 0.0]] * 5)

    @jax.jit
    def both(key):
        tokens = sample_sequence(
            lambda c, tok, pos: (c, logits), None, key, (5, 4), bos=4, top_k=3
        ).samples
        filtered = filter_logits(logits, top_k=3)
        by_hand = [
            [
                jax.random.categorical(jax.random.fold_in(jax.random.fold_in(key, b), t), row)
                for t in range(4)
            ]
            for b, row in enumerate(filtered)
        ]
        return tokens, jnp.asarray(by_hand)

    tokens, by_hand = both(jax.random.key(3))
    np.testing.assert_array_equal(np.asarray(tokens), np.asarray(by_hand))
    # Negative control: another key gives other tokens.
    other, _ = both(jax.random.key(4))
    assert np.any(np.asarray(other) != np.asarray(tokens))


def test_bad_options_raise():
    logits = jnp.zeros((2, 4))
    with pytest.raises(ValueError, match="temperature"):
        filter_logits(logits, temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        filter_logits(logits, top_k=0)
    with pytest.raises(ValueError, match="top_p"):
        filter_logits(logits, top_p=1.5)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="batch"):
        sample_sequence(_chain_step, (jnp.zeros(2), jnp.zeros(3)), key, (2, 2), bos=BOS)
    with pytest.raises(ValueError, match="shape"):
        sample_sequence_uncached(_chain_logits, key, (2, 0), bos=BOS)
    with pytest.raises(ValueError, match=r"\(B, length\)"):
        sample_sequence_uncached(_chain_logits, key, (2, 3, 1), bos=BOS)
    with pytest.raises(ValueError, match="per-example keys"):
        sample_sequence_uncached(_chain_logits, core.example_keys(key, 3), (2, 3), bos=BOS)


def test_batch_of_16_is_the_first_16_rows_of_64():
    """Per-example keys: cached and uncached draws of 16 sequences are the first 16 rows
    of a draw of 64 with the same key (exactly: tokens), and a (B,) slice of per-example keys
    draws the matching rows."""
    key = jax.random.key(11)
    options = {"temperature": 0.9, "top_p": 0.9}

    def draw(n, keys):
        cached = sample_sequence(_chain_step, jnp.zeros((n,)), keys, (n, 5), bos=BOS, **options)
        uncached = sample_sequence_uncached(_chain_logits, keys, (n, 5), bos=BOS, **options)
        return cached.samples, uncached.samples

    small = [np.asarray(a) for a in jax.jit(lambda k: draw(16, k))(key)]
    big = [np.asarray(a) for a in jax.jit(lambda k: draw(64, k))(key)]
    for s, b in zip(small, big, strict=True):
        np.testing.assert_array_equal(s, b[:16])
    middle = jax.jit(lambda k: draw(16, k))(core.example_keys(key, 64)[32:48])
    np.testing.assert_array_equal(np.asarray(middle[0]), big[0][32:48])
    # Negative control: the rows are not all alike (each example has its own noise).
    assert len({tuple(row) for row in big[0]}) > 16
