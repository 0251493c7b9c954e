"""VQ-VAE-2: the pure two-level loss against a hand computation, and the recipe (tiny nets).

Pure loss (:func:`jaxgen.vae.vqvae2.vqvae2_loss`) on a hand-checkable case: data ``x``
(B=3, P=2 positions, D=1), ``h_b = x``, ``z_e^t = mean_j x_j`` (one top position),
``z_e^b = x - e_t``, ``out = e_t + e_b``, ``log p(x | .) = -1/2 ||x - out||^2``, the top
codebook ``{-1, 1}`` and the bottom codebook ``{-0.5, 0, 0.5}`` (sizes differ). Every term
and the loss are recomputed in NumPy from these definitions; the EMA updates at both levels
are vector_quantization's one-level update of each level's own vectors, and dead-code
restarts use one split key per level.

Recipe (tiny nets on the digits): the codes round-trip through the quantisers, the decoder
depends on both levels, ``decode_codes(encode_codes(x))`` is the reconstruction in [-1, 1],
the engine-side EMA state is the one-level update at each level, samples depend only on the
seed and the index, and bad inputs are refused by name.
"""

from __future__ import annotations

import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.data import digits
from jaxgen.nets.vqvae2 import TwoLevelDecoder
from jaxgen.recipes.vqvae2 import VQVAE2Recipe
from jaxgen.vae import vector_quantization as vq
from jaxgen.vae.vqvae2 import vqvae2_loss

ROOT = pathlib.Path(__file__).resolve().parents[2]

# ----------------------------------------------------------------------------- pure loss

X = jnp.array([[[0.2], [0.9]], [[-1.5], [-0.1]], [[0.6], [-1.4]]])  # (B=3, P=2, D=1)
TOP = jnp.array([[-1.0], [1.0]])
BOTTOM = jnp.array([[-0.5], [0.0], [0.5]])
BETA = 0.25


def _fns():
    return (
        lambda x: x,  # bottom encoder: h_b = x
        lambda h: jnp.mean(h, axis=1, keepdims=True),  # top encoder: one position
        lambda h, e_t: h - e_t,  # bottom conditioner
        lambda e_t, e_b: e_t + e_b,  # decoder
        lambda out, x: -0.5 * jnp.sum(jnp.square(x - out), axis=(1, 2)),
    )


def _by_hand():
    x = np.asarray(X)[..., 0]  # (3, 2)
    top, bottom = np.asarray(TOP)[:, 0], np.asarray(BOTTOM)[:, 0]
    z_t = x.mean(1)  # (3,)
    k_t = np.argmin((z_t[:, None] - top[None]) ** 2, axis=1)
    e_t = top[k_t]
    z_b = x - e_t[:, None]
    k_b = np.argmin((z_b[..., None] - bottom) ** 2, axis=-1)
    e_b = bottom[k_b]
    return {
        "z_t": z_t,
        "k_t": k_t,
        "z_b": z_b,
        "k_b": k_b,
        "reconstruction": 0.5 * ((x - e_t[:, None] - e_b) ** 2).sum(1),
        "commitment_top": (z_t - e_t) ** 2,
        "commitment_bottom": ((z_b - e_b) ** 2).sum(1),
        "prior_nll": np.full(3, math.log(2) + 2 * math.log(3)),
    }


def _prior(k_t, k_b):  # log p = -(sum of the indices): shows which indices it was given
    return -jnp.sum(k_b, axis=1).astype(jnp.float32) - k_t[:, 0]


@jax.jit
def _gradient_case(books):
    return (
        vqvae2_loss(*_fns(), books, X, None, commitment_cost=BETA),
        vqvae2_loss(*_fns(), books, X, None, prior_log_prob_fn=_prior),
    )


