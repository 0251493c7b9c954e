"""Teacher adapters (:mod:`jaxgen.recipes.teacher_denoiser`) and the teacher runs of the
distillation recipes (:mod:`jaxgen.run.distill_teacher`).

* each family's denoiser in the EDM frame equals Tweedie's formula on the family's own score
  (DDPM: its eps at the integer step; score SDE: its score; flow matching: its velocity),
  built by an independent path;
* DDPM levels snap to the discrete table and are evaluated at that integer step exactly;
* a teacher run that is missing, unfinished or of another family is refused by name.

:func:`tiny_teacher` trains the tiny DDPM teacher shared by the consistency and progressive
recipe tests once per process.
"""

from __future__ import annotations

import functools
import pathlib
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import flow_matching as fm
from jaxgen.config import ConfigError, apply_overrides, config_to_json, load_experiment
from jaxgen.core.parameterization import broadcast_to_event
from jaxgen.recipes.teacher_denoiser import teacher_model
from jaxgen.run import build_recipe, load_train_dataset, train
from jaxgen.run.distill_teacher import load_distillation_teacher

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY_UNET = [
    "model.unet.channels=8",
    "model.unet.channel_mult=(1,)",
    "model.unet.num_res_blocks=1",
    "model.unet.attention_resolutions=()",
    "model.unet.num_groups=4",
]
TINY_TRAIN = [
    "data.batch_size=8",
    "train.num_steps=2",
    "train.log_every=1",
    "train.checkpoint_every=2",
    "train.sample_every=0",
    "train.progress_bar=false",
    "train.async_checkpoints=false",
]


def tiny_config(experiment: str, *extra: str):
    return apply_overrides(
        load_experiment(str(ROOT / "experiments" / f"{experiment}.py")), [*TINY_TRAIN, *extra]
    )


@functools.cache
def tiny_teacher() -> pathlib.Path:
    """A finished two-step tiny DDPM digits run (trained once per process)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="jaxgen_distill_teacher_"))
    train(tiny_config("ddpm_digits", *TINY_UNET), root / "ddpm")
    return root / "ddpm"


@functools.cache
def teacher_params():
    """The tiny teacher's EMA parameters, read from its checkpoint once per process."""
    return load_distillation_teacher(tiny_teacher()).params


def _recipe(experiment: str, *extra: str):
    config = tiny_config(experiment, *TINY_UNET, *extra)
    return build_recipe(config, load_train_dataset(config))


def _inputs(key=0, n=3):
    x = jax.random.normal(jax.random.key(key), (n, 8, 8, 1))
    return x


def test_ddpm_adapter_is_the_eps_network_at_the_integer_step():
    recipe = _recipe("ddpm_digits")
    params = recipe.init_params(jax.random.key(1))
    model = teacher_model(recipe)
    abar = np.asarray(recipe.schedule.alphas_cumprod, np.float64)
    np.testing.assert_allclose(model.table, np.sqrt((1 - abar) / abar))
    assert model.sigma_min == model.table[0] and model.sigma_max == model.table[-1]
    t = np.array([0, 417, 999])
    sigma = jnp.asarray(model.table[t], jnp.float32)
    np.testing.assert_array_equal(model.time_of_sigma(sigma), t)
    # A level near, not on, the table goes to the nearest entry (in log s).
    np.testing.assert_array_equal(model.time_of_sigma(sigma * 1.0001), t)
    x_scaled = _inputs()
    denoised = model.denoiser(params, clip=False)(x_scaled, sigma)
    alpha = np.sqrt(abar[t])
    x_t = broadcast_to_event(jnp.asarray(alpha, jnp.float32), x_scaled) * x_scaled
    eps = recipe.model_fn(params)(x_t, jnp.asarray(t, jnp.int32))
    expected = (x_t - broadcast_to_event(jnp.sqrt(1 - jnp.asarray(abar[t])), x_t) * eps) / (
        broadcast_to_event(jnp.asarray(alpha), x_t)
    )
    np.testing.assert_allclose(denoised, expected, rtol=2e-4, atol=2e-4)
    clipped = model.denoiser(params)(x_scaled, sigma)  # the teacher's clip_denoised
    np.testing.assert_allclose(clipped, np.clip(expected, -1, 1), rtol=2e-4, atol=2e-4)
    # Snapping: levels move onto the table; two on one entry are refused.
    snapped = model.snap([0.0100001, 1.0, 100.0])
    assert np.all(np.isin(snapped, model.table))
    with pytest.raises(ConfigError, match="share a step"):
        model.snap([1.0, 1.00001])
    # The DDIM grid: DDIM's uniform timesteps, then 0.
    grid = model.grid(4)
    np.testing.assert_allclose(grid, [*model.table[[999, 666, 333, 0]], 0.0])


