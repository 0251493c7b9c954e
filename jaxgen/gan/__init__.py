"""Generative adversarial networks as pure JAX functions.

Losses take discriminator logits (B,) and return per-example values (B,); nothing here
imports Flax. (So far: the minimax losses of Goodfellow et al. 2014, as the VAE-GAN needs.)
"""

from jaxgen.gan import losses
from jaxgen.gan.losses import GENERATOR_LOSSES, discriminator_loss, generator_loss

__all__ = ["GENERATOR_LOSSES", "discriminator_loss", "generator_loss", "losses"]
