"""Sampling a GAN's generator: one generator pass, each example from its own key.

**Latents.** Example ``b`` of a draw gets its latent ``z_b`` from its own key ``k_b``
(:func:`jaxgen.core.sampling.as_example_keys`): ``z_b ~ N(0, I)`` (``"normal"``) or
``z_b ~ U[-1, 1]^d`` (``"uniform"``, ``2 u - 1`` with ``u ~ U[0, 1)``), so the same seed
gives the same ``i``-th latent at any batch size and on any number of devices. With class
labels, ``G(z_b, y_b)``; the caller chooses ``y_b`` as a function of the example's index.

**Batch statistics and reference batch normalization.** A generator with batch
normalization that uses the statistics of the batch it is given (DCGAN,
:class:`jaxgen.nets.dcgan.BatchStatsNorm`, as in the reference implementations) makes an
example's output depend on the rest of its batch: the same latent gives another image in a
batch of 16 than in a batch of 64. Salimans et al. (2016, sec. 3.4) fix the statistics with
a *reference batch*: a batch of latents chosen once. Here, with ``reference_size = R > 0``,
the sampler draws ``R`` reference latents from the fixed key :data:`REFERENCE_SEED`
(example keys ``fold_in(key(REFERENCE_SEED), r)``) and runs the generator once on the
concatenation ``[z_ref; z]`` with ``num_reference = R``: every normalization layer computes

    mu = (1 / R) sum_{r <= R} h_r,   sigma^2 = (1 / R) sum_{r <= R} (h_r - mu)^2,
    out_b = gamma (h_b - mu) / sqrt(sigma^2 + eps) + beta         (every row b),

from the reference rows ``h_r`` only. The reference rows are themselves a batch of ``R``
generator inputs normalized with their own statistics (exactly a training-time forward pass
of batch ``R``), so ``mu`` and ``sigma`` at every layer are functions of the parameters
alone, and each sample row goes through a fixed per-example function: the samples depend
only on the parameters, the seed and the example's index. The reference rows are dropped
from the output. As ``R`` grows, ``mu`` and ``sigma^2`` tend to the population statistics
of each layer under ``p_z`` (the inference-mode statistics of Ioffe and Szegedy 2015, sec.
3.1); Salimans et al.'s *virtual* batch normalization also adds the example itself to the
reference batch, a ``1 / (R + 1)`` weight that this leaves out so that the reference
statistics are computed once per call. One generator pass: ``nfe = 1``.

References:
  Salimans, Goodfellow, Zaremba, Cheung, Radford, Chen. Improved Techniques for Training
  GANs. NeurIPS 2016 (sec. 3.4, virtual batch normalization).
  Ioffe, Szegedy. Batch Normalization. ICML 2015.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.core.sampling import SamplerOutput, as_example_keys, example_keys, normal, uniform
from jaxgen.core.validation import check_choice, check_positive_int, check_sample_shape

__all__ = [
    "LATENT_DISTRIBUTIONS",
    "REFERENCE_SEED",
    "latents",
    "reference_latents",
    "sample",
]

LATENT_DISTRIBUTIONS: tuple[str, ...] = ("normal", "uniform")
# The fixed key of the reference batch (the arXiv number of Salimans et al. 2016).
REFERENCE_SEED = 160603498

GeneratorFn = Callable[..., jax.Array]


def latents(
    keys: jax.Array, latent_dim: int, *, distribution: str = "normal", dtype: Any = None
) -> jax.Array:
    """``(B, latent_dim)`` latents, row ``b`` from ``keys[b]`` alone: ``N(0, I)``
    (``"normal"``) or ``U[-1, 1]^d`` (``"uniform"``)."""
    check_choice("latent distribution", distribution, LATENT_DISTRIBUTIONS)
    latent_dim = check_positive_int(latent_dim, "latent_dim")
    if distribution == "uniform":
        return 2.0 * uniform(keys, (latent_dim,), dtype) - 1.0
    return normal(keys, (latent_dim,), dtype)


def reference_latents(
    reference_size: int, latent_dim: int, *, distribution: str = "normal", dtype: Any = None
) -> jax.Array:
    """The ``(R, latent_dim)`` reference batch: example keys ``fold_in(key(REFERENCE_SEED),
    r)``, the same in every call (a constant of the sampler)."""
    keys = example_keys(jax.random.key(REFERENCE_SEED), reference_size)
    return latents(keys, latent_dim, distribution=distribution, dtype=dtype)


def sample(
    generator_fn: GeneratorFn,
    key: jax.Array,
    shape: Sequence[int],
    *,
    labels: jax.Array | None = None,
    latent_distribution: str = "normal",
    reference_size: int = 0,
    reference_labels: jax.Array | None = None,
) -> SamplerOutput:
    """``G(z [, y])`` for ``z`` of ``shape = (B, latent_dim)``, one latent per example key.

    Args:
      generator_fn: ``generator_fn(z, labels) -> x`` (``labels`` is None when
        unconditional); with ``reference_size = R > 0`` it is called as
        ``generator_fn(z, labels, num_reference=R)`` and must normalize with the statistics
        of the first ``R`` rows (see the module docstring).
      key: one key (example ``b`` uses ``fold_in(key, b)``) or ``(B,)`` per-example keys.
      shape: ``(B, latent_dim)``, the latents' shape (the generator sets the samples' shape).
      labels: ``(B,)`` integer labels of a class-conditional generator, or None.
      latent_distribution: ``"normal"`` or ``"uniform"``.
      reference_size: ``R``, the reference batch's size; 0 calls the generator on the batch
        alone (then batch statistics, if any, are the batch's own).
      reference_labels: ``(R,)`` labels of the reference batch (needed with ``labels``).

    Returns:
      ``SamplerOutput(samples (B, *event), nfe=1)``.
    """
    batch, latent_dim = _check_latent_shape(shape)
    keys = as_example_keys(key, batch)
    z = latents(keys, latent_dim, distribution=latent_distribution)
    if labels is not None and jnp.shape(labels) != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {jnp.shape(labels)}")
    if reference_size < 0:
        raise ValueError(f"reference_size must be >= 0, got {reference_size}")
    if not reference_size:
        return SamplerOutput(generator_fn(z, labels), 1)
    z_ref = reference_latents(
        reference_size, latent_dim, distribution=latent_distribution, dtype=z.dtype
    )
    all_labels = None
    if labels is not None:
        if reference_labels is None or jnp.shape(reference_labels) != (reference_size,):
            raise ValueError(
                f"a conditional draw with reference_size={reference_size} needs "
                f"reference_labels of shape ({reference_size},), got "
                f"{None if reference_labels is None else jnp.shape(reference_labels)}"
            )
        all_labels = jnp.concatenate([jnp.asarray(reference_labels), jnp.asarray(labels)])
    out = generator_fn(jnp.concatenate([z_ref, z]), all_labels, num_reference=reference_size)
    return SamplerOutput(out[reference_size:], 1)


def _check_latent_shape(shape: Sequence[int]) -> tuple[int, int]:
    shape = check_sample_shape(shape)
    if len(shape) != 2:
        raise ValueError(f"shape must be the latents' shape (B, latent_dim), got {shape}")
    return shape[0], shape[1]
