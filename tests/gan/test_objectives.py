"""The GAN players' objectives (``jaxgen.gan.objectives``) against hand-computed closed forms.

The networks are fixed linear maps, ``G(z, y) = A z + b + E[y]`` and ``D(x, y) = w.x + c +
v[y]``, so every loss is a formula of the latents: the latents are drawn by hand from the
documented keys (``fold_in(split(key)[0], i)`` for the discriminator, ``fold_in(key, i)``
for the generator), and the objective must equal the loss of the games written out in
NumPy. On a linear critic the input gradient is ``w`` everywhere, so the gradient penalty
is ``(||w|| - 1)^2`` and R1 is ``||w||^2`` for every example.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import gan
from jaxgen.gan import objectives

B, LATENT, DIM, CLASSES = 6, 3, 4, 3
RNG = np.random.default_rng(0)
A = RNG.normal(size=(LATENT, DIM))
BIAS = RNG.normal(size=DIM)
E = RNG.normal(size=(CLASSES, DIM))
W = RNG.normal(size=DIM)
C = 0.3
V = RNG.normal(size=CLASSES)


def generator(z, labels=None):
    x = z @ A + BIAS[None, :]
    return x if labels is None else x + E[labels]


def discriminator(x, labels=None):
    logits = x @ W + C
    return logits if labels is None else logits + V[labels]


def hand_latents(key, n, distribution="normal"):
    rows = []
    for i in range(n):
        k = jax.random.fold_in(key, i)
        if distribution == "uniform":
            rows.append(2.0 * np.asarray(jax.random.uniform(k, (LATENT,), jnp.float64)) - 1.0)
        else:
            rows.append(np.asarray(jax.random.normal(k, (LATENT,), jnp.float64)))
    return np.stack(rows)


def softplus(x):
    return np.logaddexp(0.0, x)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


D_LOSSES = {
    "minimax": lambda r, f: softplus(-r) + softplus(f),
    "wasserstein": lambda r, f: f - r,
    "hinge": lambda r, f: np.maximum(0, 1 - r) + np.maximum(0, 1 + f),
}
G_LOSSES = {
    "saturating": lambda f: -softplus(f),
    "non_saturating": lambda f: softplus(-f),
    "wasserstein": lambda f: -f,
    "hinge": lambda f: -f,
}


@pytest.mark.parametrize("game", list(objectives.GAMES))
@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_discriminator_objective_is_the_hand_computed_loss(game, conditional, distribution, x64):
    d_kind, _ = objectives.GAMES[game]
    key = jax.random.key(7)
    real = jnp.asarray(RNG.normal(size=(B, DIM)))
    labels = jnp.arange(B) % CLASSES if conditional else None
    per_example, terms, updates = gan.discriminator_objective(
        generator,
        discriminator,
        real,
        key,
        latent_dim=LATENT,
        labels=labels,
        kind=d_kind,
        latent_distribution=distribution,
    )
    z = hand_latents(jax.random.split(key)[0], B, distribution)
    y = None if labels is None else np.asarray(labels)
    real_logits = discriminator(np.asarray(real), y)
    fake_logits = discriminator(generator(z, y), y)
    np.testing.assert_allclose(per_example, D_LOSSES[d_kind](real_logits, fake_logits), rtol=1e-10)
    assert updates == {}
    output = sigmoid if d_kind == "minimax" else (lambda v: v)
    np.testing.assert_allclose(terms["d_real"], output(real_logits), rtol=1e-10)
    np.testing.assert_allclose(terms["d_fake"], output(fake_logits), rtol=1e-10)
    np.testing.assert_allclose(terms["d_input_grad_norm"], np.linalg.norm(W), rtol=1e-10)
    # Negative control: other latents (the generator's key convention) give another loss.
    z_other = hand_latents(key, B, distribution)
    other = D_LOSSES[d_kind](real_logits, discriminator(generator(z_other, y), y))
    assert not np.allclose(per_example, other)


@pytest.mark.parametrize(
    ("penalty", "expected"),
    [
        ("gradient_penalty", lambda w, lam: lam * (np.linalg.norm(w) - 1.0) ** 2),
        ("r1", lambda w, lam: 0.5 * lam * np.sum(w**2)),
        ("none", lambda w, lam: 0.0),
    ],
)
def test_penalties_add_their_closed_form_on_a_linear_critic(penalty, expected, x64):
    key = jax.random.key(3)
    real = jnp.asarray(RNG.normal(size=(B, DIM)))
    common = dict(latent_dim=LATENT, kind="wasserstein")
    plain, _, _ = gan.discriminator_objective(generator, discriminator, real, key, **common)
    per_example, terms, _ = gan.discriminator_objective(
        generator, discriminator, real, key, penalty=penalty, penalty_weight=2.5, **common
    )
    np.testing.assert_allclose(per_example - plain, expected(W, 2.5), rtol=1e-10, atol=1e-12)
    if penalty == "gradient_penalty":
        np.testing.assert_allclose(terms["gradient_penalty"], (np.linalg.norm(W) - 1) ** 2)
        np.testing.assert_allclose(terms["interpolate_grad_norm"], np.linalg.norm(W))
    if penalty == "r1":
        np.testing.assert_allclose(terms["r1_penalty"], np.sum(W**2))


def test_a_stateful_discriminator_scores_real_and_fake_in_one_pass(x64):
    """The stateful critic sees ``[real; fake]`` once; its new state is the discriminator's
    state update, and its logits are split back into the two halves."""
    calls = []

    def stateful(x, labels):
        calls.append(x.shape)
        return discriminator(x, labels) + 1.0, {"u": jnp.mean(x, axis=0)}

    key = jax.random.key(5)
    real = jnp.asarray(RNG.normal(size=(B, DIM)))
    labels = jnp.arange(B) % CLASSES
    per_example, terms, updates = gan.discriminator_objective(
        generator,
        discriminator,
        real,
        key,
        latent_dim=LATENT,
        labels=labels,
        stateful_discriminator_fn=stateful,
    )
    assert calls == [(2 * B, DIM)]
    z = hand_latents(jax.random.split(key)[0], B)
    y = np.asarray(labels)
    fake = generator(z, y)
    real_logits = discriminator(np.asarray(real), y) + 1.0
    fake_logits = discriminator(fake, y) + 1.0
    np.testing.assert_allclose(per_example, D_LOSSES["minimax"](real_logits, fake_logits))
    np.testing.assert_allclose(terms["d_real"], sigmoid(real_logits))
    assert set(updates) == {"discriminator"}
    np.testing.assert_allclose(
        updates["discriminator"]["u"], np.concatenate([np.asarray(real), fake]).mean(0)
    )


@pytest.mark.parametrize("game", list(objectives.GAMES))
@pytest.mark.parametrize("conditional", [False, True])
def test_generator_objective_is_the_hand_computed_loss(game, conditional, x64):
    _, g_kind = objectives.GAMES[game]
    key = jax.random.key(11)
    labels = jnp.arange(B) % CLASSES if conditional else None
    per_example, terms, updates = gan.generator_objective(
        generator, discriminator, key, (B, LATENT), labels=labels, kind=g_kind
    )
    y = None if labels is None else np.asarray(labels)
    fake_logits = discriminator(generator(hand_latents(key, B), y), y)
    np.testing.assert_allclose(per_example, G_LOSSES[g_kind](fake_logits), rtol=1e-10)
    output = sigmoid if "saturating" in g_kind else (lambda v: v)
    np.testing.assert_allclose(terms["g_d_fake"], output(fake_logits), rtol=1e-10)
    assert updates == {}


def test_generator_gradient_is_the_closed_form(x64):
    """For the non-saturating loss and linear players, d/dA mean softplus(-l) with
    ``l = w.(A^T z + b) + c`` is ``-mean sigmoid(-l) z w^T``."""
    key = jax.random.key(2)

    def loss(a):
        gen = lambda z, labels=None: z @ a + BIAS[None, :]  # noqa: E731
        per_example, _, _ = gan.generator_objective(gen, discriminator, key, (B, LATENT))
        return jnp.mean(per_example)

    z = hand_latents(key, B)
    logits = (z @ A + BIAS) @ W + C
    expected = -np.einsum("b,bi,j->ij", sigmoid(-logits), z, W) / B
    np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(A)), expected, rtol=1e-10)


def test_discriminator_constraint_is_weight_clipping():
    assert objectives.discriminator_constraint(None) is None
    clip = objectives.discriminator_constraint(0.01)
    np.testing.assert_allclose(
        clip({"w": jnp.array([-1.0, 0.005, 1.0])})["w"], [-0.01, 0.005, 0.01]
    )
    with pytest.raises(ValueError, match="weight_clip"):
        objectives.discriminator_constraint(0.0)


def test_objectives_refuse_bad_inputs():
    real = jnp.zeros((B, DIM))
    with pytest.raises(ValueError, match="penalty must be one of"):
        gan.discriminator_objective(
            generator, discriminator, real, jax.random.key(0), latent_dim=LATENT, penalty="gp"
        )
    with pytest.raises(ValueError, match="data's shape"):
        gan.discriminator_objective(
            lambda z, y: z, discriminator, real, jax.random.key(0), latent_dim=LATENT
        )
    with pytest.raises(ValueError, match="latent_shape"):
        gan.generator_objective(generator, discriminator, jax.random.key(0), (B,))
