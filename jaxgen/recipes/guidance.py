"""Class conditioning and guidance shared by the diffusion recipes (DDPM, score SDE).

A recipe's network is class-conditional when ``model.unet.num_classes = K > 0``; it is then
the conditional model ``model(x, t, labels)`` of :mod:`jaxgen.guidance`, with the label
``NULL_LABEL = -1`` meaning "no condition" (a learned null embedding). Training replaces each
example's label by the null one with probability ``p_uncond`` (Ho and Salimans 2022, Alg. 1),
so one network is both the conditional and the unconditional model.

Sampling builds the model callable ``f(x, t)`` the unchanged samplers take, as a transform
of the conditional model (:func:`guided_model`):

* classifier-free guidance (Ho and Salimans 2022, eq. 6 with ``s = 1 + w``)
  ``f = u + s (c - u)``, ``u = model(x, t, null)``, ``c = model(x, t, labels)``, optionally
  only inside a noise interval (Kynkaanniemi et al. 2024) and with the rescale ``phi`` of
  Lin et al. (2024, Alg. 2); ``s = 1`` is the conditional model itself;
* classifier guidance (Dhariwal and Nichol 2021) with a noise-aware classifier
  ``log p_phi(c | x_t)``: the score shifted by ``s grad_x log p_phi`` (Alg. 2), or for DDPM's
  ancestral sampler the mean shifted by ``s Sigma_t grad_x log p_phi`` (Alg. 1).

The guidance scale and the rescale may be traced values, so one compiled sampler serves
every scale (:class:`jaxgen.engine.sampling.ChunkedSampler` ``traced_options``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import guidance as guidance_lib
from jaxgen.config import ConfigError
from jaxgen.core import sampling
from jaxgen.core.parameterization import convert
from jaxgen.core.validation import is_concrete

NULL_LABEL: int = guidance_lib.NULL_LABEL

# What ``recipe.sample`` accepts as guidance options (added to the recipes' sample_options).
GUIDANCE_OPTIONS: tuple[str, ...] = (
    "guidance_scale",
    "guidance_interval",
    "guidance_rescale",
    "classifier",
)

# ``log_prob(classifier_params, x, t, labels) -> (B,)`` = log p_phi(labels | x_t).
ClassifierLogProb = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]
ConditionalModel = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class GuidanceConfig:
    """Condition dropout for training and the default classifier-free guidance of sampling.

    Attributes:
      p_uncond: probability that a training example's label is replaced by the null label
        (Ho and Salimans 2022 use 0.1 or 0.2); 0 trains no unconditional model, and then
        guidance is refused.
      scale: default guidance scale ``s = 1 + w`` (``u + s (c - u)``; 1 is the conditional
        model, 0 the unconditional one).
      interval: ``(low, high)`` in EDM noise level ``sigma / alpha``: guidance only where
        ``low < sigma / alpha <= high`` (Kynkaanniemi et al. 2024); None guides everywhere.
      rescale: ``phi`` of Lin et al. (2024), in ``[0, 1]``; 0 is plain guidance.
      batched: the two passes as one call on ``2B`` examples (True) or two calls (False).
    """

    p_uncond: float = 0.1
    scale: float = 1.0
    interval: tuple[float, ...] | None = None  # (low, high); checked in __post_init__
    rescale: float = 0.0
    batched: bool = True

    def __post_init__(self):
        p = self.p_uncond
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ConfigError(f"model.guidance.p_uncond must be a number in [0, 1), got {p!r}")
        check_scale(self.scale, "model.guidance.scale")
        check_rescale(self.rescale, "model.guidance.rescale")
        if self.interval is not None:
            check_interval_pair(self.interval, "model.guidance.interval")
        if not isinstance(self.batched, bool):
            raise ConfigError(f"model.guidance.batched must be true or false, got {self.batched!r}")
        if self.p_uncond == 0.0 and (
            self.scale != 1.0 or self.interval is not None or self.rescale != 0.0
        ):
            raise ConfigError(
                f"model.guidance.scale={self.scale!r} (interval {self.interval!r}, rescale "
                f"{self.rescale!r}) needs an unconditional model: model.guidance.p_uncond > 0, "
                "got 0"
            )

    @property
    def guides(self) -> bool:
        """True when the defaults ask for classifier-free guidance (``s != 1`` or rescale)."""
        return self.scale != 1.0 or self.rescale != 0.0


# ---------------------------------------------------------------------- validation


def check_scale(value: Any, name: str = "guidance_scale") -> Any:
    """``value`` unless it is concrete and not a finite real number, or not a scalar or a
    per-example ``(B,)`` array of them (``ConfigError``); traced values pass unchecked."""
    if not is_concrete(value):
        return value
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a finite real number, got {value!r}") from None
    if isinstance(value, bool) or array.ndim > 1 or not np.all(np.isfinite(array)):
        raise ConfigError(f"{name} must be a finite real number, got {value!r}")
    return value


def check_rescale(value: Any, name: str = "guidance_rescale") -> Any:
    """``value`` unless it is a concrete number outside ``[0, 1]`` (``ConfigError``)."""
    check_scale(value, name)
    if is_concrete(value) and not np.all((np.asarray(value) >= 0) & (np.asarray(value) <= 1)):
        raise ConfigError(f"{name} must be a number in [0, 1] (Lin et al.'s phi), got {value!r}")
    return value


def check_interval_pair(value: Any, name: str = "guidance_interval") -> tuple[float, float]:
    """``(low, high)`` as floats when ``0 <= low < high`` are finite (``ConfigError``)."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name} must be a pair (low, high) of EDM noise levels sigma/alpha, got {value!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low < high):
        raise ConfigError(
            f"{name} must be (low, high) with 0 <= low < high finite (EDM sigma), got {value!r}"
        )
    return low, high


