"""SRGAN (Ledig et al. 2017): adversarial super-resolution with a perceptual loss, as pure
functions of network callables.

Networks: ``generator_fn(y) -> x_hat`` maps the low-resolution image ``y`` (B, h, w, C) to
the full-resolution estimate (B, f h, f w, C) (optionally ``generator_fn(y, num_reference=R)``,
see "Batch statistics" below); ``discriminator_fn(x) -> logits (B,)`` judges a
full-resolution image alone (it does not see ``y``); ``feature_fn(x) -> features`` is any
fixed network (VGG19 in the paper; here also the project's digit classifier), never trained.

Perceptual loss of the generator (eq. 3): ``l_SR = l_X + 10^-3 l_Gen`` with

* the content loss ``l_X`` either the pixel MSE (eq. 4, SRResNet / SRGAN-MSE)
  ``mean (x - G(y))^2`` over the example's ``f h * f w * C`` values, or the feature MSE
  (eq. 5, SRGAN-VGG22 / VGG54) ``mean (s phi(x) - s phi(G(y)))^2`` over the feature map's
  values, where ``s`` is ``feature_scale`` (Ledig et al. rescale the VGG features by
  ``1 / 12.75``, :data:`VGG_FEATURE_SCALE`, to bring the loss to the scale of the MSE). Eq. 5
  sums over the map's positions and divides by ``W_ij H_ij``; the mean here also divides by
  the channels, a constant factor. With ``feature_fn`` the identity and ``s = 1`` the two
  coincide. ``pixel_weight`` optionally adds ``pixel_weight * MSE`` to a feature loss (0 in
  the paper);
* the adversarial loss ``l_Gen = -log D(G(y)) = softplus(-l(G(y)))`` (eq. 6, the
  non-saturating form), weighted by ``adversarial_weight`` (``10^-3``).

The discriminator solves eq. 2, ``max E[log D(x)] + E[log(1 - D(G(y)))]``: per example
``softplus(-l(x)) + softplus(l(G(y)))`` (:func:`jaxgen.gan.losses.discriminator_loss`).

Batch statistics: the SRResNet generator normalizes with batch statistics. As in
``jaxgen.gan.pix2pix``, :func:`super_resolve` with ``reference`` (``R`` low-resolution
images held with the parameters) runs the generator once on ``[y_ref; y]`` with
``num_reference = R``: every norm uses the reference rows' mean and variance (reference
batch normalization, Salimans et al. 2016, sec. 3.4), so an output depends only on the
parameters and its own input. The generator has no noise input (Ledig et al.'s is
deterministic): a sample is a function of its condition alone.

References:
  Ledig, Theis, Huszar, Caballero, Cunningham, Acosta, Aitken, Tejani, Totz, Wang, Shi.
  Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial Network.
  CVPR 2017.
  Salimans, Goodfellow, Zaremba, Cheung, Radford, Chen. Improved Techniques for Training
  GANs. NeurIPS 2016.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxgen.core.sampling import SamplerOutput
from jaxgen.core.validation import check_sample_shape
from jaxgen.gan import losses
from jaxgen.gan.pix2pix import psnr

__all__ = [
    "ADVERSARIAL_WEIGHT",
    "VGG_FEATURE_SCALE",
    "content_loss",
    "discriminator_objective",
    "generator_objective",
    "psnr",
    "sample",
    "super_resolve",
]

ADVERSARIAL_WEIGHT = 1e-3
"""The weight of ``l_Gen`` in the perceptual loss (Ledig et al. eq. 3)."""

VGG_FEATURE_SCALE = 1.0 / 12.75
"""Ledig et al.'s rescaling of the VGG feature maps (sec. 3, "Training details")."""

GeneratorFn = Callable[..., jax.Array]
DiscriminatorFn = Callable[[jax.Array], jax.Array]
FeatureFn = Callable[[jax.Array], jax.Array]
Objective = tuple[jax.Array, dict[str, jax.Array], dict]


def _per_example_mean(values: jax.Array) -> jax.Array:
    return jnp.mean(values.reshape(values.shape[0], -1), axis=1)


