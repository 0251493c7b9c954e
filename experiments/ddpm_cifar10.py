"""DDPM on CIFAR-10, the configuration of Ho et al. 2020 (Appendix B).

35.7M-parameter U-Net (ch 128, multipliers 1,2,2,2, 2 residual blocks per resolution,
self-attention at 16x16, dropout 0.1), T = 1000 linear betas 1e-4..0.02, L_simple,
Adam 2e-4 with 5000 warmup steps, batch 128, gradient clipping at 1, EMA 0.9999,
random horizontal flips, 800k steps (the paper used a TPU v3-8 for about 10.6 h per
100k steps... i.e. several days).

Needs CIFAR-10 prepared by tensorflow_datasets (`tfds build cifar10` with TensorFlow
and network, or data.download=true) under data.data_dir.

    jaxgen train experiments/ddpm_cifar10.py --workdir runs/ddpm_cifar10 \
        data.data_dir=~/tensorflow_datasets
    jaxgen eval --workdir runs/ddpm_cifar10

Paper results (Table 1, L_simple): FID 3.17, Inception score 9.46, test NLL <= 3.75
bits/dim (train 3.72). `jaxgen eval` reports the bits/dim bound; FID needs the
Inception network, which jaxgen does not ship.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.nets.unet import UNetConfig
from jaxgen.recipes.ddpm import DDPMConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="ddpm",
        name="ddpm_cifar10",
        model=DDPMConfig(
            unet=UNetConfig(
                channels=128,
                channel_mult=(1, 2, 2, 2),
                num_res_blocks=2,
                attention_resolutions=(16,),
                dropout=0.1,
                num_groups=32,
            ),
            schedule="linear",
            num_timesteps=1000,
            beta_start=1e-4,
            beta_end=0.02,
            parameterization="eps",
            model_variance="beta",
            clip_denoised=True,
            sampler="ancestral",
        ),
        data=DataConfig(name="cifar10", batch_size=128, random_flip=True),
        optim=OptimConfig(
            learning_rate=2e-4,
            warmup_steps=5000,
            decay="constant",
            grad_clip_norm=1.0,
            ema_decay=0.9999,
        ),
        train=TrainConfig(
            num_steps=800_000,
            log_every=100,
            checkpoint_every=10_000,
            sample_every=20_000,
            num_grid_samples=64,
            keep_checkpoints=3,
        ),
        eval=EvalConfig(split="test", num_samples=10_000, batch_size=256, max_examples=None),
        expected="FID 3.17, IS 9.46, test NLL <= 3.75 bits/dim (Ho et al. 2020, Table 1)",
    )
