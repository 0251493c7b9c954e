"""Mesh and state-sharding rules."""

import jax
import pytest

from jaxgen.engine import sharding


def test_mesh_sizes():
    assert sharding.make_mesh(8).shape[sharding.DATA_AXIS] == 8
    with pytest.raises(ValueError, match="available"):
        sharding.make_mesh(1000)


def test_fsdp_shards_only_large_divisible_leaves():
    mesh = sharding.make_mesh(8)
    big = sharding.leaf_sharding((3, 3, 64, 128), mesh, min_size=1000)
    assert big.spec == jax.sharding.PartitionSpec(None, None, None, "data")
    small = sharding.leaf_sharding((16,), mesh, min_size=1000)
    assert small.spec == jax.sharding.PartitionSpec()
    odd = sharding.leaf_sharding((3, 3, 7, 9), mesh, min_size=1)
    assert odd.spec == jax.sharding.PartitionSpec()