def test_loss_equals_a_hand_computation_gradient_codebooks():
    h = _by_hand()
    assert h["k_t"].tolist() == [1, 0, 0] and len(set(h["k_b"].ravel())) == 3  # all codes hit
    (loss, terms, updates), (_, terms2, _) = _gradient_case((TOP, BOTTOM))
    assert updates == {}
    for name in ("reconstruction", "commitment_top", "commitment_bottom", "prior_nll"):
        np.testing.assert_allclose(terms[name], h[name], rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(terms["codebook_top"], h["commitment_top"], rtol=1e-6)
    np.testing.assert_allclose(terms["codebook_bottom"], h["commitment_bottom"], rtol=1e-6)
    np.testing.assert_allclose(terms["neg_elbo"], h["reconstruction"] + h["prior_nll"], rtol=1e-6)
    commit = h["commitment_top"] + h["commitment_bottom"]
    expected = h["reconstruction"] + (BETA + 1.0) * commit + h["prior_nll"]
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    # A prior callable gets (k_t, k_b) and replaces the uniform prior.
    np.testing.assert_allclose(terms2["prior_nll"], h["k_b"].sum(1) + h["k_t"], rtol=1e-6)


def test_ema_updates_at_both_levels_are_the_one_level_update():
    h = _by_hand()
    z = {
        "top": jnp.asarray(h["z_t"][:, None, None], jnp.float32),
        "bottom": jnp.asarray(h["z_b"][..., None], jnp.float32),
    }
    k = {"top": h["k_t"][:, None], "bottom": h["k_b"]}
    books = (vq.init_ema_codebook(TOP), vq.init_ema_codebook(BOTTOM))
    key = jax.random.key(3)

    @jax.jit
    def run(books, key):
        plain = vqvae2_loss(*_fns(), books, X, None, commitment_cost=BETA, ema_decay=0.5)
        restarts = vqvae2_loss(*_fns(), books, X, key, ema_decay=0.5, dead_code_threshold=10.0)
        by_hand = {}
        for i, (name, sub) in enumerate(zip(("top", "bottom"), jax.random.split(key), strict=True)):
            state = vq.ema_codebook_update(books[i], z[name], k[name], decay=0.5)
            by_hand[name] = (state, vq.restart_dead_codes(state, z[name], sub, threshold=10.0))
        return plain, restarts, by_hand

    (loss, _, updates), (_, terms, restarted), by_hand = run(books, key)
    commit = h["commitment_top"] + h["commitment_bottom"]  # no codebook terms in the loss
    np.testing.assert_allclose(loss, h["reconstruction"] + BETA * commit + h["prior_nll"], 1e-6)
    for i, name in enumerate(("top", "bottom")):
        want, (after_restart, n) = by_hand[name]
        for field in want._fields:
            np.testing.assert_allclose(
                getattr(updates[name], field), getattr(want, field), rtol=1e-6, atol=1e-7
            )
            np.testing.assert_allclose(
                getattr(restarted[name], field), getattr(after_restart, field), rtol=1e-6
            )
        assert int(n) == books[i].codebook.shape[0]  # every code was below the threshold
        np.testing.assert_allclose(terms[f"restarted_codes_{name}"], float(n))
        # Negative control: the EMA step moved the codebook (the check above can fail).
        assert not np.allclose(updates[name].codebook, books[i].codebook)
    with pytest.raises(ValueError, match="needs EMACodebookState"):
        vqvae2_loss(*_fns(), (TOP, BOTTOM), X, key, dead_code_threshold=1.0)
    with pytest.raises(ValueError, match="pair"):
        vqvae2_loss(*_fns(), (TOP,), X, None)


# ----------------------------------------------------------------------------- recipe

TINY = [
    "model.channels=8",
    "model.residual_channels=4",
    "model.num_residual_blocks=1",
    "model.num_codes_top=4",
    "model.num_codes_bottom=8",
    "model.embedding_dim=4",
    "model.dead_code_threshold=0.0",
    "data.batch_size=16",
]


def _recipe(*extra):
    config = apply_overrides(
        load_experiment(str(ROOT / "experiments" / "vqvae2_digits.py")), [*TINY, *extra]
    )
    return config, VQVAE2Recipe(config, data_shape=(8, 8, 1), num_levels=digits.NUM_LEVELS)


def _everything(recipe, images):
    """All the recipe tests' values, the parameters included, in one compiled program."""
    params = recipe.init_params(jax.random.key(0))
    codes = recipe.encode_codes(params, images)
    (z_t, z_b), (q_t, q_b) = recipe.encode(params, images)
    books = recipe.codebooks(params)
    k_t, k_b = codes
    decode = recipe.decode_codes
    _, terms, updates = recipe.training_loss(params, {"image": images}, jax.random.key(1), 0)
    m = recipe.config.model
    ema = [
        vq.ema_codebook_update(s, z, q.indices, decay=m.ema_decay, epsilon=m.ema_epsilon)
        for s, z, q in zip(
            recipe.codebooks(params, ema_state=True), (z_t, z_b), (q_t, q_b), strict=True
        )
    ]
    logits = jax.random.normal(jax.random.key(2), params["prior_logits_bottom"].shape)
    sample_params = {**params, "prior_logits_bottom": logits}
    key = jax.random.key(5)
    return {
        "params": params,
        "codes": codes,
        "requantized": [
            vq.quantize(jnp.take(b, k, axis=0), b).indices
            for b, k in zip(books, codes, strict=True)
        ],
        "rows": [vq.quantize(b[None], b).indices[0] for b in books],
        "recon": decode(params, codes),
        "picture": recipe.likelihood.picture(recipe.decode(params, q_t.z_q, q_b.z_q)),
        "top_changed": decode(params, ((k_t + 1) % 4, k_b)),
        "bottom_changed": decode(params, (k_t, (k_b + 1) % 8)),
        "terms": terms,
        "updates": updates,
        "ema_by_hand": ema,
        "samples": recipe.sample(sample_params, key, 8),
        "samples_tail": recipe.sample(sample_params, key, 4, first_index=4),
    }


@pytest.fixture(scope="module")
def tiny():
    _, recipe = _recipe()
    images = jnp.asarray(digits.load_digits("train")[0][:16], jnp.float32)
    return {
        "recipe": recipe,
        "images": images,
        **jax.jit(functools.partial(_everything, recipe))(images),
    }


def test_codes_round_trip_through_both_quantisers(tiny):
    recipe = tiny["recipe"]
    assert recipe.code_shapes == ((2, 2), (4, 4)) and recipe.code_vocab_sizes == (4, 8)
    for k, again, rows, grid, size in zip(
        tiny["codes"], tiny["requantized"], tiny["rows"], recipe.code_shapes, (4, 8), strict=True
    ):
        assert k.dtype == jnp.int32 and k.shape == (16, *grid)
        assert int(k.min()) >= 0 and int(k.max()) < size
        # The decoder-side code vectors quantise back to the same indices, and every
        # codebook row to its own index.
        np.testing.assert_array_equal(again, k)
        np.testing.assert_array_equal(rows, np.arange(size))
    assert len(np.unique(tiny["codes"][1])) > 1  # not one code everywhere
    # decode_codes(encode_codes(x)) is the reconstruction: the decoder's picture of z_q(x).
    recon = tiny["recon"]
    np.testing.assert_allclose(recon, tiny["picture"], rtol=1e-5, atol=1e-5)
    assert recon.shape == (16, 8, 8, 1) and float(jnp.abs(recon).max()) <= 1.0


def test_decoder_is_conditioned_on_both_levels(tiny):
    for name in ("top_changed", "bottom_changed"):
        assert float(jnp.abs(tiny[name] - tiny["recon"]).max()) > 1e-4, name
    # Negative control: the same codes decode to the same picture outside the program too.
    again = tiny["recipe"].decode_codes(tiny["params"], tiny["codes"])
    np.testing.assert_allclose(again, tiny["recon"], atol=1e-5)


def test_engine_ema_state_is_the_one_level_update_at_each_level(tiny):
    terms = tiny["terms"]
    assert {"reconstruction", "commitment_top", "commitment_bottom", "perplexity_top"} <= set(terms)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in terms.values())
    for name, want in zip(("top", "bottom"), tiny["ema_by_hand"], strict=True):
        got = tiny["updates"]["codebook_ema"][name]
        for field in want._fields:
            np.testing.assert_allclose(got[field], getattr(want, field), rtol=1e-5, atol=1e-6)
        # Negative control: the update moved the codebook.
        assert not np.allclose(got["codebook"], tiny["params"]["codebook_ema"][name]["codebook"])


