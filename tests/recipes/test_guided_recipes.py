"""Class-conditional diffusion recipes and guided sampling (issue 13), with tiny U-Nets on
the built-in digits.

* a class-conditional DDPM trains (finite loss) with label dropout; the dropped fraction
  is ``p_uncond`` (binomial bound) and the recipe's loss is the DDPM loss of the network
  at exactly the dropped labels;
* guided samples are the maths samplers run on ``u + s (c - u)`` built by hand from the
  network (DDPM ancestral and DDIM, a score-SDE sampler); ``s = 1`` is the conditional
  model bit for bit, ``s = 0`` the unconditional one;
* a guidance scale traced through :class:`ChunkedSampler` compiles once for two scales;
* classifier guidance through the noisy-classifier recipe's ``log_prob`` runs with both
  DDPM samplers and equals the hand-built eps shift; noise processes are compared;
* every bad input of the issue raises ``ConfigError`` naming the value.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import core, diffusion, guidance
from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.data.digits import load_digits
from jaxgen.engine import sharding
from jaxgen.engine.sampling import ChunkedSampler
from jaxgen.recipes.guidance import GuidanceConfig, drop_labels
from jaxgen.run import build_recipe, load_train_dataset
from jaxgen.sde import samplers

ROOT = pathlib.Path(__file__).resolve().parents[2]
UNET = [
    "model.unet.channels=8",
    "model.unet.channel_mult=(1,)",
    "model.unet.num_res_blocks=1",
    "model.unet.attention_resolutions=()",
    "model.unet.num_groups=4",
]
DDPM_TINY = [*UNET, "model.num_timesteps=10", "model.sample_steps=4"]
N = 4
LABELS = jnp.array([0, 3, 7, 9], jnp.int32)


def _config(name, overrides):
    return apply_overrides(load_experiment(str(ROOT / "experiments" / f"{name}.py")), overrides)


def _build(name, overrides):
    config = _config(name, overrides)
    return build_recipe(config, load_train_dataset(config))


def _random_params(recipe, seed=0, scale=0.1):
    """Random parameters of the recipe's shapes (NumPy: nothing to compile): GroupNorm
    scales near 1, everything else near 0, so every layer (the zero-initialised output
    layers and the label embedding included) matters."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        base = 1.0 if "scale" in jax.tree_util.keystr(path) else 0.0
        return (base + scale * rng.standard_normal(leaf.shape)).astype(leaf.dtype)

    shapes = jax.eval_shape(recipe.init_params, jax.random.key(0))
    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.fixture(scope="module")
def cfg_ddpm():
    recipe = _build("ddpm_cfg_digits", DDPM_TINY)
    return recipe, _random_params(recipe)


@pytest.fixture(scope="module")
def cfg_sde():
    recipe = _build("sde_vp_cfg_digits", UNET)
    return recipe, _random_params(recipe)


def _manual_cfg(cond_model, labels, scale):
    null = jnp.full_like(labels, guidance.NULL_LABEL)

    def model(x, t):
        c, u = cond_model(x, t, labels), cond_model(x, t, null)
        return u + scale * (c - u)

    return model


# ---------------------------------------------------------------------- training


