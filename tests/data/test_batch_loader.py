"""BatchLoader: epochs without replacement, resume, sharding, multi-process slicing,
transform randomness, prefetching and errors."""

from __future__ import annotations

import threading

import jax
import numpy as np
import pytest

from jaxgen.data import ArraySource, BatchLoader, random_horizontal_flip


def _mesh():
    return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _index_source(n, image_shape=(4, 4, 1)):
    """Row i holds index i, and an image whose pixels encode i (so flips are visible)."""
    ids = np.arange(n, dtype=np.int32)
    h, w, c = image_shape
    cols = np.arange(w, dtype=np.float32)[None, None, :, None]
    images = np.broadcast_to(ids[:, None, None, None] * 100 + cols, (n, h, w, c))
    return ArraySource({"id": ids, "image": np.ascontiguousarray(images, dtype=np.float32)})


def test_epoch_visits_every_index_once_and_drops_the_remainder():
    n, b = 103, 10
    loader = BatchLoader(_index_source(n), global_batch_size=b, seed=5, prefetch=0)
    assert loader.steps_per_epoch == 10
    for epoch in range(2):
        steps = range(epoch * 10, epoch * 10 + 10)
        seen = np.concatenate([loader.host_batch_at(s)["id"] for s in steps])
        assert seen.size == 100 and np.unique(seen).size == 100  # no repeats
        perm = np.random.default_rng([5, epoch]).permutation(n)
        np.testing.assert_array_equal(seen, perm[:100])  # the documented order
        dropped = set(range(n)) - set(seen.tolist())
        assert dropped == set(perm[100:].tolist())
    # consecutive epochs use different orders
    assert not np.array_equal(loader.indices_at(0), loader.indices_at(10))


def test_batches_are_a_pure_function_of_seed_and_step():
    src = _index_source(64)
    a = BatchLoader(src, global_batch_size=16, seed=11, prefetch=0)
    b = BatchLoader(src, global_batch_size=16, seed=11, prefetch=2)  # a "resumed" run
    for step in (0, 3, 4, 9, 123):  # within and across epochs (4 steps per epoch)
        np.testing.assert_array_equal(a.batch_at(step)["id"], b.batch_at(step)["id"])
    other_seed = BatchLoader(src, global_batch_size=16, seed=12)
    assert not np.array_equal(a.indices_at(0), other_seed.indices_at(0))
    # iterate(start) yields exactly batch_at(s) from s = start on
    got = list(b.iterate(6, num_steps=5))
    assert [s for s, _ in got] == list(range(6, 11))
    for step, batch in got:
        np.testing.assert_array_equal(np.asarray(batch["id"]), np.asarray(a.batch_at(step)["id"]))
    sync = list(a.iterate(6, num_steps=5))  # prefetch=0 path agrees
    for (s1, x1), (s2, x2) in zip(sync, got, strict=True):
        assert s1 == s2
        np.testing.assert_array_equal(np.asarray(x1["image"]), np.asarray(x2["image"]))


def test_mesh_batch_is_sharded_over_8_devices_and_matches_unsharded():
    src = _index_source(100)
    mesh = _mesh()
    sharded = BatchLoader(src, global_batch_size=32, seed=2, mesh=mesh)
    plain = BatchLoader(src, global_batch_size=32, seed=2)
    for step in (0, 5):
        batch = sharded.batch_at(step)
        ref = plain.batch_at(step)
        host = plain.host_batch_at(step)
        for key in ("id", "image"):
            arr = batch[key]
            assert arr.shape == host[key].shape
            assert arr.sharding.spec == jax.sharding.PartitionSpec("data")
            assert len(arr.sharding.device_set) == 8
            shards = arr.addressable_shards
            assert len(shards) == 8
            assert {s.data.shape[0] for s in shards} == {4}
            for shard in shards:
                np.testing.assert_array_equal(np.asarray(shard.data), host[key][shard.index])
            covered = sorted(s.index[0].start for s in shards)
            assert covered == list(range(0, 32, 4))
            np.testing.assert_array_equal(np.asarray(arr), np.asarray(ref[key]))
    # the sharded batch feeds a jitted data-parallel computation as is
    total = jax.jit(lambda x: x.sum())(sharded.batch_at(0)["id"])
    assert int(total) == int(plain.host_batch_at(0)["id"].sum())


def test_two_simulated_processes_cover_the_global_batch():
    src = _index_source(90)
    single = BatchLoader(src, global_batch_size=12, seed=7)
    parts = [
        BatchLoader(src, global_batch_size=12, seed=7, process_index=p, process_count=2)
        for p in range(2)
    ]
    for step in (0, 7, 8):  # 7 steps per epoch
        halves = [p.host_batch_at(step) for p in parts]
        assert all(h["id"].shape == (6,) for h in halves)
        whole = single.host_batch_at(step)
        for key in whole:
            np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key])
    # the overrides simulate other hosts; assembling global arrays needs the real layout
    with pytest.raises(RuntimeError, match="real process layout"):
        BatchLoader(
            src, global_batch_size=16, seed=0, mesh=_mesh(), process_index=1, process_count=2
        ).batch_at(0)


def test_transform_rng_is_a_function_of_seed_step_and_process():
    src = _index_source(64)
    seen = []

    def record(batch, rng):
        seen.append(rng.integers(0, 2**31, size=4))
        return batch

    def loader(**kw):
        return BatchLoader(src, global_batch_size=8, seed=3, transform=record, **kw)

    loader().host_batch_at(5)
    loader().host_batch_at(5)  # a fresh instance: same draws
    loader().host_batch_at(6)
    BatchLoader(src, global_batch_size=8, seed=4, transform=record).host_batch_at(5)
    loader(process_index=1, process_count=2).host_batch_at(5)
    np.testing.assert_array_equal(seen[0], seen[1])
    for other in seen[2:]:
        assert not np.array_equal(seen[0], other)
    # and it is a different stream from the shuffling ([seed, epoch])
    assert not np.array_equal(
        loader().transform_rng(0).permutation(64), np.random.default_rng([3, 0]).permutation(64)
    )


