"""Image-conditioned GANs (pix2pix, Isola et al. 2017): objectives, sampler and the
super-resolution task, as pure functions of network callables.

Networks: ``generator_fn(condition, noise) -> image`` (``noise`` is None for a
deterministic generator, else ``(B, H, W, noise_channels)`` Gaussian maps) and
``discriminator_fn(condition, image) -> patch logits (B, ...)`` (a PatchGAN: one logit per
patch, Isola et al. sec. 3.2.2).

Objective (Isola et al. eq. 4): ``G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G)`` with

* ``L_cGAN`` (eq. 1): the discriminator sees the condition ``c`` with either the real target
  ``x`` or ``G(c)``; per example its loss is the mean over the ``P`` patches of
  ``softplus(-l_real) + softplus(l_fake)`` (``-log D - log(1 - D)``);
* the generator plays the non-saturating game, ``-log D(c, G(c)) = softplus(-l_fake)``
  per patch (mean over patches), plus ``lambda * mean |x - G(c)|`` (eq. 3, the mean over
  the example's pixels; ``lambda = 100`` in the paper).

Randomness: example ``b``'s noise maps come from its own key ``fold_in(key, b)`` (or the
``b``-th of a batch of keys).

Batch statistics when sampling: the U-Net normalizes with batch statistics. Isola et al.
(sec. 3.3) keep the *test batch's* statistics at inference, which makes an output depend on
the other conditions in its batch. The sampler instead takes a fixed ``reference`` batch of
``R`` conditions (training conditions chosen once, stored with the parameters) and runs the
generator once on ``[c_ref; c]`` with ``num_reference = R``: every norm computes its mean
and variance from the reference rows only,

    mu = (1 / R) sum_{r <= R} h_r,   sigma^2 = (1 / R) sum_{r <= R} (h_r - mu)^2,

and applies them to every row (reference batch normalization, Salimans et al. 2016, sec.
3.4). The reference rows are an ordinary training-mode batch (normalized by their own
statistics; their noise maps, if any, come from the fixed key ``REFERENCE_SEED``), so the
statistics are constants of the parameters and a sample depends only on the parameters,
the seed, the example's index and its own condition.

Super-resolution: the condition is the image average-pooled by ``f`` and enlarged back by
nearest neighbour (:func:`super_resolution_condition`).

References:
  Isola, Zhu, Zhou, Efros. Image-to-Image Translation with Conditional Adversarial
  Networks. CVPR 2017.
  Salimans, Goodfellow, Zaremba, Cheung, Radford, Chen. Improved Techniques for Training
  GANs. NeurIPS 2016.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxgen.core.resize import downsample_mean, psnr, upsample
from jaxgen.core.sampling import SamplerOutput, as_example_keys, example_keys, normal
from jaxgen.core.validation import check_sample_shape
from jaxgen.gan import losses
from jaxgen.gan.sampling import REFERENCE_SEED

__all__ = [
    "discriminator_objective",
    "enlarge_nearest",
    "generator_objective",
    "low_resolution",
    "patch_logits",
    "psnr",
    "sample",
    "super_resolution_condition",
    "translate",
]

GeneratorFn = Callable[..., jax.Array]
DiscriminatorFn = Callable[[jax.Array, jax.Array], jax.Array]
Objective = tuple[jax.Array, dict[str, jax.Array], dict]


def low_resolution(images: jax.Array, factor: int) -> jax.Array:
    """Average-pool NHWC ``images`` by ``factor``: (B, H / f, W / f, C)
    (:func:`jaxgen.core.resize.downsample_mean`)."""
    return downsample_mean(images, factor)


def enlarge_nearest(images: jax.Array, factor: int) -> jax.Array:
    """Nearest-neighbour enlargement by ``factor`` (each pixel repeated f x f times)."""
    return upsample(images, factor, "nearest")


def super_resolution_condition(images: jax.Array, factor: int) -> jax.Array:
    """The generator's input for super-resolution: ``images`` average-pooled by ``factor``
    and enlarged back to full size by nearest neighbour."""
    return enlarge_nearest(low_resolution(images, factor), factor)


def _noise(keys: jax.Array, condition: jax.Array, noise_channels: int) -> jax.Array | None:
    if not noise_channels:
        return None
    return normal(keys, (*condition.shape[1:3], noise_channels), condition.dtype)


def translate(
    generator_fn: GeneratorFn,
    condition: jax.Array,
    key: jax.Array,
    *,
    noise_channels: int = 0,
    reference: jax.Array | None = None,
) -> jax.Array:
    """``G(c [, noise])``; the noise maps of example ``b`` are ``N(0, I)`` of shape
    ``(H, W, noise_channels)`` from example ``b``'s key (``key`` may be one key or ``(B,)``
    per-example keys).

    With ``reference`` (``(R, H, W, C)`` conditions) the generator is called once as
    ``generator_fn([c_ref; c], noise, num_reference=R)`` and normalizes with the reference
    rows' statistics (see the module docstring); their rows are dropped from the result.
    """
    if noise_channels < 0:
        raise ValueError(f"noise_channels must be >= 0, got {noise_channels}")
    keys = as_example_keys(key, condition.shape[0]) if noise_channels else None
    noise = _noise(keys, condition, noise_channels)
    if reference is None:
        return generator_fn(condition, noise)
    reference = jnp.asarray(reference, condition.dtype)
    if reference.ndim != condition.ndim or reference.shape[1:] != condition.shape[1:]:
        raise ValueError(
            f"reference conditions must have shape (R, *{condition.shape[1:]}), got "
            f"{reference.shape}"
        )
    r = reference.shape[0]
    if noise is not None:
        ref_keys = example_keys(jax.random.key(REFERENCE_SEED), r)
        noise = jnp.concatenate([_noise(ref_keys, reference, noise_channels), noise])
    out = generator_fn(jnp.concatenate([reference, condition]), noise, num_reference=r)
    return out[r:]


def patch_logits(
    discriminator_fn: DiscriminatorFn, condition: jax.Array, image: jax.Array
) -> jax.Array:
    """The discriminator's patch logits of ``(condition, image)`` pairs as ``(B, P)``."""
    logits = discriminator_fn(condition, image)
    return logits.reshape(logits.shape[0], -1)


