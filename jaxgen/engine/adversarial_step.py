"""The compiled two-player training step: k discriminator updates per generator update.

Goodfellow et al. (2014, Algorithm 1) alternate ``k`` steps of gradient ascent on the
discriminator with one step on the generator; WGAN (Arjovsky et al. 2017, Algorithm 1) and
WGAN-GP (Gulrajani et al. 2017, Algorithm 1) call it ``n_critic`` (5). Here the whole round
is one compiled function of ``(state, batch)``:

1. the global batch holds ``k`` minibatches of ``B`` examples; minibatch ``j`` is rows
   ``i * k + j`` (so under data parallelism every device already holds its slice of every
   minibatch and the split needs no communication);
2. ``lax.scan`` over the ``k`` minibatches updates the discriminator with its own optax
   optimizer, the generator's parameters held fixed (``stop_gradient``);
3. the generator takes one step with its own optimizer on the last minibatch against the
   updated discriminator;
4. the EMA of all parameters is updated (samples use the EMA generator).

The players' parameters are the top-level entries ``params["generator"]`` and
``params["discriminator"]`` (other entries are left as they are); the optimizer state is
``{"generator": ..., "discriminator": ...}``. Each loss is
``loss_fn(params, minibatch, key, step) -> (per_example, terms, state_updates)``, sees all
parameters, and is differentiated only with respect to its own player. ``state_updates``
maps a player name to a nested dict of that player's non-gradient leaves (spectral-norm
power-iteration vectors) that replace the optimizer's values after the update; updates
for the other player are ignored (a generator loss may call the discriminator without
changing it). ``discriminator_constraint`` maps the discriminator's parameters after each
of its updates (WGAN's weight clipping).

Mixed precision (``compute_dtype``) is as in :mod:`jaxgen.engine.step`: both losses are
traced in the compute dtype, their per-example values, terms and state updates come back
float32 before any reduction, and parameters, optimizer states and the EMA stay float32.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxgen.core.precision import resolve_compute_dtype
from jaxgen.engine.ema import ema_decay_at, ema_update
from jaxgen.engine.state import TrainState
from jaxgen.engine.step import LossFn, all_finite, call_loss

GENERATOR = "generator"
DISCRIMINATOR = "discriminator"
PLAYERS = (GENERATOR, DISCRIMINATOR)


def split_minibatches(batch: Any, num_minibatches: int) -> Any:
    """``(k * B, ...)`` leaves to ``(k, B, ...)``; minibatch ``j`` holds rows ``i * k + j``."""

    def split(leaf):
        if leaf.shape[0] % num_minibatches:
            raise ValueError(
                f"a batch of {leaf.shape[0]} examples does not split into "
                f"{num_minibatches} minibatches"
            )
        b = leaf.shape[0] // num_minibatches
        return jnp.swapaxes(leaf.reshape(b, num_minibatches, *leaf.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def merge_state_updates(params: Any, updates: Any, *, path: str = "") -> Any:
    """``params`` with the leaves named in the nested dict ``updates`` replaced.

    Every name in ``updates`` must exist in ``params``, and a replaced leaf must keep its
    shape and dtype, so a misnamed update is an error rather than a silent no-op."""
    if not isinstance(updates, Mapping):
        if jnp.shape(updates) != jnp.shape(params) or jnp.result_type(updates) != jnp.result_type(
            params
        ):
            raise ValueError(
                f"state update {path or '<root>'} has shape {jnp.shape(updates)} and dtype "
                f"{jnp.result_type(updates)}, the parameter has {jnp.shape(params)} and "
                f"{jnp.result_type(params)}"
            )
        return updates
    if not isinstance(params, Mapping):
        raise ValueError(f"state update {path} is a dict but the parameter is a leaf")
    unknown = set(updates) - set(params)
    if unknown:
        raise ValueError(
            f"state updates {sorted(map(str, unknown))} under {path!r} name no parameter"
        )
    return {
        k: merge_state_updates(v, updates[k], path=f"{path}/{k}") if k in updates else v
        for k, v in params.items()
    }


def _player_update(
    player: str,
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    params: dict[str, Any],
    opt_state: Any,
    batch: Any,
    key: jax.Array,
    step: jax.Array,
    constraint: Callable[[Any], Any] | None,
    compute_dtype: Any = None,
):
    """One optimizer step of ``player`` on its own loss; returns its new parameters,
    optimizer state and metrics."""

    def objective(own):
        full = {k: own if k == player else jax.lax.stop_gradient(v) for k, v in params.items()}
        per_example, terms, state_updates = call_loss(
            loss_fn, full, batch, key, step, compute_dtype=compute_dtype
        )
        return jnp.mean(per_example), (terms, state_updates)

    (loss, (terms, state_updates)), grads = jax.value_and_grad(objective, has_aux=True)(
        params[player]
    )
    unknown = set(state_updates) - set(params)
    if unknown:
        raise ValueError(f"the {player} loss updated unknown parameter entries {sorted(unknown)}")
    updates, opt_state = tx.update(grads, opt_state, params[player])
    own = optax.apply_updates(params[player], updates)
    if player in state_updates:
        own = merge_state_updates(own, state_updates[player], path=player)
    if constraint is not None:
        own = constraint(own)
    metrics = {f"{player}_loss": loss, f"{player}_grad_norm": optax.tree.norm(grads)}
    for name, value in terms.items():
        if jnp.issubdtype(value.dtype, jnp.floating):
            metrics[name] = jnp.mean(value)
    return own, opt_state, metrics


def make_adversarial_train_step(
    discriminator_loss_fn: LossFn,
    generator_loss_fn: LossFn,
    optimizers: Mapping[str, optax.GradientTransformation],
    *,
    discriminator_steps: int = 1,
    ema_decay: float,
    discriminator_constraint: Callable[[Any], Any] | None = None,
    compute_dtype: Any = None,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
    """Build ``step(state, batch) -> (state, metrics)`` (not yet jitted); see the module
    docstring. ``batch`` holds ``discriminator_steps`` minibatches.

    Metrics: ``discriminator_loss`` and the discriminator's terms (means over its ``k``
    updates), ``generator_loss`` and its terms, each player's gradient norm, ``loss`` (the
    discriminator loss, shown on the progress bar), ``grad_norm`` (both players' gradients
    together) and ``finite``. ``compute_dtype``: the dtype the networks in both losses
    compute in (None or ``"float32"``: as the parameters; ``"bfloat16"``).
    """
    resolve_compute_dtype(compute_dtype)  # a bad name fails here, not when first traced
    if discriminator_steps < 1:
        raise ValueError(f"discriminator_steps must be >= 1, got {discriminator_steps}")
    missing = set(PLAYERS) - set(optimizers)
    if missing:
        raise ValueError(f"optimizers needs entries {sorted(missing)}")

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        key = state.step_key()
        d_key, g_key = jax.random.split(key)
        minibatches = split_minibatches(batch, discriminator_steps)
        params = state.params

        def discriminator_round(carry, inputs):
            own, opt_state = carry
            minibatch, round_key = inputs
            own, opt_state, metrics = _player_update(
                DISCRIMINATOR,
                discriminator_loss_fn,
                optimizers[DISCRIMINATOR],
                {**params, DISCRIMINATOR: own},
                opt_state,
                minibatch,
                round_key,
                state.step,
                discriminator_constraint,
                compute_dtype,
            )
            return (own, opt_state), metrics

        carry = (params[DISCRIMINATOR], state.opt_state[DISCRIMINATOR])
        round_keys = jax.random.split(d_key, discriminator_steps)
        if discriminator_steps == 1:
            # One update needs no loop: XLA:CPU runs a scan body (convolutions, batch norm)
            # several times slower than the same ops outside it.
            first = jax.tree.map(lambda m: m[0], minibatches)
            (d_params, d_opt_state), d_metrics = discriminator_round(carry, (first, round_keys[0]))
        else:
            (d_params, d_opt_state), d_metrics = jax.lax.scan(
                discriminator_round, carry, (minibatches, round_keys)
            )
            d_metrics = jax.tree.map(lambda m: jnp.mean(m, axis=0), d_metrics)
        params = {**params, DISCRIMINATOR: d_params}
        last = jax.tree.map(lambda m: m[-1], minibatches)
        g_params, g_opt_state, g_metrics = _player_update(
            GENERATOR,
            generator_loss_fn,
            optimizers[GENERATOR],
            params,
            state.opt_state[GENERATOR],
            last,
            g_key,
            state.step,
            None,
            compute_dtype,
        )
        params = {**params, GENERATOR: g_params}
        ema = ema_update(state.ema_params, params, decay=ema_decay_at(state.step, decay=ema_decay))
        overlap = set(d_metrics) & set(g_metrics)
        if overlap:
            raise ValueError(f"both players' losses name the terms {sorted(overlap)}")
        metrics = {**d_metrics, **g_metrics}
        metrics["loss"] = metrics[f"{DISCRIMINATOR}_loss"]
        metrics["grad_norm"] = jnp.hypot(
            metrics[f"{DISCRIMINATOR}_grad_norm"], metrics[f"{GENERATOR}_grad_norm"]
        )
        metrics["batch_finite"] = all_finite(batch).astype(jnp.float32)
        finite = jnp.isfinite(metrics["grad_norm"]) & all_finite(batch)
        for p in PLAYERS:
            finite &= jnp.isfinite(metrics[f"{p}_loss"])
            if f"{p}_update_norm" in metrics:  # a diverging update is as fatal as a NaN loss
                finite &= jnp.isfinite(metrics[f"{p}_update_norm"])
        metrics["finite"] = finite.astype(jnp.float32)
        new_state = TrainState(
            step=state.step + 1,
            params=params,
            opt_state={GENERATOR: g_opt_state, DISCRIMINATOR: d_opt_state},
            ema_params=ema,
            rng=state.rng,
        )
        return new_state, metrics

    return step
