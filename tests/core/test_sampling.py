"""Oracles for ``jaxgen.core.sampling``: per-example keys (samples depend only on the seed and
the example's index) and the ``SamplerOutput`` pytree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core import sampling
from jaxgen.core.sampling import (
    SamplerOutput,
    as_example_keys,
    example_keys,
    initial_and_step_keys,
    step_keys,
)


def _data(keys):
    return np.asarray(jax.random.key_data(keys))


# ---------------------------------------------------------------- example keys


def test_example_keys_are_fold_in_of_the_index():
    key = jax.random.key(3)
    keys = example_keys(key, 5)
    assert keys.shape == (5,) and jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)
    for i in range(5):
        np.testing.assert_array_equal(_data(keys[i]), _data(jax.random.fold_in(key, i)))
    shifted = example_keys(key, 4, start=7)
    for i in range(4):
        np.testing.assert_array_equal(_data(shifted[i]), _data(jax.random.fold_in(key, 7 + i)))


def test_example_keys_chunks_and_traced_start():
    key = jax.random.key(0)
    whole = _data(example_keys(key, 10))
    chunks = np.concatenate([_data(example_keys(key, 3)), _data(example_keys(key, 7, start=3))])
    np.testing.assert_array_equal(chunks, whole)
    traced = jax.jit(lambda s: example_keys(key, 4, start=s))(jnp.int32(6))
    np.testing.assert_array_equal(_data(traced), whole[6:10])
    assert len({tuple(r) for r in whole}) == 10  # distinct


def test_example_keys_errors():
    with pytest.raises(ValueError, match=r"needs one key, got a batch of keys of shape \(4,\)"):
        example_keys(jax.random.split(jax.random.key(0), 4), 4)
    with pytest.raises(ValueError, match="num_examples must be an integer >= 1, got 0"):
        example_keys(jax.random.key(0), 0)


def test_as_example_keys_one_key_or_a_batch():
    key = jax.random.key(1)
    np.testing.assert_array_equal(_data(as_example_keys(key, 6)), _data(example_keys(key, 6)))
    batch = jax.random.split(key, 6)
    assert as_example_keys(batch, 6) is batch  # a batch is used as it is
    with pytest.raises(ValueError, match="got 6 per-example keys for a batch of 4 samples"):
        as_example_keys(batch, 4)
    # Raw uint32 keys: (2,) is one key, (B, 2) a batch.
    raw = jax.random.PRNGKey(1)
    assert as_example_keys(raw, 3).shape == (3, 2)
    raw_batch = jax.random.split(raw, 3)
    assert as_example_keys(raw_batch, 3) is raw_batch


# ---------------------------------------------------------------- per-example draws


def test_normal_and_uniform_use_each_example_key_alone():
    keys = example_keys(jax.random.key(2), 4)
    z = sampling.normal(keys, (3, 2))
    u = sampling.uniform(keys, (5,), jnp.float32)
    assert z.shape == (4, 3, 2) and z.dtype == jnp.float32 and u.shape == (4, 5)
    for b in range(4):
        np.testing.assert_array_equal(z[b], jax.random.normal(keys[b], (3, 2)))
        np.testing.assert_array_equal(u[b], jax.random.uniform(keys[b], (5,)))
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0


def test_initial_and_step_keys_batch_16_vs_64():
    """The same seed gives the same i-th initial noise and step keys at batch 16 or 64,
    and when examples 16..63 are drawn separately from their own keys."""
    key = jax.random.key(42)
    x16, s16 = initial_and_step_keys(key, (16, 3, 2), 5)
    x64, s64 = initial_and_step_keys(key, (64, 3, 2), 5)
    assert x16.shape == (16, 3, 2) and s16.shape == (5, 16) and s64.shape == (5, 64)
    np.testing.assert_array_equal(x64[:16], x16)
    np.testing.assert_array_equal(_data(s64[:, :16]), _data(s16))
    rest_x, rest_s = initial_and_step_keys(example_keys(key, 48, start=16), (48, 3, 2), 5)
    np.testing.assert_array_equal(rest_x, x64[16:])
    np.testing.assert_array_equal(_data(rest_s), _data(s64[:, 16:]))
    # The split of each example's key (documented): x_T[b] = normal(split(k_b)[0]).
    k3 = example_keys(key, 64)[3]
    k_init, k_steps = jax.random.split(k3)
    np.testing.assert_array_equal(x64[3], jax.random.normal(k_init, (3, 2)))
    np.testing.assert_array_equal(_data(s64[:, 3]), _data(jax.random.split(k_steps, 5)))
    # Under jit the same.
    xj, sj = jax.jit(lambda k: initial_and_step_keys(k, (16, 3, 2), 5))(key)
    np.testing.assert_array_equal(xj, x16)
    np.testing.assert_array_equal(_data(sj), _data(s16))


def test_initial_and_step_keys_errors():
    with pytest.raises(ValueError, match="shape must be a non-empty tuple of positive ints"):
        initial_and_step_keys(jax.random.key(0), (0, 3), 5)
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1, got 0"):
        initial_and_step_keys(jax.random.key(0), (2, 3), 0)
    with pytest.raises(ValueError, match="got 3 per-example keys for a batch of 2 samples"):
        initial_and_step_keys(jax.random.split(jax.random.key(0), 3), (2, 3), 5)


def test_step_keys_shapes_and_independence_per_example():
    keys = example_keys(jax.random.key(5), 3)
    steps = step_keys(keys, 7)
    assert steps.shape == (7, 3) and jnp.issubdtype(steps.dtype, jax.dtypes.prng_key)
    for b in range(3):  # column b comes from keys[b] alone
        np.testing.assert_array_equal(_data(steps[:, b]), _data(jax.random.split(keys[b], 7)))
    # Changing one example's key changes its column only.
    other = keys.at[1].set(jax.random.key(99))
    changed = step_keys(other, 7)
    np.testing.assert_array_equal(_data(changed[:, [0, 2]]), _data(steps[:, [0, 2]]))
    assert not np.any(np.all(_data(changed[:, 1]) == _data(steps[:, 1]), axis=-1))
    # All 21 keys are distinct, and the noise they draw is uncorrelated across examples.
    flat = _data(steps).reshape(21, -1)
    assert len({tuple(r) for r in flat}) == 21
    z = jax.vmap(jax.vmap(lambda k: jax.random.normal(k, ())))(step_keys(keys, 4000))
    corr = np.corrcoef(np.asarray(z).T)
    assert np.max(np.abs(corr - np.eye(3))) < 0.06  # ~4 standard errors of 1/sqrt(4000)
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1"):
        step_keys(keys, 0)


# ---------------------------------------------------------------- SamplerOutput


def test_sampler_output_static_nfe_under_jit_and_vmap():
    x = jnp.ones((4, 2))
    out = jax.jit(lambda x: SamplerOutput(2 * x, 7))(x)
    assert isinstance(out, SamplerOutput)
    assert type(out.nfe) is int and out.nfe == 7  # static: not turned into an array
    np.testing.assert_array_equal(out.samples, 2 * x)
    assert len(jax.tree.leaves(out)) == 1
    samples, nfe = out  # a named tuple
    assert nfe == 7 and samples.shape == (4, 2)
    v = jax.vmap(lambda x: SamplerOutput(x + 1, 3))(x)
    assert type(v.nfe) is int and v.nfe == 3 and v.samples.shape == (4, 2)
    doubled = jax.tree.map(lambda a: 2 * a, out)
    assert doubled.nfe == 7
    np.testing.assert_array_equal(doubled.samples, 4 * x)


def test_sampler_output_array_nfe_is_a_leaf():
    x = jnp.arange(8.0).reshape(4, 2)
    out = jax.jit(lambda x: SamplerOutput(x, jnp.sum(x > 2.0).astype(jnp.int32)))(x)
    assert isinstance(out.nfe, jax.Array) and int(out.nfe) == 5
    assert len(jax.tree.leaves(out)) == 2
    # Per-example adaptive counts under vmap come back batched.
    v = jax.vmap(lambda r: SamplerOutput(r, jnp.sum(r > 2.0)))(x)
    np.testing.assert_array_equal(v.nfe, [0, 1, 2, 2])
    # The two kinds are different tree structures (a static count is part of the treedef).
    assert jax.tree.structure(SamplerOutput(x, 3)) != jax.tree.structure(SamplerOutput(x, 4))
    assert jax.tree.structure(SamplerOutput(x, 3)) != jax.tree.structure(
        SamplerOutput(x, jnp.int32(3))
    )


def test_cyclic_labels_depend_only_on_the_index():
    from jaxgen.core.sampling import cyclic_labels

    whole = np.asarray(cyclic_labels(25, 10))
    np.testing.assert_array_equal(whole, np.arange(25) % 10)
    np.testing.assert_array_equal(np.asarray(cyclic_labels(5, 10, start=20)), whole[20:25])
    traced = jax.jit(lambda s: cyclic_labels(4, 3, start=s))(jnp.int32(7))
    np.testing.assert_array_equal(np.asarray(traced), [1, 2, 0, 1])
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
        cyclic_labels(4, 0)
