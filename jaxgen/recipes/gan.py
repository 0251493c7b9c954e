"""GANs as a recipe: the minimax game and its variants, trained by the engine's two-player
step (``k`` discriminator updates per generator update in one compiled step, one optax
optimizer per player, an EMA generator for samples).

Games (``model.game``; losses in ``jaxgen.gan.losses``):

* ``"saturating"``: Goodfellow et al. (2014) eq. 1 as written, the generator minimizes
  ``log(1 - D(G(z)))``;
* ``"non_saturating"``: the same discriminator, the generator maximizes ``log D(G(z))``
  (Goodfellow et al. 2014, sec. 3);
* ``"wasserstein"``: WGAN's critic (Arjovsky et al. 2017), made 1-Lipschitz by weight
  clipping (``model.weight_clip``, 0.01 in the paper, with RMSProp and 5 critic steps) or
  by the gradient penalty (``model.penalty="gradient_penalty"``, weight 10, Gulrajani et al.
  2017, with Adam (0, 0.9) and 5 critic steps);
* ``"hinge"``: Lim and Ye (2017), Miyato et al. (2018).

``model.penalty="r1"`` adds Mescheder et al.'s (2018) ``(gamma / 2) E ||grad D(x)||^2`` on
real data, ``gamma = model.penalty_weight``.

Networks (``model.architecture``): ``"mlp"`` (2-D toy data, flattened digits) or
``"dcgan"`` (Radford et al. 2016; ``jaxgen.nets.dcgan``) with batch norm (batch
statistics in training and sampling) and optional spectral normalization of the
discriminator (``model.spectral_norm``; its power-iteration vectors are state the
discriminator's loss updates, one iteration per update, on real and generated data passed
together). ``model.num_classes > 0`` makes both players class
conditional: the generator takes the one-hot label with ``z``; the discriminator
concatenates it to its input (``"concat"``, Mirza and Osindero 2014) or adds the
projection ``<embed(y), phi(x)>`` to its logit (``"projection"``, Miyato and Koyama 2018;
DCGAN only). Samples cycle through the classes.

Logged every step: both players' losses and gradient norms, the discriminator's mean
output on real and generated data (``d_real``, ``d_fake``: probabilities for the minimax
games, critic scores otherwise) and its input-gradient norm on real data. ``jaxgen eval``
adds, on the ring and grid of Gaussians, the VEEGAN / PacGAN mode counts
(``jaxgen.evaluation.mode_coverage``), and on digits the digit FD.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgen.config import ConfigError
from jaxgen.data.toy2d import MIXTURE_NAMES
from jaxgen.engine.adversarial_step import DISCRIMINATOR, GENERATOR, make_adversarial_train_step
from jaxgen.engine.optimizer import make_optimizer
from jaxgen.gan import losses, penalties
from jaxgen.images import density_picture
from jaxgen.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from jaxgen.nets.mlp import ACTIVATIONS, MLP
from jaxgen.nets.spectral_norm import SpectralVector
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks
from jaxgen.recipes.modules import ModuleSet
from jaxgen.recipes.registry import register

GAMES: dict[str, tuple[str, str]] = {
    "saturating": ("minimax", "saturating"),
    "non_saturating": ("minimax", "non_saturating"),
    "wasserstein": ("wasserstein", "wasserstein"),
    "hinge": ("hinge", "hinge"),
}
ARCHITECTURES = ("mlp", "dcgan")
PENALTIES = ("none", "gradient_penalty", "r1")
CONDITIONINGS = ("projection", "concat")
LATENT_DISTRIBUTIONS = ("normal", "uniform")


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """A GAN: game, networks, discriminator steps and optimizer overrides.

    ``discriminator_steps`` is ``k`` (``n_critic``); each step reads ``k`` minibatches of
    ``data.batch_size``. ``discriminator_learning_rate`` (None: ``optim.learning_rate``)
    and ``discriminator_b1`` / ``discriminator_b2`` (None: ``optim``'s) set the
    discriminator's optimizer; both players otherwise share ``optim``.
    ``eval_num_samples`` samples are drawn for the mode counts on 2-D mixtures.
    """

    game: str = "non_saturating"
    architecture: str = "mlp"
    latent_dim: int = 64
    latent_distribution: str = "normal"
    generator_hidden: tuple[int, ...] = (256, 256)
    discriminator_hidden: tuple[int, ...] = (256, 256)
    activation: str = "leaky_relu"
    generator_features: int = 64
    discriminator_features: int = 64
    batch_norm: bool = True
    spectral_norm: bool = False
    num_classes: int = 0
    conditioning: str = "projection"
    penalty: str = "none"
    penalty_weight: float = 10.0
    weight_clip: float | None = None
    discriminator_steps: int = 1
    discriminator_learning_rate: float | None = None
    discriminator_b1: float | None = None
    discriminator_b2: float | None = None
    eval_num_samples: int = 2500


def one_hot_labels(labels: jax.Array | None, num_classes: int) -> jax.Array | None:
    return None if labels is None else jax.nn.one_hot(labels, num_classes)


@register
class GANRecipe(Recipe):
    """Unconditional and class-conditional GANs; see the module docstring."""

    family = "gan"
    config_class = GANConfig

    def setup(self) -> None:
        m: GANConfig = self.config.model
        check_choice("model.game", m.game, GAMES)
        check_choice("model.architecture", m.architecture, ARCHITECTURES)
        check_choice("model.penalty", m.penalty, PENALTIES)
        check_choice("model.conditioning", m.conditioning, CONDITIONINGS)
        check_choice("model.latent_distribution", m.latent_distribution, LATENT_DISTRIBUTIONS)
        check_choice("model.activation", m.activation, ACTIVATIONS)
        if m.discriminator_steps < 1:
            raise ConfigError(
                f"model.discriminator_steps must be >= 1, got {m.discriminator_steps}"
            )
        if m.latent_dim < 1 or m.num_classes < 0 or m.eval_num_samples < 1:
            raise ConfigError(
                "model.latent_dim and model.eval_num_samples must be >= 1, model.num_classes >= 0"
            )
        if m.weight_clip is not None and m.weight_clip <= 0:
            raise ConfigError(f"model.weight_clip must be positive or None, got {m.weight_clip}")
        if m.penalty_weight < 0:
            raise ConfigError(f"model.penalty_weight must be >= 0, got {m.penalty_weight}")
        self.discriminator_kind, self.generator_kind = GAMES[m.game]
        self.num_dims = int(np.prod(self.data_shape))
        if m.architecture == "dcgan":
            if len(self.data_shape) != 3:
                raise ConfigError(
                    f"model.architecture='dcgan' needs image data, got shape {self.data_shape}"
                )
            factories = {
                GENERATOR: lambda rngs: DCGANGenerator(
                    m.latent_dim,
                    self.data_shape,
                    base_features=m.generator_features,
                    num_classes=m.num_classes,
                    rngs=rngs,
                ),
                DISCRIMINATOR: lambda rngs: DCGANDiscriminator(
                    self.data_shape,
                    base_features=m.discriminator_features,
                    num_classes=m.num_classes,
                    conditioning=m.conditioning,
                    batch_norm=m.batch_norm,
                    spectral_norm=m.spectral_norm,
                    rngs=rngs,
                ),
            }
        else:
            if m.spectral_norm:
                raise ConfigError("model.spectral_norm needs model.architecture='dcgan'")
            if m.num_classes and m.conditioning != "concat":
                raise ConfigError(
                    "the MLP GAN conditions by concatenation: set model.conditioning='concat' "
                    "(or model.architecture='dcgan' for the projection discriminator)"
                )
            if not m.generator_hidden or not m.discriminator_hidden:
                raise ConfigError("model.generator_hidden and discriminator_hidden need a layer")
            factories = {
                GENERATOR: lambda rngs: MLP(
                    m.latent_dim + m.num_classes,
                    m.generator_hidden,
                    self.num_dims,
                    activation=m.activation,
                    rngs=rngs,
                ),
                DISCRIMINATOR: lambda rngs: MLP(
                    self.num_dims + m.num_classes,
                    m.discriminator_hidden,
                    1,
                    activation=m.activation,
                    rngs=rngs,
                ),
            }
        self.modules = ModuleSet(factories)

    # ------------------------------------------------------------------ engine hooks

    @property
    def minibatches_per_step(self) -> int:
        return self.config.model.discriminator_steps

    def make_optimizer(self, num_steps: int):
        m: GANConfig = self.config.model
        optim = self.config.optim
        overrides = {
            "learning_rate": m.discriminator_learning_rate,
            "b1": m.discriminator_b1,
            "b2": m.discriminator_b2,
        }
        d_optim = dataclasses.replace(
            optim, **{k: v for k, v in overrides.items() if v is not None}
        )
        return {
            GENERATOR: make_optimizer(optim, num_steps),
            DISCRIMINATOR: make_optimizer(d_optim, num_steps),
        }

    def make_train_step(self, tx):
        m: GANConfig = self.config.model
        clip = (
            None
            if m.weight_clip is None
            else functools.partial(penalties.clip_weights, clip=m.weight_clip)
        )
        return make_adversarial_train_step(
            self.discriminator_loss,
            self.generator_loss,
            tx,
            discriminator_steps=m.discriminator_steps,
            ema_decay=self.config.optim.ema_decay,
            discriminator_constraint=clip,
        )

    def init_params(self, key: jax.Array) -> Any:
        return self.modules.init(key)

    # ------------------------------------------------------------------ the players

    def latents(self, key: jax.Array, num_samples: int) -> jax.Array:
        m: GANConfig = self.config.model
        shape = (num_samples, m.latent_dim)
        if m.latent_distribution == "uniform":
            return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
        return jax.random.normal(key, shape)

    def _labels(self, batch: dict[str, jax.Array]) -> jax.Array | None:
        if not self.config.model.num_classes:
            return None
        if "label" not in batch:
            raise ConfigError(
                f"model.num_classes={self.config.model.num_classes} needs labelled data; "
                f"{self.config.data.name!r} has no 'label'"
            )
        return batch["label"]

    def generate(self, params: Any, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        """``G(z [, y])`` in the data's shape."""
        m: GANConfig = self.config.model
        g = self.modules.bind(params, GENERATOR)
        if m.architecture == "dcgan":
            return g(z, labels)
        y = one_hot_labels(labels, m.num_classes)
        inputs = z if y is None else jnp.concatenate([z, y], axis=-1)
        out = g(inputs)
        if len(self.data_shape) == 3:
            out = jnp.tanh(out)
        return out.reshape(z.shape[0], *self.data_shape)

    def _discriminator(self, params: Any):
        """``(critic(x, labels, update_stats) -> (B,), module)``."""
        m: GANConfig = self.config.model
        d = self.modules.bind(params, DISCRIMINATOR)

        def critic(x, labels=None, *, update_stats=False):
            if m.architecture == "dcgan":
                if m.spectral_norm:
                    return d(x, labels, update_stats=update_stats)
                return d(x, labels)
            flat = x.reshape(x.shape[0], -1)
            y = one_hot_labels(labels, m.num_classes)
            if y is not None:
                flat = jnp.concatenate([flat, y], axis=-1)
            return d(flat)[:, 0]

        return critic, d

    def _output(self, logits: jax.Array) -> jax.Array:
        """What ``d_real`` / ``d_fake`` report: D(x) for the minimax games, else the score."""
        if self.discriminator_kind == "minimax":
            return jax.nn.sigmoid(logits)
        return logits

    def discriminator_loss(self, params, batch, key, step):
        """Per-example discriminator loss (with its penalty) and the power-iteration update."""
        m: GANConfig = self.config.model
        x = batch[self.data_key]
        labels = self._labels(batch)
        z_key, label_key, penalty_key = jax.random.split(key, 3)
        fake = self.generate(params, self.latents(z_key, x.shape[0]), labels)
        critic, module = self._discriminator(params)
        if m.spectral_norm:
            # One forward pass on real and fake together: one power iteration per update
            # (Miyato et al. Algorithm 1) and the same normalized weights for both halves.
            both_labels = None if labels is None else jnp.concatenate([labels, labels])
            both = critic(jnp.concatenate([x, fake]), both_labels, update_stats=True)
            real_logits, fake_logits = both[: x.shape[0]], both[x.shape[0] :]
        else:
            real_logits, fake_logits = critic(x, labels), critic(fake, labels)
        per_example = losses.discriminator_loss(
            real_logits, fake_logits, kind=self.discriminator_kind
        )

        def frozen(inputs):
            return critic(inputs, labels)

        terms = {
            "d_real": self._output(real_logits),
            "d_fake": self._output(fake_logits),
            "d_input_grad_norm": penalties.input_gradient_norms(frozen, x),
        }
        if m.penalty == "gradient_penalty":
            penalty = penalties.gradient_penalty(frozen, x, fake, penalty_key)
            per_example = per_example + m.penalty_weight * penalty
            terms["gradient_penalty"] = penalty
        elif m.penalty == "r1":
            penalty = penalties.r1_penalty(frozen, x)
            per_example = per_example + 0.5 * m.penalty_weight * penalty
            terms["r1_penalty"] = penalty
        updates = {}
        if m.spectral_norm:
            updates[DISCRIMINATOR] = nnx.to_pure_dict(nnx.state(module, SpectralVector))
        return per_example, terms, updates

    def generator_loss(self, params, batch, key, step):
        """Per-example generator loss against the (updated) discriminator."""
        x = batch[self.data_key]
        labels = self._labels(batch)
        fake = self.generate(params, self.latents(key, x.shape[0]), labels)
        critic, _ = self._discriminator(params)
        logits = critic(fake, labels)
        per_example = losses.generator_loss(logits, kind=self.generator_kind)
        return per_example, {"g_d_fake": self._output(logits)}, {}

    def loss(self, params, batch, key):
        """Both players' losses at ``params`` (for inspection; training uses the two-player
        step): the per-example discriminator loss, with the generator's as a term."""
        d_loss, terms, _ = self.discriminator_loss(params, batch, key, jnp.zeros((), jnp.int32))
        g_loss, g_terms, _ = self.generator_loss(params, batch, key, jnp.zeros((), jnp.int32))
        return d_loss, {**terms, **g_terms, "generator_loss": g_loss}

    # ------------------------------------------------------------------ sampling, evaluation

    def sample_labels(self, num_samples: int) -> jax.Array | None:
        """Labels cycling through the classes (each row of a grid of 10 is one class)."""
        m: GANConfig = self.config.model
        return jnp.arange(num_samples) % m.num_classes if m.num_classes else None

    def sample(self, params, key, num_samples):
        return self.generate(
            params, self.latents(key, num_samples), self.sample_labels(num_samples)
        )

    def _eval_chunk(self, params, data, key):
        critic, _ = self._discriminator(params)
        fake = self.sample(params, key, data.shape[0])
        out = {"d_fake": self._output(critic(fake, self.sample_labels(data.shape[0])))}
        if not self.config.model.num_classes:  # held-out labels are not passed to evaluate
            out["d_real"] = self._output(critic(data))
            out["d_input_grad_norm"] = penalties.input_gradient_norms(critic, data)
        return out

    def evaluate(self, params, images, key):
        """Discriminator outputs on held-out data and on samples; mode counts on mixtures."""
        m: GANConfig = self.config.model
        d_key, sample_key = jax.random.split(key)
        out = evaluate_in_chunks(
            self._eval_chunk, params, images, d_key, batch_size=self.config.eval.batch_size
        )
        results = {k: float(np.mean(v)) for k, v in out.items()}
        results["num_examples"] = float(len(images))
        if self.config.data.name in MIXTURE_NAMES:
            from jaxgen.evaluation.mode_coverage import toy_mode_coverage

            samples = np.asarray(
                jax.jit(self.sample, static_argnums=2)(params, sample_key, m.eval_num_samples)
            )
            coverage = toy_mode_coverage(self.config.data.name, samples)
            results.update(coverage.as_dict())
        return results

    def _extent(self) -> float:
        return 5.0 if self.config.data.name == "grid" else 3.0

    def figures(self, params, images, key):
        if len(self.data_shape) != 1 or self.data_shape[0] != 2:
            return {}
        samples = np.asarray(
            jax.jit(self.sample, static_argnums=2)(params, key, self.config.model.eval_num_samples)
        )
        return {
            "samples": density_picture(samples, extent=self._extent()),
            "data": density_picture(np.asarray(images), extent=self._extent()),
        }
