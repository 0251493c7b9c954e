"""Controllable generation with an unconditional score model: inpainting and colorization
by replacement (Song et al. 2021, Sec. 5 and App. I.2).

**Inpainting.** Data ``y`` are known where ``mask = 1`` (``Omega``) and unknown elsewhere.
PC sampling (:mod:`jaxgen.sde.samplers.predictor_corrector`) runs on the full state; after
every predictor and every corrector step, ending at time ``t``, the known entries are
replaced by a fresh draw of the forward kernel,

    x[Omega] <- alpha(t) y[Omega] + sigma(t) z,      z ~ N(0, I),

so they are always a sample of ``p_{0t}(x_t(Omega) | y(Omega))``, and the unknown entries
follow the reverse dynamics driven by the joint score ``s(x, t)``. The start is
``x_T[Omega] = alpha(T) y + sigma(T) z`` and the unknown ``x_T`` from the prior. At the end
(after the optional Tweedie denoising at ``t_min``) the known entries are set to ``y``
itself, so they are reproduced exactly.

This is Song et al.'s approximation, not exact posterior sampling: the conditional score
``grad log p_t(x_t(Omega-bar) | y(Omega))`` is replaced by the joint score at a noised
``y``. It is exact when the unknown coordinates are independent of the known ones under the
data (then the joint score of the unknown block does not depend on the known one), which is
what the tests use; in general it is a heuristic.

**Colorization** (App. I.2) is inpainting in a decoupled colour space. With the orthogonal
3x3 matrix ``Q`` whose first column is ``(1, 1, 1) / sqrt(3)`` (:data:`COLOR_BASIS`), the
coordinates ``c = Q^T rgb`` of a pixel have ``c_0 = sqrt(3) gray`` (``gray`` = the channel
mean) and ``c_1, c_2`` orthogonal to it. Because ``Q`` is orthogonal and the SDEs' noise is
isotropic with a linear drift, ``Q^T x_t`` is the same SDE and its score is
``Q^T s(Q c, t)``. Colorization inpaints ``c_1, c_2`` given ``c_0 = sqrt(3) gray`` and maps
back with ``rgb = Q c``; the output's channel mean equals the input gray (to rounding).

Both follow the samplers' convention ``fn(score_fn, sde, key, shape, *, options)``: ``shape``
is the samples' ``(B, *event)`` (``(B, H, W, 3)`` for colorization) and must agree with the
keyword-only conditioning data (``data`` and ``mask``, or ``gray``); a mismatch raises a
``ValueError`` naming both shapes.

Under ``jax.jit`` the same arguments as for :func:`pc_sample` must be static (``shape``,
``num_steps``, ``predictor``, ``corrector``, ``num_corrector_steps``, ``langevin_step``,
``denoise``); ``data``, ``mask`` and ``gray`` may be traced (mask values are then taken as
nonzero = known without the 0/1 check).

Reference:
  Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole. Score-Based Generative Modeling through
  Stochastic Differential Equations. ICLR 2021 (Sec. 5; App. I.2, Alg. "imputation").
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core import sampling
from jaxgen.core.sampling import SamplerOutput
from jaxgen.core.validation import check_sample_shape
from jaxgen.sde.samplers.euler_maruyama import resolve_t_min, tweedie_denoise
from jaxgen.sde.samplers.predictor_corrector import _check_pc_options, pc_loop, pc_nfe
from jaxgen.sde.sdes import SDE, ScoreFn

__all__ = ["COLOR_BASIS", "pc_colorize", "pc_inpaint"]

COLOR_BASIS: np.ndarray = np.stack(
    [
        np.array([1.0, 1.0, 1.0]) / np.sqrt(3.0),
        np.array([2.0, -1.0, -1.0]) / np.sqrt(6.0),
        np.array([0.0, 1.0, -1.0]) / np.sqrt(2.0),
    ],
    axis=1,
)
"""``Q`` (3, 3), orthogonal; column 0 is ``(1, 1, 1) / sqrt(3)`` (the gray direction)."""


def _check_mask(mask: jax.Array, data: jax.Array) -> jax.Array:
    mask = jnp.asarray(mask)
    try:
        broadcast = jnp.broadcast_shapes(mask.shape, data.shape)
    except ValueError:
        broadcast = None
    if broadcast != data.shape:
        raise ValueError(f"mask of shape {mask.shape} must broadcast to data's shape {data.shape}.")
    try:
        values = np.unique(np.asarray(mask))
    except jax.errors.TracerArrayConversionError:  # traced under jit: no value check
        values = None
    if values is not None:
        if not np.all(np.isin(values, (0, 1))):
            raise ValueError(f"mask must hold 0 (unknown) and 1 (known), got values {values}.")
    return jnp.broadcast_to(mask != 0, data.shape)


def _check_shape(shape: Sequence[int], expected: tuple[int, ...], fn: str, what: str) -> None:
    """``shape`` (the samples' ``(B, *event)``) must equal ``expected``, the shape the
    conditioning data give the samples."""
    shape = check_sample_shape(shape)
    if shape != expected:
        raise ValueError(
            f"{fn}: shape {shape} does not match the samples' shape {expected} given by {what}."
        )


def pc_inpaint(
    score_fn: ScoreFn,
    sde: SDE,
    key: jax.Array,
    shape: Sequence[int],
    *,
    data: jax.Array,
    mask: jax.Array,
    num_steps: int = 1000,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float | jax.Array = 0.16,
    num_corrector_steps: int = 1,
    langevin_step: str = "per_example",
    t_min: float | jax.Array | None = None,
    denoise: bool = True,
) -> SamplerOutput:
    """Inpaints the entries of ``data`` where ``mask == 0`` (see module docstring).

    Args:
      score_fn: ``score_fn(x, t)`` of the unconditional model, ``x (B, *event)``.
      sde: the forward SDE.
      key: one ``jax.random.key`` or ``(B,)`` per-example keys; example ``b``'s key alone
        gives all of its randomness.
      shape: ``(B, *event)``, the samples' shape (static); must equal ``data``'s shape
        (``ValueError`` naming both otherwise).
      data: ``(B, *event)``, keyword-only; only the known entries are read.
      mask: keyword-only; 1 = known, 0 = unknown; any shape that broadcasts to ``data``'s.
      num_steps, predictor, corrector, snr, num_corrector_steps, langevin_step, t_min,
        denoise: as :func:`jaxgen.sde.samplers.predictor_corrector.pc_sample`.

    Returns:
      :class:`SamplerOutput`: samples like ``data`` (float), equal to ``data`` where known;
      ``nfe`` as :func:`pc_sample`'s.
    """
    data = jnp.asarray(data)
    if data.ndim < 2:
        raise ValueError(f"data must have shape (B, *event), got {data.shape}.")
    _check_shape(shape, data.shape, "pc_inpaint", f"data of shape {data.shape}")
    data = data.astype(jnp.result_type(float))
    known = _check_mask(mask, data)
    _check_pc_options(sde, num_steps, predictor, corrector, num_corrector_steps, snr, langevin_step)
    batch = data.shape[0]
    # Example b's key alone gives its prior draw, its known entries' first noise and the
    # keys of its PC loop.
    keys = jax.vmap(lambda k: jax.random.split(k, 3))(sampling.as_example_keys(key, batch))
    key_init, key_known, key_loop = keys[:, 0], keys[:, 1], keys[:, 2]

    def project(x, t, k):
        fresh = sde.perturb(data, t, sampling.normal(k, data.shape[1:], data.dtype))
        return jnp.where(known, fresh, x)

    x_T = (sde.prior_std() * sampling.normal(key_init, data.shape[1:], data.dtype)).astype(
        data.dtype
    )
    x_T = project(x_T, jnp.full((batch,), sde.T, dtype=data.dtype), key_known)
    x = pc_loop(
        score_fn,
        sde,
        key_loop,
        x_T,
        num_steps=num_steps,
        predictor=predictor,
        corrector=corrector,
        snr=snr,
        num_corrector_steps=num_corrector_steps,
        langevin_step=langevin_step,
        t_min=t_min,
        project=project,
    )
    if denoise:
        x = tweedie_denoise(score_fn, sde, x, resolve_t_min(sde, t_min).astype(x.dtype))
    x = jnp.where(known, data, x)
    nfe = pc_nfe(num_steps, predictor, corrector, num_corrector_steps, denoise)
    return SamplerOutput(samples=x, nfe=nfe)


def pc_colorize(
    score_fn: ScoreFn,
    sde: SDE,
    key: jax.Array,
    shape: Sequence[int],
    *,
    gray: jax.Array,
    num_steps: int = 1000,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float | jax.Array = 0.16,
    num_corrector_steps: int = 1,
    langevin_step: str = "per_example",
    t_min: float | jax.Array | None = None,
    denoise: bool = True,
) -> SamplerOutput:
    """Colorizes gray images with an RGB score model (see module docstring).

    Args:
      score_fn: ``score_fn(x, t)`` of the unconditional RGB model, ``x (B, H, W, 3)``.
      sde: the forward SDE.
      key: one ``jax.random.key`` or ``(B,)`` per-example keys (as :func:`pc_inpaint`).
      shape: ``(B, H, W, 3)``, the samples' shape (static); must equal ``gray``'s
        ``(B, H, W)`` with 3 channels (``ValueError`` naming both otherwise).
      gray: ``(B, H, W, 1)`` or ``(B, H, W)``, keyword-only, in the model's data scale (the
        gray value of a colour pixel is its channel mean).
      num_steps, predictor, corrector, snr, num_corrector_steps, langevin_step, t_min,
        denoise: as :func:`jaxgen.sde.samplers.predictor_corrector.pc_sample`.

    Returns:
      :class:`SamplerOutput`: ``(B, H, W, 3)`` images whose channel mean is ``gray`` (to
      rounding); ``nfe`` as :func:`pc_sample`'s.
    """
    gray = jnp.asarray(gray)
    given = gray.shape
    if gray.ndim == 4 and gray.shape[-1] == 1:
        gray = gray[..., 0]
    if gray.ndim != 3:
        raise ValueError(f"gray must have shape (B, H, W, 1) or (B, H, W), got {given}.")
    _check_shape(shape, (*gray.shape, 3), "pc_colorize", f"gray of shape {given}")
    dtype = jnp.result_type(float)
    gray = gray.astype(dtype)
    basis = jnp.asarray(COLOR_BASIS, dtype=dtype)

    def decoupled_score(c: jax.Array, t: jax.Array) -> jax.Array:
        if c.ndim != 4 or c.shape[-1] != 3:
            raise ValueError(f"expected images (B, H, W, 3), got {c.shape}.")
        rgb = jnp.einsum("bhwj,ij->bhwi", c, basis)
        return jnp.einsum("bhwi,ij->bhwj", score_fn(rgb, t), basis)

    zeros = jnp.zeros_like(gray)
    data = jnp.stack([jnp.sqrt(3.0).astype(dtype) * gray, zeros, zeros], axis=-1)
    mask = jnp.array([1.0, 0.0, 0.0], dtype=dtype)
    out = pc_inpaint(
        decoupled_score,
        sde,
        key,
        data.shape,
        data=data,
        mask=mask,
        num_steps=num_steps,
        predictor=predictor,
        corrector=corrector,
        snr=snr,
        num_corrector_steps=num_corrector_steps,
        langevin_step=langevin_step,
        t_min=t_min,
        denoise=denoise,
    )
    rgb = jnp.einsum("bhwj,ij->bhwi", out.samples, basis)
    return SamplerOutput(samples=rgb, nfe=out.nfe)
