"""Drawing many samples in compiled chunks, the same way for every recipe.

Example ``i`` of a draw depends only on the key and ``i``: every chunk calls
``recipe.sample(params, key, chunk, first_index=start)`` with the *same* key, and the
recipe gives example ``start + j`` the key ``core.example_keys(key, chunk, start=start)[j]``.
So a draw of 64 samples in chunks of 16 equals one chunk of 64, on one device or eight.

A chunk is a multiple of the number of devices (each device draws a slice); the last chunk
is drawn whole and cut, so the sampler compiles once.

``traced_options`` are options passed to the compiled draw as *arguments* (their array
leaves; anything else in them, e.g. a function, stays static): a guidance scale given this
way is changed per call (``sampler(params, key, guidance_scale=3.0)``) without compiling
again, since jit keys its cache on shapes and dtypes, not values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.engine import distributed, progress, sharding
from jaxgen.engine.recipe import Recipe, sample_array

# ``condition(indices) -> {name: rows}``: the conditioning rows of the examples ``indices``.
ConditionFn = Callable[[np.ndarray], Mapping[str, np.ndarray]]


class ChunkedSampler:
    """``sampler(params, key) -> (num_samples, *event)`` NumPy samples, drawn in jitted chunks.

    Args:
      recipe: the recipe whose ``sample`` is called.
      num_samples: how many samples one call returns.
      batch_size: the largest chunk (rounded up to a multiple of the devices).
      mesh: the device mesh (default: all devices).
      condition: ``condition(indices)`` gives the conditioning arrays of those examples
        (recipes with a ``sample_condition_split``, class labels); None for none.
      traced_options: options of ``recipe.sample`` whose numbers (array leaves) are jit
        arguments, with their default values; ``__call__`` may override them with values of
        the same structure, shapes and dtypes (e.g. ``{"guidance_scale": 1.0}``; a
        ``classifier=(log_prob_fn, params)`` pair keeps ``log_prob_fn`` static).
      **options: static keyword options of ``recipe.sample`` (sampler, num_steps, ...).
    """

    def __init__(
        self,
        recipe: Recipe,
        *,
        num_samples: int,
        batch_size: int,
        mesh: jax.sharding.Mesh | None = None,
        condition: ConditionFn | None = None,
        traced_options: Mapping[str, Any] | None = None,
        **options: Any,
    ):
        if num_samples < 1 or batch_size < 1:
            raise ValueError(
                f"num_samples and batch_size must be >= 1, got {num_samples} and {batch_size}"
            )
        self.mesh = mesh or sharding.make_mesh()
        devices = self.mesh.size
        self.num_samples = num_samples
        self.chunk = -(-min(batch_size, num_samples) // devices) * devices
        self.condition = condition
        overlap = sorted(set(options) & set(traced_options or {}))
        if overlap:
            raise ValueError(f"options {overlap} are given both static and traced")
        self._traced, self._static = _split_traced(dict(traced_options or {}))
        static = self._static
        chunk = self.chunk

        def draw(params, key, first_index, cond, traced):
            kwargs = dict(options)
            kwargs.update(_join_traced(traced, static))
            if cond is not None:
                kwargs["condition"] = cond
            out = recipe.sample(params, key, chunk, first_index=first_index, **kwargs)
            return sample_array(out)

        self._draw = jax.jit(draw, out_shardings=sharding.output_sharding(chunk, self.mesh))

    def __call__(
        self,
        params: Any,
        key: jax.Array,
        *,
        progress_desc: str | None = None,
        **traced_overrides: Any,
    ) -> np.ndarray:
        """``num_samples`` samples; ``traced_overrides`` replace values of ``traced_options``
        (same structure, shapes and dtypes, so nothing is compiled again). With
        ``progress_desc``, a bar on stderr counts the samples (with an ETA from the second
        chunk on; one chunk: the seconds it has taken), see :mod:`jaxgen.engine.progress`."""
        traced = self._traced
        if traced_overrides:
            traced = self._override(traced_overrides)
        params = _on_mesh(params, self.mesh)
        starts = range(0, self.num_samples, self.chunk)

        def chunk_at(start: int) -> np.ndarray:
            cond = None
            if self.condition is not None:
                rows = self.condition(start + np.arange(self.chunk))
                cond = {
                    k: sharding.put_global(np.asarray(v), sharding.batch_sharding(self.mesh))
                    for k, v in rows.items()
                }
            return distributed.to_host(self._draw(params, key, jnp.int32(start), cond, traced))

        if progress_desc is None:
            parts = [chunk_at(start) for start in starts]
        elif len(starts) == 1:
            parts = [progress.ticker(lambda: chunk_at(0), progress_desc)]
        else:
            parts = []
            pbar = progress.bar(self.num_samples, progress_desc, unit="sample")
            with pbar, progress.ticking(pbar):
                for start in starts:
                    parts.append(chunk_at(start))
                    pbar.update(min(self.chunk, self.num_samples - start))
        return np.concatenate(parts, axis=0)[: self.num_samples]

    def _override(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(self._traced))
        if unknown:
            raise ValueError(
                f"{unknown} are not traced options of this sampler "
                f"(traced_options: {sorted(self._traced) or 'none'})"
            )
        traced = dict(self._traced)
        for name, value in overrides.items():
            new, static = _split_traced({name: value})
            if not _same_static(static[name], self._static[name]):
                raise ValueError(
                    f"traced option {name!r}: the override changes its structure or its "
                    "static parts (functions); build another ChunkedSampler for that"
                )
            ref = self._traced[name]
            leaves = jax.tree.leaves(new[name])
            refs = jax.tree.leaves(ref)
            cast = [_strong_array(v).astype(r.dtype) for v, r in zip(leaves, refs, strict=True)]
            for v, r in zip(cast, refs, strict=True):
                if v.shape != r.shape:
                    raise ValueError(
                        f"traced option {name!r}: shape {v.shape} differs from {r.shape}"
                    )
            traced[name] = jax.tree.unflatten(jax.tree.structure(ref), cast)
        return traced


def _is_number(leaf: Any) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, int, float)) and not isinstance(
        leaf, bool
    )


def _strong_array(value: Any) -> jax.Array:
    """``value`` as a JAX array that is not weakly typed (a Python float's array is), so a
    later value of the same dtype and shape hits the same compiled draw."""
    if isinstance(value, jax.Array):
        return jax.lax.convert_element_type(value, value.dtype) if value.weak_type else value
    return jnp.asarray(np.asarray(value))


def _split_traced(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(traced, static)``: per option, its numeric leaves as arrays (a pytree with None in
    place of the static leaves) and ``(treedef, static leaves)``."""
    traced, static = {}, {}
    for name, value in options.items():
        leaves, treedef = jax.tree.flatten(value)
        numbers = [_strong_array(v) if _is_number(v) else None for v in leaves]
        others = tuple(None if _is_number(v) else v for v in leaves)
        traced[name] = numbers
        static[name] = (treedef, others)
    return traced, static


def _join_traced(traced: Mapping[str, Any], static: Mapping[str, Any]) -> dict[str, Any]:
    """The options again, from :func:`_split_traced`'s two halves."""
    joined = {}
    for name, numbers in traced.items():
        treedef, others = static[name]
        leaves = [n if o is None else o for n, o in zip(numbers, others, strict=True)]
        joined[name] = jax.tree.unflatten(treedef, leaves)
    return joined


def _same_static(a: Any, b: Any) -> bool:
    return a[0] == b[0] and all(x is y or x == y for x, y in zip(a[1], b[1], strict=True))


def _on_mesh(params: Any, mesh: jax.sharding.Mesh) -> Any:
    """``params`` as they are when they already live on ``mesh``'s devices (sharded or not),
    else replicated onto it (e.g. parameters of an 8-device run sampled on one device)."""
    devices = set(mesh.devices.flat)
    leaves = jax.tree.leaves(params)
    if all(getattr(x, "sharding", None) and x.sharding.device_set == devices for x in leaves):
        return params
    if all(getattr(x, "is_fully_addressable", True) for x in leaves):
        return jax.device_put(params, sharding.replicated(mesh))
    # Across processes: gather, then place (each process fills its own devices).
    return jax.tree.map(
        lambda x: sharding.put_global(distributed.to_host(x), sharding.replicated(mesh)), params
    )
