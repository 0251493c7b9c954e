"""Generative adversarial networks as pure JAX functions.

Nothing here imports Flax; networks are callables.

* :mod:`~jaxgen.gan.losses`: the minimax (saturating and non-saturating), Wasserstein and
  hinge losses from discriminator outputs, per example with named terms.
* :mod:`~jaxgen.gan.penalties`: weight clipping, the WGAN-GP gradient penalty and R1.
* :mod:`~jaxgen.gan.objectives`: the two players' objectives of a (class-conditional) GAN,
  ``(per_example, terms, state_updates)`` for the two-player step.
* :mod:`~jaxgen.gan.sampling`: the generator's sampler (one latent per example key,
  reference batch normalization for generators with batch statistics).
* :mod:`~jaxgen.gan.pix2pix`: the image-conditioned GAN's objectives, sampler and the
  super-resolution task.
* :mod:`~jaxgen.gan.srgan`: SRGAN's perceptual loss (content + adversarial), its
  discriminator objective and its super-resolution sampler.

The rest of the family lives with the shared parts: the two-player step (``k``
discriminator updates in one compiled step) in ``jaxgen.engine.adversarial_step``, the
networks (DCGAN, spectral normalization, the pix2pix U-Net and PatchGAN) in
``jaxgen.nets``, the recipes ``gan`` and ``pix2pix`` in ``jaxgen.recipes``, and the
VEEGAN / PacGAN mode counts in ``jaxgen.evaluation.mode_coverage``.
"""

from jaxgen.gan import losses, objectives, penalties, pix2pix, sampling, srgan
from jaxgen.gan.losses import (
    DISCRIMINATOR_LOSSES,
    GENERATOR_LOSSES,
    discriminator_loss,
    discriminator_output,
    generator_loss,
)
from jaxgen.gan.objectives import (
    GAMES,
    PENALTIES,
    discriminator_constraint,
    discriminator_objective,
    generator_objective,
)
from jaxgen.gan.penalties import clip_weights, gradient_penalty, input_gradient_norms, r1_penalty
from jaxgen.gan.sampling import LATENT_DISTRIBUTIONS, latents, sample

__all__ = [
    "DISCRIMINATOR_LOSSES",
    "GAMES",
    "GENERATOR_LOSSES",
    "LATENT_DISTRIBUTIONS",
    "PENALTIES",
    "clip_weights",
    "discriminator_constraint",
    "discriminator_loss",
    "discriminator_objective",
    "discriminator_output",
    "generator_loss",
    "generator_objective",
    "gradient_penalty",
    "input_gradient_norms",
    "latents",
    "losses",
    "objectives",
    "penalties",
    "pix2pix",
    "r1_penalty",
    "sample",
    "sampling",
    "srgan",
]
