"""Typed experiment configs: frozen dataclasses, strict overrides, JSON round trips.

An experiment is one Python file with a ``get_config() -> ExperimentConfig`` function
(see ``experiments/``). Every field has a type, so a command-line override such as
``optim.learning_rate=1e-3`` is parsed and checked against it, and a misspelt key is an
error that names the key and suggests the closest valid one, never a silent no-op.

A config dataclass may declare renamed fields, ``RENAMED: ClassVar[dict[str, str]] =
{"old": "new"}``: an old key in an override, a file or a saved ``config.json`` is an error
that names the new key.

This module imports nothing of jaxgen above it: the model-config class of a family (the
``model`` section) comes from a resolver, passed as ``resolve_model=`` or installed once by
the application floor (``jaxgen.run``) with :func:`set_model_config_resolver`.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import json
import math
import pathlib
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")

ModelConfigResolver = Callable[[str], type]
_resolver: ModelConfigResolver | None = None


class ConfigError(ValueError):
    """A config key, value or file that cannot be used."""


OPTIMIZERS = ("adam", "adamw", "rmsprop")
DECAYS = ("constant", "cosine")


# ----------------------------------------------------------------------------- value ranges


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(section: Any, name: str, minimum: int, *, optional: bool = False) -> None:
    """``ConfigError`` unless ``section.<name>`` is an integer >= ``minimum`` (or None)."""
    value = getattr(section, name)
    if optional and value is None:
        return
    if not (_is_int(value) and value >= minimum):
        allowed = f"an integer >= {minimum}" + (" or None" if optional else "")
        raise ConfigError(f"{section.SECTION}.{name} must be {allowed}, got {value!r}")


def _check_number(
    section: Any,
    name: str,
    allowed: str,
    ok: Callable[[float], bool],
    *,
    optional: bool = False,
) -> None:
    """``ConfigError`` unless ``section.<name>`` is a finite number with ``ok(value)``."""
    value = getattr(section, name)
    if optional and value is None:
        return
    if not (_is_number(value) and math.isfinite(value) and ok(value)):
        raise ConfigError(f"{section.SECTION}.{name} must be {allowed}, got {value!r}")


def _check_choice(section: Any, name: str, choices: Sequence[str]) -> None:
    value = getattr(section, name)
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"{section.SECTION}.{name} must be one of {', '.join(choices)}, got {value!r}{hint}"
        )


# ----------------------------------------------------------------------------- sections


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which dataset to train on and how to batch it.

    ``batch_size`` is the global batch (split over all devices and hosts). ``resolution``
    (None: the dataset's own) trains on the images area-downsampled to ``resolution x
    resolution`` (:mod:`jaxgen.data.resolution`; the base stage of a cascade).
    """

    name: str = "digits"
    data_dir: str | None = None
    download: bool = False
    batch_size: int = 128
    random_flip: bool = False
    resolution: int | None = None

    SECTION: ClassVar[str] = "data"

    def __post_init__(self) -> None:
        _check_int(self, "batch_size", 1)
        if self.resolution is not None:
            _check_int(self, "resolution", 1)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimizer: Adam(W) with linear warmup, optional cosine decay and global-norm clipping."""

    optimizer: str = "adam"
    learning_rate: float = 2e-4
    warmup_steps: int = 0
    decay: str = "constant"
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip_norm: float | None = 1.0
    ema_decay: float = 0.9999

    SECTION: ClassVar[str] = "optim"

    def __post_init__(self) -> None:
        _check_choice(self, "optimizer", OPTIMIZERS)
        _check_choice(self, "decay", DECAYS)
        _check_number(self, "learning_rate", "a positive finite number (> 0)", lambda v: v > 0)
        _check_int(self, "warmup_steps", 0)
        for name in ("b1", "b2"):
            _check_number(self, name, "a number in [0, 1)", lambda v: 0 <= v < 1)
        _check_number(self, "eps", "a positive finite number (> 0)", lambda v: v > 0)
        _check_number(self, "weight_decay", "a finite number >= 0", lambda v: v >= 0)
        _check_number(
            self,
            "grad_clip_norm",
            "None or a positive number (> 0)",
            lambda v: v > 0,
            optional=True,
        )
        _check_number(self, "ema_decay", "a number in [0, 1]", lambda v: 0 <= v <= 1)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training loop: length, seed, cadence of logs, checkpoints and sample grids;
    ``compute_dtype`` "bfloat16": networks compute in bf16 while training (parameters,
    optimizer state, EMA, loss reductions, sampling and evaluation stay float32);
    ``mesh_fsdp``: devices of one host sharing each parameter with ``shard_params``, and
    ``mesh_slices``: slices or hosts on the data axis (:mod:`jaxgen.engine.sharding`)."""

    num_steps: int = 1000
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 1000
    sample_every: int = 1000
    num_grid_samples: int = 64
    keep_checkpoints: int = 3
    async_checkpoints: bool = True
    shard_params: bool = False
    shard_params_min_size: int = 2**18
    mesh_fsdp: int = 1
    mesh_slices: int = 1
    progress_bar: bool = True
    compute_dtype: str = "float32"

    SECTION: ClassVar[str] = "train"

    def __post_init__(self) -> None:
        for name in ("num_steps", "log_every", "checkpoint_every", "num_grid_samples"):
            _check_int(self, name, 1)
        _check_int(self, "keep_checkpoints", 1)
        for name in ("sample_every", "seed", "shard_params_min_size"):
            _check_int(self, name, 0)
        for name in ("mesh_fsdp", "mesh_slices"):
            _check_int(self, name, 1)
        _check_choice(self, "compute_dtype", ("float32", "bfloat16"))


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What ``jaxgen eval`` measures."""

    split: str = "test"
    num_samples: int = 360
    max_examples: int | None = None
    batch_size: int = 360

    SECTION: ClassVar[str] = "eval"

    def __post_init__(self) -> None:
        if not isinstance(self.split, str) or not self.split:
            raise ConfigError(f"eval.split must be a split name, got {self.split!r}")
        _check_int(self, "num_samples", 1)
        _check_int(self, "max_examples", 1, optional=True)
        _check_int(self, "batch_size", 1)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: a model family's own config plus the shared sections.

    ``model`` is the family's config dataclass (e.g. ``jaxgen.recipes.ddpm.DDPMConfig``);
    ``family`` names the recipe that trains it.
    """

    family: str
    model: Any
    name: str = "experiment"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    expected: str = ""