def _per_example(per_patch: jax.Array, shape: tuple[int, int]) -> jax.Array:
    return per_patch.reshape(shape).mean(axis=1)


def discriminator_objective(
    generator_fn: GeneratorFn,
    discriminator_fn: DiscriminatorFn,
    condition: jax.Array,
    target: jax.Array,
    key: jax.Array,
    *,
    noise_channels: int = 0,
) -> Objective:
    """PatchGAN discriminator loss per example, the mean over patches of
    ``softplus(-l(c, x)) + softplus(l(c, G(c)))``.

    Returns:
      ``(per_example (B,), terms, {})``; terms ``d_real`` / ``d_fake``: the mean patch
      probability ``sigmoid(l)`` on real and generated pairs.
    """
    fake = translate(generator_fn, condition, key, noise_channels=noise_channels)
    real_logits = patch_logits(discriminator_fn, condition, target)
    fake_logits = patch_logits(discriminator_fn, condition, fake)
    per_patch, patch_terms = losses.discriminator_loss(
        real_logits.ravel(), fake_logits.ravel(), kind="minimax"
    )
    shape = real_logits.shape
    terms = {name: _per_example(v, shape) for name, v in patch_terms.items()}
    return _per_example(per_patch, shape), terms, {}


def generator_objective(
    generator_fn: GeneratorFn,
    discriminator_fn: DiscriminatorFn,
    condition: jax.Array,
    target: jax.Array,
    key: jax.Array,
    *,
    l1_weight: float = 100.0,
    noise_channels: int = 0,
) -> Objective:
    """``adversarial + lambda * l1`` per example: ``adversarial`` the mean over patches of
    ``softplus(-l(c, G(c)))``, ``l1 = mean |x - G(c)|`` over the example's pixels.

    Returns:
      ``(per_example (B,), {"adversarial", "l1", "g_d_fake"}, {})``.
    """
    if l1_weight < 0:
        raise ValueError(f"l1_weight must be >= 0, got {l1_weight}")
    fake = translate(generator_fn, condition, key, noise_channels=noise_channels)
    logits = patch_logits(discriminator_fn, condition, fake)
    per_patch, patch_terms = losses.generator_loss(logits.ravel(), kind="non_saturating")
    adversarial = _per_example(per_patch, logits.shape)
    l1 = jnp.mean(jnp.abs(target - fake).reshape(target.shape[0], -1), axis=1)
    terms = {
        "adversarial": adversarial,
        "l1": l1,
        "g_d_fake": _per_example(patch_terms["g_d_fake"], logits.shape),
    }
    return adversarial + l1_weight * l1, terms, {}


def sample(
    generator_fn: GeneratorFn,
    key: jax.Array,
    shape: Sequence[int],
    *,
    condition: jax.Array,
    noise_channels: int = 0,
    reference: jax.Array | None = None,
) -> SamplerOutput:
    """``G(c_b [, noise_b])`` for the ``B`` conditions ``condition`` (one generator pass,
    ``nfe = 1``); ``shape = (B, *event)`` is the samples' shape, ``key`` one key or ``(B,)``
    per-example keys; ``reference``: the ``(R, *condition_event)`` reference conditions
    whose statistics the generator's norms use (None: the batch's own statistics, which
    makes a sample depend on the rest of its batch)."""
    shape = check_sample_shape(shape)
    if condition.shape[0] != shape[0]:
        raise ValueError(
            f"condition holds {condition.shape[0]} examples for a draw of shape {shape}"
        )
    out = translate(
        generator_fn, condition, key, noise_channels=noise_channels, reference=reference
    )
    if out.shape != shape:
        raise ValueError(f"the generator returned shape {out.shape}, expected {shape}")
    return SamplerOutput(out, 1)
