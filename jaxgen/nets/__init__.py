"""Flax NNX networks."""

from jaxgen.nets.conditioning import NULL_LABEL, ConditionEmbedding
from jaxgen.nets.denoising_mlp import DenoisingMLP
from jaxgen.nets.embeddings import sinusoidal_embedding
from jaxgen.nets.unet import NoisyClassifier, UNet, UNetConfig

__all__ = [
    "NULL_LABEL",
    "ConditionEmbedding",
    "DenoisingMLP",
    "NoisyClassifier",
    "UNet",
    "UNetConfig",
    "sinusoidal_embedding",
]