# ----------------------------------------------------------------------------- dict <-> config


def to_dict(config: Any) -> dict[str, Any]:
    """Nested plain dict (JSON-ready) of a config dataclass."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            out[field.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[field.name] = list(value)
        else:
            out[field.name] = value
    return out


def from_dict(
    cls: type[T],
    data: Mapping[str, Any],
    *,
    path: str = "",
    resolve_model: ModelConfigResolver | None = None,
) -> T:
    """Build ``cls`` from a nested dict, rejecting unknown keys, renamed keys and wrong types.

    ``resolve_model(family)`` gives the model-config class of an ``ExperimentConfig``'s
    ``model`` section (default: the resolver installed by :func:`set_model_config_resolver`).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"config section {path or '<root>'!r} must be a mapping, got {data!r}")
    hints = _type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            _check_renamed(cls, key, path)
            raise ConfigError(_unknown_key_message(path + key, key, names))
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        value = data[field.name]
        kind = hints[field.name]
        sub = f"{path}{field.name}"
        if field.name == "model" and cls is ExperimentConfig:
            kind = (resolve_model or model_config_class)(data.get("family", ""))
        if dataclasses.is_dataclass(kind):
            kwargs[field.name] = from_dict(kind, value, path=sub + ".")
        else:
            kwargs[field.name] = _coerce(value, kind, sub)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if getattr(cls, "SECTION", None):  # the message already names the dotted key
            raise
        raise ConfigError(f"config section {path.rstrip('.') or '<root>'!r}: {err}") from err
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config section {path.rstrip('.') or '<root>'!r}: {err}") from err


def set_model_config_resolver(resolver: ModelConfigResolver | None) -> None:
    """Install ``resolver(family) -> model-config class`` (``jaxgen.run`` installs its family
    table on import)."""
    global _resolver
    _resolver = resolver


def model_config_class(family: str) -> type:
    """The model-config dataclass of a family name, from the installed resolver."""
    if _resolver is None:
        raise ConfigError(
            f"cannot find the model config of family {family!r}: no family table is installed "
            "(import jaxgen.run, or pass resolve_model=)"
        )
    return _resolver(family)


def _check_renamed(cls: type, key: str, path: str) -> None:
    """``ConfigError`` naming the new key if ``key`` is a renamed field of ``cls``."""
    renamed = getattr(cls, "RENAMED", None) or {}
    if key in renamed:
        raise ConfigError(f"config key {path + key!r} was renamed to {path + renamed[key]!r}")


# ----------------------------------------------------------------------------- overrides


