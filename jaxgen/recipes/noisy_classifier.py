"""The noise-aware classifier ``p_phi(c | x_t, t)`` of classifier guidance (Dhariwal and
Nichol 2021, Sec. 4) as a recipe.

The network (:class:`jaxgen.nets.NoisyClassifier`: the U-Net's down path, middle block,
pooling and a dense layer) is trained on data noised by the *diffusion model's* forward
process ``x_t = alpha_t x_0 + sigma_t eps`` at uniform ``t``, with the per-example cross-
entropy ``-log p_phi(c | x_t, t)`` of the example's label. ``process`` names that forward
process: ``"ddpm"`` (a DDPM schedule, integer ``t in [0, T)``) or an SDE ``"vp"``,
``"subvp"``, ``"ve"`` (float ``t in (0, 1]``); :meth:`NoisyClassifierRecipe.noise_process`
describes it so a guided sampler can check that classifier and model agree
(``DDPMRecipe.noise_process()``, ``ScoreSDERecipe.noise_process()``).

:meth:`NoisyClassifierRecipe.log_prob_fn` gives ``f(x, t, labels) = log p_phi(labels | x_t)``
in the diffusion model's time convention, the ``classifier`` sample option of the
diffusion recipes takes ``(recipe.log_prob, params)``. The recipe does not sample.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgen import core, diffusion
from jaxgen import guidance as guidance_lib
from jaxgen import sde as sde_lib
from jaxgen.config import ConfigError
from jaxgen.core.parameterization import broadcast_to_event
from jaxgen.nets import NoisyClassifier, UNetConfig, precision
from jaxgen.recipes import guidance as guide
from jaxgen.recipes.base import Recipe, check_choice

PROCESSES: tuple[str, ...] = ("ddpm", "vp", "subvp", "ve")
NOISE_CONDITIONINGS: tuple[str, ...] = ("auto", "time", "log_sigma")


@dataclasses.dataclass(frozen=True)
class NoisyClassifierConfig:
    """Classifier network and the forward process it is trained on.

    Attributes:
      unet: the encoder (``num_classes`` and ``embedding_dim`` must stay 0: the classes
        come from the dataset).
      process: ``"ddpm"`` (``schedule``, ``num_timesteps``, ``beta_start``, ``beta_end`` as
        in :class:`jaxgen.recipes.ddpm.DDPMConfig`) or the SDE ``"vp"``, ``"subvp"``
        (``beta_min``, ``beta_max``), ``"ve"`` (``sigma_min``, ``sigma_max``) as in
        :class:`jaxgen.recipes.score_sde.ScoreSDEConfig`; must match the guided model.
      noise_conditioning: the network's time input for an SDE: ``time`` (``999 t``),
        ``log_sigma`` (``log(sigma/alpha)``) or ``auto`` (time for VP/sub-VP, log_sigma for
        VE); a DDPM process feeds the integer ``t``.
      train_t_min: smallest training time of an SDE process.
      eval_levels: fractions ``f`` of the time range at which ``evaluate`` reports accuracy
        (``t = f (T - 1)`` for DDPM, ``t_min + f (1 - t_min)`` for an SDE).
    """

    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    process: str = "ddpm"
    schedule: str = "linear"
    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_min: float = 0.1
    beta_max: float = 20.0
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    noise_conditioning: str = "auto"
    train_t_min: float = 1e-5
    eval_levels: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)


class NoisyClassifierRecipe(Recipe):
    """Noise-aware classifier + cross-entropy on noised data; no sampler."""

    family = "noisy_classifier"
    config_class = NoisyClassifierConfig
    eval_time_fields = ("eval_levels",)
    evaluate_labels: ClassVar[bool] = True
    generative: ClassVar[bool] = False

    def setup(self) -> None:
        m: NoisyClassifierConfig = self.config.model
        check_choice("model.process", m.process, PROCESSES)
        check_choice("model.noise_conditioning", m.noise_conditioning, NOISE_CONDITIONINGS)
        if len(self.data_shape) != 3:
            raise ConfigError(
                f"the noisy classifier needs (H, W, C) images, the dataset has shape "
                f"{self.data_shape}"
            )
        if not self.num_classes or self.num_classes < 2:
            raise ConfigError(
                f"the noisy classifier needs labelled data with >= 2 classes; "
                f"{self.config.data.name!r} has {self.num_classes or 'no'} classes"
            )
        if m.unet.num_classes or m.unet.embedding_dim:
            raise ConfigError(
                "model.unet.num_classes and model.unet.embedding_dim must be 0 for the noisy "
                f"classifier (its classes are the dataset's), got {m.unet.num_classes} and "
                f"{m.unet.embedding_dim}"
            )
        for f in m.eval_levels:
            if not isinstance(f, int | float) or not 0.0 <= f <= 1.0:
                raise ConfigError(f"model.eval_levels must be fractions in [0, 1], got {f!r}")
        if m.process == "ddpm":
            kwargs = (
                {"beta_start": m.beta_start, "beta_end": m.beta_end}
                if m.schedule in ("linear", "scaled_linear")
                else {}
            )
            self.path = diffusion.make_schedule(m.schedule, m.num_timesteps, **kwargs)
        elif m.process == "ve":
            self.path = sde_lib.VESDE(sigma_min=m.sigma_min, sigma_max=m.sigma_max)
        else:
            self.path = sde_lib.make_sde(m.process, beta_min=m.beta_min, beta_max=m.beta_max)
        abstract = nnx.eval_shape(lambda: self._make_net(jax.random.key(0)))
        self.graphdef, _ = nnx.split(abstract)

    def _make_net(self, key: jax.Array) -> NoisyClassifier:
        return NoisyClassifier(
            self.config.model.unet,
            image_shape=self.data_shape,
            num_classes=int(self.num_classes),
            rngs=nnx.Rngs(key),
        )

    def init_params(self, key: jax.Array, init_batch: Mapping[str, jax.Array] | None = None) -> Any:
        del init_batch
        return nnx.to_pure_dict(nnx.split(self._make_net(key))[1])

    # ------------------------------------------------------------------ the classifier

    def noise_process(self) -> tuple:
        """The hashable description of the forward process the classifier was trained on;
        guidance needs it equal to the diffusion model's ``noise_process()``."""
        m: NoisyClassifierConfig = self.config.model
        if m.process == "ddpm":
            return guide.ddpm_noise_process(m.schedule, m.num_timesteps, m.beta_start, m.beta_end)
        return guide.sde_noise_process(
            m.process,
            beta_min=m.beta_min,
            beta_max=m.beta_max,
            sigma_min=m.sigma_min,
            sigma_max=m.sigma_max,
        )

    def noise_input(self, t: jax.Array) -> jax.Array:
        """The network's time input: ``t`` (DDPM), ``999 t`` or ``log(sigma/alpha)`` (SDE)."""
        m: NoisyClassifierConfig = self.config.model
        if m.process == "ddpm":
            return t
        kind = m.noise_conditioning
        if kind == "auto":
            kind = "log_sigma" if m.process == "ve" else "time"
        if kind == "time":
            return 999.0 * t
        return jnp.log(self.path.sigma_ratio(t))

    def logits_fn(
        self, params: Any, *, dropout_key: jax.Array | None = None
    ) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """``logits(x_t, t) -> (B, K)`` in the process's time convention."""
        net = precision.merge(self.graphdef, params)
        return lambda x, t: net(x, self.noise_input(t), key=dropout_key)

    def log_prob_fn(self, params: Any) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
        """``f(x_t, t, labels) -> (B,)`` = ``log p_phi(labels | x_t, t) =
        log_softmax(logits)[labels]`` (Dhariwal and Nichol 2021, Sec. 4.1)."""
        logits = self.logits_fn(params)

        def f(x: jax.Array, t: jax.Array, labels: jax.Array) -> jax.Array:
            log_p = jax.nn.log_softmax(logits(x, t), axis=-1)
            return jnp.take_along_axis(log_p, jnp.asarray(labels)[:, None], axis=-1)[:, 0]

        return f

    def log_prob(self, params: Any, x: jax.Array, t: jax.Array, labels: jax.Array) -> jax.Array:
        """``log p_phi(labels | x_t, t)``, ``(B,)``: :meth:`log_prob_fn` with the parameters
        as an argument, the ``classifier=(recipe.log_prob, params)`` sample option."""
        return self.log_prob_fn(params)(x, t, labels)

    def noised(
        self, images: jax.Array, key: jax.Array, fractions: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """``(x_t, t)``: ``x_t = alpha_t x_0 + sigma_t eps`` at uniform ``t`` (DDPM:
        ``t ~ U{0..T-1}``; SDE: ``t ~ U[train_t_min, 1]``), or at the time-range
        ``fractions`` (B,) given."""
        m: NoisyClassifierConfig = self.config.model
        batch = images.shape[0]
        t_key, noise_key = jax.random.split(key)
        if m.process == "ddpm":
            if fractions is None:
                t = jax.random.randint(t_key, (batch,), 0, m.num_timesteps)
            else:
                t = jnp.round(fractions * (m.num_timesteps - 1)).astype(jnp.int32)
        else:
            u = jax.random.uniform(t_key, (batch,)) if fractions is None else fractions
            t = m.train_t_min + u * (self.path.T - m.train_t_min)
        alpha, sigma = guidance_lib.path_coefficients(self.path)(t)
        eps = jax.random.normal(noise_key, images.shape, images.dtype)
        x_t = broadcast_to_event(alpha, images) * images
        x_t = x_t + broadcast_to_event(sigma, images) * eps
        return x_t.astype(images.dtype), t

    # ------------------------------------------------------------------ engine hooks

    def loss(
        self, params: Any, batch: dict[str, jax.Array], key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Per-example cross-entropy ``-log p_phi(c | x_t, t)`` at uniform ``t`` (terms:
        ``ce`` and ``accuracy``)."""
        labels = guide.batch_labels(batch, self.config.data.name)
        dropout_key, noise_key = jax.random.split(key)
        x_t, t = self.noised(batch[self.data_key], noise_key)
        log_p = jax.nn.log_softmax(self.logits_fn(params, dropout_key=dropout_key)(x_t, t))
        ce = -jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]
        accuracy = (jnp.argmax(log_p, axis=-1) == labels).astype(ce.dtype)
        return ce, {"ce": ce, "accuracy": accuracy}

    def sample(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Mapping[str, jax.Array] | None = None,
        **options: Any,
    ) -> core.SamplerOutput:
        """Refused: a classifier does not generate (``ConfigError``)."""
        raise ConfigError(
            "family 'noisy_classifier' does not sample; pass its run as the classifier of a "
            "diffusion model's guided sampling"
        )

    def evaluate(
        self, params: Any, images: Any, key: jax.Array, *, labels: Any = None
    ) -> dict[str, float]:
        """Held-out accuracy of ``argmax p_phi(c | x_t, t)`` at each of ``model.eval_levels``
        (``accuracy_t<f>``) and its mean cross-entropy at uniform ``t`` (``ce``)."""
        if labels is None:
            raise ConfigError(
                "the noisy classifier's evaluate needs the held-out labels (labels=...)"
            )
        m: NoisyClassifierConfig = self.config.model
        images = np.asarray(images, np.float32)
        labels = np.asarray(labels, np.int32)
        levels = jnp.asarray(m.eval_levels, jnp.float32)
        size = min(self.config.eval.batch_size, len(images))

        @jax.jit
        def chunk_stats(params, x, y, key):
            ce_key, *level_keys = jax.random.split(key, len(m.eval_levels) + 1)
            ce, _ = self.loss(params, {self.data_key: x, "label": y}, ce_key)
            correct = []
            for i, k in enumerate(level_keys):
                x_t, t = self.noised(x, k, jnp.full((x.shape[0],), levels[i]))
                pred = jnp.argmax(self.logits_fn(params)(x_t, t), axis=-1)
                correct.append(pred == y)
            return ce, jnp.stack(correct, axis=-1)

        ces, corrects = [], []
        for i, start in enumerate(range(0, len(images), size)):
            x, y = images[start : start + size], labels[start : start + size]
            n = len(x)
            pad = size - n
            x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x
            y = np.concatenate([y, np.repeat(y[-1:], pad, axis=0)]) if pad else y
            ce, correct = chunk_stats(params, x, y, jax.random.fold_in(key, i))
            ces.append(np.asarray(ce)[:n])
            corrects.append(np.asarray(correct)[:n])
        accuracy = np.concatenate(corrects).mean(axis=0)
        results = {"ce": float(np.concatenate(ces).mean()), "num_examples": float(len(images))}
        for f, acc in zip(m.eval_levels, accuracy, strict=True):
            results[f"accuracy_t{f:g}"] = float(acc)
        return results
