"""Image log-likelihood and ancestral sampling (``jaxgen.autoregressive.image_sampling``).

* ``image_log_prob`` equals the sum of log-softmax values written out by hand (float64);
  ``bits_per_dim`` of a uniform model on the digits' shape is ``log2 17``.
* ``sample_image`` on a known autoregressive distribution (a Markov chain along the raster
  order: the logits of entry t are a fixed table row picked by entry t - 1) gives pair
  frequencies ``(x_{t-1}, x_t)`` that match the exact chain (z-scores, Bonferroni), with
  temperature, top-k and nucleus filtering (exact filtered chain computed in NumPy).
* Temperature 0 and top_k = 1 give the argmax chain; temperature 1e-3 too.
* Sampling a tiny gated PixelCNN reproduces the model's own ``exp(image_log_prob)`` over all
  81 images of a 1 x 2 x 2 grid with 3 levels.
* Per-example keys: with the same key a batch of 16 is exactly the first 16 images of a
  batch of 64 (the chain and a gated PixelCNN), and ``nfe`` counts one pass per position.
Negative controls: a one-pass sampler (every entry drawn from the logits of the empty
image), the unfiltered chain for filtered samples, a wrong observed level, nats for bits.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import softmax

from jaxgen import core
from jaxgen.autoregressive.image_sampling import image_log_prob, sample_image
from jaxgen.core import bits_per_dim
from jaxgen.nets.pixelcnn import GatedPixelCNN
from tests.diffusion.stats import bonferroni_z

SHAPE = (1, 2, 2)  # (H, W, C): four entries in raster order (0,0,0) (0,0,1) (0,1,0) (0,1,1)
LEVELS = 3
NUM_SAMPLES = 20_000


def chain_tables(seed: int = 0):
    """Logits of entry 0 (L,) and of entry t given entry t - 1 (D - 1, L, L)."""
    rng = np.random.default_rng(seed)
    d = math.prod(SHAPE)
    return rng.normal(size=LEVELS), rng.normal(size=(d - 1, LEVELS, LEVELS))


def chain_logits_fn(first, table):
    """Integer images (B, 1, 2, 2) -> logits (B, 1, 2, 2, L) of the Markov chain."""
    first, table = jnp.asarray(first, jnp.float32), jnp.asarray(table, jnp.float32)

    def logits_fn(x):
        flat = x.reshape(x.shape[0], -1)
        rows = [jnp.broadcast_to(first, (x.shape[0], LEVELS))]
        rows += [table[t - 1][flat[:, t - 1]] for t in range(1, flat.shape[1])]
        return jnp.stack(rows, axis=1).reshape(*x.shape, LEVELS)

    return logits_fn


def numpy_filter(logits, temperature=1.0, top_k=None, top_p=None):
    """Filtered, renormalized probabilities of one row of logits (written independently)."""
    logits = np.asarray(logits, np.float64) / temperature
    keep = np.ones(logits.shape, bool)
    order = np.argsort(-logits)
    if top_k is not None:
        keep[order[top_k:]] = False
    if top_p is not None:
        probs = softmax(np.where(keep, logits, -np.inf))
        mass = 0.0
        for index in order:
            if mass >= top_p:
                keep[index] = False
            mass += probs[index]
    probs = np.where(keep, np.exp(logits - logits.max()), 0.0)
    return probs / probs.sum()


def exact_pairs(first, table, **options):
    """Exact P(x_0) (L,) and P(x_{t-1}, x_t) (D - 1, L, L) of the (filtered) chain."""
    marginal = numpy_filter(first, **options)
    first_marginal, pairs = marginal, []
    for t in range(table.shape[0]):
        trans = np.stack([numpy_filter(row, **options) for row in table[t]])
        pairs.append(marginal[:, None] * trans)
        marginal = pairs[-1].sum(0)
    return first_marginal, np.stack(pairs)


def pair_counts(samples):
    flat = np.asarray(samples).reshape(samples.shape[0], -1)
    first = np.bincount(flat[:, 0], minlength=LEVELS)
    pairs = np.zeros((flat.shape[1] - 1, LEVELS, LEVELS))
    for t in range(1, flat.shape[1]):
        np.add.at(pairs[t - 1], (flat[:, t - 1], flat[:, t]), 1)
    return first, pairs


def max_abs_z(counts, probs, num):
    """Largest binomial z-score over cells of positive probability, and the count that
    fell on cells of probability zero."""
    counts, probs = np.ravel(counts), np.ravel(probs)
    pos = probs > 0
    z = (counts[pos] - num * probs[pos]) / np.sqrt(num * probs[pos] * (1 - probs[pos]))
    return float(np.max(np.abs(z))), int(counts[~pos].sum())


def chain_z(samples, first, table, **options):
    exact_first, exact = exact_pairs(first, table, **options)
    got_first, got = pair_counts(samples)
    z1, off1 = max_abs_z(got_first, exact_first, samples.shape[0])
    z2, off2 = max_abs_z(got, exact, samples.shape[0])
    return max(z1, z2), off1 + off2


def draw_rows(logits, num, seed):
    """``num`` images drawn entry by entry, independently, from fixed logits rows (D, L)."""
    rng = np.random.default_rng(seed)
    probs = softmax(np.asarray(logits, np.float64), axis=-1)
    cols = [rng.choice(LEVELS, size=num, p=row) for row in probs]
    return np.stack(cols, axis=1).reshape(num, *SHAPE)


@functools.cache
def sampler(batch, **options):
    first, table = chain_tables()
    fn = chain_logits_fn(first, table)

    def draw(key):
        out = sample_image(fn, key, (batch, *SHAPE), num_levels=LEVELS, **options)
        assert out.nfe == math.prod(SHAPE)  # one network pass per position
        return out.samples

    return jax.jit(draw)


# ---------------------------------------------------------------------------- log-likelihood


def test_image_log_prob_is_the_sum_of_log_softmax_values(x64):
    rng = np.random.default_rng(0)
    logits = 2.0 * rng.normal(size=(3, 2, 3, 2, 5))
    x = rng.integers(0, 5, size=(3, 2, 3, 2))
    by_hand = np.zeros(3)
    for b, i, j, c in itertools.product(*(range(s) for s in x.shape)):
        row = logits[b, i, j, c]
        by_hand[b] += row[x[b, i, j, c]] - math.log(sum(math.exp(v) for v in row))
    log_prob = jax.jit(image_log_prob)  # one compilation (eager ops compile one by one)
    err = float(np.max(np.abs(np.asarray(log_prob(logits, x)) - by_hand)))
    wrong = np.asarray(log_prob(logits, (x + 1) % 5))  # negative control
    print(f"log p vs hand: {err:.1e}; wrong levels off by {np.min(np.abs(wrong - by_hand)):.2f}")
    assert err < 1e-12
    assert np.min(np.abs(wrong - by_hand)) > 0.1


def test_image_log_prob_checks_its_inputs():
    logits = np.zeros((2, 2, 2, 1, 3), np.float32)
    x = np.zeros((2, 2, 2, 1), np.int32)
    with pytest.raises(ValueError, match="shape"):
        image_log_prob(logits, x[:, :1])
    with pytest.raises(ValueError, match="integer"):
        image_log_prob(logits, x.astype(np.float32))
    with pytest.raises(ValueError, match="0..2"):
        image_log_prob(logits, x + 3)
    with pytest.raises(ValueError, match="0..2"):
        image_log_prob(logits, x - 1)
    traced = np.asarray(jax.jit(image_log_prob)(logits, jnp.asarray(x).at[0, 0, 0, 0].set(-1)))
    assert np.isnan(traced[0]) and traced[1] == pytest.approx(-4 * math.log(3), rel=1e-6)


def test_bits_per_dim_of_a_uniform_model_is_log2_of_the_levels(x64):
    logits = np.zeros((3, 8, 8, 1, 17))  # the digits: 64 dimensions, 17 levels
    x = np.random.default_rng(1).integers(0, 17, size=(3, 8, 8, 1))
    log_prob, bpd = jax.jit(lambda lg, v: (lp := image_log_prob(lg, v), bits_per_dim(-lp, 64)))(
        logits, x
    )
    err = float(np.max(np.abs(np.asarray(bpd) - math.log2(17))))
    nats = float(-log_prob[0]) / 64  # negative control: nats, not bits
    print(f"uniform bits/dim = log2 17 within {err:.1e}; per-dim nats {nats:.3f}")
    assert err < 1e-12
    assert abs(nats - math.log2(17)) > 1.0
    with pytest.raises(ValueError, match="num_dims"):
        bits_per_dim(jnp.zeros(3), 0)


# ---------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(
    "options", [{}, {"temperature": 0.5}, {"top_k": 2}, {"top_p": 0.6}], ids=str
)
def test_samples_follow_the_exact_chain(options):
    first, table = chain_tables()
    samples = np.asarray(sampler(NUM_SAMPLES, **options)(jax.random.key(0)))
    assert samples.dtype == np.int32 and samples.shape == (NUM_SAMPLES, *SHAPE)
    threshold = bonferroni_z(LEVELS + 3 * LEVELS**2)
    z, off = chain_z(samples, first, table, **options)
    if options:  # negative control: the unfiltered chain
        z_bad, off_bad = chain_z(samples, first, table)
    else:  # negative control: every entry drawn in one pass from the empty image's logits
        empty = np.concatenate([first[None], table[:, 0]])  # (D, L): rows for x_{t-1} = 0
        one_pass = draw_rows(empty, NUM_SAMPLES, seed=0)
        z_bad, off_bad = chain_z(one_pass, first, table)
    print(f"{options}: max |z| = {z:.2f} (< {threshold:.2f}); control {z_bad:.1f}, {off_bad}")
    assert z < threshold and off == 0
    assert z_bad > 2 * threshold or off_bad > 0


def test_cold_and_top1_sampling_give_the_argmax_chain():
    first, table = chain_tables()
    chain = [int(np.argmax(first))]
    for t in range(table.shape[0]):
        chain.append(int(np.argmax(table[t, chain[-1]])))
    gaps = np.sort(np.concatenate([first[None], table.reshape(-1, LEVELS)]), axis=-1)
    assert np.min(gaps[:, -1] - gaps[:, -2]) > 0.2  # 1e-3 temperature: odds < e^-200
    greedy = np.broadcast_to(np.reshape(chain, SHAPE), (64, *SHAPE))
    for options in ({"temperature": 0.0}, {"temperature": 1e-3}, {"top_k": 1}):
        samples = np.asarray(sampler(64, **options)(jax.random.key(1)))
        np.testing.assert_array_equal(samples, greedy, err_msg=str(options))
    warm = np.asarray(sampler(NUM_SAMPLES)(jax.random.key(1)))[:64]  # negative control: T = 1
    assert np.any(warm != greedy)


def test_sampling_a_gated_pixelcnn_reproduces_its_likelihood():
    """Ancestral samples of a causal network have frequencies exp(image_log_prob). The
    weights (seed 3, std 0.7) give every image an expected count >= 20 and a dependence
    between entries strong enough for the one-pass control to fail."""
    ctor = lambda: GatedPixelCNN(  # noqa: E731
        SHAPE, LEVELS, hidden_channels=8, num_layers=2, first_kernel_size=3, rngs=nnx.Rngs(0)
    )
    graphdef, abstract = nnx.split(nnx.eval_shape(ctor))
    rng = np.random.default_rng(3)
    params = jax.tree.map(
        lambda leaf: (0.7 * rng.normal(size=leaf.shape)).astype(np.float32),
        nnx.to_pure_dict(abstract),
    )

    def logits_fn(x):
        return nnx.merge(graphdef, params)(x)

    images = np.array(list(itertools.product(range(LEVELS), repeat=4)), np.int32)
    images = images.reshape(-1, *SHAPE)
    logits, log_probs = jax.jit(lambda x: (lg := logits_fn(x), image_log_prob(lg, x)))(images)
    probs = np.exp(np.asarray(log_probs))
    draw = jax.jit(
        lambda key: sample_image(logits_fn, key, (NUM_SAMPLES, *SHAPE), num_levels=3).samples
    )
    samples = np.asarray(draw(jax.random.key(2))).reshape(NUM_SAMPLES, -1)
    index = np.ravel_multi_index(samples.T, (LEVELS,) * 4)  # same order as `images`
    counts = np.bincount(index, minlength=LEVELS**4)
    z, off = max_abs_z(counts, probs, NUM_SAMPLES)
    # Negative control: a one-pass sampler (all entries from the all-zero image's logits,
    # images[0]) against the same probabilities.
    one_pass = draw_rows(np.asarray(logits[0]).reshape(-1, LEVELS), NUM_SAMPLES, seed=2)
    bad = np.bincount(
        np.ravel_multi_index(one_pass.reshape(NUM_SAMPLES, -1).T, (LEVELS,) * 4),
        minlength=LEVELS**4,
    )
    z_bad, _ = max_abs_z(bad, probs, NUM_SAMPLES)
    threshold = bonferroni_z(LEVELS**4)
    print(f"sum p = {probs.sum():.6f}; max |z| = {z:.2f} (< {threshold:.2f}); control {z_bad:.1f}")
    assert abs(probs.sum() - 1.0) < 1e-5 and NUM_SAMPLES * probs.min() > 20
    assert z < threshold and off == 0
    assert z_bad > 2 * threshold


def test_batch_of_16_is_the_first_16_images_of_64():
    """Exact equality of the integer levels for the chain and a tiny gated PixelCNN."""
    ctor = lambda: GatedPixelCNN(  # noqa: E731
        SHAPE, LEVELS, hidden_channels=8, num_layers=2, first_kernel_size=3, rngs=nnx.Rngs(0)
    )
    graphdef, abstract = nnx.split(nnx.eval_shape(ctor))
    rng = np.random.default_rng(4)
    params = jax.tree.map(
        lambda leaf: (0.7 * rng.normal(size=leaf.shape)).astype(np.float32),
        nnx.to_pure_dict(abstract),
    )
    key = jax.random.key(9)
    pixelcnn = jax.jit(
        lambda k, n: (
            sample_image(
                lambda x: nnx.merge(graphdef, params)(x), k, (n, *SHAPE), num_levels=LEVELS
            ).samples
        ),
        static_argnums=1,
    )
    for draw in (lambda k, n: sampler(n, top_p=0.9)(k), pixelcnn):
        small, big = np.asarray(draw(key, 16)), np.asarray(draw(key, 64))
        np.testing.assert_array_equal(small, big[:16])
        assert len({row.tobytes() for row in big}) > 4  # control: the images differ
    # A (B,) slice of per-example keys draws the matching images of the big batch.
    keys = core.example_keys(key, 64)[16:32]
    np.testing.assert_array_equal(np.asarray(pixelcnn(keys, 16)), big[16:32])


def test_sampler_options_are_validated():
    fn = chain_logits_fn(*chain_tables())
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="temperature"):
        sample_image(fn, key, (2, *SHAPE), num_levels=LEVELS, temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        sample_image(fn, key, (2, *SHAPE), num_levels=LEVELS, top_p=1.5)
    with pytest.raises(ValueError, match="top_k"):
        sample_image(fn, key, (2, *SHAPE), num_levels=LEVELS, top_k=0)
    with pytest.raises(ValueError, match="shape"):
        sample_image(fn, key, (2, 2, 2), num_levels=LEVELS)
    with pytest.raises(ValueError, match="logits_fn must return"):
        sample_image(fn, key, (2, *SHAPE), num_levels=4)