def apply_overrides(config: T, overrides: Sequence[str]) -> T:
    """Return ``config`` with ``key.sub=value`` overrides applied, each type-checked.

    Values are Python literals (``1e-3``, ``(1, 2)``, ``true``, ``none``) or bare strings.
    All overrides are applied before any section is rebuilt, so values that are only
    valid together (``model.unet.channels=8 model.unet.num_groups=4``) can be set at once.
    """
    data = to_dict(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"override {item!r} is not of the form key=value (e.g. train.num_steps=100)"
            )
        key, raw = (part.strip() for part in item.split("=", 1))
        _check_path(config, key.split("."), key)
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = _parse_literal(raw)
    model = getattr(config, "model", None)
    family = getattr(config, "family", None)

    def resolve(name: str) -> type:
        return type(model) if name == family else model_config_class(name)

    return from_dict(type(config), data, resolve_model=resolve)


def _check_path(node: Any, parts: list[str], full_key: str) -> None:
    """Raise a ConfigError unless ``parts`` names a value field below ``node``."""
    names = [f.name for f in dataclasses.fields(node)]
    head = parts[0]
    if head not in names:
        _check_renamed(type(node), head, full_key[: len(full_key) - len(".".join(parts))])
        prefix = full_key[: len(full_key) - len(".".join(parts))]
        raise ConfigError(_unknown_key_message(full_key, head, names, prefix=prefix))
    current = getattr(node, head)
    if len(parts) == 1:
        if dataclasses.is_dataclass(current):
            raise ConfigError(f"config key {full_key!r} is a section; set one of its fields")
        return
    if not dataclasses.is_dataclass(current):
        raise ConfigError(f"config key {full_key!r}: {head!r} is a value, not a section")
    _check_path(current, parts[1:], full_key)


def _parse_literal(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def _unknown_key_message(full_key: str, key: str, names: Sequence[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean {prefix + close[0]!r}?" if close else ""
    return f"unknown config key {full_key!r}{hint} (valid here: {', '.join(sorted(names))})"


# ----------------------------------------------------------------------------- type checks


def _type_hints(cls: type) -> dict[str, Any]:
    module = sys.modules.get(cls.__module__)
    return typing.get_type_hints(cls, globalns=vars(module) if module else None)


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``kind``; int -> float and list -> tuple allowed."""
    if kind is Any:
        return value
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(kind):
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"config key {key!r}: {value!r} is not a valid {_type_name(kind)}")
    if kind is type(None):
        if value is None:
            return None
        raise ConfigError(f"config key {key!r}: expected None, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            if isinstance(value, (int, float, str)) and typing.get_args(kind)[-1:] == (Ellipsis,):
                value = (value,)
            else:
                raise ConfigError(f"config key {key!r}: expected a tuple, got {value!r}")
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"config key {key!r}: expected {len(args)} items, got {value!r}")
        return tuple(_coerce(v, a, key) for a, v in zip(args, value, strict=True))
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key {key!r}: expected a number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key {key!r}: expected a string, got {value!r}")
    return value


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


# ----------------------------------------------------------------------------- files


def load_experiment(
    spec: str, *, resolve_model: ModelConfigResolver | None = None
) -> ExperimentConfig:
    """Load ``get_config()`` from an experiment file (``experiments/ddpm_digits.py``) or a
    saved ``config.json`` (whose ``model`` section ``resolve_model`` types)."""
    path = pathlib.Path(spec)
    if not path.exists():
        raise ConfigError(f"experiment config {spec!r} does not exist")
    if not path.is_file():
        raise ConfigError(f"experiment config {spec!r} is not a file")
    if path.suffix == ".json":
        return config_from_json(path.read_text(), resolve_model=resolve_model)
    module_name = f"jaxgen_experiment_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"cannot import experiment config {spec!r}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"experiment file {spec!r} defines no get_config() function")
    config = module.get_config()
    if not isinstance(config, ExperimentConfig):
        raise ConfigError(
            f"{spec}: get_config() returned {type(config).__name__}, not ExperimentConfig"
        )
    return config


def config_to_json(config: ExperimentConfig) -> str:
    return json.dumps(to_dict(config), indent=2, sort_keys=True)


def config_from_json(
    text: str, *, resolve_model: ModelConfigResolver | None = None
) -> ExperimentConfig:
    """An ``ExperimentConfig`` from its JSON text (see :func:`from_dict`)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"config is not valid JSON: {err}") from err
    return from_dict(ExperimentConfig, data, resolve_model=resolve_model)


def diff_configs(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configs of the same shape."""
    da, db = (to_dict(a), to_dict(b)) if not isinstance(a, dict) else (a, b)
    keys = sorted(set(da) | set(db))
    out: list[str] = []
    for key in keys:
        va, vb = da.get(key), db.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_configs(va, vb, prefix + key + ".")
        elif va != vb:
            out.append(prefix + key)
    return out