def check_conditioning(model_classes: int, data_classes: int | None, data_name: str) -> int:
    """The number of classes ``K`` of the model (0: unconditional); ``ConfigError`` when a
    class-conditional network (``model.unet.num_classes > 0``) does not have the dataset's
    number of classes."""
    if model_classes and model_classes != data_classes:
        has = "no labels" if data_classes is None else f"{data_classes} classes"
        raise ConfigError(
            f"model.unet.num_classes={model_classes} must equal the number of classes of "
            f"{data_name!r} ({has}); 0 trains an unconditional model"
        )
    return model_classes


def sample_labels(
    condition: Mapping[str, Any] | None,
    num_samples: int,
    num_classes: int | None,
    first_index: int | jax.Array,
) -> jax.Array:
    """The ``(num_samples,)`` int32 class labels of a draw: ``condition["label"]``, or
    ``(first_index + i) mod K`` (:func:`jaxgen.core.sampling.cyclic_labels`) without one.

    Concrete labels outside ``[0, K)`` are refused (``ConfigError`` naming them); with
    ``num_classes=None`` (unknown) only negative ones."""
    if condition is None or condition.get("label") is None:
        return sampling.cyclic_labels(num_samples, num_classes, start=first_index).astype(jnp.int32)
    unknown = sorted(set(condition) - {"label"})
    if unknown:
        raise ConfigError(f"condition has entries {unknown}; a class label model takes 'label'")
    labels = condition["label"]
    if is_concrete(labels):
        arr = np.asarray(labels)
        if not np.issubdtype(arr.dtype, np.integer):
            raise ConfigError(f"condition['label'] must be integer class labels, got {arr.dtype}")
        if arr.ndim == 0:
            arr = np.full((num_samples,), arr)
        if arr.shape != (num_samples,):
            raise ConfigError(
                f"condition['label'] must have shape ({num_samples},), got {arr.shape}"
            )
        limit = np.iinfo(np.int32).max if num_classes is None else num_classes
        bad = arr[(arr < 0) | (arr >= limit)]
        if bad.size:
            raise ConfigError(
                f"class {int(bad[0])} is outside the model's classes [0, {num_classes or 'K'}) "
                f"(condition['label'])"
            )
        return jnp.asarray(arr, jnp.int32)
    labels = jnp.asarray(labels)
    if labels.shape != (num_samples,):
        raise ConfigError(
            f"condition['label'] must have shape ({num_samples},), got {labels.shape}"
        )
    return labels.astype(jnp.int32)


def drop_labels(key: jax.Array, labels: jax.Array, p_uncond: float) -> jax.Array:
    """Training labels with each replaced by ``NULL_LABEL`` with probability ``p_uncond``
    (Ho and Salimans 2022, Alg. 1; :func:`jaxgen.guidance.drop_condition`)."""
    if p_uncond == 0.0:
        return labels
    null = jnp.full_like(labels, NULL_LABEL)
    return guidance_lib.drop_condition(key, labels, null, p_uncond=p_uncond)


def batch_labels(batch: Mapping[str, jax.Array], data_name: str) -> jax.Array:
    """The ``label`` column of a training batch (``ConfigError`` when the data has none)."""
    if "label" not in batch:
        raise ConfigError(
            f"a class-conditional model needs labelled data; {data_name!r} has no 'label'"
        )
    return jnp.asarray(batch["label"]).astype(jnp.int32)


# ---------------------------------------------------------------------- sampling plan


