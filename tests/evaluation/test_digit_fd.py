"""Digit FD with the shipped classifier weights: accuracy, ordering, validation, loading."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from jaxgen.data.digits import NUM_TEST, load_digits
from jaxgen.evaluation import digit_fd as dfd
from jaxgen.nets.digit_classifier import DigitClassifier


def test_shipped_classifier_accuracy():
    assert dfd.digit_classifier_accuracy("test") >= 0.95


def test_fd_orders_real_noise_and_shuffled_with_margin():
    rng = np.random.default_rng(0)
    train, _ = load_digits("train")
    real = train[rng.choice(train.shape[0], NUM_TEST, replace=False)]
    noise = rng.uniform(-1.0, 1.0, size=real.shape).astype(np.float32)
    shuffled = rng.permuted(real.reshape(NUM_TEST, -1), axis=1).reshape(real.shape)

    fd_real = dfd.digit_fd(real)
    fd_noise = dfd.digit_fd(noise)
    fd_shuffled = dfd.digit_fd(shuffled)
    assert 0 < fd_real < 20
    assert fd_noise > 10 * fd_real
    assert fd_shuffled > 10 * fd_real
    # The test split against itself is exactly zero up to rounding.
    test_images, _ = load_digits("test")
    assert dfd.digit_fd(test_images) == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((4, 8, 8), np.float32), r"channel axis"),
        (np.zeros((4, 28, 28, 1), np.float32), r"\(N, 8, 8, 1\)"),
        (np.zeros((4, 1, 8, 8), np.float32), r"\(N, 8, 8, 1\)"),
        (np.zeros((0, 8, 8, 1), np.float32), r"empty"),
        (np.zeros((4, 8, 8, 1), np.uint8), r"floating point"),
        (np.zeros((4, 8, 8, 1), np.int32), r"floating point"),
        (np.full((4, 8, 8, 1), 255.0, np.float32), r"\[-1, 1\]"),
        (np.full((4, 8, 8, 1), np.nan, np.float32), r"NaN"),
    ],
)
def test_digit_features_rejects_bad_inputs(images, match):
    with pytest.raises(ValueError, match=match):
        dfd.digit_features(images)


def test_digit_features_warns_on_unit_interval_images():
    images, _ = load_digits("test")
    with pytest.warns(UserWarning, match=r"\[0, 1\]"):
        dfd.digit_features((images[:8] + 1.0) / 2.0)


def test_digit_fd_rejects_unknown_reference():
    images, _ = load_digits("test")
    with pytest.raises(ValueError, match="reference"):
        dfd.digit_fd(images, reference="validation")


def test_npz_loads_exactly_into_the_module():
    # The file holds exactly the module's parameter paths, shapes and dtypes ...
    fresh = DigitClassifier(rngs=nnx.Rngs(123))
    graphdef, state = nnx.split(fresh)
    expected = dfd.flatten_params(nnx.to_pure_dict(state))
    with np.load(dfd.WEIGHTS_PATH) as f:
        stored = {name: f[name] for name in f.files}
    assert set(stored) == set(expected)
    for name, value in expected.items():
        assert stored[name].shape == value.shape and stored[name].dtype == value.dtype
    assert sum(v.size for v in stored.values()) < 100_000

    # ... and digit_features equals a fresh jitted forward of the merged params.
    nnx.replace_by_pure_dict(state, dfd.unflatten_params(stored))
    params = nnx.to_pure_dict(state)
    features = jax.jit(lambda p, x: nnx.merge(graphdef, p).features(x))
    images, _ = load_digits("test")
    want = np.asarray(features(params, images[:100]))
    got = dfd.digit_features(images[:100])
    assert got.shape == (100, 128) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_features_do_not_depend_on_batching():
    images, _ = load_digits("all")  # 1797 > BATCH_SIZE: several padded batches
    all_at_once = dfd.digit_features(images)
    np.testing.assert_allclose(dfd.digit_features(images[:7]), all_at_once[:7], atol=1e-5)
    np.testing.assert_allclose(dfd.digit_features(images[-3:]), all_at_once[-3:], atol=1e-5)
