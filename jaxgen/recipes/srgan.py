"""SRGAN (Ledig et al. 2017) as a recipe: adversarial super-resolution with a perceptual
loss. The condition is the image area-downsampled by ``model.factor``
(:func:`jaxgen.core.resize.downsample_mean`); the SRResNet generator maps that small image
itself (not an enlarged one) to full size through sub-pixel upsampling
(``jaxgen.nets.srgan``); the discriminator judges full-size images alone.

The losses, the sampler and the reference-batch normalization are the pure functions of
``jaxgen.gan.srgan``; this recipe wires its networks to them. Generator loss (eq. 3):
``l_X + pixel_weight * MSE + adversarial_weight * (-log D(G(y)))`` with the content loss
``l_X`` chosen by ``model.content_loss``:

* ``"pixels"``: the pixel MSE (eq. 4; SRGAN-MSE);
* ``"digit_classifier"``: the MSE between the 128 penultimate features of the project's
  frozen digit classifier (the network digit FD uses, ``jaxgen.evaluation.digit_fd``,
  shipped weights) on ``x`` and ``G(y)``, features scaled by ``model.feature_scale``; only
  for 8x8 one-channel digits;
* ``"vgg19"``: the MSE between VGG19 activations at ``model.vgg_layer`` (``relu2_2`` =
  VGG22, ``relu5_4`` = VGG54, eq. 5) scaled by ``model.feature_scale`` (1 / 12.75 in the
  paper), with weights from the user's ``model.vgg19_weights`` ``.npz`` (how to convert the
  Keras or torchvision weights: ``jaxgen.nets.vgg``; ``model.vgg_preprocessing`` says
  which input normalization the weights expect).

The feature network's weights are constants of the loss, never parameters: they are not in
the parameter tree (not optimized, averaged or checkpointed) and get no gradient
(``recipe.feature_params``, host arrays read when the recipe is built). A missing weights
file, a file lacking an entry or an unknown layer is a ``ConfigError`` at construction.

SRResNet initialisation (``model.pretrain_steps = N``): Ledig et al. initialise SRGAN's
generator with an SRResNet trained on the MSE alone. Here the first ``N`` steps of the run
are that phase: the generator's loss is the pixel MSE alone (selected per step with
``jnp.where``; the perceptual loss's terms are still computed and logged), and the
discriminator's optimizer is masked (``optax.transforms.conditionally_mask``: zero updates,
its Adam moments and step count untouched), so the discriminator starts fresh at step
``N``, with its own learning-rate schedule over the remaining steps. During that phase the
logged ``discriminator_loss`` (the progress bar's ``loss``), ``d_real`` and ``d_fake`` are
those of the frozen, untrained discriminator, and ``pretraining`` reads 1. (Both losses are
evaluated in both phases: selecting a branch with ``lax.cond`` would skip that work, but
XLA:CPU runs convolutions inside conditionals several times slower than outside, which
cost more than it saved on the digits.) The generator's Adam state carries over into the
adversarial phase (the paper's separate SRResNet run restarts it). The paper's drop of the
learning rate from 1e-4 to 1e-5 halfway through the SRGAN phase is not expressible with
``optim.decay`` (constant or cosine).

Batch statistics: the generator's batch norms use the training batch's statistics;
samples, ``evaluate`` and the figures use a fixed reference batch of ``init_batch_size``
training conditions instead (reference batch normalization, as in the pix2pix recipe), kept
with the parameters as ``params["reference"]["condition"]`` (no player updates it).

Sampling is conditioned on held-out data (``sample_condition_split = "test"``): the run
floor passes ``condition={"image": rows}`` (full-size images, downsampled here); example
``i`` super-resolves held-out image ``i``. ``evaluate`` reports L1 and PSNR (peak 2 on
[-1, 1], the whole image; Ledig et al. measure on the Y channel with a 4-pixel border cut)
of the outputs against the truth next to the nearest, bilinear and bicubic baselines.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxgen.config import ConfigError
from jaxgen.core.resize import downsample_mean, upsample
from jaxgen.core.sampling import SamplerOutput, example_keys
from jaxgen.engine.adversarial_step import DISCRIMINATOR, GENERATOR, make_adversarial_train_step
from jaxgen.engine.optimizer import make_optimizer
from jaxgen.evaluation.digit_fd import load_classifier_params
from jaxgen.gan import srgan
from jaxgen.gan.pix2pix import psnr
from jaxgen.images import make_grid
from jaxgen.nets.srgan import SRGANDiscriminator, SRResNetGenerator, num_upsampling_blocks
from jaxgen.nets.vgg import PREPROCESSINGS, load_vgg19_weights, vgg19_feature_fn, vgg19_layers
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks
from jaxgen.recipes.modules import ModuleSet

__all__ = ["CONTENT_LOSSES", "SRGANConfig", "SRGANRecipe"]

CONTENT_LOSSES: tuple[str, ...] = ("pixels", "digit_classifier", "vgg19")
DIGIT_SHAPE = (8, 8, 1)


@dataclasses.dataclass(frozen=True)
class SRGANConfig:
    """The super-resolution factor, the SRResNet generator (width, residual blocks, outer
    kernel size), the discriminator (widths of its stride-2 stages, dense width), the
    content loss and its feature network, the loss weights and the SRResNet steps."""

    factor: int = 4
    generator_features: int = 64
    generator_blocks: int = 16
    generator_kernel_size: int = 9
    discriminator_features: tuple[int, ...] = (64, 128, 256, 512)
    discriminator_dense: int = 1024
    content_loss: str = "pixels"
    vgg19_weights: str | None = None
    vgg_layer: str = "relu5_4"
    vgg_preprocessing: str = "imagenet"
    feature_scale: float = srgan.VGG_FEATURE_SCALE
    pixel_weight: float = 0.0
    adversarial_weight: float = srgan.ADVERSARIAL_WEIGHT
    pretrain_steps: int = 0


class SRGANRecipe(Recipe):
    """SRGAN super-resolution; see the module docstring."""

    family = "srgan"
    config_class = SRGANConfig
    sample_condition_split = "test"
    init_batch_size = 256  # the reference batch of training conditions (see the docstring)

    def setup(self) -> None:
        m: SRGANConfig = self.config.model
        if len(self.data_shape) != 3:
            raise ConfigError(f"srgan needs image data, got example shape {self.data_shape}")
        h, w, c = self.data_shape
        try:
            num_upsampling_blocks(m.factor)
        except ValueError as err:
            raise ConfigError(f"model.factor: {err}") from None
        if h % m.factor or w % m.factor:
            raise ConfigError(f"model.factor={m.factor} must divide the image size {(h, w)}")
        stages = 2 ** len(m.discriminator_features)
        if not m.discriminator_features or h % stages or w % stages:
            raise ConfigError(
                f"model.discriminator_features={m.discriminator_features} halves the image "
                f"{len(m.discriminator_features)} times: {(h, w)} must be divisible by {stages}"
            )
        for name in ("feature_scale", "pixel_weight", "adversarial_weight", "pretrain_steps"):
            if not getattr(m, name) >= 0:
                raise ConfigError(f"model.{name} must be >= 0, got {getattr(m, name)}")
        check_choice("model.content_loss", m.content_loss, CONTENT_LOSSES)
        if m.content_loss == "digit_classifier" and self.data_shape != DIGIT_SHAPE:
            raise ConfigError(
                f"model.content_loss='digit_classifier' needs 8x8 one-channel digits, got "
                f"images of shape {self.data_shape}"
            )
        if m.content_loss == "vgg19":
            check_choice("model.vgg_layer", m.vgg_layer, vgg19_layers())
            check_choice("model.vgg_preprocessing", m.vgg_preprocessing, PREPROCESSINGS)
            if c not in (1, 3):
                raise ConfigError(f"model.content_loss='vgg19' needs 1 or 3 channels, got {c}")
            layers = vgg19_layers()
            pools = sum(name.startswith("pool") for name in layers[: layers.index(m.vgg_layer)])
            if h % 2**pools or w % 2**pools:
                raise ConfigError(
                    f"model.vgg_layer={m.vgg_layer!r} follows {pools} 2x2 poolings: the image "
                    f"size {(h, w)} must be divisible by {2**pools}"
                )
            if not m.vgg19_weights or not pathlib.Path(m.vgg19_weights).expanduser().is_file():
                raise ConfigError(
                    f"model.vgg19_weights={m.vgg19_weights!r} is not a file: VGG19 weights "
                    "cannot be downloaded here; convert Keras' or torchvision's VGG19 to an "
                    ".npz as jaxgen.nets.vgg explains and give its path"
                )
        self.feature_params, self.feature_fn = self._load_features()
        self.modules = ModuleSet(
            {
                GENERATOR: lambda rngs: SRResNetGenerator(
                    c,
                    factor=m.factor,
                    features=m.generator_features,
                    num_blocks=m.generator_blocks,
                    kernel_size=m.generator_kernel_size,
                    rngs=rngs,
                ),
                DISCRIMINATOR: lambda rngs: SRGANDiscriminator(
                    c,
                    image_size=(h, w),
                    features=m.discriminator_features,
                    dense_features=m.discriminator_dense,
                    rngs=rngs,
                ),
            }
        )

    # ------------------------------------------------------------------ the feature network

    def _load_features(self) -> tuple[Any, Callable[[jax.Array], jax.Array] | None]:
        """The frozen feature network's weights (host NumPy arrays, read once at setup, so
        no trace ever holds them) and ``phi``: images -> features (None: pixel loss)."""
        m: SRGANConfig = self.config.model
        if m.content_loss == "digit_classifier":
            graphdef, params = load_classifier_params()
            params = jax.tree.map(np.asarray, params)
            return params, lambda images: nnx.merge(graphdef, params).features(images)
        if m.content_loss == "vgg19":
            path = pathlib.Path(m.vgg19_weights).expanduser()
            try:
                params = load_vgg19_weights(path, layer=m.vgg_layer)
            except (ValueError, FileNotFoundError) as err:
                raise ConfigError(f"model.vgg19_weights: {err}") from None
            fn = vgg19_feature_fn(params, layer=m.vgg_layer, preprocessing=m.vgg_preprocessing)
            return params, fn
        return None, None

    # ------------------------------------------------------------------ parameters, optimizers

    def init_params(self, key: jax.Array, init_batch: Mapping[str, jax.Array] | None = None) -> Any:
        """Both networks' parameters and, given training examples, the reference batch of
        their low-resolution conditions (``params["reference"]["condition"]``)."""
        params = self.modules.init(key)
        if init_batch is not None:
            images = jnp.asarray(init_batch[self.data_key], jnp.float32)
            params["reference"] = {"condition": self.condition(images)}
        return params

    def reference(self, params: Any) -> jax.Array | None:
        """The reference conditions held with ``params``, or None."""
        return params.get("reference", {}).get("condition")

    def make_optimizer(self, num_steps: int):
        """Adam for both players; the discriminator's is masked for the SRResNet steps."""
        n = self.config.model.pretrain_steps
        d_tx = make_optimizer(self.config.optim, max(num_steps - n, 1))
        if n:
            d_tx = optax.transforms.conditionally_mask(d_tx, lambda count: count >= n)
        return {GENERATOR: make_optimizer(self.config.optim, num_steps), DISCRIMINATOR: d_tx}

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
        """The generator's input: the image area-downsampled by ``model.factor``."""
        return downsample_mean(images, self.config.model.factor)

    def generator_fn(self, params: Any):
        """``G(y, num_reference=0)`` as a callable."""
        return self.modules.bind(params, GENERATOR)

    def discriminator_fn(self, params: Any):
        """``D(x) -> logits (B,)`` as a callable."""
        return self.modules.bind(params, DISCRIMINATOR)

    def translate(self, params: Any, low_res: jax.Array) -> jax.Array:
        """``G(y)`` as sampled: with the reference batch's statistics when ``params`` hold one."""
        return srgan.super_resolve(
            self.generator_fn(params), low_res, reference=self.reference(params)
        )

    def discriminator_loss(
        self, params: Any, batch: Mapping[str, jax.Array], key: jax.Array, step: jax.Array
    ) -> srgan.Objective:
        """``jaxgen.gan.srgan.discriminator_objective`` with this recipe's networks (during
        the SRResNet steps its optimizer discards the updates)."""
        x = batch[self.data_key]
        return srgan.discriminator_objective(
            self.generator_fn(params), self.discriminator_fn(params), self.condition(x), x
        )

    def generator_loss(
        self, params: Any, batch: Mapping[str, jax.Array], key: jax.Array, step: jax.Array
    ) -> srgan.Objective:
        """The perceptual loss (``jaxgen.gan.srgan.generator_objective``); the pixel MSE
        alone during the SRResNet steps."""
        m: SRGANConfig = self.config.model
        x = batch[self.data_key]
        per_example, terms, _ = srgan.generator_objective(
            self.generator_fn(params),
            self.discriminator_fn(params),
            self.condition(x),
            x,
            feature_fn=self.feature_fn,
            feature_scale=m.feature_scale,
            pixel_weight=m.pixel_weight,
            adversarial_weight=m.adversarial_weight,
        )
        pretraining = jnp.asarray(step) < m.pretrain_steps
        per_example = jnp.where(pretraining, terms["pixel_mse"], per_example)
        terms["pretraining"] = jnp.broadcast_to(pretraining, per_example.shape).astype(
            per_example.dtype
        )
        return per_example, terms, {}

    def loss(self, params, batch, key):
        """The adversarial phase's two losses (for inspection; training uses the step)."""
        step = jnp.asarray(self.config.model.pretrain_steps, jnp.int32)
        d_loss, terms, _ = self.discriminator_loss(params, batch, key, step)
        g_loss, g_terms, _ = self.generator_loss(params, batch, key, step)
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
        """Super-resolutions of ``condition[data_key]`` (full-size held-out images aligned
        with the examples, downsampled here): example ``i`` is ``G(y_i)`` of the ``i``-th
        row, normalized with the reference batch; the generator draws no randomness."""
        self.check_sample_options(options)
        if condition is None or self.data_key not in condition:
            raise ValueError(
                f"srgan samples are super-resolutions of held-out images: pass "
                f"condition={{{self.data_key!r}: images of shape ({num_samples}, "
                f"*{self.data_shape})}} (rows of the {self.sample_condition_split!r} split)"
            )
        images = jnp.asarray(condition[self.data_key], jnp.float32)
        if images.shape != (num_samples, *self.data_shape):
            raise ValueError(
                f"condition[{self.data_key!r}] must have shape ({num_samples}, "
                f"*{self.data_shape}), got {images.shape}"
            )
        return srgan.sample(
            self.generator_fn(params),
            example_keys(key, num_samples, start=first_index),
            images.shape,
            condition=self.condition(images),
            reference=self.reference(params),
        )

    def _eval_chunk(self, params, images, key):
        f = self.config.model.factor
        small = self.condition(images)
        out = self.translate(params, small)
        n = images.shape[0]
        l1 = lambda a: jnp.mean(jnp.abs(a - images).reshape(n, -1), axis=1)  # noqa: E731
        results = {"l1": l1(out), "psnr_db": psnr(out, images)}
        for method in ("nearest", "bilinear", "bicubic"):
            baseline = jnp.clip(upsample(small, f, method), -1.0, 1.0)
            results[f"{method}_l1"] = l1(baseline)
            results[f"{method}_psnr_db"] = psnr(baseline, images)
        d = self.discriminator_fn(params)
        results["d_real"] = jax.nn.sigmoid(d(images))
        results["d_fake"] = jax.nn.sigmoid(d(out))
        return results

    def evaluate(self, params, images, key):
        """Mean L1 / PSNR of the super-resolved held-out images and of the baselines, and the
        discriminator's mean probabilities on the real and generated images."""
        out = evaluate_in_chunks(
            self._eval_chunk, params, images, key, batch_size=self.config.eval.batch_size
        )
        results = {k: float(np.mean(v)) for k, v in out.items()}
        results["num_examples"] = float(len(images))
        return results

    def figures(self, params, images, key):
        """Columns of (nearest-neighbour input, output, truth) for 16 held-out images."""
        x = jnp.asarray(np.asarray(images[:16], np.float32))
        small = self.condition(x)
        out = jax.jit(self.translate)(params, small)
        nearest = upsample(small, self.config.model.factor, "nearest")
        triples = jnp.stack([nearest, out, x], axis=1).reshape(-1, *x.shape[1:])
        return {"super_resolution": make_grid(np.asarray(triples), num_cols=6)}
