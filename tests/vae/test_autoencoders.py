"""Deterministic autoencoders (``jaxgen.vae.autoencoders``) against closed-form oracles.

* Denoising: the target is the clean ``x``. With identity encoder and decoder and
  ``R = 1/2 ||out - x||^2`` the loss is the corruption's energy: ``1/2 sigma^2 ||eps||^2``
  (mean ``sigma^2 D / 2``) for Gaussian noise, ``1/2 sum_masked x^2`` (mean ``p/2 ||x||^2``)
  for masking (z-tests with the sample standard error; a wrong sigma or p is detected).
* Masking: every entry is either exactly 0 or exactly x, and the masked fraction is ``p``
  (binomial z-score; ``p + 0.03`` is rejected).
* Contractive penalty: ``||W||_F^2`` for a linear encoder (every example, multi-axis events,
  jacrev and jacfwd branches) and ``sum_j (1 - h_j^2)^2 ||W_j||^2`` for ``h = tanh(xW + b)``,
  equal to ``||jax.jacfwd(f)(x_i)||_F^2`` example by example; dropping the ``(1 - h^2)``
  factor is detected.
* A linear autoencoder trained with squared error recovers the principal subspace (Baldi and
  Hornik 1989): principal angles to the top-k eigenvectors ~ 0, the end-to-end map is the
  projector ``U_k U_k^T``, and the loss is half the sum of the trailing eigenvalues; the
  untrained model and the bottom-k subspace fail the same checks.
* l1 / l2 penalties and the weighting by hand; the penalty is on the code of the corrupted
  input; shapes, jit and error messages.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgen.vae.autoencoders import CORRUPTIONS, PENALTIES, autoencoder_loss
from tests.diffusion.stats import bonferroni_z


def identity(a):
    return a


def half_squared_error(out, x):
    return 0.5 * jnp.sum(jnp.square(out - x).reshape(x.shape[0], -1), axis=1)


def _z(values, expected):
    values = np.asarray(values, np.float64)
    return float((values.mean() - expected) / (values.std(ddof=1) / np.sqrt(values.size)))


@functools.partial(jax.jit, static_argnames=("corruption",))
def _identity_loss(x, key, noise_std, mask_prob, *, corruption):
    return autoencoder_loss(
        identity, identity, half_squared_error, x, key,
        corruption=corruption, noise_std=noise_std, mask_prob=mask_prob,
    )  # fmt: skip


# ----------------------------------------------------------------- denoising and masking


def test_denoising_target_is_the_clean_input(x64):
    n, d = 2000, 4
    x = jax.random.normal(jax.random.key(0), (n, d))
    z_max = bonferroni_z(4)
    sigma = 0.3
    loss, terms = _identity_loss(x, jax.random.key(1), sigma, 0.25, corruption="gaussian")
    assert float(jnp.min(loss)) > 0.0
    np.testing.assert_allclose(loss, terms["reconstruction"])
    z_gauss = _z(loss, 0.5 * sigma**2 * d)
    z_wrong = _z(loss, 0.5 * (1.1 * sigma) ** 2 * d)
    print(f"gaussian: mean {float(loss.mean()):.5f} vs {0.5 * sigma**2 * d:.5f}, z {z_gauss:.2f}")
    print(f"  negative control (sigma x 1.1): z {z_wrong:.1f}")
    assert abs(z_gauss) < z_max and abs(z_wrong) > z_max
    # Masking: the loss is 1/2 sum over masked entries of x^2, mean p/2 ||x||^2 per example.
    p = 0.25
    loss, _ = _identity_loss(x, jax.random.key(2), sigma, p, corruption="masking")
    per_example = 0.5 * np.sum(np.asarray(x) ** 2, axis=1)
    ratio_z = _z(np.asarray(loss) - p * per_example, 0.0)
    wrong_z = _z(np.asarray(loss) - (p + 0.1) * per_example, 0.0)
    print(f"masking: z {ratio_z:.2f}; negative control (p + 0.1): z {wrong_z:.1f}")
    assert abs(ratio_z) < z_max and abs(wrong_z) > z_max
    # Without corruption the identity autoencoder is perfect.
    loss, _ = _identity_loss(x, jax.random.key(3), sigma, p, corruption="none")
    np.testing.assert_array_equal(loss, 0.0)


def test_masking_rate_and_values():
    n, d = 2000, 10
    x = jnp.full((n, d), 1.5)
    z_max = bonferroni_z(4)
    for seed, p in enumerate([0.1, 0.5]):
        # R counts masked entries (out = x~ is 0 or 1.5) and checks nothing else changed.
        def count(out, x):
            masked = jnp.sum(out == 0.0, axis=1).astype(x.dtype)
            other = jnp.sum((out != 0.0) & (out != x), axis=1).astype(x.dtype)
            return masked + 1000.0 * other

        loss, _ = autoencoder_loss(
            identity, identity, count, x, jax.random.key(seed),
            corruption="masking", mask_prob=p,
        )  # fmt: skip
        total = float(jnp.sum(loss))
        assert total == float(np.round(total)) and total < n * d  # no entry altered otherwise
        rate, se = total / (n * d), np.sqrt(p * (1 - p) / (n * d))
        z, z_bad = (rate - p) / se, (rate - (p + 0.03)) / se
        print(f"mask_prob {p}: rate {rate:.4f}, z {z:.2f}; negative control z {z_bad:.1f}")
        assert abs(z) < z_max and abs(z_bad) > z_max


# ----------------------------------------------------------------- contractive penalty


def _contractive(encoder, x):
    return autoencoder_loss(
        encoder, identity, lambda out, x: jnp.zeros(x.shape[0], x.dtype), x,
        jax.random.key(0), penalty="contractive", penalty_weight=1.0,
    )  # fmt: skip


def test_contractive_penalty_linear_and_tanh(x64):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((6, 5)))
    for k in (3, 7):  # jacrev (code smaller than input) and jacfwd (larger)
        w = jnp.asarray(rng.standard_normal((5, k)))
        b = jnp.asarray(rng.standard_normal((k,)))
        loss, terms = _contractive(lambda x, w=w: x @ w, x)
        np.testing.assert_allclose(terms["penalty"], float(jnp.sum(w**2)), rtol=1e-12)
        np.testing.assert_allclose(loss, terms["penalty"], rtol=1e-12)

        def tanh_encoder(x, w=w, b=b):
            return jnp.tanh(x @ w + b[None, :])

        _, terms = _contractive(tanh_encoder, x)
        h = np.tanh(np.asarray(x) @ np.asarray(w) + np.asarray(b))
        closed = np.sum((1 - h**2) ** 2 * np.sum(np.asarray(w) ** 2, axis=0), axis=1)
        autodiff = [
            float(jnp.linalg.norm(jax.jacfwd(lambda v: tanh_encoder(v[None])[0])(xi)) ** 2)
            for xi in x
        ]
        np.testing.assert_allclose(terms["penalty"], closed, rtol=1e-12)
        np.testing.assert_allclose(terms["penalty"], autodiff, rtol=1e-12)
        # Negative control: without the (1 - h^2) factor it is the linear value.
        assert not np.allclose(terms["penalty"], float(jnp.sum(w**2)), rtol=1e-3)
        assert np.ptp(closed) > 1e-3  # per-example values genuinely differ
    # Multi-axis events: x (B, 2, 3) -> z (B, 2, 2) by a (2, 3, 2, 2) tensor.
    x3 = jnp.asarray(rng.standard_normal((4, 2, 3)))
    t = jnp.asarray(rng.standard_normal((2, 3, 2, 2)))
    _, terms = _contractive(lambda x: jnp.einsum("bij,ijkl->bkl", x, t), x3)
    np.testing.assert_allclose(terms["penalty"], float(jnp.sum(t**2)), rtol=1e-12)


# ----------------------------------------------------------------- penalties by hand


def test_l1_l2_penalties_on_the_corrupted_code(x64):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((5, 4)))
    w = jnp.asarray(rng.standard_normal((4, 3)))

    def encoder(x):
        return x @ w - 0.5

    def decoder(z):
        return z @ w.T

    z = np.asarray(x) @ np.asarray(w) - 0.5
    rec = 0.5 * np.sum((z @ np.asarray(w).T - np.asarray(x)) ** 2, axis=1)
    hand = {"none": np.zeros(5), "l2": np.sum(z**2, axis=1), "l1": np.sum(np.abs(z), axis=1)}
    for penalty, value in hand.items():
        loss, terms = autoencoder_loss(
            encoder, decoder, half_squared_error, x, jax.random.key(0),
            penalty=penalty, penalty_weight=0.3,
        )  # fmt: skip
        np.testing.assert_allclose(terms["penalty"], value, rtol=1e-12, atol=0)
        np.testing.assert_allclose(terms["reconstruction"], rec, rtol=1e-12)
        np.testing.assert_allclose(loss, rec + 0.3 * value, rtol=1e-12)
    assert not np.allclose(hand["l1"], hand["l2"])  # the two checks are distinguishable
    # The penalty is on the code of the corrupted input: at x = 0 with identity maps,
    # ||x~||^2 = sigma^2 ||eps||^2 = 2 * reconstruction, exactly.
    zeros = jnp.zeros((50, 4))
    _, terms = autoencoder_loss(
        identity, identity, half_squared_error, zeros, jax.random.key(1),
        penalty="l2", corruption="gaussian", noise_std=0.7,
    )  # fmt: skip
    assert float(jnp.min(terms["penalty"])) > 0.0
    np.testing.assert_allclose(terms["penalty"], 2.0 * terms["reconstruction"], rtol=1e-12)


# ----------------------------------------------------------------- linear AE = PCA


@functools.partial(jax.jit, static_argnames=("steps",))
def _train_linear_ae(params, x, *, steps):
    tx = optax.adam(0.03)

    def mean_loss(p):
        loss, _ = autoencoder_loss(
            lambda v: v @ p["enc"], lambda z: z @ p["dec"], half_squared_error, x,
            jax.random.key(0),
        )  # fmt: skip
        return jnp.mean(loss)

    def step(carry, _):
        p, state = carry
        grads = jax.grad(mean_loss)(p)
        updates, state = tx.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    return params, mean_loss(params)


def _sin_max_angle(basis, u):
    """sin of the largest principal angle between span(basis columns) and span(u columns)."""
    q, _ = np.linalg.qr(basis)
    cos = np.linalg.svd(q.T @ u, compute_uv=False)
    return float(np.sqrt(max(0.0, 1.0 - cos.min() ** 2)))


def test_linear_autoencoder_recovers_the_principal_subspace(x64):
    n, d, k = 400, 5, 2
    rng = np.random.default_rng(2)
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    data = rng.standard_normal((n, d)) * np.sqrt([5.0, 3.0, 1.0, 0.5, 0.2]) @ rotation.T
    data = data - data.mean(0)
    eigval, eigvec = np.linalg.eigh(data.T @ data / n)  # ascending
    top, bottom = eigvec[:, -k:], eigvec[:, :k]
    init = {
        "enc": jnp.asarray(0.1 * rng.standard_normal((d, k))),
        "dec": jnp.asarray(0.1 * rng.standard_normal((k, d))),
    }
    params, loss = _train_linear_ae(init, jnp.asarray(data), steps=1500)
    enc, dec = np.asarray(params["enc"]), np.asarray(params["dec"])
    sin_dec, sin_enc = _sin_max_angle(dec.T, top), _sin_max_angle(enc, top)
    proj_err = np.abs(enc @ dec - top @ top.T).max()
    optimum = 0.5 * eigval[:-k].sum()  # Eckart-Young: half the trailing eigenvalues
    print(
        f"sin(max angle): decoder {sin_dec:.1e}, encoder {sin_enc:.1e}; |ED - UU^T| {proj_err:.1e}"
    )
    print(f"loss {float(loss):.8f} vs optimum {optimum:.8f}")
    assert sin_dec < 1e-3 and sin_enc < 1e-3 and proj_err < 1e-3
    assert float(loss) == pytest.approx(optimum, rel=1e-5)
    assert float(loss) >= optimum * (1 - 1e-12)  # nothing beats the optimum
    # Negative controls: the untrained model, and the bottom-k eigenvectors.
    sin_init = _sin_max_angle(np.asarray(init["dec"]).T, top)
    sin_bottom = _sin_max_angle(dec.T, bottom)
    print(f"negative controls: untrained {sin_init:.2f}, bottom-k {sin_bottom:.2f}")
    assert sin_init > 0.1 and sin_bottom > 0.99


# ----------------------------------------------------------------- plumbing


def test_shapes_jit_and_error_messages():
    x = jnp.ones((3, 2, 2))
    key = jax.random.key(0)
    assert PENALTIES == ("none", "l2", "l1", "contractive")
    assert CORRUPTIONS == ("none", "gaussian", "masking")
    for penalty in PENALTIES:
        for corruption in CORRUPTIONS:
            loss, terms = jax.eval_shape(
                lambda x, key, p=penalty, c=corruption: autoencoder_loss(
                    jnp.tanh, identity, half_squared_error, x, key, penalty=p, corruption=c,
                    penalty_weight=0.1,
                ),
                x, key,
            )  # fmt: skip
            assert loss.shape == (3,) and set(terms) == {"reconstruction", "penalty"}
            assert all(v.shape == (3,) and v.dtype == x.dtype for v in terms.values())
    args = (identity, identity, half_squared_error, x, key)
    with pytest.raises(
        ValueError, match=r"penalty must be one of \('none', 'l2', 'l1', 'contr.*got 'l0'"
    ):
        autoencoder_loss(*args, penalty="l0")
    with pytest.raises(
        ValueError, match=r"corruption must be one of .*'gaussian', 'masking'\), got 'salt'"
    ):
        autoencoder_loss(*args, corruption="salt")
    with pytest.raises(ValueError, match=r"mask_prob must lie in \[0, 1\)"):
        autoencoder_loss(*args, corruption="masking", mask_prob=1.0)
    with pytest.raises(ValueError, match="noise_std must be non-negative"):
        autoencoder_loss(*args, corruption="gaussian", noise_std=-0.1)
    with pytest.raises(ValueError, match="float array"):
        autoencoder_loss(identity, identity, half_squared_error, jnp.ones((3, 2), int), key)
    with pytest.raises(ValueError, match=r"encoder_fn must return a code of shape \(3, \*latent"):
        autoencoder_loss(lambda v: v[0], identity, half_squared_error, x, key)
    with pytest.raises(ValueError, match=r"reconstruction_fn must return shape \(3,\)"):
        autoencoder_loss(identity, identity, lambda o, x: o, x, key)
