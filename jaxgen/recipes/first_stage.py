"""Two-stage models: a second stage (latent diffusion, a prior over discrete codes) trained in
the representation of a frozen, trained first stage (an autoencoder run).

**The first-stage protocol.** A first-stage recipe offers, on images in the data's [-1, 1]
scale (what ``batch["image"]`` holds and ``Recipe.sample`` returns), pure jittable methods:

* continuous latents (latent diffusion; Rombach et al. 2022): ``latent_shape`` ``(h, w, c)``,
  ``encode_latents(params, images)`` (a KL autoencoder's posterior mean, a VQ-VAE's
  pre-quantisation ``z_e``) and ``decode_latents(params, latents)`` (the decoder's mean
  picture; a VQ-VAE quantises first);
* discrete codes (code priors; VQ-VAE-2, Razavi et al. 2019; DALL-E, Ramesh et al. 2021):
  ``code_shapes`` (coarse to fine), ``code_vocab_sizes``, ``encode_codes(params, images)``
  (a tuple of int32 ``(B, h_l, w_l)``) and ``decode_codes(params, codes)``.

:class:`IdentityFirstStage` is the identity (latents are the images): latent diffusion over
it is pixel-space diffusion, exactly.

**A second-stage config** names its first stage with :class:`FirstStageConfig`: a finished
run's ``workdir``, and optionally the experiment file (``config``) that ``jaxgen train``
trains into that workdir first, resuming it if it was interrupted. The run floor
(:mod:`jaxgen.run.first_stage`) builds the first stage's recipe from its ``config.json``,
loads its EMA parameters, checks that it is finished and of an allowed family, and records
it in ``<workdir>/first_stage.json`` (workdir, config hash, step, family and the latent
scale) when the second stage starts; every resume compares the first stage with the record
and refuses a changed one by name.

:class:`SecondStageRecipe` is the base of second-stage recipes. Its parameters hold the
first stage's (EMA) parameters as the frozen state collection ``"first_stage"`` (so
checkpoints carry them, a resume continues exactly, and sampling a trained second stage
needs the first-stage run only for its architecture); the optimizer moves only the other
entries (:func:`frozen_entries`), and the EMA of a frozen entry is the entry itself
(:meth:`SecondStageRecipe.make_train_step`), bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import optax

from jaxgen.config import ConfigError
from jaxgen.recipes.base import Recipe

__all__ = [
    "CODE_FAMILIES",
    "LATENT_FAMILIES",
    "FirstStageConfig",
    "IdentityFirstStage",
    "SecondStageRecipe",
    "frozen_entries",
]

# Families whose runs can serve as a first stage, by what the second stage needs of them.
LATENT_FAMILIES: tuple[str, ...] = ("kl_autoencoder", "vqvae")
CODE_FAMILIES: tuple[str, ...] = ("vqvae", "vqvae2")


@dataclasses.dataclass(frozen=True)
class FirstStageConfig:
    """The frozen first stage of a two-stage model.

    Attributes:
      workdir: a finished run of a first-stage family (``LATENT_FAMILIES`` for latent
        diffusion, ``CODE_FAMILIES`` for code priors).
      config: optional experiment file (``path.py`` or ``path.py:function``) of that run: the
        second stage's ``jaxgen train`` trains (or resumes) it into ``workdir`` first.
      identity: no first stage: latents are the images (latent diffusion only; it reduces to
        pixel-space diffusion).
    """

    workdir: str = ""
    config: str = ""
    identity: bool = False

    def __post_init__(self) -> None:
        if self.identity and (self.workdir or self.config):
            raise ConfigError(
                "model.first_stage: identity=True takes no workdir or config, got "
                f"workdir={self.workdir!r}, config={self.config!r}"
            )


class IdentityFirstStage:
    """The identity first stage: ``encode_latents`` and ``decode_latents`` return their input
    (latent diffusion over it is pixel-space diffusion). Its parameters are ``{}``."""

    family = "identity"

    def __init__(self, data_shape: tuple[int, ...]):
        self.latent_shape = tuple(data_shape)

    def encode_latents(self, params: Any, images: jax.Array) -> jax.Array:
        del params
        return images

    def decode_latents(self, params: Any, latents: jax.Array) -> jax.Array:
        del params
        return latents


def frozen_entries(
    tx: optax.GradientTransformation, frozen: tuple[str, ...]
) -> optax.GradientTransformation:
    """``tx`` on the top-level parameter entries not in ``frozen``; a zero update (and no
    optimizer state) on those in ``frozen``."""
    return optax.multi_transform(
        {"train": tx, "frozen": optax.set_to_zero()},
        lambda params: {k: "frozen" if k in frozen else "train" for k in params},
    )


class SecondStageRecipe(Recipe):
    """Base of recipes trained in a frozen first stage's representation (module docstring).

    Subclasses set ``first_stage_kind`` (``"latents"`` or ``"codes"``) and implement
    :meth:`first_stage_attached` (build what depends on the first stage's shapes). The run
    floor calls :meth:`attach_first_stage` with the first stage's recipe when it builds this
    recipe, and again with its parameters (and the latent scale) before training.
    """

    first_stage_kind: ClassVar[str] = "latents"
    frozen_collections: ClassVar[tuple[str, ...]] = ("first_stage",)

    def setup(self) -> None:
        fs = self.first_stage_config
        if not isinstance(fs, FirstStageConfig):
            raise ConfigError(f"model.first_stage must be a FirstStageConfig, got {fs!r}")
        if not fs.identity and not fs.workdir:
            raise ConfigError(
                "model.first_stage.workdir is empty: name the trained autoencoder run"
                + (
                    " (or set model.first_stage.identity=True for pixel space)"
                    if self.first_stage_kind == "latents"
                    else ""
                )
            )
        if fs.identity and self.first_stage_kind != "latents":
            raise ConfigError(
                f"model.first_stage.identity=True: the {self.family!r} family needs discrete "
                f"codes, a run of {', '.join(CODE_FAMILIES)}"
            )
        self.first_stage: Any = None
        self.first_stage_params: Any = None
        self.first_stage_hash: str | None = None
        self.first_stage_error: str | None = None  # why no first stage is attached (run floor)
        self.setup_second_stage()

    def setup_second_stage(self) -> None:
        """Check the family's config (no first stage attached yet)."""

    @property
    def first_stage_config(self) -> FirstStageConfig:
        return self.config.model.first_stage

    @property
    def first_stage_families(self) -> tuple[str, ...]:
        return LATENT_FAMILIES if self.first_stage_kind == "latents" else CODE_FAMILIES

    def attach_first_stage(
        self, recipe: Any, params: Any = None, *, config_hash: str | None = None
    ) -> None:
        """Give the recipe its first stage: the first-stage run's recipe and its (EMA)
        parameters (None when only shapes are needed, e.g. to restore a checkpoint that holds
        them). ``ConfigError`` for a recipe that lacks the protocol of ``first_stage_kind``."""
        needed = (
            ("latent_shape", "encode_latents", "decode_latents")
            if self.first_stage_kind == "latents"
            else ("code_shapes", "code_vocab_sizes", "encode_codes", "decode_codes")
        )
        missing = [name for name in needed if not hasattr(recipe, name)]
        if missing:
            raise ConfigError(
                f"model.first_stage.workdir={self.first_stage_config.workdir!r} is a "
                f"{recipe.family!r} run, which has no {', '.join(missing)}; the {self.family!r} "
                f"family needs a run of {', '.join(self.first_stage_families)}"
            )
        self.first_stage = recipe
        if params is not None:
            self.first_stage_params = {k: params[k] for k in self.first_stage_param_keys(params)}
        self.first_stage_hash = config_hash
        self.first_stage_attached()

    def first_stage_param_keys(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The entries of the first stage's parameters the second stage keeps (default: all
        but a factorized code prior, which the second stage replaces)."""
        return tuple(k for k in params if not k.startswith("prior_logits"))

    def first_stage_attached(self) -> None:
        """Hook run after :meth:`attach_first_stage` (build what depends on its shapes)."""

    def require_first_stage(self) -> Any:
        """The attached first stage, or a ``ConfigError`` saying how to attach it."""
        if self.first_stage is None and self.first_stage_error is not None:
            raise ConfigError(self.first_stage_error)
        if self.first_stage is None:
            raise ConfigError(
                f"the {self.family!r} recipe has no first stage attached; build it through "
                "jaxgen.run (build_recipe), which loads model.first_stage"
            )
        return self.first_stage

    def first_stage_init(self, key: jax.Array) -> Any:
        """The first stage's parameters (fresh ones of its shapes when none were attached:
        a checkpoint's values replace them when a trained run is restored)."""
        first = self.require_first_stage()
        if self.first_stage_params is not None:
            return self.first_stage_params
        fresh = first.init_params(key)
        return {k: fresh[k] for k in self.first_stage_param_keys(fresh)}

    def make_optimizer(self, num_steps: int) -> optax.GradientTransformation:
        """``config.optim``'s optimizer on the second stage's own entries only."""
        return frozen_entries(super().make_optimizer(num_steps), self.frozen_collections)

    def make_train_step(self, tx: Any):
        """The default step, with the EMA of each frozen entry kept equal to the entry."""
        step = super().make_train_step(tx)
        frozen = self.frozen_collections

        def frozen_step(state, batch):
            new_state, metrics = step(state, batch)
            ema = dict(new_state.ema_params)
            for name in frozen:
                if name in ema:
                    ema[name] = state.ema_params[name]
            return dataclasses.replace(new_state, ema_params=ema), metrics

        return frozen_step
