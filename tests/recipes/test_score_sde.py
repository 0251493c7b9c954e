"""The score-SDE recipe through the shared engine on the built-in digits, with a tiny U-Net.

* each digits experiment (VP, sub-VP, VE) trains, checkpoints and writes sample grids;
* the recipe's score function is the network read through its parameterization: a
  network that outputs the exact answer of a known Gaussian gives the exact score;
* every sampler the config can name runs and reports its number of network evaluations,
  and a sample depends only on the seed and its index (``first_index``);
* ``evaluate`` gives a bits/dim that a better model improves;
* bad choices are refused with an error naming the key.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import core
from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.engine import sharding
from jaxgen.engine.recipe import SAMPLE_OPTIONS
from jaxgen.recipes.score_sde import SAMPLERS, ScoreSDEConfig, ScoreSDERecipe
from jaxgen.run import build_recipe, evaluate_run, load_run, load_train_dataset, train
from jaxgen.sde import samplers as sde_samplers

ROOT = pathlib.Path(__file__).resolve().parents[2]

TINY = [
    "model.unet.channels=8",
    "model.unet.channel_mult=(1,)",
    "model.unet.num_res_blocks=1",
    "model.unet.attention_resolutions=()",
    "model.unet.num_groups=4",
    "model.sample_steps=25",
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
    "eval.max_examples=8",
    "model.likelihood_rtol=1e-3",
    "model.likelihood_atol=1e-3",
]


def tiny_config(sde: str, *extra: str):
    path = ROOT / "experiments" / f"sde_{sde}_digits.py"
    return apply_overrides(load_experiment(str(path)), [*TINY, *extra])


def test_digits_experiment_trains_samples_and_evaluates(tmp_path):
    # One SDE end to end: the run floor's path is the same for every SDE (the SDEs themselves
    # are tested in tests/sde; the VP config samples in tests/test_sample_invariance.py).
    config = tiny_config("ve", "train.num_steps=2")
    result = train(config, tmp_path, mesh=sharding.make_mesh(1))
    assert result.step == 2 and np.isfinite(result.metrics["loss"]) and result.metrics["loss"] > 0
    assert (tmp_path / "samples" / "latest.png").exists()
    run = load_run(tmp_path)
    assert run.step == 2
    results = evaluate_run(run)
    # An untrained 2-step model: finite, and worse than a uniform density on the 17 levels
    # is allowed, but not absurd (the ODE likelihood of a near-random score).
    assert np.isfinite(results["bits_per_dim"]) and 0.0 < results["bits_per_dim"] < 50.0
    assert results["likelihood_nfe_mean"] > 0
    assert np.isfinite(results["digit_fd"])
    assert (tmp_path / "eval_test_step2.json").exists()


def _recipe(sde: str, *extra: str):
    config = tiny_config(sde, *extra)
    return build_recipe(config, load_train_dataset(config))


@pytest.mark.parametrize(
    "parameterization,sde",
    [("eps", "vp"), ("score", "ve"), ("x0", "subvp"), ("v", "vp"), ("edm", "ve")],
)
def test_score_fn_reads_the_network_through_its_parameterization(parameterization, sde, x64):
    """Data x0 ~ N(0, I) per pixel have p_t = N(0, (alpha^2 + sigma^2) I) and score
    -x / (alpha^2 + sigma^2). A stand-in network returning the exact prediction for that
    data (in the recipe's parameterization, seeing the recipe's conditioning input) must
    come out as the exact score."""
    recipe = _recipe(sde, f"model.parameterization={parameterization}")
    s = recipe.sde
    sigma_data = recipe.config.model.sigma_data

    def exact_net(x, c):
        # Recover t from the conditioning input the recipe feeds the network.
        if parameterization == "edm":
            t = s.t_from_sigma_ratio(jnp.exp(4.0 * c))
        elif recipe.config.model.sde == "ve":
            t = s.t_from_sigma_ratio(jnp.exp(c))
        else:
            t = c / 999.0
        a, sg = s.alpha(t)[:, None, None, None], s.sigma(t)[:, None, None, None]
        ratio = sg / a
        c_skip = sigma_data**2 / (ratio**2 + sigma_data**2)
        c_out = ratio * sigma_data / jnp.sqrt(ratio**2 + sigma_data**2)
        c_in = 1.0 / jnp.sqrt(ratio**2 + sigma_data**2)
        # EDM's network sees c_in x_t / alpha; the others see x_t itself.
        xt = a * x / c_in if parameterization == "edm" else x
        score = -xt / (a**2 + sg**2)
        eps = -sg * score
        x0 = (xt + sg**2 * score) / a
        if parameterization == "score":
            return score
        if parameterization == "eps":
            return eps
        if parameterization == "x0":
            return x0
        if parameterization == "v":
            return a * eps - sg * x0
        return (x0 - c_skip * xt / a) / c_out  # D = c_skip x~ + c_out F

    recipe.network = lambda params, **unused: exact_net  # (dropout_key, labels, image_inputs)
    x = jax.random.normal(jax.random.key(0), (5, 8, 8, 1), dtype=jnp.float64)
    t = jnp.linspace(0.05, 0.95, 5, dtype=jnp.float64)
    got = recipe.score_fn(None)(x, t)
    a, sg = s.alpha(t)[:, None, None, None], s.sigma(t)[:, None, None, None]
    np.testing.assert_allclose(got, -x / (a**2 + sg**2), rtol=1e-8, atol=1e-10)


def test_every_sampler_runs_and_counts_evaluations():
    recipe = _recipe("vp")
    # The U-Net's output layers start at zero, so at initialisation it is the zero function,
    # as with all-zero parameters: the samplers see the same network, with no init to compile.
    shapes = jax.eval_shape(recipe.init_params, jax.random.key(0))
    params = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes)
    key = jax.random.key(1)
    expected_nfe = {
        # (the VP's reverse-diffusion chain needs more steps than beta_max = 20)
        "pc": 25 + 1,  # reverse-diffusion predictor, no corrector, + the final denoising step
        "euler_maruyama": 25 + 1,
        "ode_euler": 25,
        "ode_heun": 2 * 25,
        "ode_adaptive": None,  # data dependent, an array
        "dpm_solver": 25,
        "edm": 2 * 25 - 1,
    }

    @jax.jit  # all the samplers in one compilation
    def draw_all(params, key):
        return {
            name: recipe.sample_raw(params, key, 3, sampler=name, num_steps=25)
            for name in expected_nfe
        }

    outs = draw_all(params, key)
    for name, nfe in expected_nfe.items():
        out = outs[name]
        assert out.samples.shape == (3, 8, 8, 1), name
        assert np.all(np.isfinite(np.asarray(out.samples))), name
        if nfe is not None:
            assert out.nfe == nfe, (name, out.nfe)
        else:
            assert 4 <= int(np.max(np.asarray(out.nfe))) <= 10_000, (name, out.nfe)


@pytest.mark.parametrize(
    "override,match",
    [
        ("model.sde=vpp", "model.sde must be one of"),
        ("model.weighting=sigma", "model.weighting must be one of"),
        ("model.sampler=ddim", "model.sampler must be one of"),
        ("model.importance_sampling=true", "importance_sampling needs model.weighting"),
        ("model.parameterization=noise", "model.parameterization must be one of"),
    ],
)
def test_bad_choices_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        _recipe("vp", override)


def test_declarations():
    fields = {f.name for f in dataclasses.fields(ScoreSDEConfig)}
    assert ScoreSDERecipe.samplers == SAMPLERS
    assert set(ScoreSDERecipe.sample_options) <= set(SAMPLE_OPTIONS)
    assert set(ScoreSDERecipe.eval_time_fields) <= fields
    # What shapes the trained network may not change after training.
    assert not {"sde", "parameterization", "unet", "weighting"} & set(
        ScoreSDERecipe.eval_time_fields
    )


def test_eta_is_refused_for_score_samplers():
    recipe = _recipe("vp")
    assert "eta" not in recipe.sample_options
    pattern = "family 'score_sde' has no sample option eta .*sampler, num_steps"
    with pytest.raises(ValueError, match=pattern):
        recipe.sample(None, jax.random.key(0), 2, eta=0.5)
    with pytest.raises(ValueError, match="temperature"):
        recipe.sample(None, jax.random.key(0), 2, temperature=0.5)


def test_samples_depend_only_on_seed_and_index():
    """Example i of a draw is example first_index + i of the same draw in one batch: the
    recipe passes ``core.example_keys(key, n, start=first_index)`` to the sampler. The
    zero network (output layers start at zero) keeps it cheap; the samples are still the
    PC sampler's noise, so a wrong key shows."""
    recipe = _recipe("ve", "model.sample_steps=4")
    shapes = jax.eval_shape(recipe.init_params, jax.random.key(0))
    params = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes)
    key = jax.random.key(2)
    draw = jax.jit(lambda k, i, n: recipe.sample(params, k, n, first_index=i), static_argnames="n")
    whole = draw(key, 0, n=8)
    assert whole.nfe == 4 * 2 + 1 and isinstance(whole.nfe, int)  # predictor + corrector
    np.testing.assert_array_equal(draw(key, 0, n=4).samples, whole.samples[:4])
    np.testing.assert_array_equal(draw(key, 4, n=4).samples, whole.samples[4:])
    # The recipe's keys are the core's per-example keys, as the maths sampler sees them.
    m = recipe.config.model

    @jax.jit
    def direct_and_by_hand(key):
        direct = recipe.sample_raw(params, key, 4, first_index=4, sampler="pc")
        by_hand = sde_samplers.pc_sample(
            recipe.score_fn(params),
            recipe.sde,
            core.example_keys(key, 4, start=4),
            (4, 8, 8, 1),
            num_steps=4,
            predictor=m.predictor,
            corrector=m.corrector,
            snr=m.snr,
            num_corrector_steps=m.num_corrector_steps,
            t_min=m.sample_t_min,
            denoise=m.denoise,
        )
        return direct, by_hand

    direct, pc = direct_and_by_hand(key)
    np.testing.assert_allclose(direct.samples, pc.samples, rtol=1e-6, atol=1e-6)
    assert not np.allclose(whole.samples[:4], whole.samples[4:])  # negative control


def test_eval_time_overrides_cannot_change_the_trained_model(tmp_path):
    from jaxgen.config import config_to_json

    (tmp_path / "config.json").write_text(config_to_json(tiny_config("vp")))
    with pytest.raises(ConfigError, match="'model.sde' cannot be changed after training"):
        load_run(tmp_path, overrides=["model.sde=ve"])
    # Evaluation settings pass the check (and then fail only for the missing checkpoint).
    with pytest.raises(Exception, match="no checkpoint"):
        load_run(tmp_path, overrides=["eval.max_examples=4", "model.likelihood_rtol=1e-3"])
