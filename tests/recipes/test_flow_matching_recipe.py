"""The flow-matching recipe (family ``flow_matching``) with tiny MLPs on the 2-D toys and a
tiny U-Net on the digits.

* training runs with a finite loss for a Gaussian source and for data-to-data transport
  (moons into the ring, minibatch OT);
* every sampler draws, with the documented evaluations; a sample depends only on the seed
  and its index (Gaussian source: its key; data source: its source row);
* the recipe's fixed-step sample is the maths sampler run on the core's per-example keys;
* teacher pairs are drawn once, cached and reused; a changed or different teacher is
  refused; the distillation objective trains a one-step student;
* bad inputs give one-line ``ConfigError``s naming the value.

Convention: data at t = 0, source at t = 1.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from jaxgen import core
from jaxgen import flow_matching as fm
from jaxgen.config import ConfigError, ExperimentConfig, apply_overrides, load_experiment
from jaxgen.recipes.flow_matching import FlowMatchingConfig, FlowMatchingRecipe
from jaxgen.run import build_recipe, load_run, load_train_dataset, teacher, train

ROOT = pathlib.Path(__file__).resolve().parents[2]
MOONS = str(ROOT / "experiments" / "flow_matching_moons_to_ring.py")
DIGITS_CFG = str(ROOT / "experiments" / "flow_matching_cfg_digits.py")
TINY_2D = [
    "model.mlp_hidden=(16,16)",
    "data.batch_size=32",
    "train.num_steps=3",
    "train.log_every=1",
    "train.checkpoint_every=3",
    "train.sample_every=0",
    "train.progress_bar=false",
    "train.async_checkpoints=false",
    "model.sample_steps=2",
]
TINY_UNET = [
    "model.unet.channels=8",
    "model.unet.channel_mult=(1,)",
    "model.unet.num_res_blocks=1",
    "model.unet.attention_resolutions=()",
    "model.unet.num_groups=4",
    "model.sample_steps=2",
]


def _config(extra: list[str], base: str = MOONS) -> ExperimentConfig:
    return apply_overrides(load_experiment(base), [*TINY_2D, *extra] if base == MOONS else extra)


def _recipe(config: ExperimentConfig) -> FlowMatchingRecipe:
    return build_recipe(config, load_train_dataset(config))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny Gaussian-source run on the ring (the teacher) and one moons-to-ring run."""
    root = tmp_path_factory.mktemp("fm")
    gaussian = _config(["model.source=gaussian", "model.coupling=independent"])
    data = _config([])
    return {
        "root": root,
        "gaussian": train(gaussian, root / "gaussian"),
        "data": train(data, root / "data"),
    }


def test_declarations():
    fields = {f.name for f in dataclasses.fields(FlowMatchingConfig)}
    assert set(FlowMatchingRecipe.eval_time_fields) <= fields
    assert FlowMatchingRecipe.samplers == (
        "euler",
        "midpoint",
        "heun",
        "rk4",
        "adaptive",
        "dpm_solver",
        "edm",
        "unipc",
    )
    assert FlowMatchingConfig.RENAMED == {"prediction": "parameterization"}


@pytest.mark.parametrize("which", ["gaussian", "data"])
def test_trains_with_a_finite_loss(runs, which):
    result = runs[which]
    assert result.step == 3 and np.isfinite(result.metrics["loss"])
    assert result.metrics["transport_cost"] > 0


SAMPLER_NFE = {
    "euler": 2,
    "midpoint": 4,
    "heun": 4,
    "rk4": 8,
    "dpm_solver": 2,
    "edm": 3,
    "unipc": 2,
}


