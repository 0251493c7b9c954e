"""Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models"): a diffusion, score-SDE or flow-matching model trained on the scaled
latents of a frozen, trained autoencoder, its samples decoded to images.

With ``E`` the first stage's encoder (a KL autoencoder's posterior mean, or a VQ-VAE's
pre-quantisation output; :mod:`jaxgen.recipes.first_stage`) and ``D`` its decoder, the
second stage models ``z = s E(x)`` and samples ``x = D(z / s)``. The **latent scale**
``s = 1 / std(E(x))`` (the standard deviation over every element of the training set's
latents; LDM's "rescaling of the latent space", sec. 4.3.2 and appendix G, their 0.18215
for the KL-f8 autoencoder) makes the latents unit-variance, so the denoiser's noise schedule
(built for data of about unit scale) fits them. The run floor computes it over the training
set when the run starts, records it in ``<workdir>/first_stage.json`` and in the
checkpoints (the frozen entry ``params["latent"]["scale"]``), prints it when training
starts, and ``evaluate`` reports it; ``model.latent_scale`` fixes it instead.

``model.denoiser`` picks the second stage's family (``ddpm``, ``score_sde``,
``flow_matching``) and ``model.<denoiser>`` its config: the family's recipe is built on the
latent shape with continuous data (no levels: its final samples are not clipped to
[-1, 1]; DDPM needs ``clip_denoised=False``), so its losses, samplers, class conditioning and
classifier-free guidance (:mod:`jaxgen.recipes.guidance`) apply to latents unchanged:
``sample`` passes every option and condition through. The first stage's parameters are the
frozen entry ``params["first_stage"]``.

With ``model.first_stage.identity`` the latents are the images (scale 1, the data's levels):
the losses and samples are those of the pixel-space family, exactly, for the same keys.

Evaluation reports the latent scale, the held-out latents' standard deviation after scaling,
the first stage's reconstruction error (mean squared error and PSNR of ``D(E(x))``) and the
second stage's training objective on held-out latents (a class-conditional denoiser's at the
null label: its unconditional model); the run floor adds the sample scores
of the decoded images. The identity stage reports the pixel family's own evaluation.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import ConfigError
from jaxgen.core.resize import psnr
from jaxgen.core.sampling import SamplerOutput
from jaxgen.images import make_grid
from jaxgen.recipes import ddpm, flow_matching, score_sde
from jaxgen.recipes.base import check_choice, evaluate_in_chunks
from jaxgen.recipes.first_stage import FirstStageConfig, IdentityFirstStage, SecondStageRecipe
from jaxgen.recipes.flow_matching_config import FlowMatchingConfig
from jaxgen.recipes.guidance import NULL_LABEL
from jaxgen.recipes.score_sde_config import ScoreSDEConfig

DENOISERS: dict[str, type] = {
    "ddpm": ddpm.DDPMRecipe,
    "score_sde": score_sde.ScoreSDERecipe,
    "flow_matching": flow_matching.FlowMatchingRecipe,
}


def _union(name: str) -> tuple[str, ...]:
    out: list[str] = []
    for cls in DENOISERS.values():
        out += [v for v in getattr(cls, name) if v not in out]
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class LatentDiffusionConfig:
    """A denoiser family trained on a first stage's scaled latents.

    Attributes:
      first_stage: the frozen autoencoder (:class:`FirstStageConfig`; a ``kl_autoencoder`` or
        ``vqvae`` run, or ``identity=True``).
      denoiser: ``ddpm``, ``score_sde`` or ``flow_matching``; its config is the field of that
        name (the other two are unused).
      latent_scale: fixed scale ``s`` (None: ``1 / std`` of the training set's latents).
    """

    first_stage: FirstStageConfig = dataclasses.field(default_factory=FirstStageConfig)
    denoiser: str = "ddpm"
    latent_scale: float | None = None
    ddpm: ddpm.DDPMConfig = dataclasses.field(default_factory=ddpm.DDPMConfig)
    score_sde: ScoreSDEConfig = dataclasses.field(default_factory=ScoreSDEConfig)
    flow_matching: FlowMatchingConfig = dataclasses.field(default_factory=FlowMatchingConfig)


class LatentDiffusionRecipe(SecondStageRecipe):
    """A ``ddpm`` / ``score_sde`` / ``flow_matching`` recipe on a frozen autoencoder's latents;
    see the module docstring."""

    family = "latent_diffusion"
    config_class = LatentDiffusionConfig
    first_stage_kind = "latents"
    state_collections = ("first_stage", "latent")
    frozen_collections: ClassVar[tuple[str, ...]] = ("first_stage", "latent")
    samplers = _union("samplers")
    sample_options = _union("sample_options")
    eval_time_fields = tuple(
        f"{name}.{field}" for name, cls in DENOISERS.items() for field in cls.eval_time_fields
    )

    def setup_second_stage(self) -> None:
        m: LatentDiffusionConfig = self.config.model
        check_choice("model.denoiser", m.denoiser, tuple(DENOISERS))
        if m.latent_scale is not None and not (np.isfinite(m.latent_scale) and m.latent_scale > 0):
            raise ConfigError(f"model.latent_scale must be > 0 (or None), got {m.latent_scale!r}")
        if len(self.data_shape) != 3:
            raise ConfigError(
                f"latent diffusion needs (H, W, C) images, the data have shape {self.data_shape}"
            )
        inner = getattr(m, m.denoiser)
        if inner.super_resolution.factor:
            raise ConfigError(
                f"model.{m.denoiser}.super_resolution: latent diffusion does not super-resolve "
                "(set factor=0)"
            )
        if not m.first_stage.identity and m.denoiser == "ddpm" and inner.clip_denoised:
            raise ConfigError(
                "model.ddpm.clip_denoised=True clips x0 to [-1, 1], but latents are not "
                "bounded; set model.ddpm.clip_denoised=False"
            )
        self.inner = None
        self.latent_scale: float | None = None
        if m.first_stage.identity:
            self.attach_first_stage(IdentityFirstStage(self.data_shape))
            self.latent_scale = 1.0 if m.latent_scale is None else float(m.latent_scale)

    def first_stage_attached(self) -> None:
        m: LatentDiffusionConfig = self.config.model
        identity = isinstance(self.first_stage, IdentityFirstStage)
        shape = tuple(int(d) for d in self.first_stage.latent_shape)
        inner_config = dataclasses.replace(
            self.config, family=m.denoiser, model=getattr(m, m.denoiser)
        )
        recipe_cls = DENOISERS[m.denoiser]
        try:
            self.inner = recipe_cls(
                inner_config,
                data_shape=shape,
                num_levels=self.num_levels if identity else None,
                data_key=self.data_key,
                num_classes=self.num_classes,
            )
        except ConfigError as err:
            raise ConfigError(str(err).replace("model.", f"model.{m.denoiser}.", 1)) from None
        if self.inner.state_collections:
            raise ConfigError(
                f"model.denoiser={m.denoiser!r}: its state collections "
                f"{self.inner.state_collections} are not supported in latent space"
            )

    def set_latent_scale(self, scale: float) -> None:
        """The scale ``s`` the run floor computed (or read from the run's record)."""
        if not (np.isfinite(scale) and scale > 0):
            raise ConfigError(f"the latent scale must be finite and > 0, got {scale!r}")
        self.latent_scale = float(scale)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.require_first_stage().latent_shape)

    # ------------------------------------------------------------------ parameters

    def init_params(self, key: jax.Array, init_batch: Any = None) -> Any:
        self.require_first_stage()
        params = {  # the denoiser from ``key`` itself: the pixel family's initialisation
            "denoiser": self.inner.init_params(key, init_batch),
            "latent": {
                "scale": jnp.float32(1.0 if self.latent_scale is None else self.latent_scale)
            },
        }
        if not isinstance(self.first_stage, IdentityFirstStage):
            params["first_stage"] = self.first_stage_init(jax.random.fold_in(key, 1))
        return params

    def encode(self, params: Any, images: jax.Array) -> jax.Array:
        """The scaled latents ``s E(x)`` of images (B, H, W, C)."""
        latents = self.first_stage.encode_latents(params.get("first_stage", {}), images)
        return latents * params["latent"]["scale"]

    def decode(self, params: Any, latents: jax.Array) -> jax.Array:
        """Images ``D(z / s)`` of scaled latents (B, h, w, c); checks the latent shape."""
        expected = self.latent_shape
        if latents.ndim != len(expected) + 1 or tuple(latents.shape[1:]) != expected:
            raise ValueError(
                f"latents of shape {tuple(latents.shape)} do not fit this model's latent shape "
                f"(B, {', '.join(map(str, expected))})"
            )
        z = latents / params["latent"]["scale"]
        return self.first_stage.decode_latents(params.get("first_stage", {}), z)

    # ------------------------------------------------------------------ engine hooks

    def loss(self, params, batch, key):
        per_example, terms, _ = self.training_loss(params, batch, key, jnp.asarray(0))
        return per_example, terms

    def training_loss(self, params, batch, key, step):
        """The denoiser family's training loss on ``{**batch, data_key: s E(x)}``."""
        self.require_first_stage()
        z = jax.lax.stop_gradient(self.encode(params, batch[self.data_key]))
        return self.inner.training_loss(params["denoiser"], {**batch, self.data_key: z}, key, step)

    def sample(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Any = None,
        **options: Any,
    ) -> SamplerOutput:
        """Latents from the denoiser family's sampler (every option and condition of that
        family), decoded: ``D(z / s)``. The count adds the decoder's one pass (none for the
        identity stage). Example ``i`` depends only on the key and ``first_index + i``."""
        self.require_first_stage()
        out = self.inner.sample(
            params["denoiser"],
            key,
            num_samples,
            first_index=first_index,
            condition=condition,
            **options,
        )
        identity = isinstance(self.first_stage, IdentityFirstStage)
        return SamplerOutput(self.decode(params, out.samples), out.nfe + (0 if identity else 1))

    # ------------------------------------------------------------------ evaluation

    def _eval_chunk(self, params, images, key):
        z = self.encode(params, images)
        batch = {self.data_key: z}
        if getattr(self.inner, "classes", 0):  # a class-conditional denoiser: its null label
            batch["label"] = jnp.full((z.shape[0],), NULL_LABEL, jnp.int32)
        per_example, _ = self.inner.loss(params["denoiser"], batch, key)
        recon = self.decode(params, z)
        return {
            "objective": per_example,
            "latent_sq": jnp.mean(jnp.square(z).reshape(z.shape[0], -1), axis=1),
            "latent_mean": jnp.mean(z.reshape(z.shape[0], -1), axis=1),
            "recon_mse": jnp.mean(jnp.square(recon - images).reshape(z.shape[0], -1), axis=1),
            "recon_psnr": psnr(recon, images),
        }

    def evaluate(self, params, images, key):
        """See the module docstring."""
        self.require_first_stage()
        scale = float(params["latent"]["scale"])
        if isinstance(self.first_stage, IdentityFirstStage):
            return {**self.inner.evaluate(params["denoiser"], images, key), "latent_scale": scale}
        out = evaluate_in_chunks(
            self._eval_chunk, params, images, key, batch_size=self.config.eval.batch_size
        )
        mean = float(np.mean(out["latent_mean"]))
        variance = float(np.mean(out["latent_sq"])) - mean**2
        return {
            "latent_scale": scale,
            "latent_std_heldout": float(np.sqrt(max(variance, 0.0))),
            "latent_objective": float(np.mean(out["objective"])),
            "first_stage_mse": float(np.mean(out["recon_mse"])),
            "first_stage_psnr": float(np.mean(out["recon_psnr"])),
            "num_examples": float(len(images)),
        }

    def figures(self, params, images, key):
        samples = jax.jit(self.sample, static_argnums=2)(params, key, 64).samples
        x = jnp.asarray(np.asarray(images[:32], np.float32))
        recon = jax.jit(lambda p, v: self.decode(p, self.encode(p, v)))(params, x)
        pairs = jnp.stack([x, recon], axis=1).reshape(-1, *x.shape[1:])
        return {
            "samples": make_grid(np.asarray(samples)),
            "first_stage_reconstructions": make_grid(np.asarray(pairs), num_cols=8),
        }
