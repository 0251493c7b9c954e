"""The application floor: config -> data -> recipe -> engine. The command line calls only
this floor (and :mod:`jaxgen.config`).

* :func:`train`, :func:`train_and_evaluate`: train (or resume) an experiment in a workdir;
* :func:`load_run`, :func:`draw_samples`, :func:`evaluate_run`: use a trained run;
* :func:`draw_guided_samples`, :func:`load_classifier`: class-conditional and guided samples;
* :func:`guidance_sweep`: sample quality against class accuracy over guidance scales;
* :func:`families`, :func:`get_recipe`: the family table (:mod:`jaxgen.run.families`);
* :func:`build_recipe`, :func:`load_train_dataset`: the pieces ``train`` is made of;
* :func:`training_dataset`, :func:`teacher_pairs`, :func:`load_teacher`: a flow-matching
  run's teacher pairs (reflow, distillation) and paired data (:mod:`jaxgen.run.teacher`);
* :func:`start_distributed`: join a multi-process (multi-host) job before anything else runs.

Importing this package installs the family table as :mod:`jaxgen.config`'s model-config
resolver, so saved ``config.json`` files load without ``config`` knowing any family.
"""

from jaxgen.config import set_model_config_resolver
from jaxgen.data.tfds_images import DatasetNotFoundError
from jaxgen.engine.checkpointing import CheckpointError
from jaxgen.engine.distributed import initialize as start_distributed
from jaxgen.engine.trainer import NonFiniteLossError, TrainResult
from jaxgen.run.data import load_train_dataset
from jaxgen.run.evaluate import SAMPLE_METRICS, TrainAndEvalResult, evaluate_run, train_and_evaluate
from jaxgen.run.families import families, get_recipe, model_config_class
from jaxgen.run.guidance import (
    Classifier,
    GuidedSamples,
    check_guidance,
    draw_guided_samples,
    label_condition,
    load_classifier,
    model_classes,
)
from jaxgen.run.guidance_sweep import (
    class_accuracy,
    guidance_sweep,
    parse_scales,
    plot_sweep,
    predict_digit_labels,
    sweep_table,
)
from jaxgen.run.inference import (
    LoadedRun,
    check_sample_options,
    draw_samples,
    eval_time_keys,
    load_run,
    save_figures,
    write_samples,
)
from jaxgen.run.teacher import load_teacher, teacher_pairs, training_dataset
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
    "Classifier",
    "DatasetNotFoundError",
    "GuidedSamples",
    "LoadedRun",
    "NonFiniteLossError",
    "SAMPLE_METRICS",
    "TrainAndEvalResult",
    "TrainResult",
    "build_recipe",
    "check_guidance",
    "check_sample_options",
    "class_accuracy",
    "draw_guided_samples",
    "draw_samples",
    "eval_time_keys",
    "evaluate_run",
    "families",
    "get_recipe",
    "guidance_sweep",
    "label_condition",
    "load_classifier",
    "load_run",
    "load_teacher",
    "load_train_dataset",
    "model_classes",
    "model_config_class",
    "parse_scales",
    "plot_sweep",
    "predict_digit_labels",
    "sampler_help",
    "save_figures",
    "start_distributed",
    "sweep_table",
    "teacher_pairs",
    "train",
    "train_and_evaluate",
    "training_dataset",
    "write_samples",
]