class GuidancePlan(NamedTuple):
    """What one draw does: ``labels`` (None: unconditional model without a classifier),
    classifier-free guidance (``cfg``: scale / interval / rescale / batched), classifier
    guidance (``classifier``: ``(log_prob, params)``, at ``classifier_scale``)."""

    labels: jax.Array | None
    cfg: bool
    scale: Any
    interval: Any
    rescale: Any
    batched: bool
    classifier: tuple[ClassifierLogProb, Any] | None
    classifier_scale: Any


def plan_guidance(
    options: Mapping[str, Any],
    config: GuidanceConfig,
    *,
    num_classes: int,
    condition: Mapping[str, Any] | None,
    num_samples: int,
    first_index: int | jax.Array,
    sigma_range: tuple[float, float],
) -> GuidancePlan:
    """Checks the guidance options of ``recipe.sample`` against the model and returns the plan.

    Args:
      options: the sample options (``guidance_scale``, ``guidance_interval``,
        ``guidance_rescale``, ``classifier``; absent ones default to ``config``'s).
      config: the model's :class:`GuidanceConfig`.
      num_classes: ``K`` of a class-conditional model, 0 for an unconditional one.
      condition: ``{"label": (B,) int}`` or None (cyclic labels).
      sigma_range: the model's ``(sigma_min, sigma_max)`` in EDM noise level, for the
        interval check.

    ``ConfigError`` for: guidance of an unconditional model without a classifier; classifier-
    free guidance of a model trained with ``p_uncond = 0``; a non-finite scale; an interval
    that misses the noise range; a class outside ``[0, K)``.
    """
    classifier = options.get("classifier")
    if classifier is not None:
        if not (isinstance(classifier, tuple | list) and len(classifier) == 2):
            raise ConfigError(
                "classifier must be a pair (log_prob_fn, classifier_params), "
                f"got {type(classifier).__name__}"
            )
        if not callable(classifier[0]):
            raise ConfigError("classifier[0] must be log_prob_fn(params, x, t, labels)")
        classifier = (classifier[0], classifier[1])
    scale = options.get("guidance_scale")
    interval = options.get("guidance_interval")
    rescale = options.get("guidance_rescale")
    if scale is not None:
        check_scale(scale)
    if rescale is not None:
        check_rescale(rescale)
    if not num_classes:
        if condition is not None and classifier is None:
            raise ConfigError(
                "a condition was given but the model is unconditional (model.unet.num_classes "
                "= 0); pass classifier=(log_prob_fn, params) for classifier guidance"
            )
        if classifier is None and scale is not None:
            raise ConfigError(
                f"guidance_scale={scale!r} asks for classifier-free guidance of an "
                "unconditional model (model.unet.num_classes = 0); train with num_classes > 0 "
                "or pass a classifier"
            )
        for name, value in (("guidance_interval", interval), ("guidance_rescale", rescale)):
            if value is not None:
                raise ConfigError(
                    f"{name}={value!r} applies to classifier-free guidance; the model is "
                    "unconditional (model.unet.num_classes = 0)"
                )
        if classifier is None:
            return GuidancePlan(None, False, None, None, None, True, None, None)
        if condition is None or condition.get("label") is None:
            raise ConfigError(
                "classifier guidance of an unconditional model needs condition={'label': ...} "
                "(the model does not know the classes)"
            )
        labels = sample_labels(condition, num_samples, None, first_index)
        clf_scale = 1.0 if scale is None else scale
        return GuidancePlan(labels, False, None, None, None, True, classifier, clf_scale)

    labels = sample_labels(condition, num_samples, num_classes, first_index)
    if classifier is not None:
        # The classifier takes the scale; the conditional model is used unguided.
        for name, value in (("guidance_interval", interval), ("guidance_rescale", rescale)):
            if value is not None:
                raise ConfigError(f"{name}={value!r} applies to classifier-free guidance only")
        clf_scale = 1.0 if scale is None else scale
        return GuidancePlan(labels, False, None, None, None, True, classifier, clf_scale)
    scale = config.scale if scale is None else scale
    rescale = config.rescale if rescale is None else rescale
    interval = config.interval if interval is None else interval
    unguided = (
        is_concrete(scale)
        and np.all(np.asarray(scale) == 1.0)
        and is_concrete(rescale)
        and np.all(np.asarray(rescale) == 0.0)
        and interval is None
    )
    if unguided:
        return GuidancePlan(labels, False, None, None, None, True, None, None)
    if config.p_uncond == 0.0:
        raise ConfigError(
            f"guidance_scale={scale!r} asks for classifier-free guidance, but the model was "
            "trained without condition dropout (model.guidance.p_uncond = 0): it has no "
            "unconditional model"
        )
    guidance_interval = None
    if interval is not None:
        low, high = check_interval_pair(interval)
        try:
            guidance_interval = guidance_lib.GuidanceInterval(low, high, kind="sigma")
            guidance_lib.check_interval_in_range(guidance_interval, *sigma_range)
        except ValueError as err:
            raise ConfigError(f"guidance_interval={interval!r}: {err}") from None
    return GuidancePlan(labels, True, scale, guidance_interval, rescale, config.batched, None, None)


