"""The VAE-family recipes through the shared engine on the built-in digits, tiny networks.

* every digits experiment of the family trains (sharded over 8 devices), checkpoints,
  evaluates (test NLL or bound, digit FD) and writes its pictures;
* non-gradient state (VQ-VAE's EMA codebook, the autoencoder's code statistics) takes exactly
  the value the loss computes from the global batch: not the optimizer's, not a shard's;
* a run with such state, interrupted and resumed, ends exactly where an uninterrupted run ends;
* KL warm-up and binarization do what their configs say; bad choices are refused by name;
* every recipe's ``sample`` returns a ``SamplerOutput`` (decoder and prior passes counted)
  whose example ``i`` depends only on the seed and ``i``: a batch of 16 is the first 16 rows
  of a batch of 64, and ``first_index=16`` gives rows 16..63 (exactly);
* the VAE-GAN step evaluates each of its three networks once and logs all three players'
  losses and terms (``encoder_loss``, ``decoder_loss``, ``discriminator_loss``, ...), equal
  to the pure objective's.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.core import SamplerOutput
from jaxgen.data.digits import load_digits
from jaxgen.engine import sharding
from jaxgen.engine.optimizer import make_optimizer
from jaxgen.engine.step import init_train_state, make_train_step
from jaxgen.run import build_recipe, draw_samples, evaluate_run, load_run, load_train_dataset, train
from jaxgen.vae import vae_gan
from jaxgen.vae import vector_quantization as vq

ROOT = pathlib.Path(__file__).resolve().parents[2]

COMMON = [
    "data.batch_size=16",
    "train.log_every=2",
    "train.checkpoint_every=2",
    "train.sample_every=2",
    "train.num_grid_samples=8",
    "train.progress_bar=false",
    "train.async_checkpoints=false",
    "optim.warmup_steps=1",
    "eval.num_samples=16",
    "eval.batch_size=8",
    "eval.max_examples=16",
]
TINY = {
    "vae_digits": [
        "model.hidden=(16,)",
        "model.latent_dim=4",
        *["model.eval_importance_samples=20", "model.eval_chunk_size=10"],
    ],
    "hierarchical_vae_digits": [
        "model.hidden=(16, 8)",
        "model.latent_dims=(4, 2)",
        "model.eval_importance_samples=20",
        "model.eval_chunk_size=10",
    ],
    "vqvae_digits": [
        "model.channels=8",
        "model.residual_channels=4",
        "model.num_residual_blocks=1",
        "model.num_codes=8",
        "model.embedding_dim=4",
    ],
    "ae_digits": ["model.hidden=(16,)", "model.latent_dim=4"],
    "vae_gan_digits": ["model.hidden=(16,)", "model.discriminator_hidden=(16,)"],
}
EXPECTED_KEYS = {
    "vae_digits": ("bits_per_dim", "nll_nats", "elbo_nats", "active_units"),
    "hierarchical_vae_digits": ("bits_per_dim", "nll_nats", "elbo_nats"),
    "vqvae_digits": ("bits_per_dim", "bits_per_dim_uniform_prior", "codebook_perplexity"),
    "ae_digits": ("reconstruction_bits_per_dim", "mean_squared_error"),
    "vae_gan_digits": ("mean_squared_error", "d_real", "d_fake"),
}


def tiny_config(name: str, *extra: str):
    config = load_experiment(str(ROOT / "experiments" / f"{name}.py"))
    return apply_overrides(config, [*COMMON, *TINY[name], *extra])


def tiny_recipe(name: str, *extra: str):
    config = tiny_config(name, *extra)
    return config, build_recipe(config, load_train_dataset(config))


@pytest.fixture(scope="module")
def vae_digits_run(tmp_path_factory):
    """The VAE digits experiment trained 2 steps on 8 simulated devices with a sample grid
    (one training run for the two tests that need one)."""
    workdir = tmp_path_factory.mktemp("vae_digits")
    config = tiny_config("vae_digits", "train.num_steps=2")
    return workdir, train(config, workdir, mesh=sharding.make_mesh())


@pytest.mark.parametrize("name", list(TINY))
def test_digits_experiment_trains_evaluates_and_draws(name, tmp_path, request):
    config = tiny_config(name, "train.num_steps=2")
    if name == "vae_digits":  # on 8 simulated devices, with a sample grid
        tmp_path, result = request.getfixturevalue("vae_digits_run")
        assert (tmp_path / "samples" / "latest.png").exists()
    else:  # one device and no grid: the engine's sharding and grids are tested elsewhere
        config = apply_overrides(config, ["train.sample_every=0"])
        result = train(config, tmp_path, mesh=sharding.make_mesh(1))
    assert result.step == 2 and np.isfinite(result.metrics["loss"])
    results = evaluate_run(load_run(tmp_path))
    for key in EXPECTED_KEYS[name]:
        assert np.isfinite(results[key]), key
    assert np.isfinite(results["digit_fd"])
    if "bits_per_dim" in results:  # an untrained model: worse than nothing, not absurd
        assert 0.0 < results["bits_per_dim"] < 40.0
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert any(f.startswith("reconstructions_step2") for f in figures), figures


def _batch(n: int = 32):
    images = load_digits("train")[0][:n]
    return {"image": jnp.asarray(images, jnp.float32)}


def test_ema_codebook_is_the_losss_update_not_the_optimizers():
    """After an AdamW step (weight decay 0.5) the EMA codebook holds exactly the value the
    loss computed: van den Oord et al.'s EMA step on the batch's encoder outputs."""
    config, recipe = tiny_recipe("vqvae_digits", "optim.optimizer=adamw", "optim.weight_decay=0.5")
    tx = make_optimizer(config.optim, 10)
    state = init_train_state(recipe.init_params, tx, seed=0)
    step = jax.jit(
        make_train_step(
            recipe.training_loss, tx, ema_decay=0.9, state_collections=recipe.state_collections
        )
    )
    batch = _batch()
    first = state
    state, _ = step(state, batch)  # step 0 has learning rate 0 (warm-up); test step 1
    new_state, _ = step(state, batch)
    z_e, q = recipe.encode(state.params, batch["image"])
    by_hand = vq.ema_codebook_update(
        vq.EMACodebookState(**state.params["codebook_ema"]),
        z_e,
        q.indices,
        decay=config.model.ema_decay,
        epsilon=config.model.ema_epsilon,
    )
    got = new_state.params["codebook_ema"]
    for k in ("cluster_size", "embedding_sum", "codebook"):
        np.testing.assert_allclose(got[k], getattr(by_hand, k), rtol=1e-5, atol=1e-6)
    # Negative control: the optimizer did move the trained parameters.
    assert not np.allclose(new_state.params["prior_logits"], first.params["prior_logits"])


def test_state_updates_use_the_global_batch_on_eight_devices():
    """The autoencoder's running code mean after one step on a batch sharded over 8 devices
    is ``(1 - decay)`` times the mean code of the whole batch, not of one shard."""
    config, recipe = tiny_recipe("ae_digits")
    tx = make_optimizer(config.optim, 10)
    state = init_train_state(recipe.init_params, tx, seed=0)
    step = make_train_step(
        recipe.training_loss, tx, ema_decay=0.9, state_collections=recipe.state_collections
    )
    batch = _batch()
    mesh = sharding.make_mesh()
    assert mesh.size == 8
    new_state, _ = jax.jit(step)(state, jax.device_put(batch, sharding.batch_sharding(mesh)))
    z = recipe.encoder_fn(state.params)(batch["image"])
    decay = config.model.code_stats_decay
    got = new_state.params["code_stats"]["mean"]
    np.testing.assert_allclose(got, (1 - decay) * z.mean(axis=0), rtol=1e-5, atol=1e-7)
    # Negative control: one shard's mean is a different number.
    assert not np.allclose(got, (1 - decay) * z[:4].mean(axis=0), rtol=1e-3)


def test_unknown_state_update_is_refused():
    config, recipe = tiny_recipe("vae_digits")
    tx = make_optimizer(config.optim, 10)
    state = init_train_state(recipe.init_params, tx, seed=0)

    def loss(params, batch, key, step):
        per_example, terms, _ = recipe.training_loss(params, batch, key, step)
        return per_example, terms, {"encoder": params["encoder"]}

    with pytest.raises(ValueError, match="not state collections"):
        jax.eval_shape(make_train_step(loss, tx, ema_decay=0.9), state, _batch())


def test_interrupted_run_with_state_resumes_exactly(tmp_path):
    name = "ae_digits"  # its code statistics are a state collection
    config = tiny_config(name, "train.num_steps=4", "train.sample_every=0")
    mesh = sharding.make_mesh(1)
    straight = train(config, tmp_path / "straight", mesh=mesh)
    first = train(config, tmp_path / "resumed", mesh=mesh, stop_at_step=2)
    assert first.stopped_early and first.step == 2
    resumed = train(config, tmp_path / "resumed", mesh=mesh)
    assert resumed.step == 4
    collection = "code_stats"
    for a, b in zip(
        jax.tree.leaves(straight.state.params), jax.tree.leaves(resumed.state.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the state really moved during the run (so the comparison above covers it)
    init = build_recipe(config, load_train_dataset(config)).init_params(jax.random.key(0))
    assert not np.allclose(
        jax.tree.leaves(straight.state.params[collection])[0],
        jax.tree.leaves(init[collection])[0],
    )


def test_kl_warmup_and_beta_enter_the_objective():
    _, recipe = tiny_recipe("vae_digits", "model.beta=4.0", "model.kl_warmup_steps=10")
    params = recipe.init_params(jax.random.key(0))
    batch, key = _batch(8), jax.random.key(1)
    losses = {}
    for step in (0, 5, 10, 50):
        per_example, terms, _ = recipe.training_loss(params, batch, key, jnp.asarray(step))
        weight = min(step / 10, 1.0) * 4.0
        np.testing.assert_allclose(terms["beta"], weight, rtol=1e-6)
        np.testing.assert_allclose(
            per_example, terms["reconstruction"] + weight * terms["kl_penalty"], rtol=1e-5
        )
        losses[step] = per_example
    assert np.all(losses[50] > losses[0])  # negative control: the KL weight does matter


def test_bernoulli_binarizes_dynamically_and_evaluates_on_a_fixed_draw():
    _, recipe = tiny_recipe("vae_digits", "model.likelihood=bernoulli", "model.binarize=dynamic")
    x = _batch(64)["image"]
    lik = recipe.likelihood
    a, b = lik.train_data(x, jax.random.key(0)), lik.train_data(x, jax.random.key(1))
    assert set(np.unique(a)) <= {0.0, 1.0} and not np.array_equal(a, b)
    e1, e2 = lik.eval_data(x, jax.random.key(0)), lik.eval_data(x, jax.random.key(1))
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_array_equal(lik.eval_data(x[:10], jax.random.key(2)), e1[:10])
    # the binarization probability is the grey level (z-score of the pixel mean)
    draws = jnp.stack([lik.train_data(x, jax.random.key(i)) for i in range(50)])
    p = 0.5 * (np.asarray(x) + 1.0)
    z = (draws.mean() - p.mean()) / np.sqrt(np.sum(p * (1 - p)) / p.size**2 / 50)
    assert abs(float(z)) < 4.5


@pytest.mark.parametrize(
    "name,override,message",
    [
        ("vae_digits", "model.likelihood=bernoulli", "binarize"),
        ("vae_digits", "model.likelihood=poisson", "model.likelihood"),
        ("vae_digits", "model.num_importance_samples=5", "iwae"),
        ("vae_digits", "model.eval_chunk_size=300", "multiple"),
        ("vqvae_digits", "model.codebook_update=gradient", "dead_code_threshold"),
        ("vqvae_digits", "model.num_downsamples=4", "divisible"),
        ("hierarchical_vae_digits", "model.latent_dims=(4,)", "same length"),
        ("ae_digits", "model.penalty=l2", "penalty_weight"),
        ("ae_digits", "model.corruption=salt", "model.corruption"),
    ],
)
def test_bad_config_is_refused_by_name(name, override, message):
    with pytest.raises(ConfigError, match=message):
        tiny_recipe(name, override)


# ----------------------------------------------------------------- sampling conventions

# name -> (extra overrides, nfe): decoder pass; ladder: L - 1 top-down passes + decoder;
# VQ-VAE: the code prior + decoder.
SAMPLE_CASES = {
    "vae_digits": ((), 1),
    "vae_digits_draw": (("model.sample_mode=sample",), 1),
    "hierarchical_vae_digits": (("model.sample_mode=sample",), 2),
    "vqvae_digits": ((), 2),
    "ae_digits": ((), 1),
    "vae_gan_digits": ((), 1),
}


@pytest.mark.parametrize("case", list(SAMPLE_CASES))
def test_samples_depend_only_on_the_seed_and_the_index(case):
    extra, nfe = SAMPLE_CASES[case]
    name = case.removesuffix("_draw")
    _, recipe = tiny_recipe(name, *extra)
    params = recipe.init_params(jax.random.key(0))
    if name == "ae_digits":  # code statistics of a few training codes, so cov is not 0
        _, _, updates = recipe.training_loss(params, _batch(16), jax.random.key(1), 0)
        params = {**params, **updates}
    key = jax.random.key(5)

    @jax.jit  # the three draws in one compilation
    def draws(params, key, first_index):
        return (
            recipe.sample(params, key, 16),
            recipe.sample(params, key, 64),
            recipe.sample(params, key, 48, first_index=first_index),
        )

    small, large, tail = draws(params, key, 16)
    assert isinstance(small, SamplerOutput) and small.nfe == nfe == large.nfe
    assert small.samples.shape == (16, *recipe.data_shape)
    np.testing.assert_array_equal(small.samples, large.samples[:16])  # exact
    np.testing.assert_array_equal(tail.samples, large.samples[16:])
    # Negative control: the examples differ from one another.
    assert not np.allclose(large.samples[0], large.samples[1])


def test_sample_declarations():
    for name, options in [
        ("vae_digits", ("temperature",)),
        ("hierarchical_vae_digits", ("temperature",)),
        ("vqvae_digits", ("temperature",)),
        ("ae_digits", ()),
        ("vae_gan_digits", ()),
    ]:
        _, recipe = tiny_recipe(name)
        assert recipe.sample_options == options and recipe.samplers == ()
    _, recipe = tiny_recipe("vae_digits")
    assert set(recipe.eval_time_fields) == {
        "sample_mode",
        "eval_importance_samples",
        "eval_chunk_size",
    }
    params = recipe.init_params(jax.random.key(0))
    cold = recipe.sample(params, jax.random.key(1), 4, temperature=0.0).samples
    # temperature 0 decodes z = 0 for every example
    np.testing.assert_allclose(cold, np.broadcast_to(cold[:1], cold.shape), atol=1e-6)


# ----------------------------------------------------------------- VAE-GAN: one pass, all logs


def test_vae_gan_step_logs_all_three_players_moves_each_by_its_own_gradient_in_one_pass():
    """One simultaneous step (SGD, rate 1): the metrics hold every player's loss and terms,
    equal to the pure objective's; each player's update is minus its own gradient (the other
    players' parameters held fixed: three separate ``jax.grad``), on one device or 8; and
    tracing the step calls each network once."""
    config, recipe = tiny_recipe("vae_gan_digits")
    tx = optax.sgd(1.0)
    state = init_train_state(recipe.init_params, tx, seed=0)
    batch = _batch(16)
    new_state, metrics = jax.jit(recipe.make_train_step(tx))(state, batch)
    key = state.step_key()
    # The pure objective at the step's key and parameters.
    losses = vae_gan.vae_gan_losses(
        *recipe._callables(state.params),
        batch["image"],
        key,
        gamma=config.model.gamma,
        beta=config.model.beta,
    )
    total = 0.0
    for player in vae_gan.PLAYERS:
        per_example, terms = losses[player]
        np.testing.assert_allclose(metrics[f"{player}_loss"], per_example.mean(), rtol=1e-5)
        for name, value in terms.items():
            np.testing.assert_allclose(
                metrics[f"{player}_{name}"], value.mean(), rtol=1e-5, err_msg=(player, name)
            )
        total = total + per_example.mean()
    np.testing.assert_allclose(metrics["loss"], total, rtol=1e-5)
    # Distinct, not overwritten: the three players' losses are different numbers.
    assert len({float(metrics[f"{p}_loss"]) for p in vae_gan.PLAYERS}) == 3

    @jax.jit
    def own_gradients(params):
        def own(params, player):
            frozen = {k: v if k == player else jax.lax.stop_gradient(v) for k, v in params.items()}
            return recipe.objective(frozen, batch["image"], key)[player][0].mean()

        return {p: jax.grad(own)(params, p)[p] for p in vae_gan.PLAYERS}

    grads = own_gradients(state.params)
    for player in vae_gan.PLAYERS:
        moved = jax.tree.map(lambda a, b: a - b, state.params[player], new_state.params[player])
        for g, d in zip(jax.tree.leaves(grads[player]), jax.tree.leaves(moved), strict=True):
            np.testing.assert_allclose(d, g, rtol=1e-4, atol=1e-6, err_msg=player)

    # The same step with the batch sharded over 8 devices (data parallel).
    mesh = sharding.make_mesh()
    sharded = jax.device_put(batch, sharding.batch_sharding(mesh))
    state8, metrics8 = jax.jit(recipe.make_train_step(tx))(state, sharded)
    for name in metrics:
        np.testing.assert_allclose(metrics8[name], metrics[name], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(state8.params), jax.tree.leaves(new_state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # Each network is called once while the whole step (forward and gradients) is traced.
    calls = dict.fromkeys(vae_gan.PLAYERS, 0)
    callables = recipe._callables

    def counted(params):
        def count(player, fn):
            def wrapped(*args):
                calls[player] += 1
                return fn(*args)

            return wrapped

        return tuple(count(p, f) for p, f in zip(vae_gan.PLAYERS, callables(params), strict=True))

    recipe._callables = counted
    jax.eval_shape(recipe.make_train_step(tx), state, batch)  # a new step: traced afresh
    assert calls == dict.fromkeys(vae_gan.PLAYERS, 1)


def test_draw_samples_matches_the_recipe_across_chunk_sizes(vae_digits_run):
    run = load_run(vae_digits_run[0])
    a = draw_samples(run, num_samples=24, seed=3, batch_size=8)
    b = draw_samples(run, num_samples=24, seed=3, batch_size=16)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    direct = run.recipe.sample(run.ema_params, jax.random.key(3), 24).samples
    np.testing.assert_allclose(a, direct, rtol=1e-6, atol=1e-6)
