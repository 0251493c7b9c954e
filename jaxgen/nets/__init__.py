"""Flax NNX networks."""

from jaxgen.nets.conditioning import NULL_LABEL, ConditionEmbedding
from jaxgen.nets.denoising_mlp import DenoisingMLP
from jaxgen.nets.embeddings import sinusoidal_embedding
from jaxgen.nets.srgan import SRGANDiscriminator, SRResNetGenerator
from jaxgen.nets.unet import NoisyClassifier, UNet, UNetConfig
from jaxgen.nets.vgg import VGG19Features, load_vgg19_weights

__all__ = [
    "NULL_LABEL",
    "ConditionEmbedding",
    "DenoisingMLP",
    "NoisyClassifier",
    "SRGANDiscriminator",
    "SRResNetGenerator",
    "UNet",
    "UNetConfig",
    "VGG19Features",
    "load_vgg19_weights",
    "sinusoidal_embedding",
]
