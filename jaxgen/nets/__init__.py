"""Flax NNX networks."""

from jaxgen.nets.embeddings import sinusoidal_embedding
from jaxgen.nets.unet import UNet, UNetConfig

__all__ = ["UNet", "UNetConfig", "sinusoidal_embedding"]
