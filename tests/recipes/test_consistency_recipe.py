"""The consistency recipe (family ``consistency``): distillation from a tiny DDPM teacher run
and training from scratch, with tiny U-Nets on the digits.

* the student starts equal to the teacher (its consistency function is that of the
  teacher's denoiser), and the boundary ``f(x, sigma_min) = x`` holds bit for bit;
* distillation trains with the teacher held fixed (the teacher and the EMA target are state
  collections of the checkpoint; exact resume is tested on the progressive recipe, which
  shares that state);
* multistep sampling makes exactly ``num_steps`` evaluations at the documented levels and
  refuses counts it cannot do;
* a teacher whose config changed since the run started is refused by name at resume;
* consistency training follows iCT's curriculum from the step.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import distillation as cm
from jaxgen.config import ConfigError, apply_overrides
from jaxgen.recipes.consistency import sampling_levels
from jaxgen.run import build_recipe, load_run, load_train_dataset, train
from jaxgen.run.distill_teacher import RECORD_NAME, attach_teacher_params
from tests.recipes.test_consistency_teacher import (
    TINY_UNET,
    teacher_params,
    tiny_config,
    tiny_teacher,
)


def _cd_config(teacher: pathlib.Path, *extra: str):
    return tiny_config(
        "consistency_digits_ddpm",
        f"model.teacher_workdir={teacher}",
        "model.num_levels=5",
        "model.metric=squared",
        *extra,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A two-step distillation run. (Exact resume of the distillation recipes' shared state --
    student, teacher and target in one parameter dict -- is tested once, on the progressive
    recipe: tests/recipes/test_progressive_recipe.py.)"""
    root = tmp_path_factory.mktemp("cd")
    config = _cd_config(tiny_teacher())
    whole = train(config, root / "whole")
    return {"root": root, "config": config, "whole": whole}


@pytest.fixture(scope="module")
def loaded(runs):
    return load_run(runs["root"] / "whole")


def _equal(a, b) -> bool:
    return all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_student_starts_as_the_teacher():
    config = _cd_config(tiny_teacher(), "model.metric=feature")
    recipe = build_recipe(config, load_train_dataset(config))
    teacher = attach_teacher_params(recipe)
    params = jax.jit(recipe.init_params)(jax.random.key(0))
    assert set(params) == {"student", "teacher", "target"}  # target_ema = 0.95
    assert all(_equal(params[name], teacher.params) for name in params)
    levels = recipe.levels
    assert len(levels) == 5 and np.all(np.isin(levels, recipe.teacher.table))
    f = jax.jit(recipe.consistency_fn(params["student"]))  # one compile, not op by op
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1)) * 3.0
    lo = jnp.full((2,), levels[0], jnp.float32)
    np.testing.assert_array_equal(f(x, lo), x)  # the boundary, bit for bit
    hi = jnp.full((2,), levels[-1], jnp.float32)
    teacher_d = recipe.teacher.denoiser(teacher.params, clip="straight_through")
    expected = jax.jit(cm.consistency_function(teacher_d, sigma_min=levels[0], sigma_data=0.5))(
        x, hi
    )
    np.testing.assert_allclose(f(x, hi), expected, rtol=1e-5, atol=1e-5)
    # The feature metric: squared distance of the digit classifier's 128 features.
    assert recipe.feature_fn(x).shape == (2, 128)
    batch = {"image": jnp.clip(x, -1.0, 1.0)}
    per_example, terms, updates = jax.jit(recipe.training_loss)(params, batch, jax.random.key(2), 0)
    assert per_example.shape == (2,) and np.all(np.isfinite(per_example))
    assert set(updates) == {"teacher", "target"}


def test_distillation_trains_with_the_teacher_held_fixed(runs):
    whole = runs["whole"]
    assert whole.step == 2 and np.isfinite(whole.metrics["loss"])
    assert _equal(whole.state.params["teacher"], teacher_params())  # held fixed
    assert not _equal(whole.state.params["student"], teacher_params())  # the student trained
    record = json.loads((runs["root"] / "whole" / RECORD_NAME).read_text())
    assert record["family"] == "ddpm" and record["step"] == 2


@pytest.mark.parametrize("steps", [1, 2])
def test_multistep_sampling_makes_num_steps_evaluations(loaded, steps):
    out = loaded.recipe.sample(loaded.ema_params, jax.random.key(0), 3, num_steps=steps)
    assert out.nfe == steps and out.samples.shape == (3, 8, 8, 1)
    assert np.all(np.abs(np.asarray(out.samples)) <= 1.0)


def test_sampling_levels():
    levels = np.arange(1.0, 6.0)  # N = 5: indices round(4 (1 - j / k))
    np.testing.assert_array_equal(sampling_levels(levels, 1), [5.0])
    np.testing.assert_array_equal(sampling_levels(levels, 2), [5.0, 3.0])
    np.testing.assert_array_equal(sampling_levels(levels, 4), [5.0, 4.0, 3.0, 2.0])


@pytest.mark.parametrize("steps", [0, 5])
def test_step_counts_it_cannot_do_are_refused(loaded, steps):
    with pytest.raises(ConfigError, match="trained on 5 levels; num_steps must be in 1..4"):
        loaded.recipe.sample(loaded.ema_params, jax.random.key(0), 2, num_steps=steps)


def test_changed_other_or_missing_teacher_is_refused_at_resume(runs, tmp_path):
    started = runs["root"] / "whole"
    config_json = tiny_teacher() / "config.json"
    original = config_json.read_text()
    try:
        config_json.write_text(original.replace('"ddpm_digits"', '"renamed"'))
        with pytest.raises(ConfigError, match=r"teacher '.*ddpm' changed since .*whole start"):
            train(runs["config"], started)
    finally:
        config_json.write_text(original)
    shutil.copytree(tiny_teacher(), tmp_path / "copy")
    with pytest.raises(ConfigError, match="was distilled from teacher .*ddpm.*use a fresh"):
        train(_cd_config(tmp_path / "copy"), started)
    with pytest.raises(ConfigError, match="teacher_workdir=.*none.* not a jaxgen run"):
        train(_cd_config(tmp_path / "none"), started)


def test_consistency_training_follows_the_curriculum(tmp_path):
    config = tiny_config(
        "consistency_training_digits",
        *TINY_UNET,
        "model.initial_levels=2",
        "model.final_levels=8",
        "train.num_steps=3",
        "train.checkpoint_every=3",
    )
    result = train(config, tmp_path / "ct")
    assert result.step == 3 and np.isfinite(result.metrics["loss"])
    rows = [
        json.loads(line) for line in (tmp_path / "ct" / "metrics.jsonl").read_text().splitlines()
    ]
    levels = [r["num_levels"] for r in rows if "num_levels" in r]
    # N(k) = min(2 * 2^floor(k / 1), 8) + 1 at steps k = 0, 1, 2 (K' = floor(3 / 3) = 1).
    assert levels == [3.0, 5.0, 9.0]
    assert len(build_recipe(config, load_train_dataset(config)).levels) == 9
    bad = apply_overrides(config, ["model.metric=l1"])
    with pytest.raises(ConfigError, match="model.metric"):
        build_recipe(bad, load_train_dataset(bad))
