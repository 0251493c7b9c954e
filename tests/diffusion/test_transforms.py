"""jit / vmap / grad through the loss, the bound and the samplers; bounded tracing."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import diffusion


def _linear_model(params):
    def fn(x, t):
        del t
        bias = jnp.reshape(params["b"], (1,) * (x.ndim - 1) + (-1,))
        return x @ params["w"] + bias

    return fn


def test_ddpm_loss_grad_matches_closed_form(x64):
    """For f(x) = x W + b and the eps loss, d mean(loss) / dW = 2 / (B D) x_t^T (f(x_t) - eps)."""
    sched = diffusion.linear_schedule(100)
    k0, k1, k2 = jax.random.split(jax.random.key(0), 3)
    batch, dim = 32, 4
    x0 = jax.random.normal(k0, (batch, dim), jnp.float64)
    params = {"w": 0.3 * jax.random.normal(k1, (dim, dim), jnp.float64), "b": jnp.ones(dim)}

    @jax.jit
    def mean_loss(params, key):
        loss, terms = diffusion.ddpm_loss(_linear_model(params), sched, x0, key)
        return jnp.mean(loss), terms

    (value, terms), grads = jax.value_and_grad(mean_loss, has_aux=True)(params, k2)
    # Rebuild x_t and eps exactly as ddpm_loss draws them.
    _, k_noise = jax.random.split(k2)
    eps = jax.random.normal(k_noise, x0.shape, jnp.float64)
    xt = diffusion.q_sample(sched, x0, terms["t"], eps)
    resid = xt @ params["w"] + params["b"][None] - eps
    np.testing.assert_allclose(value, np.mean(resid**2), rtol=1e-12)
    np.testing.assert_allclose(grads["w"], 2.0 / (batch * dim) * xt.T @ resid, rtol=1e-10)
    np.testing.assert_allclose(grads["b"], 2.0 / (batch * dim) * resid.sum(0), rtol=1e-10)


def test_loss_and_bound_vmap_over_keys():
    sched = diffusion.linear_schedule(20)
    # Data on the 256-level grid the bound's decoder scores (off-grid data raise).
    x0 = jnp.round((jnp.linspace(-1, 1, 12) + 1.0) * 127.5) / 127.5 - 1.0
    x0 = x0.reshape(3, 2, 2)
    model = _linear_model({"w": 0.5 * jnp.eye(2), "b": jnp.zeros(2)})
    keys = jax.random.split(jax.random.key(1), 4)
    loss = jax.jit(lambda k: diffusion.ddpm_loss(model, sched, x0, k)[0])
    bound = jax.jit(lambda k: diffusion.variational_bound(model, sched, x0, k)[0])
    np.testing.assert_allclose(jax.vmap(loss)(keys), jnp.stack([loss(k) for k in keys]), rtol=1e-6)
    np.testing.assert_allclose(
        jax.vmap(bound)(keys), jnp.stack([bound(k) for k in keys]), rtol=1e-5
    )
    # The bound is differentiable w.r.t. model parameters.
    g = jax.jit(
        jax.grad(
            lambda p: jnp.mean(
                diffusion.variational_bound(_linear_model(p), sched, x0, keys[0], num_levels=None)[
                    0
                ]
            )
        )
    )({"w": 0.5 * jnp.eye(2), "b": jnp.zeros(2)})
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(g))


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_samplers_jit_and_trace_model_a_bounded_number_of_times(sampler):
    sched = diffusion.linear_schedule(200)
    traces = []

    def model(x, t):
        traces.append(x.shape)  # runs once per trace, not per step
        return 0.1 * x

    if sampler == "ancestral":
        run = functools.partial(diffusion.ancestral_sample, model, sched)
        kwargs = {}
        steps = 200
    else:
        run = functools.partial(diffusion.ddim_sample, model, sched)
        kwargs = {"num_steps": 40, "eta": 0.5}
        steps = 40
    jitted = jax.jit(run, static_argnames=("shape", *kwargs))
    out = jitted(jax.random.key(0), shape=(8, 3), **kwargs)
    assert isinstance(out.nfe, int) and out.nfe == steps  # nfe stays a static int under jit
    assert out.samples.shape == (8, 3)
    assert 1 <= len(traces) <= 2, len(traces)
    eager = run(jax.random.key(0), (8, 3), **kwargs)
    np.testing.assert_allclose(out.samples, eager.samples, rtol=1e-5, atol=1e-6)
    # Same static shape: no retrace; a new shape retraces once.
    n = len(traces)
    jitted(jax.random.key(1), shape=(8, 3), **kwargs)
    assert len(traces) == n
    jitted(jax.random.key(1), shape=(4, 3), **kwargs)
    assert len(traces) <= n + 2


def test_variational_bound_traces_model_a_bounded_number_of_times():
    sched = diffusion.linear_schedule(300)
    traces = []

    def model(x, t):
        traces.append(1)
        return 0.1 * x

    jax.jit(lambda x, k: diffusion.variational_bound(model, sched, x, k))(
        jnp.zeros((2, 3)), jax.random.key(0)
    )
    assert 1 <= len(traces) <= 2


def test_samplers_vmap_over_keys():
    sched = diffusion.linear_schedule(30)

    def model(x, t):
        return 0.1 * x

    keys = jax.random.split(jax.random.key(2), 3)

    def sample(k):
        return diffusion.ddim_sample(model, sched, k, (4, 2), num_steps=10, eta=1.0)

    out = jax.vmap(sample)(keys)
    assert out.samples.shape == (3, 4, 2) and out.nfe == 10
    single = jax.jit(sample)
    for i, k in enumerate(keys):
        np.testing.assert_allclose(out.samples[i], single(k).samples, rtol=1e-5, atol=1e-6)