@pytest.mark.parametrize("sampler", [*SAMPLER_NFE, "adaptive"])
def test_every_sampler_draws(runs, sampler):
    run = load_run(
        runs["root"] / "gaussian",
        overrides=["model.adaptive_rtol=1e-2", "model.adaptive_atol=1e-2"],
    )
    steps = {} if sampler == "adaptive" else {"num_steps": 2}
    draw = jax.jit(lambda p, k: run.recipe.sample(p, k, 4, sampler=sampler, **steps))
    out = draw(run.ema_params, jax.random.key(0))  # one compilation, not op by op
    assert out.samples.shape == (4, 2) and np.all(np.isfinite(out.samples))
    if sampler == "adaptive":
        assert int(out.nfe) >= 7
    else:
        assert out.nfe == SAMPLER_NFE[sampler]


@pytest.mark.parametrize("which", ["gaussian", "data"])
def test_samples_depend_only_on_seed_and_index(runs, which):
    run = load_run(runs["root"] / which)
    recipe, params = run.recipe, run.ema_params

    @jax.jit
    def draws(key):
        whole = recipe.sample(params, key, 8, sampler="heun")
        head = recipe.sample(params, key, 4, sampler="heun")
        tail = recipe.sample(params, key, 4, first_index=4, sampler="heun")
        if which == "gaussian":  # the maths sampler on the core's per-example keys
            keys = core.example_keys(jax.random.key(3), 8)
            ref = fm.heun_sample(recipe.velocity_fn(params), keys, (8, 2), num_steps=2)
        else:  # another key
            ref = recipe.sample(params, jax.random.key(4), 8, sampler="heun")
        return whole.samples, head.samples, tail.samples, ref.samples

    whole, head, tail, ref = draws(jax.random.key(3))  # one compilation for all
    np.testing.assert_allclose(head, whole[:4], atol=1e-6)
    np.testing.assert_allclose(tail, whole[4:], atol=1e-6)
    assert not np.allclose(whole[:4], whole[4:])  # negative control
    if which == "gaussian":
        np.testing.assert_allclose(whole, ref, atol=1e-5)
    else:  # the source of example i is held-out moon i, whatever the key
        np.testing.assert_allclose(np.asarray(ref), np.asarray(whole), atol=1e-6)


def test_teacher_pairs_cached_reused_and_checked(runs, monkeypatch):
    root = runs["root"]
    student = _config(
        [
            "model.source=gaussian",
            "model.coupling=paired",
            f"model.teacher_workdir={root / 'gaussian'}",
            "model.num_pairs=40",
            "model.teacher_steps=2",
            "train.num_steps=2",
            "train.checkpoint_every=2",
        ]
    )
    result = train(student, root / "reflow")
    assert np.isfinite(result.metrics["loss"])
    cache = root / "reflow" / teacher.CACHE_NAME
    with np.load(cache) as f:
        source, sample = f["source"], f["sample"]
        assert source.shape == sample.shape == (40, 2)
        assert str(f["config_hash"]) == teacher.config_hash(root / "gaussian")
    # Pair i is the teacher's sample i: its source from example_keys(key(seed), n)[i].
    run = load_run(root / "gaussian")
    ref = run.recipe.sample(run.ema_params, jax.random.key(0), 40, num_steps=2)
    np.testing.assert_allclose(sample, ref.samples, atol=1e-5)
    # Reused on resume: drawing again would fail.
    monkeypatch.setattr(teacher, "generate_pairs", lambda *a, **k: pytest.fail("redrawn"))
    with pytest.warns(UserWarning, match="changed settings"):
        resumed = train(apply_overrides(student, ["train.num_steps=3"]), root / "reflow")
    assert resumed.step == 3
    # Another teacher (a copy elsewhere) named with this cache: refused, naming both.
    other = root / "other_teacher"
    shutil.copytree(root / "gaussian", other)
    with pytest.raises(ConfigError, match="holds pairs of teacher .*gaussian.*other_teacher"):
        teacher.teacher_pairs(
            apply_overrides(student, [f"model.teacher_workdir={other}"]), root / "reflow"
        )
    # The teacher's config changed since the pairs were drawn: refused.
    config_json = root / "gaussian" / "config.json"
    original = config_json.read_text()
    try:
        changed = json.loads(original)
        changed["name"] = "changed"
        config_json.write_text(json.dumps(changed))
        with pytest.raises(ConfigError, match="the teacher now has config") as err:
            teacher.teacher_pairs(student, root / "reflow")
        assert "\n" not in str(err.value)
    finally:
        config_json.write_text(original)


