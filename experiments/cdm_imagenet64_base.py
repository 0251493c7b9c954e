"""The base stage of a two-stage cascaded diffusion model for class-conditional ImageNet
64x64 (Ho et al. 2022, "Cascaded Diffusion Models for High Fidelity Image Generation",
JMLR): a class-conditional DDPM of ImageNet at 32x32. The cascade is
``experiments/cdm_imagenet64.py``; its super-resolution stage (32 -> 64) is
``experiments/cdm_imagenet64_sr.py``.

Data: TFDS ``imagenet_resized/64x64`` (``data.name = "imagenet_resized_64"``, the
downsampled ImageNet of Chrabaszcz et al. 2017) area-downsampled to 32x32 on the fly
(``data.resolution = 32``), so the base stage and the super-resolution stage's conditions
are made the same way from the same images (1021 levels per channel at 32x32).

Paper results (class-conditional ImageNet, without an auxiliary classifier): FID 1.48 at
64x64, 3.52 at 128x128 and 4.88 at 256x256; classification accuracy score 63.02% top-1 and
84.06% top-5 at 256x256. The paper's pipelines start from a 32x32 base model like this one
(its Figure 1: 32x32 -> 64x64 -> 256x256). This file states no target for the base stage
on its own.

What is ours, not the paper's: the U-Net (ch 256, multipliers 1,2,2,2, 3 residual blocks,
attention at 16x16 and 8x8, 4 heads, dropout 0.1, a learned class embedding), the cosine
schedule with T = 1000 and fixed variances (jaxgen's DDPM has no learned variances),
Adam 1e-4, batch 512, 500k steps, EMA 0.9999 and the flips. Label dropout
``p_uncond = 0.1`` is ours too: it trains the unconditional model as well, so the cascade
can be sampled with classifier-free guidance (Ho and Salimans 2022); the default scale 1
samples the conditional model, unguided.

Needs ``imagenet_resized/64x64`` prepared by tensorflow_datasets under data.data_dir
(``tfds build imagenet_resized/64x64 --file_format=array_record``, with TensorFlow and
network access to image-net.org's downsampled files):

    jaxgen train experiments/cdm_imagenet64_base.py --workdir runs/cdm_imagenet64_base \\
        data.data_dir=~/tensorflow_datasets
    jaxgen eval --workdir runs/cdm_imagenet64_base

``jaxgen eval`` reports the bits/dim bound on 1000 validation images at 32x32 (1021
levels); jaxgen computes no ImageNet FID. ``jaxgen train experiments/cdm_imagenet64.py``
trains this stage and the super-resolution stage in turn.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.nets.unet import UNetConfig
from jaxgen.recipes.ddpm import DDPMConfig
from jaxgen.recipes.guidance import GuidanceConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="ddpm",
        name="cdm_imagenet64_base",
        model=DDPMConfig(
            unet=UNetConfig(
                channels=256,
                channel_mult=(1, 2, 2, 2),
                num_res_blocks=3,
                attention_resolutions=(16, 8),
                dropout=0.1,
                num_groups=32,
                num_heads=4,
                num_classes=1000,
            ),
            schedule="cosine",
            num_timesteps=1000,
            parameterization="eps",
            model_variance="beta",
            clip_denoised=True,
            sampler="ancestral",
            guidance=GuidanceConfig(p_uncond=0.1, scale=1.0),
        ),
        data=DataConfig(
            name="imagenet_resized_64", batch_size=512, random_flip=True, resolution=32
        ),
        optim=OptimConfig(
            learning_rate=1e-4,
            warmup_steps=10_000,
            decay="constant",
            grad_clip_norm=1.0,
            ema_decay=0.9999,
        ),
        train=TrainConfig(
            num_steps=500_000,
            log_every=100,
            checkpoint_every=10_000,
            sample_every=50_000,
            num_grid_samples=100,
            keep_checkpoints=3,
        ),
        eval=EvalConfig(split="validation", num_samples=10_000, batch_size=256, max_examples=1000),
        expected=(
            "no target for the 32x32 base stage alone; the cascade it starts "
            "(experiments/cdm_imagenet64.py) is after FID 1.48 at 64x64 (Ho et al. 2022)"
        ),
    )
