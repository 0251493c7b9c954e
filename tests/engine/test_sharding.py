"""Mesh and state-sharding rules."""

import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxgen.engine import sharding


def test_mesh_sizes():
    mesh = sharding.make_mesh(8)
    assert dict(mesh.shape) == {"data": 8, "fsdp": 1}
    with pytest.raises(ValueError, match="available"):
        sharding.make_mesh(1000)


def test_two_axis_mesh_keeps_the_fsdp_axis_on_neighbouring_devices():
    """data x fsdp = 2 x 4: each fsdp row is four consecutive devices (the devices of one
    process come together in ``jax.devices()``, so the fsdp axis stays inside a host)."""
    mesh = sharding.make_mesh(8, fsdp=4)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4}
    ids = np.vectorize(lambda d: d.id)(mesh.devices)
    assert ids.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert sharding.batch_sharding(mesh).spec == P(("data", "fsdp"))
    for bad, match in [(3, "divisor of the 8 devices"), (0, "divisor"), (16, "divisor")]:
        with pytest.raises(ValueError, match=match):
            sharding.make_mesh(8, fsdp=bad)
    with pytest.raises(ValueError, match="mesh_slices=3"):
        sharding.make_mesh(8, fsdp=2, slices=3)


def test_hybrid_mesh_counts_its_slices():
    """``mesh_slices`` must equal the slices (TPU) or processes (here: one) it spans."""
    with pytest.raises(ValueError, match=r"mesh_slices=2 but the devices belong to 1 processes"):
        sharding.make_mesh(8, fsdp=2, slices=2)


def test_fsdp_shards_only_large_divisible_leaves():
    mesh = sharding.make_mesh(8)
    big = sharding.leaf_sharding((3, 3, 64, 128), mesh, min_size=1000)
    assert big.spec == P(None, None, None, ("data", "fsdp"))  # fsdp = 1: over all devices
    small = sharding.leaf_sharding((16,), mesh, min_size=1000)
    assert small.spec == P()
    odd = sharding.leaf_sharding((3, 3, 7, 9), mesh, min_size=1)
    assert odd.spec == P()
    two_axis = sharding.make_mesh(8, fsdp=4)
    assert sharding.leaf_sharding((3, 3, 6, 12), two_axis, min_size=1).spec == P(
        None, None, None, "fsdp"
    )  # 12 divides by 4 (the fsdp axis), not by 8: split over fsdp only


def test_put_global_places_a_host_array_shard_by_shard():
    mesh = sharding.make_mesh(8, fsdp=2)
    x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    placed = sharding.put_global(x, sharding.batch_sharding(mesh))
    np.testing.assert_array_equal(np.asarray(placed), x)
    assert placed.sharding.spec == P(("data", "fsdp"))
    padded, n = sharding.pad_to_devices(x[:5], 5, mesh)
    assert n == 5 and padded.shape == (8, 3)
    np.testing.assert_array_equal(np.asarray(padded)[5:], np.repeat(x[4:5], 3, axis=0))