def guided_model(
    cond_model: ConditionalModel,
    plan: GuidancePlan,
    *,
    parameterization: str,
    path: Any,
    ancestral_schedule: Any = None,
    model_variance: str = "beta",
) -> tuple[Callable[[jax.Array, jax.Array], jax.Array], str]:
    """``(f, parameterization)``: the callable ``f(x, t)`` a sampler takes for the ``plan`` of
    :func:`plan_guidance`, and what ``f`` predicts.

    ``cond_model(x, t, labels)`` predicts ``parameterization`` on the noise ``path`` (a DDPM
    schedule or an SDE). Without classifier guidance the result predicts the same
    parameterization: the conditional model (``s = 1``) or
    :func:`jaxgen.guidance.classifier_free_guidance` ``u + s (c - u)``. With a classifier the
    model (conditional, unguided, or unconditional) is shifted by ``s grad_x log p_phi(c |
    x_t)``: :func:`jaxgen.guidance.classifier_guidance` in score terms (Dhariwal and Nichol
    2021, Alg. 2), or, given ``ancestral_schedule`` (DDPM's ancestral sampler),
    :func:`jaxgen.guidance.ancestral_mean_shift_guidance`, the mean shift
    ``mu + s Sigma_t grad`` of Alg. 1, on the model converted to eps (then ``f`` predicts
    eps)."""
    labels = plan.labels
    if plan.cfg:
        null = jnp.full_like(labels, NULL_LABEL)
        guided = guidance_lib.classifier_free_guidance(
            cond_model,
            labels,
            null,
            scale=plan.scale,
            interval=plan.interval,
            rescale=plan.rescale,
            parameterization=parameterization,
            path=path,
            batched=plan.batched,
        )
        return guided, parameterization

    def model(x: jax.Array, t: jax.Array) -> jax.Array:
        return cond_model(x, t, labels)

    if plan.classifier is None:
        return model, parameterization
    log_prob, clf_params = plan.classifier

    def log_prob_fn(x: jax.Array, t: jax.Array, c: jax.Array) -> jax.Array:
        return log_prob(clf_params, x, t, c)

    if ancestral_schedule is not None:
        eps_model = model
        if parameterization != "eps":
            coefficients = guidance_lib.path_coefficients(path)

            def eps_model(x: jax.Array, t: jax.Array) -> jax.Array:
                alpha, sigma = coefficients(t)
                return convert(model(x, t), x, alpha, sigma, source=parameterization, target="eps")

        shifted = guidance_lib.ancestral_mean_shift_guidance(
            eps_model,
            log_prob_fn,
            labels,
            scale=plan.classifier_scale,
            schedule=ancestral_schedule,
            model_variance=model_variance,
        )
        return shifted, "eps"
    shifted = guidance_lib.classifier_guidance(
        model,
        log_prob_fn,
        labels,
        scale=plan.classifier_scale,
        parameterization=parameterization,
        path=None if parameterization == "score" else path,
    )
    return shifted, parameterization


def noise_range(path: Any, t_low: Any, t_high: Any) -> tuple[float, float]:
    """``(sigma_min, sigma_max)``: the EDM noise level ``sigma_t / alpha_t`` of the noise
    ``path`` (a DDPM schedule with int ``t`` or an SDE) at the sampler's two end times."""
    with jax.ensure_compile_time_eval():  # concrete even while a sampler is being traced
        alpha, sigma = guidance_lib.path_coefficients(path)(jnp.asarray([t_low, t_high]))
    ratio = np.asarray(sigma, np.float64) / np.asarray(alpha, np.float64)
    return float(ratio[0]), float(ratio[1])


def ddpm_noise_process(
    schedule: str, num_timesteps: int, beta_start: float, beta_end: float
) -> tuple:
    """The hashable description of a DDPM forward process (integer ``t``), which a noisy
    classifier for it must share (``DDPMRecipe.noise_process()``)."""
    betas = (float(beta_start), float(beta_end)) if schedule in ("linear", "scaled_linear") else ()
    return ("ddpm", schedule, int(num_timesteps), *betas)


def sde_noise_process(
    sde: str, *, beta_min: float, beta_max: float, sigma_min: float, sigma_max: float
) -> tuple:
    """The hashable description of an SDE forward process (float ``t`` in ``(0, 1]``)."""
    if sde == "ve":
        return ("ve", float(sigma_min), float(sigma_max))
    return (sde, float(beta_min), float(beta_max))
