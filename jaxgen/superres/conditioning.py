"""Super-resolution as conditioning of a model callable, and cascades of stages.

SR3 (Saharia et al. 2022, "Image Super-Resolution via Iterative Refinement") conditions a
diffusion model ``f(x_t, t)`` on a low-resolution image ``y``: the network sees ``x_t``
concatenated with ``upsample(y)``. Cascaded diffusion (Ho et al. 2022) adds the
augmentation level ``s`` of ``y`` as a second time input. Here both ride in the model
callable, so every sampler of every family runs unchanged:

    f_y(x, t, *rest) = f(x, t, *rest, image_condition=upsample(aug_s(y)), augmentation_level=s)

(:func:`image_conditioned`; ``rest``: e.g. class labels, so classifier-free guidance
composes on top).

A cascade (Ho et al. 2022, eq. 1) samples ``p(x_K) = int p(x_1) prod_k p(x_k | x_{k-1})``
by ancestral sampling over stages: stage 1 draws ``x_1``, stage ``k`` draws ``x_k`` given
the (augmented) ``x_{k-1}``. :func:`cascade_sample` runs stage callables in order with
stage ``k``'s keys ``fold_in(key, k)``, so example ``i`` of every stage depends only on
the seed and ``i``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax

from jaxgen.core.sampling import SamplerOutput

__all__ = ["StageSampler", "cascade_sample", "image_conditioned"]


def image_conditioned(
    model: Callable[..., jax.Array], image_condition: jax.Array, augmentation_level: jax.Array
) -> Callable[..., jax.Array]:
    """``(x, t, *rest) -> model(x, t, *rest, image_condition=..., augmentation_level=...)``:
    an image-conditional network as the plain model callable that samplers take.

    ``image_condition``: ``(B, H, W, C_c)``, the low-resolution image already enlarged to
    the output size (and augmented); ``augmentation_level``: ``(B,)``."""

    def conditioned(x: jax.Array, t: jax.Array, *rest: jax.Array) -> jax.Array:
        return model(
            x, t, *rest, image_condition=image_condition, augmentation_level=augmentation_level
        )

    return conditioned


StageSampler = Callable[[jax.Array, "jax.Array | None"], SamplerOutput]
"""``stage(key, previous_samples) -> SamplerOutput``: one stage of a cascade. The first
stage gets ``previous_samples=None``; stage ``k`` gets stage ``k - 1``'s samples."""


def cascade_sample(stages: Sequence[StageSampler], key: jax.Array) -> tuple[SamplerOutput, ...]:
    """Run ``stages`` in order; stage ``k`` (0-based) is called with ``fold_in(key, k)``
    and the previous stage's samples. Returns every stage's output (the last is the
    cascade's sample; the total network evaluations are the sum of their ``nfe``)."""
    if not stages:
        raise ValueError("a cascade needs at least one stage")
    outputs: list[SamplerOutput] = []
    previous = None
    for k, stage in enumerate(stages):
        out = stage(jax.random.fold_in(key, k), previous)
        if not isinstance(out, SamplerOutput):
            raise TypeError(f"cascade stage {k} returned {type(out).__name__}, not SamplerOutput")
        outputs.append(out)
        previous = out.samples
    return tuple(outputs)
