"""The cascade / SR3 paper configs (issue 17) run from TFDS: under ``tfds.testing.mock_data``
the CDM configs train two steps with a tiny U-Net, and the CDM cascade file's stages
chain.

* ``cdm_imagenet64_base``: a class-conditional DDPM of ImageNet at 32x32, made from
  ``imagenet_resized_64`` by ``data.resolution = 32``; 1000 classes.
* ``cdm_imagenet64_sr``: class-conditional 32 -> 64 super-resolution with Gaussian
  conditioning augmentation.
* ``sr3_imagenet64``: 16 -> 64 super-resolution, not class-conditional.
  (Built and checked, not trained.)
* ``cdm_imagenet64``: the file's stages, pointed at the tiny runs, pass ``check_cascade``
  and sample a 32x32 -> 64x64 chain with the same labels at both stages; a level outside
  the super-resolution stage's trained range [0, 0.5] is refused by name.

The base and super-resolution runs are trained once (module fixture) and shared by the
training checks and the cascade check.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.engine import sharding
from jaxgen.run import build_recipe, load_train_dataset, model_config_class, train
from jaxgen.run import cascade as cascade_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
NUM_MOCK = 16
TINY = [
    "model.unet.channels=8",
    "model.unet.channel_mult=(1, 2)",
    "model.unet.num_res_blocks=1",
    "model.unet.attention_resolutions=()",
    "model.unet.num_groups=4",
    "model.num_timesteps=8",
    "data.batch_size=8",
    "train.num_steps=2",
    "train.checkpoint_every=2",
    "train.sample_every=0",
    "train.progress_bar=false",
    "train.async_checkpoints=false",
]


def _tiny(name: str, data_dir: pathlib.Path):
    config = load_experiment(str(EXPERIMENTS / f"{name}.py"), resolve_model=model_config_class)
    return apply_overrides(config, [*TINY, f"data.data_dir={data_dir}"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three paper configs, tiny, trained two steps on mock ImageNet: name -> (config,
    result)."""
    root = tmp_path_factory.mktemp("paper_sr")
    out = {}
    with tfds.testing.mock_data(num_examples=NUM_MOCK):
        for name in ("cdm_imagenet64_base", "cdm_imagenet64_sr"):
            config = _tiny(name, root / "tfds")
            out[name] = (config, train(config, root / name, mesh=sharding.make_mesh(1)))
    # SR3's config is the CDM super-resolution recipe with another factor and no classes:
    # it is built (not trained: one compile fewer) and checked below.
    out["sr3_imagenet64"] = (_tiny("sr3_imagenet64", root / "tfds"), None)
    return out


@pytest.mark.parametrize(
    ("name", "shape", "factor", "classes"),
    [
        ("cdm_imagenet64_base", (32, 32, 3), 0, 1000),
        ("cdm_imagenet64_sr", (64, 64, 3), 2, 1000),
        ("sr3_imagenet64", (64, 64, 3), 4, 0),
    ],
)
def test_paper_config_trains_on_mock_imagenet(runs, name, shape, factor, classes):
    config, result = runs[name]
    assert config.data.name == "imagenet_resized_64" and config.eval.split == "validation"
    assert config.model.super_resolution.factor == factor
    assert config.model.unet.num_classes == classes
    if result is not None:
        assert result.step == 2
        loss = result.metrics["loss"]
        assert np.isfinite(loss) and loss > 0
    with tfds.testing.mock_data(num_examples=NUM_MOCK):
        recipe = build_recipe(config, load_train_dataset(config))
    assert tuple(recipe.data_shape) == shape
    assert int(getattr(recipe, "classes", 0) or 0) == classes
    conditioning = getattr(recipe, "image_conditioning", None)
    if factor:
        assert conditioning.low_resolution_shape == (64 // factor, 64 // factor, 3)
    else:
        assert conditioning is None


def test_cdm_cascade_file_stages_chain(runs):
    cascade = cascade_lib.load_cascade(EXPERIMENTS / "cdm_imagenet64.py")
    base, sr = cascade.stages
    assert base.config == "experiments/cdm_imagenet64_base.py"
    assert sr.config == "experiments/cdm_imagenet64_sr.py"
    tiny = dataclasses.replace(
        cascade,
        stages=(
            dataclasses.replace(base, workdir=str(runs["cdm_imagenet64_base"][1].workdir)),
            # the file's 100 DDIM steps, cut to the tiny runs' T = 8
            dataclasses.replace(sr, workdir=str(runs["cdm_imagenet64_sr"][1].workdir), num_steps=4),
        ),
    )
    with tfds.testing.mock_data(num_examples=NUM_MOCK):
        loaded = cascade_lib.check_cascade(tiny)
        outputs, labels = cascade_lib.sample_cascade(loaded, tiny, num_samples=2, seed=0)
    # what check_cascade asks of the super-resolution stage's level: the trained range
    with pytest.raises(ConfigError, match=r"augmentation_level=0\.9 is outside .*\[0, 0\.5\]"):
        loaded[1].recipe.image_conditioning.check_level(0.9)
    assert [tuple(run.recipe.data_shape) for run in loaded] == [(32, 32, 3), (64, 64, 3)]
    assert [o.shape for o in outputs] == [(2, 32, 32, 3), (2, 64, 64, 3)]
    assert all(np.isfinite(o).all() for o in outputs)
    np.testing.assert_array_equal(labels, [0, 1])  # classes cycle over the samples
