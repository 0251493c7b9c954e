"""Flow samplers driven by the exact velocity reproduce the mixture (two-sample MMD^2 against
exact samples, threshold from exact-vs-exact replicates; a shifted mixture's velocity fails),
converge at their orders, count their evaluations, and draw example i from fold_in(key, i)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import flow_matching as fm
from tests.flow_matching.oracle import BROAD, MIXTURE, WRONG, mmd_to_exact, reference

PATH = fm.LinearPath()
SAMPLERS = {
    "euler": (fm.euler_sample, {"num_steps": 100}),
    "midpoint": (fm.midpoint_sample, {"num_steps": 20}),
    "heun": (fm.heun_sample, {"num_steps": 20}),
    "rk4": (fm.rk4_sample, {"num_steps": 10}),
    "adaptive": (fm.adaptive_sample, {"rtol": 1e-4, "atol": 1e-4}),
}
ORDERS = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


@functools.partial(jax.jit, static_argnames=("name", "wrong"))
def _draw(key, name, wrong=False):
    sampler, options = SAMPLERS[name]
    u = fm.mixture_velocity_fn(WRONG if wrong else MIXTURE, PATH)
    return sampler(u, key, (1000, 2), **options)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_reproduce_the_mixture(name):
    _, _, threshold, _ = reference()
    out = _draw(jax.random.key(5), name)
    assert mmd_to_exact(out.samples) < threshold, name
    if name == "rk4":  # the same check fails for a wrong velocity (negative control)
        assert mmd_to_exact(_draw(jax.random.key(5), name, wrong=True).samples) > threshold
    if name == "adaptive":
        assert 7 <= int(out.nfe) < 1000
    else:
        per_step = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}[name]
        assert out.nfe == per_step * SAMPLERS[name][1]["num_steps"]


def test_fixed_step_solvers_converge_at_their_orders(x64):
    """Error at t = 0 against an RK4 solve on 256 steps, from 32 fixed source points: the
    least-squares slope of log error against log steps is the order (within 0.25); Euler
    fails the order-2 check (negative control). One jitted ``flow_solve`` step per method
    (traced times), looped in Python, so each method compiles once."""
    u = fm.mixture_velocity_fn(BROAD, PATH)
    source = jax.random.normal(jax.random.key(0), (32, 2), jnp.float64)

    @functools.partial(jax.jit, static_argnums=3)
    def one_step(x, t0, t1, method):
        return fm.flow_solve(u, x, t_start=t0, t_end=t1, num_steps=1, method=method).samples

    def solve(n, method):
        x, grid = source, np.linspace(1.0, 0.0, n + 1)
        for t0, t1 in zip(grid[:-1], grid[1:], strict=True):
            x = one_step(x, t0, t1, method)
        return x

    ref = solve(256, "rk4")
    steps = {"euler": (16, 32, 64), "midpoint": (8, 16, 32), "heun": (8, 16, 32), "rk4": (4, 8, 16)}
    slopes = {}
    for method, ns in steps.items():
        errors = [float(jnp.max(jnp.abs(solve(n, method) - ref))) for n in ns]
        slopes[method] = -np.polyfit(np.log(ns), np.log(errors), 1)[0]
    for method, order in ORDERS.items():
        assert abs(slopes[method] - order) < 0.25, slopes
    assert abs(slopes["euler"] - 2) > 0.25, slopes
    # the multi-step scan is the same arithmetic as the stepped loop
    whole = fm.flow_solve(u, source, t_start=1.0, t_end=0.0, num_steps=8, method="heun")
    np.testing.assert_allclose(whole.samples, solve(8, "heun"), rtol=1e-12, atol=1e-12)


# Per-example keys and counted evaluations of these samplers: tests/test_conventions.py
# (jaxgen.flow_matching is one of its namespaces).


def test_given_source_is_transported_and_bad_inputs_are_refused():
    # u = x_source - x_data for the pair (z, z + shift) is the constant -shift: Euler is exact.
    shift = jnp.array([[2.0, -1.0]])
    source = jax.random.normal(jax.random.key(0), (5, 2))
    out = fm.euler_sample(
        lambda x, t: jnp.broadcast_to(-shift, x.shape), None, (5, 2), source=source, num_steps=3
    )
    np.testing.assert_allclose(out.samples, source + shift, rtol=1e-6)
    with pytest.raises(ValueError, match=r"source must have shape \(4, 2\), got \(5, 2\)"):
        fm.rk4_sample(lambda x, t: x, None, (4, 2), source=source)
    with pytest.raises(ValueError, match="num_steps"):
        fm.heun_sample(lambda x, t: x, jax.random.key(0), (4, 2), num_steps=0)
    with pytest.raises(ValueError, match=r"t_min must be a finite number in \[0, 1\], got -0.5"):
        fm.euler_sample(lambda x, t: x, jax.random.key(0), (4, 2), t_min=-0.5)
    with pytest.raises(ValueError, match="method must be one of"):
        fm.flow_solve(lambda x, t: x, source, t_start=1.0, t_end=0.0, num_steps=2, method="rk45")


def test_public_losses_and_samplers_follow_the_shared_conventions():
    """As tests/test_conventions.py checks for the other families: ``shape`` right after
    ``key``, every option keyword-only; losses return ``(per_example (B,), terms)``."""
    import inspect

    for fn in (
        fm.euler_sample,
        fm.midpoint_sample,
        fm.heun_sample,
        fm.rk4_sample,
        fm.adaptive_sample,
        fm.one_step_sample,
    ):
        params = list(inspect.signature(fn).parameters.values())
        names = [p.name for p in params]
        assert names[names.index("key") + 1] == "shape", (fn.__name__, names)
        assert all(p.kind is p.KEYWORD_ONLY for p in params if p.default is not p.empty)
    for fn in (fm.flow_matching_loss, fm.flow_matching_loss_at, fm.distillation_loss):
        params = inspect.signature(fn).parameters.values()
        assert all(p.kind is p.KEYWORD_ONLY for p in params if p.default is not p.empty)
    x = jnp.ones((3, 2))
    for out, terms in (
        fm.flow_matching_loss(lambda y, t: y, PATH, x, jax.random.key(0)),
        fm.distillation_loss(lambda y, t: y, x, x),
    ):
        assert out.shape == (3,) and all(jnp.shape(v)[0] == 3 for v in terms.values())
