"""The DDPM U-Net (Ho et al. 2020, appendix B) as a Flax NNX module, with the options of the
DDPM++ / NCSN++ networks of Song et al. (2021, appendix H).

A PixelCNN++-style wide-ResNet U-Net: a sinusoidal timestep embedding through a two-layer
MLP, residual blocks with GroupNorm and a per-block projection of the timestep embedding,
single- or multi-head self-attention at chosen resolutions, stride-2 convolutions down and
nearest-neighbour upsampling + convolution up, with skip connections concatenated on the
way up. As in the paper's code, the last convolution of every residual block, the output
projection of every attention block and the output convolution start at zero, so a fresh
network outputs exactly zero and every block starts as the identity.

The parts, one module each:

* :mod:`~jaxgen.nets.unet.config`: :class:`UNetConfig` and its DDPM++ / NCSN++ options
  (BigGAN up/down residual blocks, skip rescaling, Fourier features, FIR resampling,
  progressive input/output pyramids, attention once per up level, output-layer init);
* :mod:`~jaxgen.nets.unet.variants`: ``ddpmpp_config()`` and ``ncsnpp_config()``, the
  CIFAR-10 networks of the paper ("DDPM++ cont." and "NCSN++ cont."; ``deep=True``);
* :mod:`~jaxgen.nets.unet.time_embedding`: the fixed features of the time / noise level;
* :mod:`~jaxgen.nets.unet.resampling`: nearest / average-pool and FIR 2x resampling;
* :mod:`~jaxgen.nets.unet.layers`: initialisers and layer factories;
* :mod:`~jaxgen.nets.unet.blocks`: residual, attention, down- and upsampling blocks;
* :mod:`~jaxgen.nets.unet.levels`: one resolution level down / up, with the pyramids;
* :mod:`~jaxgen.nets.unet.model`: :class:`UNet`, the loop over the levels;
* :mod:`~jaxgen.nets.unet.classifier`: :class:`NoisyClassifier`, the U-Net's down path and
  middle block as the noise-aware classifier of classifier guidance (Dhariwal and Nichol
  2021).

Conditioning (``num_classes``, ``embedding_dim``): the condition's embedding
(:class:`jaxgen.nets.ConditionEmbedding`: a class table of ``num_classes + 1`` rows whose last
row, label ``-1``, is the learned null class; an embedding vector with a learned null vector)
is added to the timestep embedding, for classifier-free guidance (Ho and Salimans 2022).

The module keeps no ``nnx.Rngs``: its state is made only of ``nnx.Param`` leaves, and dropout
takes its PRNG key at call time. Typical pure-function use::

    model = UNet(UNetConfig(), image_shape=(32, 32, 3), rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    params = nnx.to_pure_dict(state)
    eps = jax.jit(lambda p, x, t, k: nnx.merge(graphdef, p)(x, t, key=k))(params, x, t, key)

References:
  Ho, Jain and Abbeel, "Denoising diffusion probabilistic models", NeurIPS 2020.
  Song et al., "Score-based generative modeling through stochastic differential equations",
  ICLR 2021, appendix H.
  Salimans et al., "PixelCNN++", ICLR 2017. Zagoruyko and Komodakis, "Wide residual
  networks", BMVC 2016. Wu and He, "Group normalization", ECCV 2018.
  Brock, Donahue and Simonyan, "Large scale GAN training" (BigGAN), ICLR 2019.
  Zhang, "Making convolutional networks shift-invariant again", ICML 2019.
  Karras et al., "Analyzing and improving the image quality of StyleGAN", CVPR 2020.
  Karras et al., "Progressive growing of GANs", ICLR 2018.
  Tancik et al., "Fourier features let networks learn high frequency functions", NeurIPS 2020.
"""

from jaxgen.nets.unet.blocks import AttentionBlock, Downsample, ResBlock, Upsample
from jaxgen.nets.unet.classifier import NoisyClassifier
from jaxgen.nets.unet.config import (
    PROGRESSIVE_INPUTS,
    PROGRESSIVE_OUTPUTS,
    RESAMPLE_FILTERS,
    TIME_EMBEDDINGS,
    UP_ATTENTIONS,
    UNetConfig,
)
from jaxgen.nets.unet.levels import BlockOptions, DownLevel, UpLevel
from jaxgen.nets.unet.model import UNet
from jaxgen.nets.unet.resampling import (
    FIR_TAPS,
    avg_pool_downsample,
    fir_downsample,
    fir_filter,
    fir_kernel,
    fir_upsample,
    nearest_upsample,
)
from jaxgen.nets.unet.variants import ddpmpp_config, ncsnpp_config

__all__ = [
    "FIR_TAPS",
    "PROGRESSIVE_INPUTS",
    "PROGRESSIVE_OUTPUTS",
    "RESAMPLE_FILTERS",
    "TIME_EMBEDDINGS",
    "UP_ATTENTIONS",
    "AttentionBlock",
    "BlockOptions",
    "DownLevel",
    "Downsample",
    "NoisyClassifier",
    "ResBlock",
    "UNet",
    "UNetConfig",
    "UpLevel",
    "Upsample",
    "avg_pool_downsample",
    "ddpmpp_config",
    "fir_downsample",
    "fir_filter",
    "fir_kernel",
    "fir_upsample",
    "ncsnpp_config",
    "nearest_upsample",
]
