"""The engine's side of the recipe protocol, on a tiny recipe written here (no family):

* chunked sampling: every chunk gets the same key and its ``first_index``, so samples depend
  only on the seed and the example's index: chunks of 16 or 64, on 1 or 8 devices, give the
  same samples; a ragged last chunk is drawn whole and cut;
* conditioned samples: example ``i`` gets condition row ``i mod N``;
* the initialisation batch is an argument of the jitted init (not a baked constant);
* the run floor hands a recipe the first ``init_batch_size`` training examples.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.config import ExperimentConfig
from jaxgen.core import SamplerOutput, example_keys
from jaxgen.data.registry import load_dataset
from jaxgen.engine import sharding
from jaxgen.engine.recipe import Recipe
from jaxgen.engine.sampling import ChunkedSampler
from jaxgen.engine.trainer import abstract_train_state
from jaxgen.run.data import init_batch_for


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    scale: float = 2.0


class ToyRecipe(Recipe):
    """x_i = scale * w * eps_i (+ condition c_i), eps_i from example i's own key."""

    family = "toy"
    config_class = ToyConfig
    init_batch_size = 5

    def setup(self) -> None:
        pass

    def init_params(self, key, init_batch=None):
        w = jax.random.normal(key, ())
        if init_batch is not None:  # data-dependent init: w shifted by the batch mean
            w = w + jnp.mean(init_batch[self.data_key])
        return {"w": w}

    def loss(self, params, batch, key):
        per_example = jnp.sum((batch[self.data_key] - params["w"]) ** 2, axis=(1, 2, 3))
        return per_example, {}

    def sample(self, params, key, num_samples, *, first_index=0, condition=None, **options: Any):
        keys = example_keys(key, num_samples, start=first_index)
        eps = jax.vmap(lambda k: jax.random.normal(k, self.data_shape))(keys)
        x = self.config.model.scale * params["w"] * eps
        if condition is not None:
            x = x + condition["c"][:, None, None, None]
        return SamplerOutput(x, nfe=1)


def _recipe() -> ToyRecipe:
    config = ExperimentConfig(family="toy", model=ToyConfig())
    return ToyRecipe(config, data_shape=(2, 2, 1), num_levels=None, num_classes=3)


PARAMS = {"w": jnp.float32(1.5)}


def _draw(num_samples, batch_size, devices, condition=None) -> np.ndarray:
    sampler = ChunkedSampler(
        _recipe(),
        num_samples=num_samples,
        batch_size=batch_size,
        mesh=sharding.make_mesh(devices),
        condition=condition,
    )
    return sampler(PARAMS, jax.random.key(7))


def test_samples_depend_only_on_seed_and_index():
    reference = _draw(64, 64, 1)
    assert reference.shape == (64, 2, 2, 1)
    np.testing.assert_array_equal(_draw(64, 16, 1), reference)
    np.testing.assert_array_equal(_draw(64, 16, 8), reference)
    np.testing.assert_array_equal(_draw(64, 64, 8), reference)
    # a ragged draw (20 in chunks of 16) is the first 20 of the same draw
    np.testing.assert_array_equal(_draw(20, 16, 8), reference[:20])
    # each example is its own key's draw: example 37 alone from fold_in(key, 37)
    eps = jax.random.normal(jax.random.fold_in(jax.random.key(7), 37), (2, 2, 1))
    np.testing.assert_allclose(reference[37], 2.0 * 1.5 * np.asarray(eps), rtol=1e-6)
    assert not np.allclose(reference[0], reference[1])


def test_conditioned_samples_get_row_i_mod_n():
    rows = np.array([10.0, 20.0, 30.0], np.float32)
    seen = []

    def condition(indices):
        seen.append(np.asarray(indices))
        return {"c": rows[np.asarray(indices) % len(rows)]}

    plain = _draw(12, 8, 8)
    conditioned = _draw(12, 8, 8, condition=condition)
    shift = (conditioned - plain)[:, 0, 0, 0]
    np.testing.assert_allclose(shift, rows[np.arange(12) % 3], rtol=1e-6)
    assert [list(i) for i in seen] == [list(range(8)), list(range(8, 16))]


def test_init_batch_is_an_argument_of_the_jitted_init():
    recipe = _recipe()
    config = recipe.config
    batch = {"image": np.ones((5, 2, 2, 1), np.float32)}
    _, init_fn, abstract, shardings = abstract_train_state(
        recipe, config, sharding.make_mesh(1), init_batch=batch
    )
    assert abstract.params["w"].shape == ()
    init = jax.jit(init_fn, out_shardings=shardings)
    ones = init(batch).params["w"]
    threes = init({"image": 3 * batch["image"]}).params["w"]
    np.testing.assert_allclose(float(threes) - float(ones), 2.0, rtol=1e-6)
    assert init._cache_size() == 1  # one compilation: the data is an input, not a constant


def test_run_floor_passes_the_first_training_examples():
    recipe = _recipe()
    dataset = load_dataset("digits", "train")
    batch = init_batch_for(recipe, dataset)
    expected = dataset.source.get(np.arange(5))
    assert set(batch) == set(expected)
    np.testing.assert_array_equal(batch["image"], expected["image"])
    recipe.init_batch_size = 0  # (an instance may change its class's default)
    assert init_batch_for(recipe, dataset) is None


@pytest.mark.parametrize("bad", [(0, 4), (4, 0)])
def test_chunked_sampler_rejects_empty_sizes(bad):
    with pytest.raises(ValueError, match="must be >= 1"):
        ChunkedSampler(_recipe(), num_samples=bad[0], batch_size=bad[1])


def test_run_floor_conditions_samples_on_held_out_rows():
    from jaxgen.config import apply_overrides
    from jaxgen.run.data import sample_condition_for

    recipe = _recipe()
    assert sample_condition_for(recipe, recipe.config) is None  # unconditional recipe
    recipe.sample_condition_split = "test"
    config = apply_overrides(recipe.config, ["eval.max_examples=5"])
    condition = sample_condition_for(recipe, config)
    rows = condition(np.arange(3, 13))
    test = load_dataset("digits", "test").source.get(np.arange(5))
    np.testing.assert_array_equal(rows["image"], test["image"][np.arange(3, 13) % 5])
    np.testing.assert_array_equal(rows["label"], test["label"][np.arange(3, 13) % 5])
