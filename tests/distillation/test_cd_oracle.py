"""The issue's oracle: a consistency function trained by consistency distillation with the
exact teacher on a 1-D Gaussian mixture matches the exact probability-flow map.

Data: ``0.4 N(-1, 0.5^2) + 0.6 N(1, 0.5^2)``; teacher: its exact denoiser ``E[x_0 | x~]``
(:class:`tests.distillation.oracle.Mixture1D`); levels: ``N = 20`` Karras levels on
``[0.002, 4]``; Heun teacher steps; squared metric; target = the student under stop-gradient
(iCT's choice). Reference: the probability-flow map from ``s`` to ``sigma_min`` by a fine Heun
solve (256 steps) with the exact denoiser (a mixture's flow has no closed form).

Student: ``f = consistency_function(D_student)`` with ``D_student = D_teacher + g(x~, s)``,
``g`` a table per level of a piecewise-linear function of ``x~ / sqrt(s^2 + 1/4)`` (25 knots on
``[-4, 4]``, linear beyond), zero at the start: the student starts as the teacher, as in CD.
A small MLP trained by Adam for a few hundred steps stayed at 0.08-0.2 RMS error at s >= 1
here (its fitting error, not the loss's); the table is linear in its parameters and levels do
not share them, so each iteration minimises the quadratic CD loss of a fresh batch exactly (one
Newton step, its banded Hessian read off three Hessian-vector products), the mean of the last
half of the iterates is kept, and the test measures the loss's fixed point: the composition of
the teacher's Heun steps down the levels.

Tolerance: RMS error over ``x~ ~ p_s`` at most ``TOL = 0.03`` at every tested ``s`` (3% of the
data's std ~1.1): the composed Heun steps differ from the exact map by <= 0.01 at these levels
(second order in the level gaps; asserted below), and the table's interpolation error and
batch noise, compounded over 19 bootstrapped levels, add ~0.015 at ``s = 4``. Measured: 0.002,
0.008, 0.023 at ``s`` = 0.41, 1.40, 4.0 (the composed teacher alone: 0.001, 0.005, 0.008).
Negative control: the starting point (the teacher's one-step denoiser) misses by more than
``10 TOL`` at ``s > 1`` (0.42 and 0.82).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.distillation import (
    consistency_distillation_loss,
    consistency_function,
    karras_levels,
    probability_flow_step,
)
from tests.distillation.oracle import Mixture1D

MIX = Mixture1D([0.4, 0.6], [-1.0, 1.0], [0.25, 0.25])
SMIN, SMAX, N, KNOTS, BATCH, ITERS = 0.002, 4.0, 20, 25, 4096, 30
LEVELS = karras_levels(N, sigma_min=SMIN, sigma_max=SMAX)
TOL = 0.03
RIDGE = 1e-6


def student_denoiser(table: jax.Array):
    """``D_teacher + table[level, hat(z)]``, ``z = x~ / sqrt(s^2 + 1/4)``."""

    def denoiser(x, sigma):
        level = jnp.argmin(jnp.abs(jnp.log(sigma)[:, None] - jnp.log(LEVELS)[None, :]), axis=1)
        pos = (x[:, 0] / jnp.sqrt(sigma**2 + 0.25) + 4.0) / 8.0 * (KNOTS - 1)
        i = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, KNOTS - 2)
        w = pos - i  # outside [0, 1] beyond the ends: linear extrapolation
        g = (1.0 - w) * table[level, i] + w * table[level, i + 1]
        return MIX.denoiser(x, sigma) + g[:, None]

    return denoiser


def student(table):
    return consistency_function(student_denoiser(table), sigma_min=SMIN)


def cd_loss(table, target_table, key):
    k_data, k_loss = jax.random.split(key)
    x0 = MIX.sample(k_data, BATCH)
    per_example, _ = consistency_distillation_loss(
        student(table), student(target_table), MIX.denoiser, x0, k_loss, levels=LEVELS
    )
    return jnp.mean(per_example)


@jax.jit
def train(key):
    """Fixed-point iteration ``table <- argmin_t CD(t; target = table)`` on a fresh batch each
    time: the loss is quadratic in ``t`` with a banded Hessian, so one Newton step minimises it.
    Returns the mean of the last half of the iterates (averaging out the batches' noise)."""
    colors = [
        jnp.broadcast_to(jnp.arange(KNOTS) % 3 == c, (N, KNOTS)).astype(float) for c in range(3)
    ]
    rows, cols = jnp.arange(KNOTS)[:, None], jnp.arange(KNOTS)[None, :]
    band = (jnp.abs(rows - cols) <= 1)[None]

    def newton(table, k):
        def grad(t):
            return jax.grad(cd_loss)(t, table, k)

        hv = [jax.jvp(grad, (table,), (v,))[1] for v in colors]  # (N, KNOTS) each
        # the blocks are tridiagonal: column j's entries (rows j-1, j, j+1) sit in hv[j % 3]
        stacked = jnp.stack(hv, axis=-1)[:, :, jnp.arange(KNOTS) % 3]  # (N, rows, cols)
        hess = jnp.where(band, stacked, 0.0) + RIDGE * jnp.eye(KNOTS)[None]
        step = jnp.linalg.solve(hess, grad(table)[..., None])[..., 0]
        return table - step, (table, cd_loss(table, table, k))

    _, (tables, losses) = jax.lax.scan(newton, jnp.zeros((N, KNOTS)), jax.random.split(key, ITERS))
    return jnp.mean(tables[ITERS // 2 :], axis=0), losses


@pytest.fixture(scope="module")
def trained():
    table, losses = train(jax.random.key(0))
    return table, np.asarray(losses)


@jax.jit
def _reference(x, s):
    return MIX.flow(x, s, SMIN)


def _composed_teacher(x, k):
    for j in range(k, 0, -1):
        b = x.shape[:1]
        x, _ = probability_flow_step(
            MIX.denoiser, x, jnp.full(b, LEVELS[j]), jnp.full(b, LEVELS[j - 1])
        )
    return x


@pytest.mark.parametrize("k", [11, 15, 19])  # s = 0.41, 1.40, 4.0
def test_trained_consistency_function_matches_the_probability_flow_map(trained, k):
    table, losses = trained
    assert losses[-1] < 0.05 * losses[0]
    s = float(LEVELS[k])
    x = MIX.sample(jax.random.key(5), 2000) + s * jax.random.normal(jax.random.key(6), (2000, 1))
    reference = _reference(x, s)
    sigma = jnp.full((2000,), s)

    def rms(y):
        return float(jnp.sqrt(jnp.mean((y - reference) ** 2)))

    error = rms(student(table)(x, sigma))
    assert rms(_composed_teacher(x, k)) < 0.5 * TOL  # the levels' discretisation error
    assert error < TOL, (s, error)
    if s > 1.0:  # negative control: the starting point (teacher's one-step denoiser)
        assert rms(student(jnp.zeros_like(table))(x, sigma)) > 10 * TOL
