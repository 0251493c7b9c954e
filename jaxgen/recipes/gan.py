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

The players' objectives are the pure functions of ``jaxgen.gan.objectives``; this recipe
only wires its networks to them (as callables) and to the two-player step.

Networks (``model.architecture``): ``"mlp"`` (2-D toy data, flattened digits) or
``"dcgan"`` (Radford et al. 2016; ``jaxgen.nets.dcgan``) with batch norm (batch
statistics in training; when sampling, the statistics of a fixed reference batch of
``model.reference_batch_size`` latents, so that a sample depends only on the seed and its
index, ``jaxgen.gan.sampling``) and optional spectral normalization of the
discriminator (``model.spectral_norm``; its power-iteration vectors are state the
discriminator's loss updates, one iteration per update, on real and generated data passed
together). ``model.num_classes > 0`` makes both players class
conditional: the generator takes the one-hot label with ``z``; the discriminator
concatenates it to its input (``"concat"``, Mirza and Osindero 2014) or adds the
projection ``<embed(y), phi(x)>`` to its logit (``"projection"``, Miyato and Koyama 2018;
DCGAN only). Samples cycle through the classes: example ``i`` of a draw has class
``i mod num_classes``.

Logged every step: both players' losses and gradient norms, the discriminator's mean
output on real and generated data (``d_real``, ``d_fake``: probabilities for the minimax
games, critic scores otherwise) and its input-gradient norm on real data. ``jaxgen eval``
adds, on the ring and grid of Gaussians, the VEEGAN / PacGAN mode counts
(``jaxgen.evaluation.mode_coverage``), and on digits the digit FD.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgen import core
from jaxgen.config import ConfigError
from jaxgen.core.sampling import SamplerOutput, example_keys
from jaxgen.data.toy2d import MIXTURE_NAMES
from jaxgen.engine.adversarial_step import DISCRIMINATOR, GENERATOR, make_adversarial_train_step
from jaxgen.engine.optimizer import make_optimizer
from jaxgen.gan import losses, objectives, penalties
from jaxgen.gan import sampling as gan_sampling
from jaxgen.gan.objectives import GAMES, PENALTIES
from jaxgen.gan.sampling import LATENT_DISTRIBUTIONS
from jaxgen.images import density_picture
from jaxgen.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from jaxgen.nets.mlp import ACTIVATIONS, MLP
from jaxgen.nets.spectral_norm import SpectralVector
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks
from jaxgen.recipes.modules import ModuleSet

ARCHITECTURES = ("mlp", "dcgan")
CONDITIONINGS = ("projection", "concat")