def test_label_dropout_fraction_and_loss_wiring(cfg_ddpm):
    labels = jnp.arange(20_000, dtype=jnp.int32) % 10
    dropped = drop_labels(jax.random.key(3), labels, 0.1)
    is_null = np.asarray(dropped) == guidance.NULL_LABEL
    # binomial std of the fraction: sqrt(0.1 * 0.9 / 20000) = 0.0021; 5 std
    assert abs(is_null.mean() - 0.1) < 0.0106
    np.testing.assert_array_equal(np.asarray(dropped)[~is_null], np.asarray(labels)[~is_null])
    assert drop_labels(jax.random.key(3), labels, 0.0) is labels

    recipe, params = cfg_ddpm
    images = jax.random.uniform(jax.random.key(4), (16, 8, 8, 1), minval=-1.0, maxval=1.0)
    batch = {"image": images, "label": jnp.arange(16, dtype=jnp.int32) % 10}

    @jax.jit
    def losses(params, key):
        got, _ = recipe.loss(params, batch, key)
        dropout_key, diffusion_key = jax.random.split(key)
        kept = drop_labels(jax.random.fold_in(key, 2), batch["label"], 0.1)
        want, _ = diffusion.ddpm_loss(
            recipe.model_fn(params, dropout_key=dropout_key, labels=kept),
            recipe.schedule,
            images,
            diffusion_key,
            parameterization="eps",
        )
        nulls = jnp.full((16,), guidance.NULL_LABEL, jnp.int32)
        other, _ = diffusion.ddpm_loss(
            recipe.model_fn(params, labels=nulls), recipe.schedule, images, diffusion_key
        )
        return got, want, other

    got, want, other = losses(params, jax.random.key(5))
    np.testing.assert_array_equal(got, want)
    assert not np.allclose(got, other)  # the labels matter


@pytest.mark.parametrize("fixture", ["cfg_ddpm", "cfg_sde"])
def test_conditional_recipe_trains(fixture, request):
    """One gradient step of the mean loss on labelled digits: finite loss and gradients,
    and the loss falls."""
    recipe, params = request.getfixturevalue(fixture)
    images, labels = load_digits("train")
    batch = {"image": jnp.asarray(images[:16]), "label": jnp.asarray(labels[:16], jnp.int32)}

    @jax.jit
    def step(params, key):
        def mean_loss(p):
            return recipe.loss(p, batch, key)[0].mean()

        loss, grads = jax.value_and_grad(mean_loss)(params)
        new = jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)
        return loss, grads, mean_loss(new)

    loss, grads, after = step(params, jax.random.key(0))
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert after < loss


# ---------------------------------------------------------------------- guided sampling


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_ddpm_guided_sample_is_the_sampler_on_the_guided_model(cfg_ddpm, sampler):
    recipe, params = cfg_ddpm
    key = jax.random.key(7)
    run = diffusion.ancestral_sample if sampler == "ancestral" else diffusion.ddim_sample
    extra = {} if sampler == "ancestral" else {"num_steps": 4}
    common = dict(parameterization="eps", clip_denoised=True, **extra)
    shape = (N, 8, 8, 1)
    cyclic = core.sampling.cyclic_labels(N, 10, start=3)

    @jax.jit
    def draws(params, scale):
        cond = recipe.conditional_model_fn(params)
        keys = core.example_keys(key, N)

        def draw(**options):
            return recipe.sample(params, key, N, sampler=sampler, **options).samples

        def reference(model, keys=keys):
            return run(model, recipe.schedule, keys, shape, **common).samples

        return (
            draw(condition={"label": LABELS}, guidance_scale=scale),
            reference(_manual_cfg(cond, LABELS, scale)),
            # s = 1: the conditional model itself (no unconditional pass)
            draw(condition={"label": LABELS}, guidance_scale=1.0),
            reference(lambda x, t: cond(x, t, LABELS)),
            # no condition: classes cycle from first_index, at the config's default scale
            recipe.sample(params, key, N, first_index=3, sampler=sampler).samples,
            reference(
                _manual_cfg(cond, cyclic, recipe.config.model.guidance.scale),
                core.example_keys(key, N, start=3),
            ),
        )

    got, want, one, conditional, shifted, shifted_want = draws(params, 2.5)
    assert got.shape == shape
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_array_equal(one, conditional)
    np.testing.assert_allclose(shifted, shifted_want, atol=1e-5)
    assert np.max(np.abs(got - conditional)) > 1e-3  # guidance does something
    # s = 0: u + 0 (c - u), the unconditional model (same compiled draw)
    got, want, *_ = draws(params, 0.0)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_sde_guided_sample_is_the_sampler_on_the_guided_score(cfg_sde):
    recipe, params = cfg_sde
    key = jax.random.key(2)

    @jax.jit
    def draws(params):
        def draw(**options):
            return recipe.sample_raw(
                params,
                key,
                N,
                sampler="dpm_solver",
                num_steps=3,
                condition={"label": LABELS},
                **options,
            ).samples

        want = samplers.dpm_solver_sample(
            _manual_cfg(
                recipe.conditional_score_fn(params), LABELS, recipe.config.model.guidance.scale
            ),
            recipe.sde,
            core.example_keys(key, N),
            (N, 8, 8, 1),
            num_steps=3,
            order=2,
        ).samples
        # an interval covering the whole noise range is no interval
        return draw(), want, draw(guidance_interval=(0.0, 1e6))

    got, want, wide = draws(params)
    assert got.shape == (N, 8, 8, 1)
    tol = 1e-5 * np.max(np.abs(want))  # float32 rounding of the (large) samples
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    np.testing.assert_allclose(wide, got, rtol=0, atol=tol)


