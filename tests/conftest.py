"""Test configuration shared by the whole suite.

* Eight simulated CPU devices, so sharding tests run anywhere (set before any JAX op).
* A persistent compilation cache, so a re-run skips most XLA compilation; it caches every
  program, which also pays within one cold run (the same small programs are compiled again by
  later tests and by the other worker). ``JAXGEN_TEST_CACHE=off`` disables it,
  ``JAXGEN_TEST_CACHE_MIN_SECS`` caches only slower compiles.
* XLA's CPU backend without LLVM optimization (``--xla_backend_optimization_level=0``):
  the suite is dominated by compiling many small programs (random initializers above
  all), which this makes 2 to 10 times faster; the numbers computed are the same maths,
  only the generated code runs slower. The CLI subprocesses inherit it.
* Strict rank promotion: silent broadcasting between (B,) and (B, 1) is a classic
  diffusion bug (it turns a per-example weight into a B x B matrix).
* ``x64`` fixture: math oracles run in float64 so their tolerances can be tight.
"""

from __future__ import annotations

import os
import pathlib

import pytest

_XLA_FAST_COMPILE = "--xla_backend_optimization_level=0"
if _XLA_FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_XLA_FAST_COMPILE}".strip()

import jax  # noqa: E402  (after XLA_FLAGS, which XLA reads when its backend starts)

NUM_TEST_DEVICES = 8

jax.config.update("jax_num_cpu_devices", NUM_TEST_DEVICES)
jax.config.update("jax_numpy_rank_promotion", "raise")
_cache = os.environ.get(
    "JAXGEN_TEST_CACHE", str(pathlib.Path(__file__).resolve().parent.parent / ".cache" / "jax")
)
if _cache != "off":
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ.get("JAXGEN_TEST_CACHE_MIN_SECS", "0")),
    )
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield


# The files that take longest on 2 cores (measured with --durations=0), run first: pytest-xdist
# hands out whole files (--dist loadfile) in collection order, so a long file collected last
# (the CLI tests sort late) leaves the other worker idle at the end. Longest first keeps
# both workers busy to the end; the order inside a file, and of all other files, is kept.
SLOW_FILES_FIRST: tuple[str, ...] = (
    "tests/test_multiprocess.py",
    "tests/test_cli.py",
    "tests/recipes/test_vae_recipes.py",
    "tests/test_conventions.py",
    "tests/latent/test_two_stage_runs.py",
    "tests/recipes/test_gan_recipes.py",
    "tests/recipes/test_consistency_recipe.py",
    "tests/recipes/test_likelihood_recipes.py",
    "tests/test_cli_guidance.py",
    "tests/sde/test_likelihood.py",
    "tests/recipes/test_guided_recipes.py",
    "tests/recipes/test_score_sde.py",
    "tests/recipes/test_flow_matching_recipe.py",
    "tests/sde/test_sample_keys.py",
    "tests/test_experiments.py",
    "tests/latent/test_paper_configs.py",
    "tests/sde/test_score_matching.py",
    "tests/sde/test_sde_samplers.py",
    "tests/recipes/test_sequence_recipes.py",
)


def pytest_collection_modifyitems(session, config, items) -> None:
    rank = {path: i for i, path in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
