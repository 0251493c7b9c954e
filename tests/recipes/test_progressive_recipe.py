"""The progressive-distillation recipe (family ``progressive``) from a tiny DDPM teacher run.

* the base grid is the DDPM's DDIM levels (integer steps) and the student starts as the
  teacher;
* two halving rounds (8 -> 4 -> 2 steps) in one run: the teacher becomes the student exactly
  at the round boundary, and a run interrupted at the boundary and resumed ends bit for bit
  where an uninterrupted one ends;
* the student samples with exactly ``final_steps`` DDIM evaluations on its grid; any other
  step count is refused, naming both;
* a progressive run is itself a teacher of only the grid it was distilled for;
* a run whose ``train.num_steps`` is not rounds x steps_per_round is refused.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxgen import core
from jaxgen import distillation as dist
from jaxgen.config import ConfigError
from jaxgen.run import build_recipe, load_run, load_train_dataset, train
from tests.recipes.test_consistency_teacher import teacher_params, tiny_config, tiny_teacher


def _pd_config(teacher, *extra: str):
    return tiny_config(
        "progressive_digits_ddpm",
        f"model.teacher_workdir={teacher}",
        "model.teacher_steps=8",
        "model.final_steps=2",
        "model.steps_per_round=1",
        "optim.warmup_steps=0",
        *extra,
    )


def _leaves_equal(a, b) -> bool:
    return all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two rounds of one step each, uninterrupted and interrupted at the round boundary."""
    root = tmp_path_factory.mktemp("pd")
    config = _pd_config(tiny_teacher())
    whole = train(config, root / "whole")
    first = train(config, root / "resumed", stop_at_step=1)
    resumed = train(config, root / "resumed")
    return {"root": root, "whole": whole, "first": first, "resumed": resumed}


def test_round_swap_at_the_boundary_and_exact_resume(runs):
    teacher = teacher_params()
    first, whole = runs["first"].state.params, runs["whole"].state.params
    assert _leaves_equal(first["teacher"], teacher)  # round 0: the DDPM
    assert not _leaves_equal(first["student"], teacher)  # the student trained
    assert _leaves_equal(whole["teacher"], first["student"])  # round 1: last round's student
    assert _leaves_equal(whole, runs["resumed"].state.params)
    metrics = runs["whole"].metrics
    assert metrics["student_steps"] == 2.0 and np.isfinite(metrics["loss"])


def test_grid_and_sampling(runs):
    run = load_run(runs["root"] / "whole")
    recipe = run.recipe
    table = recipe.teacher.table
    steps = [999, 856, 714, 571, 428, 285, 143, 0]  # DDIM's 8 uniform timesteps, reversed
    np.testing.assert_allclose(recipe.base_levels, [*table[steps], 0.0])
    np.testing.assert_allclose(recipe.sample_levels, [table[999], table[428], 0.0])
    out = recipe.sample(run.ema_params, jax.random.key(0), 3)
    assert out.nfe == 2 and out.samples.shape == (3, 8, 8, 1)
    ref = dist.ddim_sample_levels(
        recipe.teacher.make_denoiser(run.ema_params["student"], clip=True),
        core.example_keys(jax.random.key(0), 3),
        (3, 8, 8, 1),
        sigmas=recipe.sample_levels,
    )
    np.testing.assert_allclose(out.samples, np.clip(ref.samples, -1, 1), atol=1e-5)
    assert recipe.sample(run.ema_params, jax.random.key(0), 2, num_steps=2).nfe == 2
    with pytest.raises(ConfigError, match="trained for 2 steps; got num_steps=3"):
        recipe.sample(run.ema_params, jax.random.key(0), 2, num_steps=3)


def test_a_progressive_teacher_teaches_only_its_grid(runs):
    pd_run = runs["root"] / "whole"
    config = _pd_config(pd_run, "model.teacher_steps=2", "model.final_steps=1", "train.num_steps=1")
    recipe = build_recipe(config, load_train_dataset(config))
    parent_config = _pd_config(tiny_teacher())
    parent = build_recipe(parent_config, load_train_dataset(parent_config))
    np.testing.assert_array_equal(recipe.base_levels, parent.sample_levels)
    np.testing.assert_array_equal(recipe.sample_levels, parent.sample_levels[::2])
    bad = _pd_config(pd_run, "model.teacher_steps=4", "model.final_steps=1", "train.num_steps=2")
    with pytest.raises(ConfigError, match="distilled for 2 steps; model.teacher_steps must be 2"):
        build_recipe(bad, load_train_dataset(bad))


def test_inconsistent_round_lengths_are_refused():
    config = _pd_config(tiny_teacher(), "train.num_steps=3")
    with pytest.raises(ConfigError, match=r"train.num_steps=3 must be rounds x .* = 2 x 1 = 2"):
        build_recipe(config, load_train_dataset(config))
    config = _pd_config(tiny_teacher(), "model.teacher_steps=6")
    with pytest.raises(ConfigError, match="power of two"):
        build_recipe(config, load_train_dataset(config))
