"""The DDPM recipe's few-step ODE samplers (DPM-Solver++, UniPC on the continuous-time view
of its schedule, :mod:`jaxgen.diffusion.continuous`), with a tiny zero U-Net on the digits.

* ``sampler="dpm_solver" | "unipc"`` with ``num_steps=N`` makes ``N`` model calls, is the
  maths sampler run on the view with the network's score and the core's per-example keys,
  and a sample depends only on the seed and its index;
* ``num_steps=N`` with no sampler named spends the budget on the recommended sampler
  (:func:`jaxgen.sde.samplers.recommended_sampler`); naming ``ancestral`` with ``num_steps``
  is still refused, and so are ``eta`` with an ODE solver and an order above the steps;
* classifier guidance reaches the ODE solvers: the eps is shifted by ``-sigma s grad log p``
  (Dhariwal and Nichol 2021, eq. 14) with ``sigma`` of the fractional step.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import core
from jaxgen.config import apply_overrides, load_experiment
from jaxgen.diffusion.continuous import continuous_score_fn, index_path
from jaxgen.recipes.ddpm import DDPMRecipe
from jaxgen.run import build_recipe, load_train_dataset
from jaxgen.sde import samplers

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
SHAPE = (4, 8, 8, 1)


@pytest.fixture(scope="module")
def recipe_and_params():
    config = apply_overrides(load_experiment(str(ROOT / "experiments" / "ddpm_digits.py")), TINY)
    recipe = build_recipe(config, load_train_dataset(config))
    # Zero parameters: the U-Net is the zero function (its output layers start at zero), so
    # eps = 0 and, with x0 clipped, the score (alpha clip(x / alpha) - x) / sigma^2 is not 0.
    shapes = jax.eval_shape(recipe.init_params, jax.random.key(0))
    params = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes)
    return recipe, params


def test_declarations():
    assert DDPMRecipe.samplers == ("ancestral", "ddim", "dpm_solver", "unipc")
    assert {"solver_order", "spacing", "unipc_variant"} <= set(DDPMRecipe.eval_time_fields)


def _by_hand(recipe, params, name, keys, num_steps, options):
    m = recipe.config.model
    score_fn = continuous_score_fn(
        recipe.model_fn(params),
        recipe.continuous,
        parameterization=m.parameterization,
        clip_denoised=m.clip_denoised,
    )
    solve = samplers.dpm_solver_sample if name == "dpm_solver" else samplers.unipc_sample
    out = solve(score_fn, recipe.continuous, keys, SHAPE, num_steps=num_steps, **options)
    return core.SamplerOutput(jnp.clip(out.samples, -1.0, 1.0), out.nfe)


def test_named_and_recommended_samplers(recipe_and_params):
    recipe, params = recipe_and_params
    m = recipe.config.model
    key = jax.random.key(3)
    rec = samplers.recommended_sampler(3)
    assert rec["sampler"] == "unipc"  # the named UniPC is checked with guidance below

    @jax.jit
    def draws(key):
        # Examples 4..7 of the draw: the maths sampler on the core's keys of those examples.
        keys = core.example_keys(key, 4, start=4)
        dpm_options = dict(order=m.solver_order, spacing=m.spacing)
        return (
            recipe.sample(params, key, 4, first_index=4, sampler="dpm_solver", num_steps=3),
            _by_hand(recipe, params, "dpm_solver", keys, 3, dpm_options),
            recipe.sample(params, key, 4, first_index=4, num_steps=3),  # a budget of 3 calls
            _by_hand(recipe, params, "unipc", keys, rec["num_steps"], rec["options"]),
        )

    dpm, dpm_hand, budget, budget_hand = draws(key)
    assert dpm.nfe == budget.nfe == 3
    assert dpm.samples.shape == SHAPE and np.all(np.abs(dpm.samples) <= 1.0)
    np.testing.assert_allclose(dpm.samples, dpm_hand.samples, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(budget.samples, budget_hand.samples, rtol=1e-6, atol=1e-6)
    assert not np.allclose(dpm.samples[:2], dpm.samples[2:])  # per-example noise


def test_sampler_plan(recipe_and_params):
    recipe, _ = recipe_and_params
    for budget in (1, 5, 7, 20, 50, 80):
        rec = samplers.recommended_sampler(budget)
        plan = recipe._sampler_plan({"num_steps": budget})
        assert plan == (rec["sampler"], rec["num_steps"], rec["options"])
        assert samplers.recommended.sampler_nfe(plan[0], plan[1], plan[2]) == budget
    m = recipe.config.model
    assert recipe._sampler_plan({"sampler": "unipc"}) == (
        "unipc",
        m.sample_steps,
        dict(order=m.solver_order, spacing=m.spacing, variant=m.unipc_variant),
    )
    # eta without a sampler keeps the config's sampler (DDIM's option), as before.
    assert recipe._sampler_plan({"sampler": "ddim", "num_steps": 3, "eta": 1.0}) == ("ddim", 3, {})


def test_bad_options_are_refused(recipe_and_params):
    recipe, params = recipe_and_params
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="'ancestral' takes all 10 steps"):
        recipe.sample(params, key, 2, sampler="ancestral", num_steps=5)
    with pytest.raises(ValueError, match="'ancestral' takes all 10 steps"):
        recipe.sample(params, key, 2, num_steps=5, eta=0.5)  # model.sampler is ancestral
    with pytest.raises(ValueError, match="eta applies to the 'ddim' sampler; 'unipc'"):
        recipe.sample(params, key, 2, sampler="unipc", num_steps=5, eta=0.5)
    with pytest.raises(ValueError, match="solver_order=2 needs at least 2 steps"):
        recipe.sample(params, key, 2, sampler="dpm_solver", num_steps=1)
    with pytest.raises(ValueError, match="num_steps"):
        recipe.sample(params, key, 2, num_steps=0)


def test_classifier_guidance_reaches_ode_solver(recipe_and_params):
    recipe, params = recipe_and_params
    m = recipe.config.model
    direction = jnp.linspace(-1.0, 1.0, 64).reshape(1, 8, 8, 1)

    def log_prob(clf_params, x, t, labels):  # grad_x log p = clf_params * direction
        del t, labels
        return clf_params * jnp.sum(x * direction, axis=(1, 2, 3))

    key = jax.random.key(5)
    labels = jnp.arange(4) % 2
    path = index_path(recipe.continuous)

    @jax.jit
    def draws(key, scale):
        def shifted(x, s):  # eps - sigma(s) * scale * grad
            sigma = path(s)[1][:, None, None, None]
            return recipe.model_fn(params)(x, s) - sigma * scale * direction

        guided = recipe.sample(
            params,
            key,
            4,
            sampler="unipc",
            num_steps=3,
            condition={"label": labels},
            classifier=(log_prob, 1.0),
            guidance_scale=scale,
        )
        score_fn = continuous_score_fn(
            shifted, recipe.continuous, parameterization="eps", clip_denoised=m.clip_denoised
        )
        by_hand = samplers.unipc_sample(
            score_fn,
            recipe.continuous,
            core.example_keys(key, 4),
            SHAPE,
            num_steps=3,
            order=m.solver_order,
            spacing=m.spacing,
            variant=m.unipc_variant,
        )
        return guided, jnp.clip(by_hand.samples, -1.0, 1.0)

    guided, by_hand = draws(key, 3.0)
    unguided, _ = draws(key, 0.0)  # scale 0: the model itself (same compiled draw)
    assert guided.nfe == 3
    assert np.max(np.abs(guided.samples - unguided.samples)) > 1e-3  # the guidance acts
    np.testing.assert_allclose(guided.samples, by_hand, rtol=1e-5, atol=1e-5)
