"""The DDPM recipe under the recipe protocol, with a tiny U-Net on the built-in digits.

* it declares its samplers, its sample options and the fields that may change after
  training (each one a field of its config);
* a sample depends only on the seed and its index: example ``i`` of
  ``sample(key, n, first_index=s)`` is example ``s + i`` of one larger draw, for the
  ancestral sampler and for DDIM, and it is the maths sampler run on
  ``core.example_keys(key, n, start=s)``;
* an option the recipe does not take is refused with an error naming it;
* the renamed config keys (``prediction``, ``ddim_steps``) are declared.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np
import pytest

from jaxgen import core, diffusion
from jaxgen.config import apply_overrides, load_experiment
from jaxgen.engine.recipe import SAMPLE_OPTIONS
from jaxgen.recipes.ddpm import DDPMConfig, DDPMRecipe
from jaxgen.run import build_recipe, load_train_dataset

ROOT = pathlib.Path(__file__).resolve().parents[2]

TINY = [
    "model.unet.channels=8",
    "model.unet.channel_mult=(1,)",
    "model.unet.num_res_blocks=1",
    "model.unet.attention_resolutions=()",
    "model.unet.num_groups=4",
    "model.num_timesteps=10",
    "model.sample_steps=4",
]


@pytest.fixture(scope="module")
def recipe_and_params():
    config = apply_overrides(load_experiment(str(ROOT / "experiments" / "ddpm_digits.py")), TINY)
    recipe = build_recipe(config, load_train_dataset(config))
    # The U-Net's output layers start at zero, so at initialisation it is the zero function,
    # as with all-zero parameters; the samplers still draw their noise, so keys show.
    shapes = jax.eval_shape(recipe.init_params, jax.random.key(0))
    params = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes)
    return recipe, params


def test_declarations():
    fields = {f.name for f in dataclasses.fields(DDPMConfig)}
    assert DDPMRecipe.samplers == ("ancestral", "ddim", "dpm_solver", "unipc")
    assert set(DDPMRecipe.sample_options) <= set(SAMPLE_OPTIONS)
    assert set(DDPMRecipe.eval_time_fields) <= fields
    assert DDPMConfig.RENAMED == {"prediction": "parameterization", "ddim_steps": "sample_steps"}
    assert not set(DDPMConfig.RENAMED) & fields and set(DDPMConfig.RENAMED.values()) <= fields


@pytest.mark.parametrize(
    "options,nfe", [({}, 10), ({"sampler": "ddim", "num_steps": 4, "eta": 1.0}, 4)]
)
def test_samples_depend_only_on_seed_and_index(recipe_and_params, options, nfe):
    recipe, params = recipe_and_params
    key = jax.random.key(3)

    @jax.jit
    def draws(key):
        whole = recipe.sample(params, key, 8, **options)
        head = recipe.sample(params, key, 4, **options)
        tail = recipe.sample(params, key, 4, first_index=4, **options)
        return whole, head, tail

    whole, head, tail = draws(key)
    assert whole.samples.shape == (8, 8, 8, 1) and whole.nfe == nfe
    np.testing.assert_array_equal(head.samples, whole.samples[:4])
    np.testing.assert_array_equal(tail.samples, whole.samples[4:])
    assert not np.allclose(whole.samples[:4], whole.samples[4:])  # negative control
    # The recipe hands the maths sampler the core's per-example keys.
    m = recipe.config.model
    keys = core.example_keys(key, 4, start=4)
    if options:
        by_hand = diffusion.ddim_sample(
            recipe.model_fn(params),
            recipe.schedule,
            keys,
            (4, 8, 8, 1),
            num_steps=4,
            eta=1.0,
            parameterization=m.parameterization,
            clip_denoised=m.clip_denoised,
        )
    else:
        by_hand = diffusion.ancestral_sample(
            recipe.model_fn(params),
            recipe.schedule,
            keys,
            (4, 8, 8, 1),
            parameterization=m.parameterization,
            model_variance=m.model_variance,
            clip_denoised=m.clip_denoised,
        )
    np.testing.assert_allclose(tail.samples, by_hand.samples, rtol=1e-6, atol=1e-6)


def test_unsupported_options_are_refused(recipe_and_params):
    recipe, params = recipe_and_params
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="temperature"):
        recipe.sample(params, key, 2, temperature=0.5)
    with pytest.raises(ValueError, match="num_steps and eta apply to the 'ddim' sampler"):
        recipe.sample(params, key, 2, sampler="ancestral", num_steps=5)
    with pytest.raises(ValueError, match="family 'ddpm' has no sampler 'pc'.*ancestral, ddim"):
        recipe.sample(params, key, 2, sampler="pc")
