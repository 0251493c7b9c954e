"""Config: strict overrides, typed parsing, JSON round trips, experiment files, renamed keys.

``jaxgen.config`` knows no family: the ``model`` section of a saved config is typed by a
resolver (``resolve_model=``, or the family table that importing ``jaxgen.run`` installs).
"""

import dataclasses
import json
import pathlib
from typing import ClassVar

import pytest

import jaxgen.run  # noqa: F401  (installs the family table as the config's resolver)
from jaxgen import config as config_module
from jaxgen.config import (
    ConfigError,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    config_from_json,
    config_to_json,
    diff_configs,
    from_dict,
    load_experiment,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def digits_config() -> ExperimentConfig:
    return load_experiment(str(ROOT / "experiments" / "ddpm_digits.py"))


def test_overrides_are_parsed_with_their_field_types(digits_config):
    cfg = apply_overrides(
        digits_config,
        [
            "train.num_steps=12",
            "optim.learning_rate=3e-4",
            "model.unet.channel_mult=(1, 2, 2)",
            "model.clip_denoised=false",
            "optim.grad_clip_norm=none",
            "data.data_dir=/tmp/x",
            "optim.learning_rate=1",  # an int where a float is expected is fine
        ],
    )
    assert cfg.train.num_steps == 12
    assert cfg.optim.learning_rate == 1.0 and isinstance(cfg.optim.learning_rate, float)
    assert cfg.model.unet.channel_mult == (1, 2, 2)
    assert cfg.model.clip_denoised is False
    assert cfg.optim.grad_clip_norm is None
    assert cfg.data.data_dir == "/tmp/x"
    assert digits_config.train.num_steps != 12  # the original is untouched (frozen)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.num_step=3", "unknown config key 'train.num_step'; did you mean 'train.num_steps'"),
        ("trian.num_steps=3", "did you mean 'train'"),
        ("model.unet.chanels=8", "did you mean 'model.unet.channels'"),
        ("train.num_steps=abc", "expected an integer"),
        ("train.num_steps=1.5", "expected an integer"),
        ("model.clip_denoised=3", "expected true or false"),
        ("train=3", "is a section"),
        ("train.num_steps.x=3", "is a value, not a section"),
        ("train.num_steps", "not of the form key=value"),
    ],
)
def test_bad_overrides_name_the_problem(digits_config, override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_overrides(digits_config, [override])


@pytest.mark.parametrize(
    "section, kwargs, message",
    [
        (TrainConfig, {"log_every": 0}, "train.log_every must be an integer >= 1, got 0"),
        (TrainConfig, {"num_steps": -5}, "train.num_steps must be an integer >= 1, got -5"),
        (TrainConfig, {"checkpoint_every": 0}, "train.checkpoint_every must be an integer >= 1"),
        (TrainConfig, {"sample_every": -1}, "train.sample_every must be an integer >= 0"),
        (TrainConfig, {"seed": -1}, "train.seed must be an integer >= 0, got -1"),
        (TrainConfig, {"keep_checkpoints": 0}, "train.keep_checkpoints must be an integer >= 1"),
        (
            TrainConfig,
            {"compute_dtype": "float16"},
            "train.compute_dtype must be one of float32, bfloat16, got 'float16'",
        ),
        (DataConfig, {"batch_size": 0}, "data.batch_size must be an integer >= 1, got 0"),
        (OptimConfig, {"learning_rate": float("nan")}, "optim.learning_rate must be a positive"),
        (OptimConfig, {"b2": 1.0}, "optim.b2 must be a number in [0, 1), got 1.0"),
        (OptimConfig, {"grad_clip_norm": -1.0}, "optim.grad_clip_norm must be None or a positive"),
        (OptimConfig, {"ema_decay": -0.1}, "optim.ema_decay must be a number in [0, 1]"),
        (OptimConfig, {"decay": "linear"}, "optim.decay must be one of constant, cosine"),
        (EvalConfig, {"max_examples": 0}, "eval.max_examples must be an integer >= 1 or None"),
        (EvalConfig, {"num_samples": 0}, "eval.num_samples must be an integer >= 1"),
    ],
)
def test_value_ranges_are_checked_when_a_section_is_built(section, kwargs, message):
    with pytest.raises(ConfigError) as info:
        section(**kwargs)
    assert str(info.value).startswith(message)


def test_edge_values_in_range_are_accepted():
    TrainConfig(num_steps=1, log_every=1, checkpoint_every=1, sample_every=0, seed=0)
    OptimConfig(b1=0.0, b2=0.0, ema_decay=1.0, weight_decay=0.0, grad_clip_norm=None)
    EvalConfig(max_examples=None)


def test_a_range_error_from_a_file_names_the_dotted_key_once(digits_config):
    data = config_module.to_dict(digits_config)
    data["train"]["log_every"] = 0
    with pytest.raises(ConfigError) as info:
        config_from_json(json.dumps(data))
    assert str(info.value) == "train.log_every must be an integer >= 1, got 0"
    with pytest.raises(ConfigError, match="not valid JSON"):
        config_from_json("{")


def test_overrides_valid_only_together_apply_at_once(digits_config):
    cfg = apply_overrides(digits_config, ["model.unet.channels=12", "model.unet.num_groups=4"])
    assert (cfg.model.unet.channels, cfg.model.unet.num_groups) == (12, 4)
    message = "config section 'model.unet': .*not divisible by num_groups"
    with pytest.raises(ConfigError, match=message):
        apply_overrides(digits_config, ["model.unet.channels=12"])


def test_json_round_trip_is_exact(digits_config):
    text = config_to_json(digits_config)
    assert config_from_json(text) == digits_config
    assert diff_configs(digits_config, apply_overrides(digits_config, ["train.seed=5"])) == [
        "train.seed"
    ]


def test_json_with_unknown_key_is_rejected(digits_config):
    text = config_to_json(digits_config).replace('"num_steps"', '"num_stepz"')
    with pytest.raises(ConfigError, match="unknown config key 'train.num_stepz'"):
        config_from_json(text)


def test_unknown_family_is_rejected(digits_config):
    text = config_to_json(digits_config).replace('"family": "ddpm"', '"family": "ddmp"')
    with pytest.raises(ConfigError, match="unknown model family 'ddmp'; did you mean 'ddpm'"):
        config_from_json(text)


def test_every_experiment_file_loads():
    files = sorted((ROOT / "experiments").glob("*.py"))
    assert files, "no experiment configs found"
    cascades = [p for p in files if "def get_cascade(" in p.read_text()]
    assert cascades, "the cascade files (get_cascade) are checked in tests/test_cascade.py"
    for path in sorted(set(files) - set(cascades)):
        config = load_experiment(str(path))
        assert config.expected, f"{path.name} does not state the result it should reach"
        assert config_from_json(config_to_json(config)) == config


def test_missing_experiment_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment("experiments/nope.py")


@dataclasses.dataclass(frozen=True)
class _Inner:
    width: int = 2
    RENAMED: ClassVar[dict[str, str]] = {"size": "width"}


@dataclasses.dataclass(frozen=True)
class _ToyModel:
    sample_steps: int = 10
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    RENAMED: ClassVar[dict[str, str]] = {"ddim_steps": "sample_steps"}


def _toy_config() -> ExperimentConfig:
    return ExperimentConfig(family="toy", model=_ToyModel())


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.ddim_steps=5", "config key 'model.ddim_steps' was renamed to 'model.sample_steps'"),
        ("model.inner.size=3", "config key 'model.inner.size' was renamed to 'model.inner.width'"),
    ],
)
def test_a_renamed_key_in_an_override_names_the_new_key(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(_toy_config(), [override])
    # the new key works, and a RENAMED class variable is not a config field
    assert apply_overrides(_toy_config(), ["model.sample_steps=5"]).model.sample_steps == 5
    assert "RENAMED" not in config_to_json(_toy_config())


def test_a_renamed_key_in_a_saved_config_names_the_new_key():
    text = config_to_json(_toy_config())
    assert config_from_json(text, resolve_model=lambda family: _ToyModel) == _toy_config()
    old = text.replace('"sample_steps"', '"ddim_steps"')
    with pytest.raises(ConfigError, match="'model.ddim_steps' was renamed to 'model.sample_steps'"):
        config_from_json(old, resolve_model=lambda family: _ToyModel)
    with pytest.raises(ConfigError, match="'size' was renamed to 'width'"):
        from_dict(_Inner, {"size": 3})


def test_ddpm_ddim_steps_was_renamed_to_sample_steps(digits_config):
    with pytest.raises(ConfigError, match="'model.ddim_steps' was renamed to 'model.sample_steps'"):
        apply_overrides(digits_config, ["model.ddim_steps=50"])


def test_config_alone_knows_no_family(monkeypatch):
    # Without a resolver (jaxgen.run not imported), a saved config says what is missing;
    # an override of a loaded config needs none (the model's class is at hand).
    monkeypatch.setattr(config_module, "_resolver", None)
    text = config_to_json(_toy_config())
    with pytest.raises(ConfigError, match="no family table is installed"):
        config_from_json(text)
    assert apply_overrides(_toy_config(), ["train.seed=3"]).train.seed == 3