def test_random_horizontal_flip():
    src = _index_source(256, image_shape=(2, 5, 3))
    plain = BatchLoader(src, global_batch_size=128, seed=0)
    flipped = BatchLoader(src, global_batch_size=128, seed=0, transform=random_horizontal_flip)
    before = plain.host_batch_at(3)
    after = flipped.host_batch_at(3)
    np.testing.assert_array_equal(after["id"], before["id"])  # other keys untouched
    mirrored = np.all(after["image"] == before["image"][:, :, ::-1, :], axis=(1, 2, 3))
    same = np.all(after["image"] == before["image"], axis=(1, 2, 3))
    assert np.all(mirrored ^ same)  # each example is either mirrored or left alone
    assert 40 < mirrored.sum() < 88  # about half (binomial(128, 1/2) sd = 5.7)
    np.testing.assert_array_equal(flipped.host_batch_at(3)["image"], after["image"])
    # the flips are exactly those the step's rng asks for, and the input is not modified
    batch = src.get(plain.host_indices_at(3))
    copy = {k: v.copy() for k, v in batch.items()}
    out = random_horizontal_flip(batch, flipped.transform_rng(3))
    np.testing.assert_array_equal(out["image"], after["image"])
    np.testing.assert_array_equal(batch["image"], copy["image"])


def test_prefetch_thread_exception_reaches_the_caller():
    class Boom(RuntimeError):
        pass

    class FailingSource:
        def __init__(self):
            self.inner = _index_source(40)
            self.calls = 0

        def __len__(self):
            return len(self.inner)

        def get(self, indices):
            self.calls += 1
            if self.calls == 3:
                raise Boom("cannot read record")
            return self.inner.get(indices)

    loader = BatchLoader(FailingSource(), global_batch_size=4, seed=0, prefetch=2)
    steps = []
    with pytest.raises(Boom, match="cannot read record"):
        for step, _ in loader.iterate(10):
            steps.append(step)
    assert steps == [10, 11]
    assert not [t for t in threading.enumerate() if t.name == "BatchLoader-prefetch"]


def test_prefetch_thread_stops_when_the_iterator_is_closed():
    loader = BatchLoader(_index_source(40), global_batch_size=4, seed=0, prefetch=3)
    it = loader.iterate()  # endless
    first = [next(it)[0] for _ in range(3)]
    assert first == [0, 1, 2]
    assert [t for t in threading.enumerate() if t.name == "BatchLoader-prefetch"]
    it.close()
    assert not [t for t in threading.enumerate() if t.name == "BatchLoader-prefetch"]


def test_configuration_errors():
    src = _index_source(20)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        BatchLoader(src, global_batch_size=21, seed=0)
    with pytest.raises(ValueError, match="not divisible by the 8 devices"):
        BatchLoader(src, global_batch_size=12, seed=0, mesh=_mesh())
    with pytest.raises(ValueError, match="not divisible by the process count 3"):
        BatchLoader(src, global_batch_size=8, seed=0, process_index=0, process_count=3)
    with pytest.raises(ValueError, match="out of range"):
        BatchLoader(src, global_batch_size=8, seed=0, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="not an axis of the mesh"):
        BatchLoader(src, global_batch_size=8, seed=0, mesh=_mesh(), data_axis="batch")
    with pytest.raises(ValueError, match="seed must be >= 0"):
        BatchLoader(src, global_batch_size=8, seed=-1)
    with pytest.raises(ValueError, match="step must be >= 0"):
        BatchLoader(src, global_batch_size=8, seed=0).batch_at(-1)

    def drop_rows(batch, rng):
        return {k: v[:-1] for k, v in batch.items()}

    with pytest.raises(ValueError, match="expected leading dimension 8"):
        BatchLoader(src, global_batch_size=8, seed=0, transform=drop_rows).host_batch_at(0)


_WORKER = """
import sys
import jax

pid, port = int(sys.argv[1]), int(sys.argv[2])
jax.config.update("jax_num_cpu_devices", 4)
jax.distributed.initialize(
    coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid,
    initialization_timeout=30,
)
import numpy as np
from jaxgen.data import ArraySource, BatchLoader

src = ArraySource({"id": np.arange(100, dtype=np.int32)})
mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
loader = BatchLoader(src, global_batch_size=16, seed=3, mesh=mesh)
replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
total = jax.jit(lambda x: x.sum(), out_shardings=replicated)
for step, batch in loader.iterate(5, num_steps=3):
    ids = batch["id"]
    assert ids.shape == (16,), ids.shape
    shards = sorted(ids.addressable_shards, key=lambda s: s.index[0].start)
    local = np.concatenate([np.asarray(s.data) for s in shards])
    assert np.array_equal(local, loader.indices_at(step)[8 * pid : 8 * (pid + 1)]), local
    assert int(total(ids)) == int(loader.indices_at(step).sum())
print("worker ok", pid)
"""


def test_two_real_processes_assemble_the_global_batch(tmp_path):
    """Two JAX processes (4 CPU devices each) build one global batch from their halves."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(pid), str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for pid in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=90)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for pid, (proc, out) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0 and f"worker ok {pid}" in out, out[-3000:]