def _check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def content_loss(
    estimate: jax.Array,
    truth: jax.Array,
    *,
    feature_fn: FeatureFn | None = None,
    feature_scale: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-example content loss ``l_X``: the pixel MSE ``mean (x - x_hat)^2`` (eq. 4) when
    ``feature_fn`` is None, else ``mean (s phi(x) - s phi(x_hat))^2`` over the feature map
    (eq. 5; ``s = feature_scale``). The truth's features are constants (no gradient).

    Returns:
      ``(per_example (B,), {"pixel_mse"})``; ``pixel_mse`` is eq. 4 whichever loss is used.
    """
    if estimate.shape != truth.shape:
        raise ValueError(f"estimate {estimate.shape} and truth {truth.shape} differ in shape")
    _check_nonnegative(feature_scale=feature_scale)
    pixel_mse = _per_example_mean(jnp.square(truth - estimate))
    if feature_fn is None:
        return pixel_mse, {"pixel_mse": pixel_mse}
    real = jax.lax.stop_gradient(feature_fn(truth))
    fake = feature_fn(estimate)
    if real.shape[0] != truth.shape[0] or fake.shape != real.shape:
        raise ValueError(
            f"feature_fn must map a batch of {truth.shape[0]} images to features with that "
            f"leading axis, got {real.shape} and {fake.shape}"
        )
    feature_mse = _per_example_mean(jnp.square(feature_scale * (real - fake)))
    return feature_mse, {"pixel_mse": pixel_mse}


def super_resolve(
    generator_fn: GeneratorFn, low_res: jax.Array, *, reference: jax.Array | None = None
) -> jax.Array:
    """``G(y)``; with ``reference`` (``(R, h, w, C)`` low-resolution images) the generator
    runs once on ``[y_ref; y]`` with ``num_reference = R`` (its norms use the reference
    rows' statistics) and the reference rows are dropped."""
    if reference is None:
        return generator_fn(low_res)
    reference = jnp.asarray(reference, low_res.dtype)
    if reference.ndim != low_res.ndim or reference.shape[1:] != low_res.shape[1:]:
        raise ValueError(
            f"reference images must have shape (R, *{low_res.shape[1:]}), got {reference.shape}"
        )
    r = reference.shape[0]
    return generator_fn(jnp.concatenate([reference, low_res]), num_reference=r)[r:]


def _logits(discriminator_fn: DiscriminatorFn, images: jax.Array) -> jax.Array:
    logits = discriminator_fn(images)
    if logits.shape != (images.shape[0],):
        raise ValueError(
            f"discriminator_fn must return one logit per image, shape ({images.shape[0]},), "
            f"got {logits.shape}"
        )
    return logits


def discriminator_objective(
    generator_fn: GeneratorFn,
    discriminator_fn: DiscriminatorFn,
    low_res: jax.Array,
    target: jax.Array,
) -> Objective:
    """The discriminator's loss per example (eq. 2): ``softplus(-l(x)) + softplus(l(G(y)))``.

    Returns:
      ``(per_example (B,), terms, {})``; terms ``d_loss_real``, ``d_loss_fake`` and the
      probabilities ``d_real = sigmoid(l(x))``, ``d_fake = sigmoid(l(G(y)))``.
    """
    fake = generator_fn(low_res)
    per_example, terms = losses.discriminator_loss(
        _logits(discriminator_fn, target), _logits(discriminator_fn, fake), kind="minimax"
    )
    return per_example, terms, {}


def generator_objective(
    generator_fn: GeneratorFn,
    discriminator_fn: DiscriminatorFn,
    low_res: jax.Array,
    target: jax.Array,
    *,
    feature_fn: FeatureFn | None = None,
    feature_scale: float = 1.0,
    pixel_weight: float = 0.0,
    adversarial_weight: float = ADVERSARIAL_WEIGHT,
) -> Objective:
    """The perceptual loss per example (eq. 3): ``l_X + pixel_weight * MSE +
    adversarial_weight * softplus(-l(G(y)))`` with ``l_X`` :func:`content_loss`
    (``pixel_weight`` applies only with a ``feature_fn``: without one ``l_X`` is the MSE).

    Returns:
      ``(per_example (B,), {"content", "pixel_mse", "adversarial", "g_d_fake"}, {})``;
      ``adversarial`` is the unweighted ``-log D(G(y))``.
    """
    _check_nonnegative(pixel_weight=pixel_weight, adversarial_weight=adversarial_weight)
    fake = generator_fn(low_res)
    content, terms = content_loss(fake, target, feature_fn=feature_fn, feature_scale=feature_scale)
    adversarial, adv_terms = losses.generator_loss(
        _logits(discriminator_fn, fake), kind="non_saturating"
    )
    total = content + adversarial_weight * adversarial
    if feature_fn is not None and pixel_weight:
        total = total + pixel_weight * terms["pixel_mse"]
    terms = {
        "content": content,
        "pixel_mse": terms["pixel_mse"],
        "adversarial": adversarial,
        "g_d_fake": adv_terms["g_d_fake"],
    }
    return total, terms, {}


def sample(
    generator_fn: GeneratorFn,
    key: jax.Array,
    shape: Sequence[int],
    *,
    condition: jax.Array,
    reference: jax.Array | None = None,
) -> SamplerOutput:
    """``G(y_b)`` for the ``B`` low-resolution images ``condition`` (one generator pass,
    ``nfe = 1``); ``shape = (B, *event)`` is the samples' shape. The generator is
    deterministic, so ``key`` (one key or ``(B,)`` per-example keys) draws nothing; it is
    taken for the samplers' common signature. ``reference``: see :func:`super_resolve`."""
    del key
    shape = check_sample_shape(shape)
    if condition.shape[0] != shape[0]:
        raise ValueError(
            f"condition holds {condition.shape[0]} examples for a draw of shape {shape}"
        )
    out = super_resolve(generator_fn, condition, reference=reference)
    if out.shape != shape:
        raise ValueError(f"the generator returned shape {out.shape}, expected {shape}")
    return SamplerOutput(out, 1)
