"""Super-resolution for the diffusion, score-SDE and flow-matching recipes (SR3, Saharia et
al. 2022; Cascaded Diffusion Models, Ho et al. 2022).

``model.super_resolution.factor = f > 1`` turns the model into ``p(x | y)``, ``y`` the
training image area-downsampled by ``f`` (:func:`jaxgen.core.resize.downsample_mean`): the
U-Net sees ``x_t`` concatenated with ``upsample(z)``, ``z`` the condition after
noise-conditioning augmentation at level ``s`` (:mod:`jaxgen.superres.augmentation`), and
``s`` through its own embedding. Training draws ``s ~ U[0, max_augmentation]`` per
example; sampling takes ``s`` as the ``augmentation_level`` option (default
``augmentation_level`` of the config), which must lie in the trained range.

The losses and samplers are untouched: the condition rides in the network call
(:func:`jaxgen.superres.image_conditioned`). Samples are conditioned on ``condition``:
``{"low_resolution": (B, H/f, W/f, C)}`` (a cascade's previous stage), or
``{"image": (B, H, W, C)}`` full-resolution images that are downsampled here (the held-out
rows of the ``eval.split`` split that the run floor passes).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import superres
from jaxgen.config import ConfigError
from jaxgen.core import validation
from jaxgen.core.resize import UPSAMPLE_METHODS, downsample_mean, psnr, upsample
from jaxgen.core.sampling import example_keys

__all__ = [
    "AUGMENTATION_KEY",
    "ImageConditioning",
    "SuperResolutionConfig",
    "image_conditioning_for",
]

AUGMENTATION_KEY = 0x5AA  # folded into the sampling key for the augmentation noise


@dataclasses.dataclass(frozen=True)
class SuperResolutionConfig:
    """Super-resolution by ``factor`` (0: an ordinary, unconditional-on-images model).

    Attributes:
      factor: the enlargement ``f``: the condition is the ``H/f x W/f`` area-downsampled
        image. 0 turns super-resolution off.
      upsample: how the condition is enlarged to the network's size (``nearest``,
        ``bilinear``, ``bicubic``; SR3 uses bicubic).
      augmentation: ``gaussian`` (``cos(pi s/2) y + sin(pi s/2) e``), ``blur`` (Gaussian
        blur of std ``s`` pixels) or ``none``.
      max_augmentation: training levels are ``U[0, max_augmentation]`` (``<= 1`` for
        ``gaussian``).
      augmentation_level: the default level at sampling (in ``[0, max_augmentation]``).
    """

    factor: int = 0
    upsample: str = "nearest"
    augmentation: str = "gaussian"
    max_augmentation: float = 0.0
    augmentation_level: float = 0.0

    def __post_init__(self) -> None:
        validation_error = None
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 0:
            validation_error = f"factor must be an integer >= 0 (0: off), got {self.factor!r}"
        elif self.factor == 1:
            validation_error = "factor must be >= 2 for super-resolution (0: off), got 1"
        elif self.upsample not in UPSAMPLE_METHODS:
            validation_error = (
                f"upsample must be one of {', '.join(map(repr, UPSAMPLE_METHODS))}, "
                f"got {self.upsample!r}"
            )
        elif self.augmentation not in superres.AUGMENTATIONS:
            validation_error = (
                f"augmentation must be one of {', '.join(map(repr, superres.AUGMENTATIONS))}, "
                f"got {self.augmentation!r}"
            )
        else:
            for name in ("max_augmentation", "augmentation_level"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    validation_error = f"{name} must be a number, got {value!r}"
                    break
                if not (math.isfinite(value) and value >= 0):
                    validation_error = f"{name} must be finite and >= 0, got {value!r}"
                    break
            else:
                upper = 1.0 if self.augmentation == "gaussian" else math.inf
                if self.augmentation == "none" and self.max_augmentation > 0:
                    validation_error = (
                        f"max_augmentation={self.max_augmentation} needs an augmentation "
                        "('gaussian' or 'blur'), got augmentation='none'"
                    )
                elif self.max_augmentation > upper:
                    validation_error = (
                        f"max_augmentation must be in [0, 1] for Gaussian augmentation, got "
                        f"{self.max_augmentation}"
                    )
                elif self.augmentation_level > self.max_augmentation:
                    validation_error = (
                        f"augmentation_level={self.augmentation_level} is outside the trained "
                        f"range [0, max_augmentation={self.max_augmentation}]"
                    )
        if validation_error:
            raise ConfigError(f"model.super_resolution.{validation_error}")

    @property
    def enabled(self) -> bool:
        return self.factor > 1


@dataclasses.dataclass(frozen=True)
class ImageConditioning:
    """A super-resolution model's condition: how it is made from images for training, from
    ``condition`` for sampling, and what the network is told."""

    config: SuperResolutionConfig
    data_shape: tuple[int, int, int]

    @property
    def factor(self) -> int:
        return self.config.factor

    @property
    def low_resolution_shape(self) -> tuple[int, int, int]:
        h, w, c = self.data_shape
        return (h // self.factor, w // self.factor, c)

    @property
    def embeds_level(self) -> bool:
        return self.config.augmentation != "none"

    def unet_config(self, unet: Any) -> Any:
        """``unet`` with the condition's channels and the level embedding switched on."""
        return dataclasses.replace(
            unet,
            condition_channels=self.data_shape[-1],
            augmentation_embedding=self.embeds_level,
        )

    def network_inputs(self, z: jax.Array, level: jax.Array) -> dict[str, jax.Array]:
        """The keyword inputs of the network for an (augmented) condition ``z`` at ``level``."""
        inputs = {"image_condition": upsample(z, self.factor, self.config.upsample)}
        if self.embeds_level:
            inputs["augmentation_level"] = level
        return inputs

    def training_inputs(self, images: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
        """Inputs for a training batch: ``y = downsample(x)``, ``s ~ U[0, max]`` and
        ``z = aug_s(y)`` per example."""
        level_key, noise_key = jax.random.split(jax.random.fold_in(key, AUGMENTATION_KEY))
        batch = images.shape[0]
        y = downsample_mean(images, self.factor)
        level = superres.uniform_levels(level_key, batch, self.config.max_augmentation)
        z = superres.augment_condition(y, level, noise_key, kind=self.config.augmentation)
        return self.network_inputs(z, level)

    def check_level(self, level: Any) -> Any:
        """``level`` (the config's default when None) if it lies in the trained range; a
        traced level is not checked."""
        if level is None:
            return self.config.augmentation_level
        if validation.is_concrete(level):
            value = float(np.asarray(level))
            top = self.config.max_augmentation
            if not (math.isfinite(value) and 0 <= value <= top):
                raise ConfigError(
                    f"augmentation_level={value:g} is outside the range this model was "
                    f"trained on, [0, {top:g}] (model.super_resolution.max_augmentation)"
                )
        return level

    def low_resolution(
        self, condition: Mapping[str, jax.Array] | None, num_samples: int
    ) -> jax.Array:
        """The ``(B, H/f, W/f, C)`` condition of a draw: ``condition["low_resolution"]`` or
        ``condition["image"]`` downsampled; ``ConfigError`` naming the shapes otherwise."""
        low_shape, full = (
            (num_samples, *self.low_resolution_shape),
            (
                num_samples,
                *self.data_shape,
            ),
        )
        if condition is not None and "low_resolution" in condition:
            y = jnp.asarray(condition["low_resolution"], jnp.float32)
            if tuple(y.shape) != low_shape:
                raise ConfigError(
                    f"condition['low_resolution'] must have shape {low_shape} (this model "
                    f"enlarges {self.low_resolution_shape[:2]} to {self.data_shape[:2]}), "
                    f"got {tuple(y.shape)}"
                )
            return y
        if condition is not None and "image" in condition:
            x = jnp.asarray(condition["image"], jnp.float32)
            if tuple(x.shape) != full:
                raise ConfigError(
                    f"condition['image'] must have shape {full} (it is downsampled by "
                    f"{self.factor}), got {tuple(x.shape)}"
                )
            return downsample_mean(x, self.factor)
        raise ConfigError(
            f"a super-resolution model samples given a low-resolution image: pass "
            f"condition={{'low_resolution': array of shape {low_shape}}} or "
            f"{{'image': array of shape {full}}}"
        )

    def sampling_inputs(
        self,
        condition: Mapping[str, jax.Array] | None,
        num_samples: int,
        key: jax.Array,
        *,
        first_index: int | jax.Array = 0,
        level: Any = None,
    ) -> dict[str, jax.Array]:
        """Network inputs of a draw: the condition augmented at ``level`` with example
        ``i``'s noise from ``example_keys(fold_in(key, AUGMENTATION_KEY), n,
        start=first_index)[i]`` (so it depends only on the seed and the index)."""
        y = self.low_resolution(condition, num_samples)
        s = jnp.full((num_samples,), self.check_level(level), jnp.float32)
        keys = example_keys(
            jax.random.fold_in(key, AUGMENTATION_KEY), num_samples, start=first_index
        )
        z = superres.augment_condition(y, s, keys, kind=self.config.augmentation)
        return self.network_inputs(z, s)

    def restoration_metrics(self, samples: jax.Array, truth: jax.Array) -> dict[str, jax.Array]:
        """Per-example L1 and PSNR of ``samples`` against ``truth``, and of the nearest and
        bilinear enlargements of the downsampled truth (the baselines)."""
        y = downsample_mean(truth, self.factor)

        def l1(a: jax.Array) -> jax.Array:
            return jnp.mean(jnp.abs(a - truth).reshape(truth.shape[0], -1), axis=1)

        nearest = upsample(y, self.factor, "nearest")
        bilinear = upsample(y, self.factor, "bilinear")
        return {
            "l1": l1(samples),
            "psnr_db": psnr(samples, truth),
            "nearest_l1": l1(nearest),
            "nearest_psnr_db": psnr(nearest, truth),
            "bilinear_l1": l1(bilinear),
            "bilinear_psnr_db": psnr(bilinear, truth),
        }


def image_conditioning_for(
    config: SuperResolutionConfig, data_shape: tuple[int, ...]
) -> ImageConditioning | None:
    """The recipe's :class:`ImageConditioning`, None when super-resolution is off;
    ``ConfigError`` when the data are not images or ``factor`` does not divide their size."""
    if not config.enabled:
        return None
    if len(data_shape) != 3:
        raise ConfigError(
            f"model.super_resolution needs (H, W, C) images, the data have shape {data_shape}"
        )
    h, w, _ = data_shape
    if h % config.factor or w % config.factor:
        raise ConfigError(
            f"model.super_resolution.factor={config.factor} does not divide the image size {(h, w)}"
        )
    return ImageConditioning(config, tuple(data_shape))  # type: ignore[arg-type]


POSTERIOR_MEAN_DRAWS = 8
POSTERIOR_MEAN_CALLS = 20


def evaluate_restoration(recipe: Any, params: Any, images: Any, key: jax.Array) -> dict[str, float]:
    """A super-resolution recipe's mean L1 / PSNR on held-out ``images`` next to the nearest
    and bilinear baselines; ``{}`` for a recipe without ``image_conditioning``.

    * ``l1``, ``psnr_db``: one sample per image, ``recipe.sample`` with the config's sampler
      at the default augmentation level (example ``i`` keyed by its index);
    * ``posterior_mean_l1``, ``posterior_mean_psnr_db``: the mean of
      :data:`POSTERIOR_MEAN_DRAWS` samples per image, each drawn with
      :data:`POSTERIOR_MEAN_CALLS` network calls (``num_steps``), an estimate of the
      posterior mean ``E[x | y]``, the estimate of least squared error. A sample from the
      exact posterior has twice its expected squared error
      (``E|x' - x|^2 = 2 tr Cov[x | y]`` for ``x'``, ``x`` independent draws given ``y``),
      about 3 dB less PSNR: the price of sharp samples (Saharia et al. 2022, sec. 5).
    """
    conditioning: ImageConditioning | None = getattr(recipe, "image_conditioning", None)
    if conditioning is None:
        return {}

    def draw(x: jax.Array, k: jax.Array, i: jax.Array, **options: Any) -> jax.Array:
        n = x.shape[0]
        return recipe.sample(params, k, n, first_index=i, condition={"image": x}, **options)

    one = jax.jit(lambda x, k, i: draw(x, k, i).samples)

    def mean_of_draws(x: jax.Array, k: jax.Array, i: jax.Array) -> jax.Array:
        keys = jax.random.split(k, POSTERIOR_MEAN_DRAWS)
        fast: dict[str, Any] = {"num_steps": POSTERIOR_MEAN_CALLS}
        if getattr(recipe.config.model, "sampler", None) == "adaptive":  # (takes no steps)
            fast["sampler"] = "heun"  # flow matching: 2 calls a step
            fast["num_steps"] = POSTERIOR_MEAN_CALLS // 2
        return jax.lax.map(lambda kk: draw(x, kk, i, **fast).samples, keys).mean(axis=0)

    mean = jax.jit(mean_of_draws)
    images = np.asarray(images, np.float32)
    key = jax.random.fold_in(key, AUGMENTATION_KEY + 1)
    sums: dict[str, float] = {}
    batch_size = recipe.config.eval.batch_size
    for start in range(0, len(images), batch_size):
        chunk = jnp.asarray(images[start : start + batch_size])
        index = jnp.int32(start)
        metrics = conditioning.restoration_metrics(one(chunk, key, index), chunk)
        averaged = conditioning.restoration_metrics(mean(chunk, key, index), chunk)
        metrics["posterior_mean_l1"] = averaged["l1"]
        metrics["posterior_mean_psnr_db"] = averaged["psnr_db"]
        for name, value in metrics.items():
            sums[name] = sums.get(name, 0.0) + float(jnp.sum(value))
    out = {name: total / len(images) for name, total in sums.items()}
    out["posterior_mean_draws"] = float(POSTERIOR_MEAN_DRAWS)
    return out


def sample_inputs(
    conditioning: ImageConditioning | None,
    condition: Mapping[str, jax.Array] | None,
    num_samples: int,
    key: jax.Array,
    *,
    first_index: int | jax.Array,
    options: Mapping[str, Any],
) -> dict[str, jax.Array] | None:
    """The network inputs of a draw of a super-resolution model (None for other models,
    which refuse an ``augmentation_level`` option by name)."""
    level = options.get("augmentation_level")
    if conditioning is None:
        if level is not None:
            raise ConfigError(
                "augmentation_level applies to super-resolution models "
                "(model.super_resolution.factor > 1); this model is not one"
            )
        return None
    return conditioning.sampling_inputs(
        condition, num_samples, key, first_index=first_index, level=level
    )


def label_condition(
    condition: Mapping[str, jax.Array] | None,
    conditioning: ImageConditioning | None,
    *,
    class_conditional: bool,
    options: Mapping[str, Any],
) -> Mapping[str, jax.Array] | None:
    """The part of ``condition`` that guidance reads. Other models get ``condition`` as it
    is; a super-resolution model gets only its ``label`` (the image is its own input), and
    only when the model is class-conditional or a classifier guides it, so the held-out rows
    (images with labels) super-resolve with an unconditional model too."""
    if conditioning is None:
        return condition
    if condition is None or condition.get("label") is None:
        return None
    if class_conditional or options.get("classifier") is not None:
        return {"label": condition["label"]}
    return None


def inputs_for_batch(
    image_inputs: Mapping[str, jax.Array] | None, batch: int
) -> dict[str, jax.Array]:
    """``image_inputs`` for a network call on ``batch`` examples: as they are, or repeated
    ``k`` times along the batch when the call stacks ``k`` copies of the draw (batched
    classifier-free guidance concatenates ``[x, x]``, see
    :func:`jaxgen.guidance.classifier_free_guidance`)."""
    if not image_inputs:
        return {}
    n = next(iter(image_inputs.values())).shape[0]
    if batch == n:
        return dict(image_inputs)
    if batch % n:
        raise ValueError(
            f"a network call on {batch} examples does not stack copies of the {n} image "
            "conditions it was given"
        )
    return {k: jnp.concatenate([v] * (batch // n), axis=0) for k, v in image_inputs.items()}
