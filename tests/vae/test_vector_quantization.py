"""VQ-VAE vector quantization (``jaxgen.vae.vector_quantization``) against closed-form oracles.

* Nearest code: the matmul-form distance picks the brute-force argmin over all codes, ties
  to the lowest index (exact integer ties, checked to be real ties); a wrong distance
  (inner product only) disagrees.
* Straight-through gradients are eq. 3's: ``d sum(c z_q) / d z_e = c`` exactly and 0 for the
  codebook; ``codebook_loss`` sends ``2 (e_k - z_e)`` summed over assigned positions to the
  codebook and nothing to ``z_e``; ``commitment_loss`` sends ``2 (z_e - e_k)`` to ``z_e``
  and nothing to the codebook. Control: plain ``z_q = e_k`` gives the encoder no gradient.
* EMA codebook (appendix A.1): ``decay = 0`` is one Lloyd step (centroids); ``t`` updates on a
  fixed assignment follow the closed-form EMA trajectory and converge to the centroids;
  Laplace smoothing keeps unused codes finite (``epsilon = 0`` gives NaN); the init keeps
  unused codes in place (a zero init collapses them); a sharded batch gives global sums.
* Perplexity: uniform -> K, single code -> 1, a skewed usage -> exp(entropy) by hand.
* Dead-code restarts: only codes below threshold change, each to a batch vector, the count
  is right, and the perplexity of collapsed data rises.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgen.vae.vector_quantization import (
    EMACodebookState,
    codebook_perplexity,
    ema_codebook_update,
    init_ema_codebook,
    quantize,
    restart_dead_codes,
)

quantize_jit = jax.jit(quantize)
# decay, epsilon and threshold are traced (one compilation per shape); the eager calls in
# test_errors check their validation.
update_jit = jax.jit(ema_codebook_update)
restart_jit = jax.jit(restart_dead_codes)


def _sq_dist(z, codebook):
    """Brute-force ||z_n - e_k||^2 in float64, (N, K)."""
    z = np.asarray(z, np.float64).reshape(-1, np.shape(codebook)[-1])
    cb = np.asarray(codebook, np.float64)
    return np.sum((z[:, None, :] - cb[None, :, :]) ** 2, axis=-1)


def _random_problem(seed, z_shape, num_codes, dtype=np.float64):
    """Gaussian ``z_e`` and a codebook (numpy draws: no per-shape JAX compilation)."""
    rng = np.random.default_rng(seed)
    z_e = rng.standard_normal(z_shape)
    # Codes with very different norms, so an inner-product rule would differ from distances.
    scale = rng.uniform(0.2, 3.0, (num_codes, 1))
    codebook = rng.standard_normal((num_codes, z_shape[-1])) * scale
    return jnp.asarray(z_e, dtype), jnp.asarray(codebook, dtype)


# ----------------------------------------------------------------------- nearest code


def test_nearest_code_matches_brute_force(x64):
    z_e, codebook = _random_problem(0, (4, 3, 5, 6), 16)
    q = quantize_jit(z_e, codebook)
    dist = _sq_dist(z_e, codebook)
    expected = np.argmin(dist, axis=1).reshape(4, 3, 5)
    assert q.indices.dtype == jnp.int32 and q.indices.shape == (4, 3, 5)
    np.testing.assert_array_equal(np.asarray(q.indices), expected)
    # Forward value of the straight-through output is the chosen code.
    np.testing.assert_allclose(q.z_q, np.asarray(codebook)[expected], rtol=0, atol=1e-13)
    # Both losses are sum over positions and dims of ||z_e - e_k||^2 per example.
    per_example = np.min(dist, axis=1).reshape(4, -1).sum(axis=1)
    np.testing.assert_allclose(q.codebook_loss, per_example, rtol=1e-12)
    np.testing.assert_allclose(q.commitment_loss, per_example, rtol=1e-12)
    assert q.codebook_loss.shape == q.commitment_loss.shape == (4,)
    # Negative control: the argmax inner product (no ||e||^2 term) picks other codes.
    wrong = np.argmax(np.asarray(z_e).reshape(-1, 6) @ np.asarray(codebook).T, axis=1)
    assert np.mean(wrong != expected.reshape(-1)) > 0.1


def test_nearest_code_float32_is_within_rounding_of_the_minimum():
    z_e, codebook = _random_problem(1, (8, 16, 4), 32, np.float32)
    q = quantize_jit(z_e, codebook)
    dist = _sq_dist(z_e, codebook)
    chosen = np.take_along_axis(dist, np.asarray(q.indices).reshape(-1, 1), axis=1)[:, 0]
    gap = chosen - dist.min(axis=1)
    assert gap.max() <= 1e-5, gap.max()
    assert q.z_q.dtype == jnp.float32


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_ties_go_to_the_lowest_index(x64, dtype):
    codebook = jnp.array([[5, 5], [1, 0], [9, 9], [-1, 0], [1, 0]], dtype)
    # (0, 0) is at distance 1 from codes 1, 3 and 4; (1, 0) equals codes 1 and 4; (3, 1) is
    # at distance 5 from codes 1 and 4 and from nothing nearer.
    z_e = jnp.array([[[0, 0], [1, 0], [3, 1]]], dtype)
    q = quantize_jit(z_e, codebook)
    np.testing.assert_array_equal(np.asarray(q.indices), [[1, 1, 1]])
    # Control: these are real ties (two minimisers each), so "last index" would differ.
    dist = _sq_dist(z_e, codebook)
    minimisers = [np.flatnonzero(row == row.min()).tolist() for row in dist]
    assert minimisers == [[1, 3, 4], [1, 4], [1, 4]]


# ----------------------------------------------------------------------- gradients


def test_straight_through_and_loss_gradients_are_eq3(x64):
    z_e, codebook = _random_problem(2, (3, 4, 5), 6)
    c = jnp.asarray(np.random.default_rng(3).standard_normal(z_e.shape))

    def terms(z_e, codebook):
        q = quantize(z_e, codebook)
        plain = codebook[q.indices]  # negative control: no straight-through copy
        return {
            "decoder": jnp.sum(c * q.z_q),
            "codebook": jnp.sum(q.codebook_loss),
            "commitment": jnp.sum(q.commitment_loss),
            "plain": jnp.sum(c * plain),
        }

    grads = jax.jit(jax.jacrev(terms, argnums=(0, 1)))(z_e, codebook)
    grads = jax.tree.map(np.asarray, grads)
    idx = np.asarray(quantize_jit(z_e, codebook).indices).reshape(-1)
    assert np.bincount(idx).max() >= 2  # some code is shared, so the sum over positions matters
    e_k = np.asarray(codebook)[idx].reshape(z_e.shape)
    z = np.asarray(z_e)

    g_z, g_cb = grads["decoder"]
    np.testing.assert_array_equal(g_z, np.asarray(c))  # the decoder gradient, copied exactly
    np.testing.assert_array_equal(g_cb, 0.0)

    g_z, g_cb = grads["codebook"]
    expected_cb = np.zeros(codebook.shape)
    np.add.at(expected_cb, idx, 2.0 * (e_k - z).reshape(-1, 5))
    np.testing.assert_allclose(g_cb, expected_cb, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(g_z, 0.0)

    g_z, g_cb = grads["commitment"]
    np.testing.assert_allclose(g_z, 2.0 * (z - e_k), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(g_cb, 0.0)

    # Negative control: without the straight-through trick the encoder gets no gradient.
    g_plain = grads["plain"][0]
    np.testing.assert_array_equal(g_plain, 0.0)
    assert np.max(np.abs(g_plain - np.asarray(c))) > 1.0


# ----------------------------------------------------------------------- EMA codebook


def _clustered_problem(seed):
    """32 vectors in D = 3 and a 6-code codebook whose last code is never used."""
    z_e, codebook = _random_problem(seed, (8, 4, 3), 6)
    codebook = codebook.at[5].set(100.0)
    idx = quantize_jit(z_e, codebook).indices
    return z_e, codebook, idx


def _centroids(z_e, idx, num_codes):
    z = np.asarray(z_e).reshape(-1, z_e.shape[-1])
    i = np.asarray(idx).reshape(-1)
    counts = np.bincount(i, minlength=num_codes).astype(np.float64)
    sums = np.zeros((num_codes, z.shape[1]))
    np.add.at(sums, i, z)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts, sums, sums / counts[:, None]


def test_ema_with_zero_decay_is_one_lloyd_step(x64):
    z_e, codebook, idx = _clustered_problem(4)
    counts, _, centroids = _centroids(z_e, idx, 6)
    used = counts > 0
    assert not used[5] and used.sum() >= 3
    state = init_ema_codebook(codebook)
    new = update_jit(state, z_e, idx, decay=0.0, epsilon=1e-12)
    np.testing.assert_array_equal(np.asarray(new.cluster_size), counts)
    err = np.max(np.abs(np.asarray(new.codebook)[used] - centroids[used]))
    assert err < 1e-9, err
    assert np.all(np.isfinite(np.asarray(new.codebook)))
    # Negative control: with decay 0.5 the codes are only half-way there.
    half = update_jit(state, z_e, idx, decay=0.5, epsilon=1e-12)
    err_half = np.max(np.abs(np.asarray(half.codebook)[used] - centroids[used]))
    assert err_half > 1e-2, err_half


def test_ema_follows_the_closed_form_trajectory_to_the_centroids(x64):
    z_e, codebook, idx = _clustered_problem(5)
    counts, sums, centroids = _centroids(z_e, idx, 6)
    used = counts > 0
    decay, eps = 0.9, 1e-12

    @jax.jit
    def run(state, num_steps):
        return jax.lax.fori_loop(
            0,
            num_steps,
            lambda _, s: ema_codebook_update(s, z_e, idx, decay=decay, epsilon=eps),
            state,
        )

    state0 = init_ema_codebook(codebook)
    # After t steps on a fixed assignment: N_t = d^t + (1 - d^t) n, m_t = d^t e_0 + (1 - d^t) s.
    t = 5
    w = decay**t
    n_t = w + (1 - w) * counts
    m_t = w * np.asarray(codebook) + (1 - w) * sums
    smoothed = (n_t + eps) / (n_t.sum() + 6 * eps) * n_t.sum()
    s5 = run(state0, t)
    np.testing.assert_allclose(s5.cluster_size, n_t, rtol=1e-12)
    np.testing.assert_allclose(s5.embedding_sum, m_t, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s5.codebook, m_t / smoothed[:, None], rtol=1e-9)
    # Fixed point: the centroid of each used code's (stationary) assignment.
    s300 = run(state0, 300)
    err = np.max(np.abs(np.asarray(s300.codebook)[used] - centroids[used]))
    assert err < 1e-9, err
    assert np.all(np.isfinite(np.asarray(s300.codebook)))
    # Negative control: after 5 steps the codes are not yet at the centroids.
    err5 = np.max(np.abs(np.asarray(s5.codebook)[used] - centroids[used]))
    assert err5 > 1e-2, err5


def test_laplace_smoothing_and_init_keep_unused_codes_finite(x64):
    z_e, codebook, idx = _clustered_problem(6)
    state = init_ema_codebook(codebook)
    # The init reproduces the codebook: all N_i = 1, so the smoothing is the identity.
    np.testing.assert_allclose(update_jit(state, z_e, idx, decay=1.0).codebook, codebook, 1e-14)
    smoothed = update_jit(state, z_e, idx, decay=0.0, epsilon=1e-5)
    assert np.all(np.isfinite(np.asarray(smoothed.codebook)))
    # Negative control: without smoothing the unused code (N = 0) is 0 / 0.
    raw = update_jit(state, z_e, idx, decay=0.0, epsilon=0.0)
    used = np.bincount(np.asarray(idx).reshape(-1), minlength=6) > 0
    assert not used[5]
    assert np.isnan(np.asarray(raw.codebook)[~used]).all()
    assert np.isfinite(np.asarray(raw.codebook)[used]).all()
    # The init N = 1, m = e keeps an unused code in place under decay; a zero init would
    # send it to the origin.
    kept = update_jit(state, z_e, idx, decay=0.99)
    np.testing.assert_allclose(kept.codebook[5], codebook[5], rtol=1e-4)
    zero_init = EMACodebookState(jnp.zeros(6), jnp.zeros((6, 3)), codebook)
    collapsed = update_jit(zero_init, z_e, idx, decay=0.99)
    np.testing.assert_array_equal(np.asarray(collapsed.codebook[5]), 0.0)


def test_ema_counts_are_global_over_a_sharded_batch(x64):
    z_e, codebook = _random_problem(7, (16, 2, 3), 4)
    idx = quantize_jit(z_e, codebook).indices
    state = init_ema_codebook(codebook)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    shard = NamedSharding(mesh, P("data"))
    sharded = update_jit(state, jax.device_put(z_e, shard), jax.device_put(idx, shard), decay=0.0)
    whole = update_jit(state, z_e, idx, decay=0.0)
    np.testing.assert_allclose(sharded.codebook, whole.codebook, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(np.asarray(sharded.cluster_size), np.asarray(whole.cluster_size))
    # Negative control: one shard's data alone gives different statistics.
    local = update_jit(state, z_e[:2], idx[:2], decay=0.0)
    assert np.max(np.abs(np.asarray(local.cluster_size) - np.asarray(whole.cluster_size))) >= 1


# ----------------------------------------------------------------------- perplexity


def _entropy_perplexity(indices, num_codes):
    counts = np.bincount(np.asarray(indices).reshape(-1), minlength=num_codes)
    p = counts[counts > 0] / counts.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def test_perplexity(x64):
    k = 7
    perplexity = jax.jit(codebook_perplexity, static_argnums=1)
    uniform = np.tile(np.arange(k), (3, 2))  # (3, 14), every code 6 times
    np.testing.assert_allclose(perplexity(uniform, k), k, rtol=1e-12)
    np.testing.assert_allclose(perplexity(np.full((3, 14), 2), k), 1.0, rtol=1e-12)
    counts = np.array([21, 11, 4, 0, 6, 0, 0])
    skewed = np.repeat(np.arange(k), counts).reshape(3, 14)
    p = counts[counts > 0] / counts.sum()
    by_hand = np.exp(-np.sum(p * np.log(p)))
    value = float(perplexity(skewed, k))
    np.testing.assert_allclose(value, by_hand, rtol=1e-12)
    # Negative control: a skewed usage of 4 codes has a perplexity well below 4.
    assert value < 4 - 0.5
    # quantize reports the same number for its own indices.
    z_e, codebook = _random_problem(8, (4, 6, 2), 5)
    q = quantize_jit(z_e, codebook)
    np.testing.assert_allclose(q.perplexity, _entropy_perplexity(q.indices, 5), rtol=1e-12)


# ----------------------------------------------------------------------- dead-code restarts


def _collapsed_problem():
    centers = np.array([[5.0, 5.0], [5.0, -5.0], [-5.0, 5.0], [-5.0, -5.0]])
    noise = 0.1 * np.random.default_rng(9).standard_normal((64, 2))
    z_e = (centers[np.arange(64) % 4] + noise).reshape(16, 4, 2)
    # Code 0 at the origin takes everything; the others sit far away. Codes 3 and 5 are
    # alive (code 5 just above the threshold 1e-3), the rest are dead.
    codebook = np.concatenate([np.zeros((1, 2)), 100.0 + np.arange(14.0).reshape(7, 2)])
    cluster_size = np.array([64.0, 1e-4, 5e-4, 0.5, 1e-6, 1.5e-3, 0.0, 9e-4])
    state = EMACodebookState(cluster_size, codebook * cluster_size[:, None], codebook)
    return jnp.asarray(z_e, jnp.float32), jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), state)


def test_restart_dead_codes():
    z_e, state = _collapsed_problem()
    before = quantize_jit(z_e, state.codebook).perplexity
    np.testing.assert_allclose(before, 1.0, rtol=1e-6)
    key = jax.random.key(10)
    new, count = restart_jit(state, z_e, key, threshold=1e-3)
    dead = np.array([False, True, True, False, True, False, True, True])
    assert count.dtype == jnp.int32 and int(count) == dead.sum() == 5
    old_cb, new_cb = np.asarray(state.codebook), np.asarray(new.codebook)
    # Live codes are untouched.
    np.testing.assert_array_equal(new_cb[~dead], old_cb[~dead])
    np.testing.assert_array_equal(np.asarray(new.cluster_size)[~dead], state.cluster_size[~dead])
    np.testing.assert_array_equal(
        np.asarray(new.embedding_sum)[~dead], np.asarray(state.embedding_sum)[~dead]
    )
    # Each restarted code is exactly one of the batch vectors, with N = 1 and m = e.
    dist = _sq_dist(z_e, new_cb[dead])  # (64, 5)
    np.testing.assert_array_equal(dist.min(axis=0), 0.0)
    np.testing.assert_array_equal(np.asarray(new.cluster_size)[dead], 1.0)
    np.testing.assert_array_equal(np.asarray(new.embedding_sum)[dead], new_cb[dead])
    # The restarted codebook spreads the collapsed data over several codes.
    after = float(quantize_jit(z_e, new.codebook).perplexity)
    assert after > 2.0, after
    # No gradient flows to the encoder through a restart.
    g = jax.jit(jax.grad(lambda z: jnp.sum(restart_dead_codes(state, z, key)[0].codebook)))
    np.testing.assert_array_equal(np.asarray(g(z_e)), 0.0)
    # Negative control: with threshold 0 nothing is dead, nothing changes.
    same, none = restart_jit(state, z_e, key, threshold=0.0)
    assert int(none) == 0
    np.testing.assert_array_equal(np.asarray(same.codebook), old_cb)
    np.testing.assert_allclose(quantize_jit(z_e, same.codebook).perplexity, 1.0, rtol=1e-6)


# ----------------------------------------------------------------------- errors


def test_errors():
    cb = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match="rank >= 2"):
        quantize(jnp.zeros(3), cb)
    with pytest.raises(ValueError, match="does not match"):
        quantize(jnp.zeros((2, 5)), cb)
    with pytest.raises(ValueError, match="float"):
        quantize(jnp.zeros((2, 3), jnp.int32), cb)
    with pytest.raises(ValueError, match=r"shape \(K, D\)"):
        quantize(jnp.zeros((2, 3)), jnp.zeros((4, 3, 1)))
    state = init_ema_codebook(cb)
    with pytest.raises(ValueError, match="indices must have shape"):
        ema_codebook_update(state, jnp.zeros((2, 5, 3)), jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(ValueError, match="integer"):
        ema_codebook_update(state, jnp.zeros((2, 3)), jnp.zeros((2,)))
    with pytest.raises(ValueError, match="decay"):
        ema_codebook_update(state, jnp.zeros((2, 3)), jnp.zeros((2,), jnp.int32), decay=1.5)
    with pytest.raises(ValueError, match="epsilon"):
        ema_codebook_update(state, jnp.zeros((2, 3)), jnp.zeros((2,), jnp.int32), epsilon=-1.0)
    with pytest.raises(ValueError, match="cluster_size"):
        ema_codebook_update(
            state._replace(cluster_size=jnp.ones(3)), jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32)
        )
    with pytest.raises(ValueError, match="threshold"):
        restart_dead_codes(state, jnp.zeros((2, 3)), jax.random.key(0), threshold=-1.0)
    with pytest.raises(ValueError, match="num_codes"):
        codebook_perplexity(jnp.zeros(3, jnp.int32), 0)
