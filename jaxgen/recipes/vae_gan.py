"""VAE-GAN (Larsen et al. 2016) as a recipe: an MLP VAE whose reconstruction term is the
feature-matching loss on a discriminator's hidden layer, plus a GAN on reconstructions and
prior samples.

The three players (encoder, decoder, discriminator) have their own losses (Larsen et al.
eq. 10, Algorithm 1; ``jaxgen.vae.vae_gan.vae_gan_losses``, which evaluates each network
once per step). One training step updates all three at once: the objective is
``L_enc + L_dec + L_dis`` with its gradient routed by
``jaxgen.vae.vae_gan.route_player_gradients``, so each player moves along the gradient of
its own loss only, w.r.t. its own parameters (a simultaneous-update GAN step; the
discriminator's features inside ``L_llike`` do not train the discriminator). Adam is
per-parameter, so this is the same as three optimizers with the same settings. The step
logs every player's loss and terms: ``encoder_loss``, ``decoder_loss``,
``discriminator_loss`` and ``<player>_<term>`` (e.g. ``encoder_kl``,
``discriminator_d_real``); ``loss`` is their sum.

The decoder outputs images in [-1, 1] (tanh). Evaluation reports the held-out squared
reconstruction error, the KL and the discriminator's mean output on real and generated
data; the sample-quality score (digit FD) comes from ``jaxgen eval``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import ConfigError
from jaxgen.core.sampling import SamplerOutput, example_keys, normal
from jaxgen.nets.mlp import ACTIVATIONS, MLP
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks
from jaxgen.recipes.modules import ModuleSet
from jaxgen.recipes.vae import encoder_output, flat_size, vae_figures
from jaxgen.vae import vae_gan


@dataclasses.dataclass(frozen=True)
class VAEGANConfig:
    """MLP encoder/decoder/discriminator; ``gamma`` weighs the feature-matching term in the
    decoder's loss against the adversarial term (Larsen et al. use 1e-6 ... 1e-2 for
    their conv nets)."""

    latent_dim: int = 16
    hidden: tuple[int, ...] = (256, 256)
    discriminator_hidden: tuple[int, ...] = (256, 256)
    activation: str = "leaky_relu"
    gamma: float = 1e-2
    beta: float = 1.0
    min_log_std: float = -7.0


class VAEGANRecipe(Recipe):
    """Three-player VAE-GAN trained by one simultaneous step; see the module docstring."""

    family = "vae_gan"
    config_class = VAEGANConfig

    def setup(self) -> None:
        m: VAEGANConfig = self.config.model
        check_choice("model.activation", m.activation, ACTIVATIONS)
        if m.gamma < 0 or m.beta < 0:
            raise ConfigError("model.gamma and model.beta must be >= 0")
        if not m.discriminator_hidden:
            raise ConfigError("model.discriminator_hidden needs at least one layer (its features)")
        self.num_dims = flat_size(self.data_shape)
        self.modules = ModuleSet(
            {
                "encoder": lambda rngs: MLP(
                    self.num_dims, m.hidden, 2 * m.latent_dim, activation=m.activation, rngs=rngs
                ),
                "decoder": lambda rngs: MLP(
                    m.latent_dim,
                    tuple(reversed(m.hidden)),
                    self.num_dims,
                    activation=m.activation,
                    rngs=rngs,
                ),
                "discriminator": lambda rngs: MLP(
                    self.num_dims, m.discriminator_hidden, 1, activation=m.activation, rngs=rngs
                ),
            }
        )

    def init_params(self, key: jax.Array, init_batch: Any = None) -> Any:
        return self.modules.init(key)

    def _callables(self, params):
        m: VAEGANConfig = self.config.model
        enc = self.modules.bind(params, "encoder")
        dec = self.modules.bind(params, "decoder")
        dis = self.modules.bind(params, "discriminator")

        def encoder_fn(x):
            return encoder_output(enc(x.reshape(x.shape[0], -1)), min_log_std=m.min_log_std)

        def decoder_fn(z):
            return jnp.tanh(dec(z)).reshape(z.shape[0], *self.data_shape)

        def discriminator_fn(x):
            logits, features = dis.features(x.reshape(x.shape[0], -1))
            return logits[:, 0], features

        return encoder_fn, decoder_fn, discriminator_fn

    def objective(self, params: Any, x: jax.Array, key: jax.Array) -> vae_gan.PlayerLosses:
        """The three players' ``(per_example, terms)``, each network evaluated once."""
        m: VAEGANConfig = self.config.model
        return vae_gan.vae_gan_losses(*self._callables(params), x, key, gamma=m.gamma, beta=m.beta)

    def loss(self, params, batch, key):
        losses = vae_gan.route_player_gradients(self.objective, params, batch[self.data_key], key)
        per_example = sum(losses[player][0] for player in vae_gan.PLAYERS)
        return per_example, vae_gan.player_terms(losses)

    def sample(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Any = None,
    ) -> SamplerOutput:
        """Decoded prior draws ``Dec(z)``, ``z ~ N(0, I)`` from each example's own key (one
        decoder pass)."""
        del condition  # unconditional
        _, decoder_fn, _ = self._callables(params)
        keys = example_keys(key, num_samples, start=first_index)
        return SamplerOutput(decoder_fn(normal(keys, (self.config.model.latent_dim,))), 1)

    def _eval_chunk(self, params, images, key):
        encoder_fn, decoder_fn, discriminator_fn = self._callables(params)
        q = encoder_fn(images)
        recon = decoder_fn(q.mean)
        fake = self.sample(params, key, images.shape[0]).samples
        return {
            "squared_error": jnp.sum((recon - images).reshape(images.shape[0], -1) ** 2, axis=1),
            "kl": q.kl(),
            "d_real": jax.nn.sigmoid(discriminator_fn(images)[0]),
            "d_fake": jax.nn.sigmoid(discriminator_fn(fake)[0]),
        }

    def evaluate(self, params, images, key):
        out = evaluate_in_chunks(
            self._eval_chunk, params, images, key, batch_size=self.config.eval.batch_size
        )
        return {
            "mean_squared_error": float(np.mean(out["squared_error"]) / self.num_dims),
            "kl_nats": float(np.mean(out["kl"])),
            "d_real": float(np.mean(out["d_real"])),
            "d_fake": float(np.mean(out["d_fake"])),
            "num_examples": float(len(out["kl"])),
        }

    def figures(self, params, images, key):
        if len(self.data_shape) != 3:
            return {}
        encoder_fn, decoder_fn, _ = self._callables(params)
        return vae_figures(
            lambda x: encoder_fn(x).mean,
            decoder_fn,
            images,
            latent_dim=self.config.model.latent_dim,
            sample=self.sample(params, key, 64).samples,
        )
