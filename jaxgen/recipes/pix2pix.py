"""Image-conditioned GAN (pix2pix, Isola et al. 2017) as a recipe, shown on super-resolution:
the generator maps a low-resolution image (average-pooled by ``model.factor``, then
enlarged back by nearest neighbour) to the full-resolution image.

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
update). Samples super-resolve randomly chosen held-out images (``eval.split``), so
``jaxgen eval``'s digit FD measures the outputs against the test digits; ``evaluate``
reports L1 and PSNR of the outputs against the truth next to the nearest-neighbour and
bilinear baselines.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import ConfigError
from jaxgen.engine.adversarial_step import DISCRIMINATOR, GENERATOR, make_adversarial_train_step
from jaxgen.engine.optimizer import make_optimizer
from jaxgen.gan import losses
from jaxgen.images import make_grid
from jaxgen.nets.pix2pix import PatchDiscriminator, UNetGenerator
from jaxgen.recipes.base import Recipe, evaluate_in_chunks
from jaxgen.recipes.modules import ModuleSet
from jaxgen.recipes.registry import register


@dataclasses.dataclass(frozen=True)
class Pix2PixConfig:
    """U-Net generator and PatchGAN discriminator widths, the L1 weight, the downsampling
    factor of the super-resolution task and the generator's noise channels."""

    factor: int = 2
    generator_features: tuple[int, ...] = (64, 128, 256)
    discriminator_features: tuple[int, ...] = (64, 128)
    l1_weight: float = 100.0
    noise_channels: int = 0


def low_resolution(images: jax.Array, factor: int) -> jax.Array:
    """Average-pool NHWC ``images`` by ``factor``: (B, H / f, W / f, C)."""
    b, h, w, c = images.shape
    if h % factor or w % factor:
        raise ValueError(f"image size {(h, w)} is not divisible by the factor {factor}")
    return images.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def enlarge_nearest(images: jax.Array, factor: int) -> jax.Array:
    """Nearest-neighbour enlargement by ``factor`` (each pixel repeated f x f times)."""
    return jnp.repeat(jnp.repeat(images, factor, axis=1), factor, axis=2)


def psnr(estimate: jax.Array, truth: jax.Array) -> jax.Array:
    """Per-example peak signal-to-noise ratio in dB for images in [-1, 1] (peak 2)."""
    mse = jnp.mean((estimate - truth).reshape(truth.shape[0], -1) ** 2, axis=1)
    return 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-12))


@register
class Pix2PixRecipe(Recipe):
    """Super-resolution pix2pix; see the module docstring."""

    family = "pix2pix"
    config_class = Pix2PixConfig

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
        self._held_out: np.ndarray | None = None

    def init_params(self, key: jax.Array) -> Any:
        return self.modules.init(key)

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
        )

    # ------------------------------------------------------------------ the players

    def condition(self, images: jax.Array) -> jax.Array:
        """The generator's input: the low-resolution image enlarged back to full size."""
        f = self.config.model.factor
        return enlarge_nearest(low_resolution(images, f), f)

    def translate(self, params: Any, condition: jax.Array, key: jax.Array) -> jax.Array:
        """``G(c)`` (with fresh noise maps when the generator has noise channels)."""
        m: Pix2PixConfig = self.config.model
        g = self.modules.bind(params, GENERATOR)
        noise = None
        if m.noise_channels:
            noise = jax.random.normal(key, (*condition.shape[:3], m.noise_channels))
        return g(condition, noise)

    def _patch_logits(self, params, condition, target):
        d = self.modules.bind(params, DISCRIMINATOR)
        logits = d(condition, target)
        return logits.reshape(logits.shape[0], -1)

    def discriminator_loss(self, params, batch, key, step):
        x = batch[self.data_key]
        c = self.condition(x)
        fake = self.translate(params, c, key)
        real_logits = self._patch_logits(params, c, x)
        fake_logits = self._patch_logits(params, c, fake)
        per_patch = losses.discriminator_loss(real_logits.ravel(), fake_logits.ravel())
        per_example = per_patch.reshape(real_logits.shape).mean(axis=1)
        terms = {
            "d_real": jnp.mean(jax.nn.sigmoid(real_logits), axis=1),
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits), axis=1),
        }
        return per_example, terms, {}

    def generator_loss(self, params, batch, key, step):
        m: Pix2PixConfig = self.config.model
        x = batch[self.data_key]
        c = self.condition(x)
        fake = self.translate(params, c, key)
        logits = self._patch_logits(params, c, fake)
        adversarial = losses.generator_loss(logits.ravel(), kind="non_saturating")
        adversarial = adversarial.reshape(logits.shape).mean(axis=1)
        l1 = jnp.mean(jnp.abs(x - fake).reshape(x.shape[0], -1), axis=1)
        return adversarial + m.l1_weight * l1, {"adversarial": adversarial, "l1": l1}, {}

    def loss(self, params, batch, key):
        d_loss, terms, _ = self.discriminator_loss(params, batch, key, jnp.zeros((), jnp.int32))
        g_loss, g_terms, _ = self.generator_loss(params, batch, key, jnp.zeros((), jnp.int32))
        return d_loss, {**terms, **g_terms, "generator_loss": g_loss}

    # ------------------------------------------------------------------ sampling, evaluation

    def held_out_images(self) -> np.ndarray:
        """The ``eval.split`` images whose super-resolutions are this model's samples."""
        if self._held_out is None:
            from jaxgen.data.registry import load_dataset

            data = self.config.data
            held_out = load_dataset(
                data.name, self.config.eval.split, data_dir=data.data_dir, download=data.download
            )
            n = len(held_out.source)
            if self.config.eval.max_examples is not None:
                n = min(n, self.config.eval.max_examples)
            self._held_out = np.asarray(
                held_out.source.get(np.arange(n))[held_out.data_key], np.float32
            )
        return self._held_out

    def sample(self, params, key, num_samples):
        images = jnp.asarray(self.held_out_images())
        pick_key, noise_key = jax.random.split(key)
        idx = jax.random.choice(pick_key, images.shape[0], (num_samples,))
        return self.translate(params, self.condition(images[idx]), noise_key)

    def _eval_chunk(self, params, images, key):
        c = self.condition(images)
        out = self.translate(params, c, key)
        f = self.config.model.factor
        small = low_resolution(images, f)
        bilinear = jax.image.resize(small, images.shape, "linear")
        per_image_l1 = lambda a: jnp.mean(jnp.abs(a - images).reshape(images.shape[0], -1), 1)  # noqa: E731
        real_logits = self._patch_logits(params, c, images)
        fake_logits = self._patch_logits(params, c, out)
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