def test_traced_scale_compiles_once(cfg_ddpm):
    recipe, params = cfg_ddpm
    traces = []

    class Counting(type(recipe)):
        def sample(self, *args, **kwargs):
            traces.append(kwargs.get("guidance_scale"))
            return super().sample(*args, **kwargs)

    counting = object.__new__(Counting)
    counting.__dict__.update(recipe.__dict__)
    sampler = ChunkedSampler(
        counting,
        num_samples=N,
        batch_size=N,
        mesh=sharding.make_mesh(1),
        traced_options={"guidance_scale": 1.5},
        sampler="ddim",
    )
    key = jax.random.key(0)
    a = sampler(params, key)
    b = sampler(params, key, guidance_scale=3.0)
    c = sampler(params, key, guidance_scale=1.5)
    assert len(traces) == 1 and isinstance(traces[0], jax.core.Tracer)
    np.testing.assert_array_equal(a, c)
    direct = recipe.sample(params, key, N, sampler="ddim", guidance_scale=3.0).samples
    np.testing.assert_allclose(b, direct, atol=1e-5)
    assert np.max(np.abs(a - b)) > 1e-3
    with pytest.raises(ValueError, match="not traced options"):
        sampler(params, key, guidance_rescale=0.5)


# ---------------------------------------------------------------------- classifier guidance


@pytest.fixture(scope="module")
def classifier():
    recipe = _build("noisy_classifier_digits", [*UNET, "model.num_timesteps=10"])
    return recipe, _random_params(recipe, seed=3)


@pytest.fixture(scope="module")
def uncond_ddpm():
    recipe = _build("ddpm_digits", DDPM_TINY)
    return recipe, _random_params(recipe)