def test_score_sde_adapter_is_tweedie_on_its_score():
    recipe = _recipe("sde_vp_digits")
    params = recipe.init_params(jax.random.key(2))
    model = teacher_model(recipe)
    sde = recipe.sde
    assert model.sigma_min == pytest.approx(float(sde.sigma_ratio(jnp.asarray(sde.t_min))))
    sigma = jnp.asarray([0.05, 1.0, 30.0])
    t = sde.t_from_sigma_ratio(sigma)
    np.testing.assert_allclose(sde.sigma_ratio(t), sigma, rtol=1e-4)
    x_scaled = _inputs(3)
    alpha, std = sde.alpha(t), sde.sigma(t)
    x = broadcast_to_event(alpha, x_scaled) * x_scaled
    score = recipe.score_fn(params)(x, t)
    tweedie = (x + broadcast_to_event(std**2, x) * score) / broadcast_to_event(alpha, x)
    np.testing.assert_allclose(model.denoiser(params)(x_scaled, sigma), tweedie, atol=1e-4)


def test_flow_adapter_is_the_velocity_converted_to_data():
    recipe = _recipe("flow_matching_digits")
    params = recipe.init_params(jax.random.key(4))
    model = teacher_model(recipe)
    assert model.sigma_min == pytest.approx(0.002, rel=1e-3)
    assert model.sigma_max == pytest.approx(80.0, rel=1e-3)
    sigma = jnp.asarray([0.01, 0.7, 20.0])
    t = recipe.path.t_from_log_snr(-2.0 * jnp.log(sigma))
    a, s, da, ds = recipe.path.coefficients(t)
    x_scaled = _inputs(5)
    x = broadcast_to_event(a, x_scaled) * x_scaled
    u = recipe.velocity_fn(params)(x, t)
    b = lambda v: broadcast_to_event(v, x)  # noqa: E731
    data = (b(ds) * x - b(s) * u) / b(a * ds - s * da)  # E[x_data | x_t] from the velocity
    np.testing.assert_allclose(model.denoiser(params)(x_scaled, sigma), data, atol=2e-4)
    assert isinstance(recipe.path, fm.paths.LinearPath)


def test_conditional_teacher_is_refused():
    recipe = _recipe("ddpm_cfg_digits")
    with pytest.raises(ConfigError, match="class-conditional"):
        teacher_model(recipe)


def test_missing_unfinished_and_foreign_teachers_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"teacher_workdir=.*none.* not a jaxgen run"):
        load_distillation_teacher(tmp_path / "none")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_teacher(), unfinished)
    config = tiny_config("ddpm_digits", *TINY_UNET, "train.num_steps=5")
    (unfinished / "config.json").write_text(config_to_json(config))
    with pytest.raises(ConfigError, match=r"unfinished \(step 2 of 5\)"):
        load_distillation_teacher(unfinished)
    foreign = tmp_path / "vae"
    foreign.mkdir()
    (foreign / "config.json").write_text(
        config_to_json(load_experiment(str(ROOT / "experiments" / "vae_digits.py")))
    )
    with pytest.raises(ConfigError, match="is a 'vae' run; a distillation teacher must be"):
        load_distillation_teacher(foreign)
    teacher = load_distillation_teacher(tiny_teacher())
    assert teacher.step == 2 and teacher.config.family == "ddpm"
