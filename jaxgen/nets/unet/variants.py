"""The DDPM++ and NCSN++ networks of Song et al. (2021, appendix H) as :class:`UNetConfig`
presets: the CIFAR-10 "DDPM++ cont." and "NCSN++ cont." networks (``deep=True``: 8
residual blocks per level, the "deep" variants).

References:
  Song et al., "Score-based generative modeling through stochastic differential equations",
  ICLR 2021, appendix H.
"""

from __future__ import annotations

from jaxgen.nets.unet.config import UNetConfig

__all__ = ["ddpmpp_config", "ncsnpp_config"]


def ddpmpp_config(*, deep: bool = False, **overrides) -> UNetConfig:
    """The "DDPM++ cont." CIFAR-10 network of Song et al. (2021), App. H.

    ``ch = 128``, ``channel_mult = (1, 2, 2, 2)``, 4 residual blocks per level (8 with
    ``deep=True``), attention at 16x16, dropout 0.1, BigGAN-style up/down residual blocks,
    skip rescaling, sinusoidal embedding (of ``999 t`` in the paper's VP / sub-VP code),
    attention once per level on the way up, zero-initialised output layers (the official
    ``configs/vp/cifar10_ddpmpp_continuous.py``). ``overrides`` replace any field.
    """
    base = dict(
        channels=128,
        channel_mult=(1, 2, 2, 2),
        num_res_blocks=8 if deep else 4,
        attention_resolutions=(16,),
        dropout=0.1,
        resblock_updown=True,
        skip_rescale=True,
        time_embedding="sinusoidal",
        up_attention="last_block",
        init_scale=0.0,
    )
    return UNetConfig(**{**base, **overrides})


def ncsnpp_config(*, deep: bool = False, **overrides) -> UNetConfig:
    """The "NCSN++ cont." CIFAR-10 network of Song et al. (2021), App. H.

    DDPM++ plus FIR resampling, Gaussian Fourier features of scale 16 (of ``log sigma``) and
    the ``residual`` input pyramid, with no output pyramid (the official
    ``configs/ve/cifar10_ncsnpp_continuous.py``: ``progressive = 'none'``,
    ``progressive_input = 'residual'``). ``overrides`` replace any field.
    """
    base = dict(
        resample_filter="fir",
        time_embedding="fourier",
        fourier_scale=16.0,
        progressive_input="residual",
        progressive_output="none",
    )
    return ddpmpp_config(deep=deep, **{**base, **overrides})
