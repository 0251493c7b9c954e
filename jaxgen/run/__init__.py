"""The application floor: config -> data -> recipe -> engine. The command line calls only
this floor (and :mod:`jaxgen.config`).

* :func:`train`, :func:`train_and_evaluate`: train (or resume) an experiment in a workdir;
* :func:`load_run`, :func:`draw_samples`, :func:`evaluate_run`: use a trained run;
* :func:`families`, :func:`get_recipe`: the family table (:mod:`jaxgen.run.families`);
* :func:`build_recipe`, :func:`load_train_dataset`: the pieces ``train`` is made of.

Importing this package installs the family table as :mod:`jaxgen.config`'s model-config
resolver, so saved ``config.json`` files load without ``config`` knowing any family.
"""

from jaxgen.config import set_model_config_resolver
from jaxgen.data.tfds_images import DatasetNotFoundError
from jaxgen.engine.checkpointing import CheckpointError
from jaxgen.engine.trainer import NonFiniteLossError, TrainResult
from jaxgen.run.data import load_train_dataset
from jaxgen.run.evaluate import SAMPLE_METRICS, TrainAndEvalResult, evaluate_run, train_and_evaluate
from jaxgen.run.families import families, get_recipe, model_config_class
from jaxgen.run.inference import (
    LoadedRun,
    check_sample_options,
    draw_samples,
    eval_time_keys,
    load_run,
    save_figures,
    write_samples,
)
from jaxgen.run.train import build_recipe, train

set_model_config_resolver(model_config_class)


def sampler_help() -> str:
    """``family: sampler, ...`` for every family that declares samplers (CLI help)."""
    parts = []
    for family in families():
        samplers = get_recipe(family).samplers
        if samplers:
            parts.append(f"{family}: {', '.join(samplers)}")
    return "; ".join(parts) or "none"


__all__ = [
    "CheckpointError",
    "DatasetNotFoundError",
    "SAMPLE_METRICS",
    "LoadedRun",
    "NonFiniteLossError",
    "TrainAndEvalResult",
    "TrainResult",
    "build_recipe",
    "check_sample_options",
    "draw_samples",
    "eval_time_keys",
    "evaluate_run",
    "families",
    "get_recipe",
    "load_run",
    "load_train_dataset",
    "model_config_class",
    "sampler_help",
    "save_figures",
    "train",
    "train_and_evaluate",
    "write_samples",
]
