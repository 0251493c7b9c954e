"""Image-conditioned GAN (pix2pix, Isola et al. 2017) as a recipe, shown on super-resolution:
the generator maps a low-resolution image (average-pooled by ``model.factor``, then
enlarged back by nearest neighbour) to the full-resolution image.

The objectives, the sampler and the super-resolution task are the pure functions of
``jaxgen.gan.pix2pix``; this recipe wires its networks to them.

Objective (Isola et al. eq. 4): ``G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G)`` with

* ``L_cGAN`` (eq. 1): the discriminator sees the condition ``c`` with either the real target
  ``x`` or ``G(c)`` and classifies every patch (the PatchGAN, sec. 3.2.2); per example the
  loss is the mean over patches of ``softplus(-l_real) + softplus(l_fake)``;
* the generator plays the non-saturating game (``-log D(c, G(c))`` per patch) plus
  ``lambda * mean |x - G(c)|`` (eq. 3; ``lambda = 100`` in the paper, ``model.l1_weight``).

The generator is a U-Net with skip connections (sec. 3.2.1; ``jaxgen.nets.pix2pix``).
Isola et al. give the generator noise only through dropout and note that it learns to
ignore it; here ``model.noise_channels`` explicit Gaussian noise maps are concatenated to
the condition (0 by default: a deterministic generator).

Training uses the engine's two-player step (one discriminator update per generator
update). Samples are conditioned on held-out data (``sample_condition_split = "test"``):
the run floor passes ``condition={"image": rows}``, example ``i`` of a draw super-resolving
held-out image ``i`` (cycling), so ``jaxgen eval``'s digit FD measures the outputs against
the test digits; ``evaluate`` reports L1 and PSNR of the outputs against the truth next to
the nearest-neighbour and bilinear baselines.

Batch statistics: the U-Net's batch norms use the training batch's statistics; samples,
``evaluate`` and the figures normalize with a fixed reference batch of ``init_batch_size``
training conditions instead (reference batch normalization, ``jaxgen.gan.pix2pix``), which
the run floor hands to ``init_params`` (the first training examples) and which is kept with
the parameters as ``params["reference"]["condition"]`` (no player updates it). Without an
initialisation batch the parameters hold no reference and samples fall back to their own
batch's statistics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import ConfigError
from jaxgen.core.sampling import SamplerOutput, example_keys
from jaxgen.engine.adversarial_step import DISCRIMINATOR, GENERATOR, make_adversarial_train_step
from jaxgen.engine.optimizer import make_optimizer
from jaxgen.gan import pix2pix
from jaxgen.gan.pix2pix import enlarge_nearest, low_resolution, psnr
from jaxgen.images import make_grid
from jaxgen.nets.pix2pix import PatchDiscriminator, UNetGenerator
from jaxgen.recipes.base import Recipe, evaluate_in_chunks
from jaxgen.recipes.modules import ModuleSet

__all__ = ["Pix2PixConfig", "Pix2PixRecipe", "enlarge_nearest", "low_resolution", "psnr"]


@dataclasses.dataclass(frozen=True)
class Pix2PixConfig:
    """U-Net generator and PatchGAN discriminator widths, the L1 weight, the downsampling
    factor of the super-resolution task and the generator's noise channels."""

    factor: int = 2
    generator_features: tuple[int, ...] = (64, 128, 256)
    discriminator_features: tuple[int, ...] = (64, 128)
    l1_weight: float = 100.0
    noise_channels: int = 0