def test_distill_objective_trains_a_one_step_student(runs):
    root = runs["root"]
    student = _config(
        [
            "model.source=gaussian",
            "model.coupling=paired",
            "model.objective=distill",
            f"model.teacher_workdir={root / 'gaussian'}",
            "model.num_pairs=32",
            "model.teacher_steps=2",
            "model.sampler=euler",
            "model.sample_steps=1",
            "train.num_steps=2",
            "train.checkpoint_every=2",
        ]
    )
    result = train(student, root / "distill")
    assert np.isfinite(result.metrics["loss"]) and "mse" in result.metrics
    run = load_run(root / "distill")
    assert run.recipe.sample(run.ema_params, jax.random.key(0), 4).nfe == 1


def test_teacher_errors(runs, tmp_path):
    root = runs["root"]
    base = ["model.source=gaussian", "model.coupling=paired", "model.num_pairs=8"]
    with pytest.raises(ConfigError, match="not a jaxgen run"):
        teacher.teacher_pairs(
            _config([*base, f"model.teacher_workdir={tmp_path / 'none'}"]), tmp_path / "s"
        )
    with pytest.raises(ConfigError, match="must be a flow with a Gaussian source"):
        teacher.teacher_pairs(
            _config([*base, f"model.teacher_workdir={root / 'data'}"]), tmp_path / "s"
        )
    unfinished = tmp_path / "unfinished"
    shutil.copytree(root / "gaussian", unfinished)
    text = json.loads((unfinished / "config.json").read_text())
    text["train"]["num_steps"] = 100
    (unfinished / "config.json").write_text(json.dumps(text))
    with pytest.raises(ConfigError, match=r"unfinished \(step 3 of 100\)"):
        teacher.load_teacher(unfinished)
    other_family = tmp_path / "ddpm"
    other_family.mkdir()
    from jaxgen.config import config_to_json

    ddpm = load_experiment(str(ROOT / "experiments" / "ddpm_digits.py"))
    (other_family / "config.json").write_text(config_to_json(ddpm))
    with pytest.raises(ConfigError, match="is a 'ddpm' run"):
        teacher.load_teacher(other_family)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["model.source=digits"], r"shape \(8, 8, 1\).*shapes must be equal"),
        (["model.path=straight"], "model.path"),
        (["model.sampler=leapfrog"], "model.sampler"),
        (["model.sampler=dpm_solver"], "needs model.source='gaussian'"),
        (["model.coupling=paired", "model.source=gaussian"], "needs given pairs"),
        (["model.objective=distill"], "set model.teacher_workdir"),
    ],
)
def test_bad_config_is_one_line(overrides, match):
    with pytest.raises(ConfigError, match=match) as err:
        _recipe(_config(overrides))
    assert "\n" not in str(err.value)


def test_bad_sample_and_pairing_is_one_line(runs, tmp_path):
    run = load_run(runs["root"] / "data")
    with pytest.raises(ConfigError, match="needs a Gaussian source") as err:
        run.recipe.sample(run.ema_params, jax.random.key(0), 2, sampler="dpm_solver")
    assert "\n" not in str(err.value)
    paired = _config(["model.coupling=paired", "model.source_split=test"])
    with pytest.raises(ConfigError, match="'moons' has 10000 examples, 'ring' 100000"):
        teacher.training_dataset(paired, tmp_path, _recipe(paired), load_train_dataset(paired))


