"""The compiled training step shared by every single-objective model family.

A family supplies ``loss_fn(params, batch, key, step) -> (per_example_loss, terms,
state_updates)``; the step averages over the global batch, differentiates, applies the
optax update and the EMA, and returns scalar metrics. It is a pure function of (state,
batch), so ``jax.jit`` with shardings turns it into a data-parallel (or FSDP) step with no
per-device code.

Mixed precision (``compute_dtype``, :mod:`jaxgen.core.precision`): the loss is traced inside
a compute-dtype scope, so the networks it builds compute in bfloat16, while the per-example
loss and every floating term are cast to float32 before any reduction; parameters,
gradients, optimizer state and EMA stay float32.

Non-gradient state (an EMA codebook, running statistics of codes) lives in named top-level
entries of the parameter dict, ``state_collections``: the loss sees them through
``stop_gradient``, the optimizer's change to them is discarded, and they take the values
the loss returns in ``state_updates`` (computed from the whole global batch, since the
loss sees the whole sharded batch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxgen.core.precision import cast_floating, compute_dtype_scope, resolve_compute_dtype
from jaxgen.engine.ema import ema_decay_at, ema_update
from jaxgen.engine.state import TrainState

LossFn = Callable[
    [Any, Any, jax.Array, jax.Array], tuple[jax.Array, dict[str, jax.Array], dict[str, Any]]
]


Optimizer = optax.GradientTransformation | Mapping[str, optax.GradientTransformation]


def init_optimizer_state(tx: Optimizer, params: Any) -> Any:
    """``tx.init(params)``, or for one optimizer per player (a mapping from top-level
    parameter names to optimizers) ``{name: tx[name].init(params[name])}``."""
    if isinstance(tx, optax.GradientTransformation):
        return tx.init(params)
    return {name: t.init(params[name]) for name, t in tx.items()}


def init_train_state(
    init_params: Callable[..., Any],
    tx: Optimizer,
    *,
    seed: int,
    init_batch: Mapping[str, Any] | None = None,
) -> TrainState:
    """Fresh state: params from ``init_params(key)`` (``init_params(key, init_batch)`` when an
    initialisation batch is given), EMA = params, step 0; ``tx`` is one optimizer or one per
    player (see :func:`init_optimizer_state`)."""
    init_key, run_key = jax.random.split(jax.random.key(seed))
    params = init_params(init_key) if init_batch is None else init_params(init_key, init_batch)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=init_optimizer_state(tx, params),
        ema_params=jax.tree.map(jnp.copy, params),
        rng=jax.random.key_data(run_key),
    )


def all_finite(tree: Any) -> jax.Array:
    """True when every floating-point value of ``tree`` is finite (integer leaves ignored)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if not leaves:
        return jnp.array(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def call_loss(
    loss_fn: LossFn,
    params: Any,
    batch: Any,
    key: jax.Array,
    step: jax.Array,
    *,
    compute_dtype: Any = None,
) -> tuple[jax.Array, dict[str, jax.Array], dict[str, Any]]:
    """``loss_fn(params, batch, key, step)`` traced in ``compute_dtype``
    (:func:`jaxgen.core.precision.compute_dtype_scope`; None: as the parameters).

    With a compute dtype, the per-example loss and the floating terms come back float32, so
    every reduction of them (the batch mean, the metrics) is a float32 sum, and floating
    state updates come back float32, like the parameters they replace. Without one (None or
    float32) this is ``loss_fn(params, batch, key, step)`` as it is, its networks in their
    parameters' dtype even inside an enclosing scope."""
    compute_dtype = resolve_compute_dtype(compute_dtype)
    with compute_dtype_scope(compute_dtype):
        per_example, terms, state_updates = loss_fn(params, batch, key, step)
    if compute_dtype is None:
        return per_example, terms, state_updates
    return (
        cast_floating(per_example, jnp.float32),
        cast_floating(terms, jnp.float32),
        cast_floating(state_updates, jnp.float32),
    )


def make_train_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    ema_decay: float,
    state_collections: tuple[str, ...] = (),
    compute_dtype: Any = None,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
    """Build ``step(state, batch) -> (state, metrics)`` (not yet jitted).

    ``loss_fn(params, batch, key, step)`` returns ``(per_example, terms, state_updates)``;
    ``state_updates`` maps names in ``state_collections`` to their new values (see the
    module docstring); a name outside ``state_collections`` is an error.

    Metrics are global-batch means of the loss and of each named term, the gradient's
    global norm, the learning-rate-free update norm, and ``finite`` (1.0 when the loss,
    the gradient and the update are finite), which the trainer uses to stop on NaN/Inf.

    ``compute_dtype`` (None, ``"float32"`` or ``"bfloat16"``): the dtype the networks in the
    loss compute in (module docstring); the reductions and all state stay float32.
    """
    resolve_compute_dtype(compute_dtype)  # a bad name fails here, not when first traced

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        key = state.step_key()

        def objective(params):
            if state_collections:
                params = {
                    k: jax.lax.stop_gradient(v) if k in state_collections else v
                    for k, v in params.items()
                }
            per_example, terms, state_updates = call_loss(
                loss_fn, params, batch, key, state.step, compute_dtype=compute_dtype
            )
            return jnp.mean(per_example), (terms, state_updates)

        (loss, (terms, state_updates)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params
        )
        unknown = set(state_updates) - set(state_collections)
        if unknown:
            raise ValueError(
                f"the loss updated {sorted(unknown)}, which are not state collections "
                f"{state_collections}"
            )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if state_updates:
            params = {**params, **state_updates}
        ema = ema_update(state.ema_params, params, decay=ema_decay_at(state.step, decay=ema_decay))
        grad_norm = optax.tree.norm(grads)
        update_norm = optax.tree.norm(updates)
        # An update whose norm overflows (a diverging learning rate) is as fatal as a NaN loss:
        # stopping here keeps parameters near 1e30 out of every checkpoint.
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(update_norm)
        batch_finite = all_finite(batch)  # a NaN in the data stops the run at its step, even
        # where a loss would hide it (rounding NaN images to levels gives a finite loss)
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "update_norm": update_norm,
            "finite": (finite & batch_finite).astype(jnp.float32),
            "batch_finite": batch_finite.astype(jnp.float32),
        }
        for name, value in terms.items():
            if jnp.issubdtype(value.dtype, jnp.floating):
                metrics[name] = jnp.mean(value)
        new_state = TrainState(
            step=state.step + 1,
            params=params,
            opt_state=opt_state,
            ema_params=ema,
            rng=state.rng,
        )
        return new_state, metrics

    return step
