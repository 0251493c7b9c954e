"""Optimizer schedule and EMA against their definitions."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.config import ConfigError, OptimConfig
from jaxgen.engine.ema import ema_decay_at, ema_update
from jaxgen.engine.optimizer import learning_rate_schedule, make_optimizer


def test_warmup_then_constant():
    sched = learning_rate_schedule(OptimConfig(learning_rate=2e-4, warmup_steps=100), 1000)
    np.testing.assert_allclose(
        [sched(0), sched(50), sched(100), sched(999)], [0, 1e-4, 2e-4, 2e-4], rtol=1e-6
    )


def test_warmup_then_cosine_reaches_zero():
    sched = learning_rate_schedule(
        OptimConfig(learning_rate=1.0, warmup_steps=10, decay="cosine"), 110
    )
    np.testing.assert_allclose(sched(10), 1.0, rtol=1e-6)
    np.testing.assert_allclose(sched(60), 0.5, atol=1e-6)  # half-way through the cosine
    np.testing.assert_allclose(sched(110), 0.0, atol=1e-7)


def test_gradient_clipping_is_applied_before_adam():
    """Two Adam steps with gradients 10x apart: our chain equals Adam fed gradients clipped to
    global norm 1 by hand, and differs from unclipped Adam."""
    import optax

    tx = make_optimizer(OptimConfig(optimizer="adam", learning_rate=0.1, grad_clip_norm=1.0), 10)
    ref, raw = optax.adam(0.1), optax.adam(0.1)
    params = {"w": jnp.zeros(2)}
    grads = [{"w": jnp.array([30.0, 40.0])}, {"w": jnp.array([0.3, -0.4])}]
    s, r, u = tx.init(params), ref.init(params), raw.init(params)
    for g in grads:
        norm = float(jnp.linalg.norm(g["w"]))
        clipped = {"w": g["w"] * min(1.0, 1.0 / norm)}
        up, s = tx.update(g, s, params)
        up_ref, r = ref.update(clipped, r, params)
        up_raw, u = raw.update(g, u, params)
    np.testing.assert_allclose(up["w"], up_ref["w"], rtol=1e-6)
    assert not np.allclose(up["w"], up_raw["w"], rtol=1e-3)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"optimizer": "sgdd"}, "optim.optimizer"),
        ({"decay": "linearr"}, "optim.decay"),
        ({"learning_rate": 0.0}, "positive"),
    ],
)
def test_bad_optimizer_config(bad, match):
    with pytest.raises(ConfigError, match=match):
        make_optimizer(OptimConfig(**bad), 10)


def test_ema_matches_its_recursion():
    ema, p = {"a": jnp.array([1.0, 2.0])}, {"a": jnp.array([3.0, -2.0])}
    out = ema_update(ema, p, decay=0.9)
    np.testing.assert_allclose(
        out["a"], 0.9 * np.array([1.0, 2.0]) + 0.1 * np.array([3.0, -2.0]), rtol=1e-6
    )
    # Warmed-up decay: (1+s)/(10+s) early, the configured value later.
    np.testing.assert_allclose(ema_decay_at(jnp.int32(0), decay=0.999), 0.1, rtol=1e-6)
    np.testing.assert_allclose(ema_decay_at(jnp.int32(10**7), decay=0.999), 0.999, rtol=1e-6)