def test_class_conditional_unet_loss_and_guided_samples():
    config = apply_overrides(load_experiment(DIGITS_CFG), TINY_UNET)
    recipe = _recipe(config)
    params = jax.jit(recipe.init_params)(jax.random.key(0))
    batch = {"image": np.zeros((4, 8, 8, 1), np.float32), "label": np.arange(4) % 10}

    @jax.jit  # one compile: the U-Net run op by op costs more
    def loss_and_sample(params):
        per_example, _ = recipe.loss(params, batch, jax.random.key(1))
        out = recipe.sample(params, jax.random.key(2), 4, sampler="euler", guidance_scale=3.0)
        return per_example, out

    per_example, out = loss_and_sample(params)
    assert per_example.shape == (4,) and np.all(np.isfinite(per_example))
    assert out.samples.shape == (4, 8, 8, 1) and out.nfe == 2


def test_guided_velocity_is_cfg_of_the_velocity():
    """``u + s (c - u)`` of the velocities, though the recipe guides in v-space (for the
    rescale); negative control: the conditional and unconditional velocities differ."""
    from jaxgen.recipes import guidance as guide

    config = apply_overrides(load_experiment(DIGITS_CFG), TINY_UNET)
    recipe = _recipe(config)
    params = jax.jit(recipe.init_params)(jax.random.key(0))
    leaves, tree = jax.tree.flatten(params)
    rng = np.random.default_rng(0)
    noise = [0.05 * rng.standard_normal(np.shape(a)).astype(np.float32) for a in leaves]
    moved = [np.asarray(a) + d for a, d in zip(leaves, noise, strict=True)]
    params = jax.tree.unflatten(tree, moved)
    plan = guide.plan_guidance(
        {"guidance_scale": 3.0},
        config.model.guidance,
        num_classes=10,
        condition=None,
        num_samples=4,
        first_index=0,
        sigma_range=recipe._noise_range(),
    )
    x = rng.standard_normal((4, 8, 8, 1)).astype(np.float32)
    t = np.array([0.1, 0.4, 0.7, 0.95], np.float32)

    @jax.jit  # one compile: the U-Net run op by op costs more
    def velocities(params, x, t):
        guided = recipe._guided_velocity(params, plan)(x, t)
        u = recipe.velocity_fn(params)(x, t)
        c = recipe.velocity_fn(params, labels=plan.labels)(x, t)
        return guided, u, c

    guided, u, c = velocities(params, x, t)
    assert np.max(np.abs(c - u)) > 1e-3
    np.testing.assert_allclose(guided, u + 3.0 * (c - u), atol=2e-4)


def test_ot_coupling_lowers_the_transport_cost(runs):
    run = load_run(runs["root"] / "data")
    ring = load_train_dataset(run.config).source.get(np.arange(256))["x"]
    batch = {"x": np.asarray(ring, np.float32)}
    key = jax.random.key(0)
    _, ot = run.recipe.loss(run.params, batch, key)
    independent = _recipe(apply_overrides(run.config, ["model.coupling=independent"]))
    _, ind = independent.loss(run.params, batch, key)
    # the same source draw, reassigned: the assignment minimises the batch's mean cost
    assert float(np.mean(ot["transport_cost"])) < 0.8 * float(np.mean(ind["transport_cost"]))


def test_paired_source_pairs_row_i_with_row_i(tmp_path):
    config = _config(["model.coupling=paired"])
    recipe = _recipe(config)
    paired = teacher.training_dataset(config, tmp_path, recipe, load_train_dataset(config))
    rows = paired.source.get(np.arange(5))
    np.testing.assert_array_equal(rows["source"], recipe.source_rows("train")[:5])
    np.testing.assert_array_equal(
        rows["x"], load_train_dataset(config).source.get(np.arange(5))["x"]
    )
    per_example, terms = recipe.loss(recipe.init_params(jax.random.key(0)), rows, jax.random.key(1))
    assert np.all(np.isfinite(per_example))
    np.testing.assert_allclose(
        terms["transport_cost"], np.sum((rows["x"] - rows["source"]) ** 2, -1), rtol=1e-5
    )