def test_samples_shapes_range_and_per_example_keys(tiny):
    full, tail = tiny["samples"], tiny["samples_tail"]
    assert full.samples.shape == (8, 8, 8, 1) and int(full.nfe) == 3
    assert float(jnp.abs(full.samples).max()) <= 1.0
    np.testing.assert_allclose(tail.samples, full.samples[4:], atol=1e-6)
    assert not np.allclose(full.samples[0], full.samples[1])  # examples differ


def test_bad_inputs_are_refused_by_name(tiny):
    recipe, params, (k_t, k_b) = tiny["recipe"], tiny["params"], tiny["codes"]
    with pytest.raises(ValueError, match=r"2 code grids .*\(B, 2, 2\), \(B, 4, 4\)"):
        recipe.decode_codes(params, (k_b,))
    with pytest.raises(ValueError, match=r"\(B, 2, 2\), \(B, 4, 4\)"):
        recipe.decode_codes(params, (k_b, k_t))  # levels swapped
    with pytest.raises(ValueError, match=r"\(B, 2, 2\), \(B, 4, 4\)"):
        recipe.decode_codes(params, (k_t, k_b[:3]))  # batch sizes differ
    with pytest.raises(ValueError, match=r"top codes must lie in \[0, K_top - 1\] = \[0, 3\]"):
        recipe.decode_codes(params, (k_t + 4, k_b))
    with pytest.raises(ValueError, match=r"images must have shape \(B, 8, 8, 1\)"):
        recipe.encode_codes(params, jnp.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="integers"):
        recipe.decode_codes(params, (k_t.astype(jnp.float32), k_b))
    with pytest.raises(ConfigError, match=r"image size \(8, 8\) is not divisible by 16"):
        _recipe("model.top_downsamples=3")  # 2^(1 + 3) = 16
    with pytest.raises(ConfigError, match="top_downsamples"):
        _recipe("model.top_downsamples=0")
    with pytest.raises(ValueError, match="not divisible"):
        recipe.modules.bind(params, "bottom_encoder")(jnp.zeros((1, 7, 7, 1)))
    net = dict(channels=4, residual_channels=2, num_residual_blocks=1, num_upsamples=1)
    decoder = TwoLevelDecoder(2, 2, 1, num_top_upsamples=1, rngs=nnx.Rngs(0), **net)
    with pytest.raises(ValueError, match="bottom grid"):
        decoder(jnp.zeros((1, 3, 3, 2)), jnp.zeros((1, 4, 4, 2)))
