"""Optimizer construction: Adam(W) or RMSProp, linear warmup, optional cosine decay, gradient
clipping.

RMSProp (WGAN's optimizer, Arjovsky et al. 2017, Algorithm 1) reads ``optim.b2`` as its
squared-gradient decay (PyTorch's ``alpha``, 0.99 there) and ``optim.eps``."""

from __future__ import annotations

import optax

from jaxgen.config import ConfigError, OptimConfig

OPTIMIZERS = ("adam", "adamw", "rmsprop")
DECAYS = ("constant", "cosine")


def learning_rate_schedule(config: OptimConfig, num_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to ``learning_rate`` over ``warmup_steps``, then constant or
    cosine decay to 0 at ``num_steps`` (DDPM uses 5000 warmup steps and a constant rate)."""
    if config.decay not in DECAYS:
        raise ConfigError(f"optim.decay must be one of {DECAYS}, got {config.decay!r}")
    warmup = max(int(config.warmup_steps), 0)
    if config.decay == "constant":
        if warmup == 0:
            return optax.constant_schedule(config.learning_rate)
        return optax.join_schedules(
            [
                optax.linear_schedule(0.0, config.learning_rate, warmup),
                optax.constant_schedule(config.learning_rate),
            ],
            [warmup],
        )
    return optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, warmup, max(num_steps, warmup + 1), end_value=0.0
    )


def make_optimizer(config: OptimConfig, num_steps: int) -> optax.GradientTransformation:
    """The optax transformation for ``config``: clip (global norm), then Adam, AdamW or
    RMSProp."""
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"optim.optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}")
    if config.learning_rate <= 0:
        raise ConfigError(f"optim.learning_rate must be positive, got {config.learning_rate}")
    schedule = learning_rate_schedule(config, num_steps)
    kwargs = dict(b1=config.b1, b2=config.b2, eps=config.eps)
    if config.optimizer == "rmsprop":
        opt = optax.rmsprop(schedule, decay=config.b2, eps=config.eps, eps_in_sqrt=False)
    elif config.optimizer == "adamw":
        opt = optax.adamw(schedule, weight_decay=config.weight_decay, **kwargs)
    else:
        opt = optax.adam(schedule, **kwargs)
    if config.grad_clip_norm is None:
        return opt
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), opt)