class Pix2PixRecipe(Recipe):
    """Super-resolution pix2pix; see the module docstring."""

    family = "pix2pix"
    config_class = Pix2PixConfig
    sample_condition_split = "test"
    init_batch_size = 256  # the reference batch of training conditions (see the docstring)

    def setup(self) -> None:
        m: Pix2PixConfig = self.config.model
        if len(self.data_shape) != 3:
            raise ConfigError(f"pix2pix needs image data, got example shape {self.data_shape}")
        h, w, c = self.data_shape
        if m.factor < 2 or h % m.factor or w % m.factor:
            raise ConfigError(
                f"model.factor must be >= 2 and divide the image size {(h, w)}, got {m.factor}"
            )
        if m.l1_weight < 0 or m.noise_channels < 0:
            raise ConfigError("model.l1_weight and model.noise_channels must be >= 0")
        self.modules = ModuleSet(
            {
                GENERATOR: lambda rngs: UNetGenerator(
                    c,
                    c,
                    features=m.generator_features,
                    noise_channels=m.noise_channels,
                    rngs=rngs,
                ),
                DISCRIMINATOR: lambda rngs: PatchDiscriminator(
                    2 * c, features=m.discriminator_features, rngs=rngs
                ),
            }
        )

    def init_params(self, key: jax.Array, init_batch: Mapping[str, jax.Array] | None = None) -> Any:
        """Both networks' parameters and, given training examples, the reference batch of
        their conditions (``params["reference"]["condition"]``)."""
        params = self.modules.init(key)
        if init_batch is not None:
            images = jnp.asarray(init_batch[self.data_key], jnp.float32)
            params["reference"] = {"condition": self.condition(images)}
        return params

    def reference(self, params: Any) -> jax.Array | None:
        """The reference conditions held with ``params``, or None."""
        return params.get("reference", {}).get("condition")

    def make_optimizer(self, num_steps: int):
        return {
            GENERATOR: make_optimizer(self.config.optim, num_steps),
            DISCRIMINATOR: make_optimizer(self.config.optim, num_steps),
        }

    def make_train_step(self, tx):
        return make_adversarial_train_step(
            self.discriminator_loss,
            self.generator_loss,
            tx,
            discriminator_steps=1,
            ema_decay=self.config.optim.ema_decay,
            compute_dtype=self.config.train.compute_dtype,
        )

    # ------------------------------------------------------------------ the players

    def condition(self, images: jax.Array) -> jax.Array:
        """The generator's input: the low-resolution image enlarged back to full size."""
        return pix2pix.super_resolution_condition(images, self.config.model.factor)

    def generator_fn(self, params: Any):
        """``G(condition, noise)`` as a callable."""
        return self.modules.bind(params, GENERATOR)

    def discriminator_fn(self, params: Any):
        """``D(condition, image) -> patch logits`` as a callable."""
        return self.modules.bind(params, DISCRIMINATOR)

    def translate(self, params: Any, condition: jax.Array, key: jax.Array) -> jax.Array:
        """``G(c)`` as sampled: per-example noise maps (when the generator has noise
        channels) and the reference batch's statistics (when ``params`` hold one)."""
        return pix2pix.translate(
            self.generator_fn(params),
            condition,
            key,
            noise_channels=self.config.model.noise_channels,
            reference=self.reference(params),
        )

    def discriminator_loss(
        self, params: Any, batch: Mapping[str, jax.Array], key: jax.Array, step: jax.Array
    ) -> pix2pix.Objective:
        """``jaxgen.gan.pix2pix.discriminator_objective`` with this recipe's networks."""
        x = batch[self.data_key]
        return pix2pix.discriminator_objective(
            self.generator_fn(params),
            self.discriminator_fn(params),
            self.condition(x),
            x,
            key,
            noise_channels=self.config.model.noise_channels,
        )

    def generator_loss(
        self, params: Any, batch: Mapping[str, jax.Array], key: jax.Array, step: jax.Array
    ) -> pix2pix.Objective:
        """``jaxgen.gan.pix2pix.generator_objective`` (adversarial + lambda L1)."""
        m: Pix2PixConfig = self.config.model
        x = batch[self.data_key]
        return pix2pix.generator_objective(
            self.generator_fn(params),
            self.discriminator_fn(params),
            self.condition(x),
            x,
            key,
            l1_weight=m.l1_weight,
            noise_channels=m.noise_channels,
        )

    def loss(self, params, batch, key):
        d_loss, terms, _ = self.discriminator_loss(params, batch, key, jnp.zeros((), jnp.int32))
        g_loss, g_terms, _ = self.generator_loss(params, batch, key, jnp.zeros((), jnp.int32))
        return d_loss, {**terms, **g_terms, "generator_loss": g_loss}

    # ------------------------------------------------------------------ sampling, evaluation

    def sample(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Mapping[str, jax.Array] | None = None,
        **options: Any,
    ) -> SamplerOutput:
        """Super-resolutions of ``condition[data_key]`` (held-out images aligned with the
        examples, from the run floor): example ``i`` is ``G(c_i)`` of the ``i``-th row, its
        noise (if any) from ``example_keys(key, n, start=first_index)[i]``."""
        self.check_sample_options(options)
        if condition is None or self.data_key not in condition:
            raise ValueError(
                f"pix2pix samples are super-resolutions of held-out images: pass "
                f"condition={{{self.data_key!r}: images of shape ({num_samples}, "
                f"*{self.data_shape})}} (rows of the {self.sample_condition_split!r} split)"
            )
        images = jnp.asarray(condition[self.data_key], jnp.float32)
        if images.shape != (num_samples, *self.data_shape):
            raise ValueError(
                f"condition[{self.data_key!r}] must have shape ({num_samples}, "
                f"*{self.data_shape}), got {images.shape}"
            )
        return pix2pix.sample(
            self.generator_fn(params),
            example_keys(key, num_samples, start=first_index),
            images.shape,
            condition=self.condition(images),
            noise_channels=self.config.model.noise_channels,
            reference=self.reference(params),
        )

    def _eval_chunk(self, params, images, key):
        c = self.condition(images)
        out = self.translate(params, c, key)
        f = self.config.model.factor
        small = low_resolution(images, f)
        bilinear = jax.image.resize(small, images.shape, "linear")
        per_image_l1 = lambda a: jnp.mean(jnp.abs(a - images).reshape(images.shape[0], -1), 1)  # noqa: E731
        d = self.discriminator_fn(params)
        real_logits = pix2pix.patch_logits(d, c, images)
        fake_logits = pix2pix.patch_logits(d, c, out)
        return {
            "l1": per_image_l1(out),
            "psnr_db": psnr(out, images),
            "nearest_l1": per_image_l1(c),
            "nearest_psnr_db": psnr(c, images),
            "bilinear_l1": per_image_l1(bilinear),
            "bilinear_psnr_db": psnr(bilinear, images),
            "d_real": jnp.mean(jax.nn.sigmoid(real_logits), axis=1),
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits), axis=1),
        }

    def evaluate(self, params, images, key):
        out = evaluate_in_chunks(
            self._eval_chunk, params, images, key, batch_size=self.config.eval.batch_size
        )
        results = {k: float(np.mean(v)) for k, v in out.items()}
        results["num_examples"] = float(len(images))
        return results

    def figures(self, params, images, key):
        """Columns of (nearest-neighbour input, output, truth) for 16 held-out images."""
        x = jnp.asarray(np.asarray(images[:16], np.float32))
        c = self.condition(x)
        out = jax.jit(self.translate)(params, c, key)
        triples = jnp.stack([c, out, x], axis=1).reshape(-1, *x.shape[1:])
        return {"super_resolution": make_grid(np.asarray(triples), num_cols=6)}