def test_noisy_classifier_recipe(classifier):
    recipe, params = classifier
    images = jax.random.uniform(jax.random.key(0), (12, 8, 8, 1), minval=-1.0, maxval=1.0)
    labels = jnp.arange(12, dtype=jnp.int32) % 10
    t0 = jnp.zeros(12, jnp.int32)

    @jax.jit
    def outputs(params):
        ce, terms = recipe.loss(params, {"image": images, "label": labels}, jax.random.key(1))
        all_classes = jax.vmap(lambda k: recipe.log_prob(params, images, t0, jnp.full(12, k)))(
            jnp.arange(10)
        )
        return ce, terms, recipe.log_prob(params, images, t0, labels), all_classes

    ce, terms, log_p, all_classes = outputs(params)
    assert ce.shape == (12,) and np.all(np.isfinite(ce)) and set(terms) == {"ce", "accuracy"}
    # log-probabilities of the K classes: their probabilities sum to 1
    np.testing.assert_allclose(jnp.exp(all_classes).sum(0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(log_p, all_classes[labels, jnp.arange(12)], rtol=1e-6)
    results = recipe.evaluate(params, np.asarray(images), jax.random.key(2), labels=labels)
    assert {"ce", "accuracy_t0"} <= set(results) and 0.0 <= results["accuracy_t0"] <= 1.0
    with pytest.raises(ConfigError, match="labels"):
        recipe.evaluate(params, np.asarray(images), jax.random.key(2))
    with pytest.raises(ConfigError, match="does not sample"):
        recipe.sample(params, jax.random.key(0), 2)


def test_noise_process_mismatch_is_detectable(classifier):
    clf, _ = classifier
    ddpm = _build("ddpm_digits", DDPM_TINY)
    assert clf.noise_process() == ddpm.noise_process()
    assert clf.noise_process() != _build("ddpm_digits", UNET).noise_process()  # T = 1000
    sde = _build("sde_vp_digits", UNET)
    vp_clf = _build("noisy_classifier_digits", [*UNET, "model.process=vp"])
    assert vp_clf.noise_process() == sde.noise_process() != clf.noise_process()


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_classifier_guidance_of_an_unconditional_ddpm(classifier, uncond_ddpm, sampler):
    clf, clf_params = classifier
    ddpm, params = uncond_ddpm
    key = jax.random.key(1)
    options = dict(sampler=sampler, condition={"label": LABELS})
    log_prob_fn = clf.log_prob_fn(clf_params)
    sched = ddpm.schedule

    def shifted(x, t):  # Alg. 2's eps shift (DDIM), or the eps giving Alg. 1's mean shift
        grad = jax.grad(lambda z: log_prob_fn(z, t, LABELS).sum())(x)
        factor = sched.sqrt_one_minus_alphas_cumprod[t]
        if sampler == "ancestral":  # Sigma_t = beta_t: sqrt(alpha_t) sqrt(1 - abar_t)
            factor = factor * jnp.sqrt(sched.alphas[t])
        return ddpm.model_fn(params)(x, t) - 2.0 * factor[:, None, None, None] * grad

    run = diffusion.ancestral_sample if sampler == "ancestral" else diffusion.ddim_sample
    extra = {} if sampler == "ancestral" else {"num_steps": 4}

    @jax.jit
    def draws(params, clf_params, scale):
        pair = (clf.log_prob, clf_params)
        return (
            ddpm.sample(params, key, N, classifier=pair, guidance_scale=scale, **options).samples,
            ddpm.sample(params, key, N, sampler=sampler).samples,
            run(
                shifted, sched, core.example_keys(key, N), (N, 8, 8, 1), clip_denoised=True, **extra
            ).samples,
        )

    guided, unguided, want = draws(params, clf_params, 2.0)
    assert guided.shape == (N, 8, 8, 1) and np.all(np.isfinite(guided))
    assert np.max(np.abs(guided - unguided)) > 1e-4
    np.testing.assert_allclose(guided, want, atol=1e-5)
    zero, unguided, _ = draws(params, clf_params, 0.0)
    np.testing.assert_allclose(zero, unguided, atol=1e-6)


# ---------------------------------------------------------------------- bad input


def test_bad_inputs_raise_config_errors(cfg_ddpm):
    recipe, params = cfg_ddpm
    key = jax.random.key(0)

    def sample(recipe=recipe, **options):  # traced only (eval_shape): nothing compiles
        return jax.eval_shape(lambda: recipe.sample(params, key, N, sampler="ddim", **options))

    with pytest.raises(ConfigError, match="class 10 is outside the model's classes"):
        sample(condition={"label": jnp.array([0, 1, 10, 2])})
    with pytest.raises(ConfigError, match="class -1 is outside"):
        sample(condition={"label": jnp.array([0, 1, -1, 2])})
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=f"guidance_scale must be a finite.*{bad}"):
            sample(guidance_scale=bad)
    with pytest.raises(ConfigError, match=r"guidance_interval=\(50.0, 80.0\).*outside"):
        sample(guidance_interval=(50.0, 80.0))
    with pytest.raises(ConfigError, match=r"guidance_interval.*\(3.0, 1.0\)"):
        sample(guidance_interval=(3.0, 1.0))
    with pytest.raises(ConfigError, match="guidance_rescale.*2.0"):
        sample(guidance_rescale=2.0)
    with pytest.raises(ConfigError, match="classifier must be a pair"):
        sample(classifier=lambda *a: None)

    uncond = _build("ddpm_digits", DDPM_TINY)  # traced only: its parameters are not read
    with pytest.raises(ConfigError, match="guidance_scale=2.0.*unconditional"):
        sample(uncond, guidance_scale=2.0)
    with pytest.raises(ConfigError, match="guidance_interval.*unconditional"):
        sample(uncond, guidance_interval=(0.1, 1.0))
    with pytest.raises(ConfigError, match="condition was given but the model is unconditional"):
        sample(uncond, condition={"label": LABELS})

    no_dropout = _build(
        "ddpm_cfg_digits", [*DDPM_TINY, "model.guidance.p_uncond=0.0", "model.guidance.scale=1.0"]
    )
    with pytest.raises(ConfigError, match=r"guidance_scale=3.0.*p_uncond = 0"):
        sample(no_dropout, guidance_scale=3.0)
    assert sample(no_dropout, guidance_scale=1.0).samples.shape == (N, 8, 8, 1)  # unguided

    with pytest.raises(ConfigError, match="model.unet.num_classes=7"):
        _build("ddpm_cfg_digits", [*DDPM_TINY, "model.unet.num_classes=7"])
    with pytest.raises(ConfigError, match="model.guidance.scale=2.0.*unconditional"):
        _build("ddpm_digits", [*DDPM_TINY, "model.guidance.scale=2.0"])
    with pytest.raises(ConfigError, match=r"p_uncond must be a number in \[0, 1\), got 1.5"):
        GuidanceConfig(p_uncond=1.5)
    with pytest.raises(ConfigError, match="model.guidance.scale must be a finite.*nan"):
        GuidanceConfig(scale=float("nan"))
    with pytest.raises(ConfigError, match="p_uncond > 0, got 0"):
        GuidanceConfig(p_uncond=0.0, scale=2.0)
    with pytest.raises(ConfigError, match=r"model.guidance.interval.*\(1.0, 1.0\)"):
        GuidanceConfig(interval=(1.0, 1.0))


def test_guidance_config_round_trips_and_overrides():
    from jaxgen.config import config_from_json, config_to_json
    from jaxgen.run.inference import model_config_class

    config = _config("ddpm_cfg_digits", ["model.guidance.interval=(0.28, 5.42)"])
    assert config.model.guidance == GuidanceConfig(p_uncond=0.1, scale=1.5, interval=(0.28, 5.42))
    again = config_from_json(config_to_json(config), resolve_model=model_config_class)
    assert again == config
    with pytest.raises(ConfigError, match=r"model.guidance.interval.*\(1.0, 2.0, 3.0\)"):
        apply_overrides(config, ["model.guidance.interval=(1.0, 2.0, 3.0)"])


def test_every_sde_sampler_takes_the_guided_score(cfg_sde):
    """Traced only (``eval_shape``, nothing compiles): every sampler, the per-example
    adaptive ODE included, takes the guided score with an interval and rescale unchanged
    (the numbers of a guided draw are checked against the hand-built model above)."""
    recipe, params = cfg_sde
    for sampler in recipe.samplers:
        steps = 25 if sampler == "pc" else 2  # the VP chain needs num_steps > beta_max

        def draw(params, sampler=sampler, steps=steps):
            return recipe.sample(
                params,
                jax.random.key(0),
                N,
                sampler=sampler,
                num_steps=steps,
                condition={"label": LABELS},
                guidance_scale=2.0,
                guidance_interval=(0.1, 5.0),
                guidance_rescale=0.5,
            ).samples

        assert jax.eval_shape(draw, params).shape == (N, 8, 8, 1), sampler
