"""Generative adversarial networks as pure JAX functions.

Losses take discriminator outputs (B,) and return per-example values (B,); penalties take
the discriminator as a callable; nothing here imports Flax: the minimax (saturating and
non-saturating), Wasserstein and hinge losses, weight clipping, the WGAN-GP gradient penalty
and R1.

The rest of the family lives with the shared parts: the two-player step (``k``
discriminator updates in one compiled step) in ``jaxgen.engine.adversarial_step``, the
networks (DCGAN, spectral normalization, the pix2pix U-Net and PatchGAN) in
``jaxgen.nets``, the recipes ``gan`` and ``pix2pix`` in ``jaxgen.recipes``, and the
VEEGAN / PacGAN mode counts in ``jaxgen.evaluation.mode_coverage``.
"""

from jaxgen.gan import losses, penalties
from jaxgen.gan.losses import (
    DISCRIMINATOR_LOSSES,
    GENERATOR_LOSSES,
    discriminator_loss,
    generator_loss,
)
from jaxgen.gan.penalties import clip_weights, gradient_penalty, input_gradient_norms, r1_penalty

__all__ = [
    "DISCRIMINATOR_LOSSES",
    "GENERATOR_LOSSES",
    "clip_weights",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "input_gradient_norms",
    "losses",
    "penalties",
    "r1_penalty",
]
