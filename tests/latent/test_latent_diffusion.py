"""Latent diffusion (:mod:`jaxgen.recipes.latent_diffusion`) and the first-stage run floor
(:mod:`jaxgen.run.first_stage`).

* over the identity first stage, latent diffusion is pixel-space diffusion exactly: the same
  initialisation, losses and samples (and counts) for the same keys;
* the latent scale computed over the training set gives unit-variance latents there;
* latents of the wrong shape and bad configs are refused by name.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.recipes.first_stage import FirstStageConfig
from jaxgen.recipes.latent_diffusion import LatentDiffusionConfig
from jaxgen.run import build_recipe, load_train_dataset
from jaxgen.run.first_stage import latent_scale

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY_UNET = [
    "model.unet.channels=8",
    "model.unet.channel_mult=(1,)",
    "model.unet.num_res_blocks=1",
    "model.unet.attention_resolutions=()",
    "model.unet.num_groups=4",
]


def _pixel_config(experiment: str, *extra: str):
    return apply_overrides(
        load_experiment(str(ROOT / "experiments" / f"{experiment}.py")),
        [*TINY_UNET, "data.batch_size=4", *extra],
    )


def _latent_config(pixel, **first_stage):
    model = LatentDiffusionConfig(
        first_stage=FirstStageConfig(**(first_stage or {"identity": True})),
        denoiser=pixel.family,
        **{pixel.family: pixel.model},
    )
    return dataclasses.replace(pixel, family="latent_diffusion", model=model)


def _recipes(experiment: str, *extra: str):
    pixel_config = _pixel_config(experiment, *extra)
    dataset = load_train_dataset(pixel_config)
    pixel = build_recipe(pixel_config, dataset)
    latent = build_recipe(_latent_config(pixel_config), dataset)
    return pixel, latent, dataset


def _batch(dataset, n=4):
    rows = dataset.source.get(np.arange(n))
    return {k: jnp.asarray(v) for k, v in rows.items()}


@pytest.mark.parametrize(
    "experiment",
    ["ddpm_digits", "sde_vp_digits", "flow_matching_digits"],
    ids=["ddpm", "score_sde", "flow_matching"],
)
def test_identity_first_stage_is_pixel_diffusion_losses(experiment):
    extra = ["model.num_timesteps=8"] if experiment == "ddpm_digits" else []
    pixel, latent, dataset = _recipes(experiment, *extra)
    key = jax.random.key(3)
    params = pixel.init_params(key)
    latent_params = latent.init_params(key)
    chex_equal = jax.tree.map(np.array_equal, params, latent_params["denoiser"])
    assert all(jax.tree.leaves(chex_equal))  # the same initialisation
    assert float(latent_params["latent"]["scale"]) == 1.0
    batch, loss_key = _batch(dataset), jax.random.key(7)
    want, want_terms = jax.jit(pixel.loss)(params, batch, loss_key)
    got, got_terms = jax.jit(latent.loss)(latent_params, batch, loss_key)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert set(got_terms) == set(want_terms)
    # negative control: another key gives another loss
    other, _ = jax.jit(latent.loss)(latent_params, batch, jax.random.key(8))
    assert not np.array_equal(np.asarray(other), np.asarray(want))


def test_identity_first_stage_is_pixel_diffusion_samples_with_guidance():
    """The class-conditional DDPM's guided samples (classifier-free, s = 2, classes given)
    through the identity first stage: the guidance transforms pass through unchanged."""
    pixel, latent, _ = _recipes("ddpm_cfg_digits", "model.num_timesteps=8", "model.sample_steps=4")
    key = jax.random.key(0)
    params = pixel.init_params(key)
    latent_params = {"denoiser": params, "latent": {"scale": jnp.float32(1.0)}}
    draw_key = jax.random.key(11)
    labels = {"label": jnp.array([3, 1, 4])}

    def draw(recipe, p):
        return jax.jit(
            lambda p, k: recipe.sample(
                p, k, 3, first_index=5, condition=labels, sampler="ancestral", guidance_scale=2.0
            )
        )(p, draw_key)

    want, got = draw(pixel, params), draw(latent, latent_params)
    np.testing.assert_array_equal(np.asarray(got.samples), np.asarray(want.samples))
    assert int(got.nfe) == int(want.nfe)


class _AffineStage:
    """A stand-in first stage: latents ``3 x + 1`` of the 8 x 8 image read as 4 x 4 x 4."""

    family = "kl_autoencoder"
    latent_shape = (4, 4, 4)

    def init_params(self, key):
        return {"w": jnp.float32(3.0)}

    def encode_latents(self, params, images):
        return params["w"] * images.reshape(images.shape[0], 4, 4, 4) + 1.0

    def decode_latents(self, params, latents):
        return ((latents - 1.0) / params["w"]).reshape(latents.shape[0], 8, 8, 1)


def _attached(scale=None):
    pixel_config = _pixel_config("ddpm_digits", "model.clip_denoised=false")
    config = _latent_config(pixel_config, workdir="/nonexistent/first_stage")
    if scale is not None:
        config = apply_overrides(config, [f"model.latent_scale={scale}"])
    dataset = load_train_dataset(config)
    recipe = build_recipe(config, dataset)
    stage = _AffineStage()
    recipe.attach_first_stage(stage, stage.init_params(None))
    return recipe, dataset


def test_latent_scale_gives_unit_variance_on_the_training_set():
    recipe, dataset = _attached()
    scale, _ = latent_scale(recipe, dataset)
    recipe.set_latent_scale(scale)
    params = recipe.init_params(jax.random.key(0))
    assert params["latent"]["scale"] == pytest.approx(scale)
    images = jnp.asarray(dataset.source.get(np.arange(len(dataset)))["image"])
    z = np.asarray(recipe.encode(params, images), np.float64)
    assert z.std() == pytest.approx(1.0, rel=1e-5)
    raw = np.asarray(_AffineStage().encode_latents({"w": 3.0}, images), np.float64)
    assert raw.std() == pytest.approx(3.0 * np.asarray(images, np.float64).std(), rel=1e-5)
    assert abs(raw.std() - 1.0) > 0.5  # negative control: unscaled latents are not unit
    # decode inverts encode through the scale
    back = recipe.decode(params, recipe.encode(params, images[:5]))
    np.testing.assert_allclose(np.asarray(back), np.asarray(images[:5]), atol=1e-5)


def test_latents_of_the_wrong_shape_are_refused():
    recipe, _ = _attached()
    params = recipe.init_params(jax.random.key(0))
    with pytest.raises(ValueError, match=r"latents of shape \(2, 8, 8, 1\).*\(B, 4, 4, 4\)"):
        recipe.decode(params, jnp.zeros((2, 8, 8, 1)))


def test_latent_config_errors():
    pixel_config = _pixel_config("ddpm_digits")
    dataset = load_train_dataset(pixel_config)
    with pytest.raises(ConfigError, match="clip_denoised"):
        build_recipe(_latent_config(pixel_config, workdir="/x"), dataset)
    with pytest.raises(ConfigError, match="model.first_stage.workdir is empty"):
        build_recipe(_latent_config(pixel_config, workdir=""), dataset)
    with pytest.raises(ConfigError, match="identity=True takes no workdir"):
        FirstStageConfig(identity=True, workdir="runs/x")
    bad = apply_overrides(_latent_config(pixel_config), ["model.denoiser=gan"])
    with pytest.raises(ConfigError, match="model.denoiser"):
        build_recipe(bad, dataset)
    recipe = build_recipe(
        _latent_config(
            apply_overrides(pixel_config, ["model.clip_denoised=false"]), workdir="/nonexistent/ae"
        ),
        dataset,
    )
    with pytest.raises(ConfigError, match="/nonexistent/ae.*not a jaxgen run"):
        recipe.init_params(jax.random.key(0))


def test_evaluate_a_class_conditional_latent_ddpm():
    pixel_config = _pixel_config(
        "ddpm_cfg_digits", "model.clip_denoised=false", "model.num_timesteps=8"
    )
    config = apply_overrides(
        _latent_config(pixel_config, workdir="/stand-in"), ["eval.batch_size=16"]
    )
    dataset = load_train_dataset(config)
    recipe = build_recipe(config, dataset)
    stage = _AffineStage()
    recipe.attach_first_stage(stage, stage.init_params(None))
    recipe.set_latent_scale(0.5)
    params = recipe.init_params(jax.random.key(0))
    images = np.asarray(dataset.source.get(np.arange(20))["image"])
    out = recipe.evaluate(params, images, jax.random.key(1))
    assert out["latent_scale"] == 0.5 and out["num_examples"] == 20
    assert np.isfinite(out["latent_objective"]) and out["latent_objective"] > 0
    assert out["first_stage_mse"] < 1e-10  # the stand-in stage inverts exactly
    z = 0.5 * (3.0 * images.reshape(20, 4, 4, 4) + 1.0)
    assert out["latent_std_heldout"] == pytest.approx(z.std(), rel=1e-4)
