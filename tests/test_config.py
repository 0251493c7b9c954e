"""Config: strict overrides, typed parsing, JSON round trips, experiment files."""

import pathlib

import pytest

from jaxgen.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_json,
    config_to_json,
    diff_configs,
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
    for path in files:
        config = load_experiment(str(path))
        assert config.expected, f"{path.name} does not state the result it should reach"
        assert config_from_json(config_to_json(config)) == config


def test_missing_experiment_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment("experiments/nope.py")