__all__ = [
    "ARCHITECTURES",
    "CONDITIONINGS",
    "GAMES",
    "LATENT_DISTRIBUTIONS",
    "PENALTIES",
    "GANConfig",
    "GANRecipe",
]


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """A GAN: game, networks, discriminator steps and optimizer overrides.

    ``discriminator_steps`` is ``k`` (``n_critic``); each step reads ``k`` minibatches of
    ``data.batch_size``. ``discriminator_learning_rate`` (None: ``optim.learning_rate``)
    and ``discriminator_b1`` / ``discriminator_b2`` (None: ``optim``'s) set the
    discriminator's optimizer; both players otherwise share ``optim``.
    ``eval_num_samples`` samples are drawn for the mode counts on 2-D mixtures.
    ``reference_batch_size`` is the size of the fixed reference batch whose statistics the
    DCGAN generator's batch norms use when sampling (0: each sampled batch's own
    statistics, which makes samples depend on their batch).
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
    reference_batch_size: int = 256


def one_hot_labels(labels: jax.Array | None, num_classes: int) -> jax.Array | None:
    return None if labels is None else jax.nn.one_hot(labels, num_classes)


class GANRecipe(Recipe):
    """Unconditional and class-conditional GANs; see the module docstring."""

    family = "gan"
    config_class = GANConfig
    eval_time_fields = ("eval_num_samples", "reference_batch_size")

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
        if m.reference_batch_size < 0:
            raise ConfigError(
                f"model.reference_batch_size must be >= 0, got {m.reference_batch_size}"
            )
        if m.weight_clip is not None and m.weight_clip <= 0:
            raise ConfigError(f"model.weight_clip must be positive or None, got {m.weight_clip}")
        if m.penalty_weight < 0:
            raise ConfigError(f"model.penalty_weight must be >= 0, got {m.penalty_weight}")
        if m.num_classes and self.num_classes is not None and m.num_classes > self.num_classes:
            raise ConfigError(
                f"model.num_classes={m.num_classes} but {self.config.data.name!r} has "
                f"{self.num_classes} classes"
            )
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
        return make_adversarial_train_step(
            self.discriminator_loss,
            self.generator_loss,
            tx,
            discriminator_steps=m.discriminator_steps,
            ema_decay=self.config.optim.ema_decay,
            compute_dtype=self.config.train.compute_dtype,
            discriminator_constraint=objectives.discriminator_constraint(m.weight_clip),
        )

    def init_params(self, key: jax.Array, init_batch: Mapping[str, jax.Array] | None = None) -> Any:
        del init_batch  # no data-dependent initialisation
        return self.modules.init(key)

    # ------------------------------------------------------------------ the networks

    def generator_fn(self, params: Any) -> Callable[..., jax.Array]:
        """``G(z, labels, num_reference=0)`` in the data's shape, as a callable."""
        m: GANConfig = self.config.model
        g = self.modules.bind(params, GENERATOR)

        def generate(z, labels=None, *, num_reference: int = 0):
            if m.architecture == "dcgan":
                return g(z, labels, num_reference=num_reference)
            y = one_hot_labels(labels, m.num_classes)
            out = g(z if y is None else jnp.concatenate([z, y], axis=-1))
            if len(self.data_shape) == 3:
                out = jnp.tanh(out)
            return out.reshape(z.shape[0], *self.data_shape)

        return generate

    def generate(self, params: Any, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        """``G(z [, y])`` in the data's shape (batch statistics of this batch)."""
        return self.generator_fn(params)(z, labels)

    def discriminator_fn(self, params: Any) -> Callable[[jax.Array, jax.Array | None], jax.Array]:
        """``D(x, labels) -> (B,)`` logits, as a callable that changes no state."""
        m: GANConfig = self.config.model
        d = self.modules.bind(params, DISCRIMINATOR)

        def critic(x, labels=None):
            if m.architecture == "dcgan":
                return d(x, labels, update_stats=False)
            flat = x.reshape(x.shape[0], -1)
            y = one_hot_labels(labels, m.num_classes)
            if y is not None:
                flat = jnp.concatenate([flat, y], axis=-1)
            return d(flat)[:, 0]

        return critic

    def stateful_discriminator_fn(self, params: Any):
        """``D(x, labels) -> (logits, power-iteration vectors)`` with one power iteration
        (spectral normalization), or None without spectral normalization."""
        if not self.config.model.spectral_norm:
            return None

        def critic(x, labels=None):
            d = self.modules.bind(params, DISCRIMINATOR)
            logits = d(x, labels, update_stats=True)
            return logits, nnx.to_pure_dict(nnx.state(d, SpectralVector))

        return critic

    def _labels(self, batch: dict[str, jax.Array]) -> jax.Array | None:
        if not self.config.model.num_classes:
            return None
        if "label" not in batch:
            raise ConfigError(
                f"model.num_classes={self.config.model.num_classes} needs labelled data; "
                f"{self.config.data.name!r} has no 'label'"
            )
        return batch["label"]

    # ------------------------------------------------------------------ the players

    def discriminator_loss(
        self, params: Any, batch: Mapping[str, jax.Array], key: jax.Array, step: jax.Array
    ) -> objectives.Objective:
        """``jaxgen.gan.objectives.discriminator_objective`` with this recipe's networks."""
        m: GANConfig = self.config.model
        return objectives.discriminator_objective(
            self.generator_fn(params),
            self.discriminator_fn(params),
            batch[self.data_key],
            key,
            latent_dim=m.latent_dim,
            labels=self._labels(batch),
            kind=self.discriminator_kind,
            latent_distribution=m.latent_distribution,
            penalty=m.penalty,
            penalty_weight=m.penalty_weight,
            stateful_discriminator_fn=self.stateful_discriminator_fn(params),
        )

    def generator_loss(
        self, params: Any, batch: Mapping[str, jax.Array], key: jax.Array, step: jax.Array
    ) -> objectives.Objective:
        """``jaxgen.gan.objectives.generator_objective`` with this recipe's networks."""
        m: GANConfig = self.config.model
        x = batch[self.data_key]
        return objectives.generator_objective(
            self.generator_fn(params),
            self.discriminator_fn(params),
            key,
            (x.shape[0], m.latent_dim),
            labels=self._labels(batch),
            kind=self.generator_kind,
            latent_distribution=m.latent_distribution,
        )

    def loss(self, params, batch, key):
        """Both players' losses at ``params`` (for inspection; training uses the two-player
        step): the per-example discriminator loss, with the generator's as a term."""
        d_loss, terms, _ = self.discriminator_loss(params, batch, key, jnp.zeros((), jnp.int32))
        g_loss, g_terms, _ = self.generator_loss(params, batch, key, jnp.zeros((), jnp.int32))
        return d_loss, {**terms, **g_terms, "generator_loss": g_loss}

    # ------------------------------------------------------------------ sampling, evaluation

    def sample_labels(self, num_samples: int, first_index: int | jax.Array = 0):
        """Labels cycling through the classes by the example's index in the draw:
        ``(first_index + i) mod num_classes`` (each row of a grid of 10 is one class)."""
        m: GANConfig = self.config.model
        if not m.num_classes:
            return None
        return core.sampling.cyclic_labels(num_samples, m.num_classes, start=first_index)

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
        """``jaxgen.gan.sample``: example ``i``'s latent from ``example_keys(key, n,
        start=first_index)[i]``, class ``(first_index + i) mod num_classes``; the DCGAN
        generator normalizes with the fixed reference batch (``model.reference_batch_size``)."""
        self.check_sample_options(options)
        if condition is not None:
            raise ValueError("the gan recipe is not conditioned on data (condition=None)")
        m: GANConfig = self.config.model
        reference = m.reference_batch_size if m.architecture == "dcgan" else 0
        return gan_sampling.sample(
            self.generator_fn(params),
            example_keys(key, num_samples, start=first_index),
            (num_samples, m.latent_dim),
            labels=self.sample_labels(num_samples, first_index),
            latent_distribution=m.latent_distribution,
            reference_size=reference,
            reference_labels=self.sample_labels(reference) if reference else None,
        )

    def _eval_chunk(self, params, data, key):
        critic = self.discriminator_fn(params)
        labels = self.sample_labels(data.shape[0])
        fake = self.sample(params, key, data.shape[0]).samples
        out = {"d_fake": self._output(critic(fake, labels))}
        if not self.config.model.num_classes:  # held-out labels are not passed to evaluate
            out["d_real"] = self._output(critic(data))
            out["d_input_grad_norm"] = penalties.input_gradient_norms(critic, data)
        return out

    def _output(self, logits: jax.Array) -> jax.Array:
        return losses.discriminator_output(logits, kind=self.discriminator_kind)

    def _draw(self, params, key, num_samples: int) -> np.ndarray:
        draw = jax.jit(lambda p, k: self.sample(p, k, num_samples).samples)
        return np.asarray(draw(params, key))

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

            samples = self._draw(params, sample_key, m.eval_num_samples)
            coverage = toy_mode_coverage(self.config.data.name, samples)
            results.update(coverage.as_dict())
        return results

    def _extent(self) -> float:
        return 5.0 if self.config.data.name == "grid" else 3.0

    def figures(self, params, images, key):
        if len(self.data_shape) != 1 or self.data_shape[0] != 2:
            return {}
        samples = self._draw(params, key, self.config.model.eval_num_samples)
        return {
            "samples": density_picture(samples, extent=self._extent()),
            "data": density_picture(np.asarray(images), extent=self._extent()),
        }
