"""Samples depend only on the seed and the example's index (issue 12, core.sampling), for
every sampler of :mod:`jaxgen.sde.samplers`.

With the exact score of the 2-D test mixture (Gaussian data for colorization): a draw of 16
with one key equals the first 16 rows of a draw of 64 with the same key, and a draw with the
per-example keys ``core.example_keys(key, 16, start=16)`` equals rows 16..31 (for inpainting
and colorization, of the data rows 16..31). The comparison is exact (``assert_array_equal``):
every random number of an example comes from its own key, and on the CPU backend the
oracle's batched arithmetic gives each row the same bits at any batch size (measured for
every sampler here; a backend whose matrix products round differently with the batch size
would need ``allclose(rtol=1e-6, atol=1e-6)``). The adaptive probability-flow sampler
solves each example on its own, so it is batch-independent too.

Negative controls, through the same comparison: the ``batch_mean`` Langevin step (which
couples the examples of a batch by design) and a joint adaptive solve of the whole batch
(one step-size control for all) give other rows at another batch size; a draw with another
key differs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import core
from jaxgen.sde import VESDE, VPSDE, mixture_score_fn
from jaxgen.sde.samplers import (
    dpm_solver_sample,
    edm_sample,
    euler_maruyama_sample,
    pc_colorize,
    pc_inpaint,
    pc_sample,
    probability_flow_sample,
    probability_flow_solve,
)
from jaxgen.sde.samplers.euler_maruyama import prior_and_step_keys
from tests.diffusion.mixture_oracle import MIXTURE

TOL = dict(rtol=1e-6, atol=1e-6)
DATA = jax.random.normal(jax.random.key(5), (64, 2))  # inpainting: only column 0 is read
GRAY = jax.random.uniform(jax.random.key(6), (64, 2, 2), minval=-1.0, maxval=1.0)

SAMPLERS = {  # (score_fn, sde, key, batch, index of the first example)
    "euler_maruyama": lambda s, sde, k, n, i: euler_maruyama_sample(
        s, sde, k, (n, 2), num_steps=10
    ),
    "pc": lambda s, sde, k, n, i: pc_sample(s, sde, k, (n, 2), num_steps=10, num_corrector_steps=2),
    "pc_ancestral": lambda s, sde, k, n, i: pc_sample(
        s, sde, k, (n, 2), num_steps=10, predictor="ancestral", corrector="none"
    ),
    "ode_euler": lambda s, sde, k, n, i: probability_flow_sample(
        s, sde, k, (n, 2), method="euler", num_steps=10
    ),
    "ode_heun": lambda s, sde, k, n, i: probability_flow_sample(
        s, sde, k, (n, 2), method="heun", num_steps=5, denoise=True
    ),
    "ode_adaptive": lambda s, sde, k, n, i: probability_flow_sample(
        s, sde, k, (n, 2), method="adaptive", rtol=1e-3, atol=1e-3
    ),
    "dpm_solver": lambda s, sde, k, n, i: dpm_solver_sample(
        s, sde, k, (n, 2), num_steps=8, order=3
    ),
    "edm_churn": lambda s, sde, k, n, i: edm_sample(s, sde, k, (n, 2), num_steps=6, churn=5.0),
    "pc_inpaint": lambda s, sde, k, n, i: pc_inpaint(
        s, sde, k, (n, 2), data=_rows_of(DATA, i, n), mask=jnp.array([1.0, 0.0]), num_steps=10
    ),
    "pc_colorize": lambda s, sde, k, n, i: pc_colorize(
        lambda x, t: -x / (1.0 + jnp.square(sde.sigma(t)))[:, None, None, None],
        sde,
        k,
        (n, 2, 2, 3),
        gray=_rows_of(GRAY, i, n),
        num_steps=10,
    ),
}


def _rows_of(data, start, n):
    """Rows ``start .. start + n - 1`` of the conditioning data (examples ``start + i``)."""
    return jax.lax.dynamic_slice_in_dim(data, start, n)


@functools.partial(jax.jit, static_argnames=("name", "n"))
def _draw(key, start, *, name, n):
    sde = VESDE()
    return SAMPLERS[name](mixture_score_fn(MIXTURE, sde), sde, key, n, start)


def _rows(name, n, key, start=None):
    if start is not None:
        return _draw(core.example_keys(key, n, start=start), start, name=name, n=n)
    return _draw(key, 0, name=name, n=n)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sample_depends_only_on_seed_and_index(name):
    key = jax.random.key(3)
    big = _rows(name, 64, key)
    small = _rows(name, 16, key)
    chunk = _rows(name, 16, key, start=16)
    np.testing.assert_array_equal(small.samples, big.samples[:16])
    np.testing.assert_array_equal(chunk.samples, big.samples[16:32])
    if name == "ode_adaptive":  # the slowest example's count: at most the larger batch's
        assert 0 < int(small.nfe) <= int(big.nfe)
    else:
        assert small.nfe == big.nfe
    other = _rows(name, 16, jax.random.key(4))
    assert not np.allclose(other.samples, big.samples[:16], **TOL)


def test_prior_draw_is_per_example_and_scaled_by_the_prior_std():
    """VE's prior N(0, sigma_max^2 I): x_T = sigma_max z with z the core's per-example draw;
    VP's prior is the draw itself."""
    key, shape = jax.random.key(0), (8, 3)
    z, steps = core.initial_and_step_keys(key, shape, 4)
    ve, ve_steps = prior_and_step_keys(VESDE(sigma_max=50.0), key, shape, 4)
    np.testing.assert_allclose(ve, 50.0 * z, rtol=1e-6)
    np.testing.assert_array_equal(jax.random.key_data(ve_steps), jax.random.key_data(steps))
    np.testing.assert_array_equal(prior_and_step_keys(VPSDE(), key, shape, 4)[0], z)
    assert ve_steps.shape == (4, 8)


def test_batch_coupled_variants_fail_the_same_check():
    """Negative controls: the batch-mean Langevin step and a joint adaptive solve make an
    example depend on the rest of its batch."""
    sde = VESDE()
    score_fn = mixture_score_fn(MIXTURE, sde)
    key = jax.random.key(3)

    @functools.partial(jax.jit, static_argnames=("n",))
    def coupled(key, n):
        pc = pc_sample(score_fn, sde, key, (n, 2), num_steps=10, langevin_step="batch_mean")
        x_T, _ = prior_and_step_keys(sde, key, (n, 2), 1)
        joint = probability_flow_solve(
            score_fn, sde, x_T, t0=sde.T, t1=sde.t_min, method="adaptive", rtol=1e-3, atol=1e-3
        )
        return pc.samples, joint.samples

    big, small = coupled(key, 64), coupled(key, 16)
    for b, s in zip(big, small, strict=True):
        assert not np.allclose(s, b[:16], **TOL)


def test_per_example_adaptive_solve_is_each_example_solved_alone():
    """The vmapped per-example solve gives each example what a solve of that example alone
    gives, its state and its nfe (whose formula the callback count in
    ``test_probability_flow.py`` checks), up to rounding: the batched arithmetic may round
    differently from the solo one, which can flip one accept/reject decision of the step
    controller and so move the result within the solver's tolerance (1e-3 here; measured
    differences 1e-7 to 3e-4) and the count by a whole attempt (6 evaluations)."""
    sde = VESDE()
    score_fn = mixture_score_fn(MIXTURE, sde)
    x_T, _ = prior_and_step_keys(sde, jax.random.key(8), (4, 2), 1)
    solve = jax.jit(
        lambda x, per_example: probability_flow_solve(
            score_fn,
            sde,
            x,
            t0=sde.T,
            t1=sde.t_min,
            method="adaptive",
            rtol=1e-3,
            atol=1e-3,
            per_example=per_example,
        ),
        static_argnames="per_example",
    )
    together = solve(x_T, per_example=True)
    assert together.nfe.shape == (4,)
    for b in range(4):
        alone = solve(x_T[b : b + 1], per_example=False)
        np.testing.assert_allclose(together.samples[b], alone.samples[0], rtol=0, atol=1e-2)
        diff = int(together.nfe[b]) - int(alone.nfe)
        assert diff % 6 == 0 and abs(diff) <= 12, (b, together.nfe, alone.nfe)
