"""LDM-4 on CelebA-HQ 256x256 (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models"): an unconditional DDPM over the 64x64x3 latents of the f = 4 VQ
autoencoder ``experiments/ldm_celebahq256_vqf4.py``, which this config trains first.

Paper result (Table 1, unconditional CelebA-HQ 256x256): FID 5.11, precision 0.72, recall
0.49, with 500 DDIM steps (eta = 0). Paper settings (Table 12): T = 1000, their "linear"
schedule (``scaled_linear`` here: sqrt(beta) linear from sqrt(0.0015) to sqrt(0.0195)), a
U-Net of 224 channels with multipliers 1, 2, 3, 4, two residual blocks a level, attention at
32, 16 and 8 (of the 64x64 latent), 274M parameters, batch 48, learning rate 9.6e-5, 410k
iterations; eps prediction.

What is ours, not the paper's: attention heads are 7 per layer (64 to 128 channels a head;
the paper's heads have 32 channels), the first stage (see its file), EMA 0.9999, and the
latent scale: LDM rescales only its KL autoencoders' latents (their VQ latents are used
unscaled); jaxgen computes ``1 / std`` over the training set for every first stage and
stores it with the run (``model.latent_scale = 1.0`` reproduces the paper's choice). jaxgen
computes no CelebA-HQ FID: ``jaxgen sample`` writes the samples for an external FID.

Needs CelebA-HQ prepared by tensorflow_datasets (see the first stage's file):

    jaxgen train experiments/ldm_celebahq256.py --workdir runs/ldm_celebahq256 \\
        data.data_dir=~/tensorflow_datasets
    jaxgen sample --workdir runs/ldm_celebahq256 --num-samples 50000
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.nets.unet import UNetConfig
from jaxgen.recipes.ddpm import DDPMConfig
from jaxgen.recipes.first_stage import FirstStageConfig
from jaxgen.recipes.latent_diffusion import LatentDiffusionConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="latent_diffusion",
        name="ldm_celebahq256",
        model=LatentDiffusionConfig(
            first_stage=FirstStageConfig(
                workdir="runs/ldm_celebahq256_vqf4",
                config="experiments/ldm_celebahq256_vqf4.py",
            ),
            denoiser="ddpm",
            ddpm=DDPMConfig(
                unet=UNetConfig(
                    channels=224,
                    channel_mult=(1, 2, 3, 4),
                    num_res_blocks=2,
                    attention_resolutions=(32, 16, 8),
                    dropout=0.0,
                    num_groups=32,
                    num_heads=7,
                ),
                schedule="scaled_linear",
                num_timesteps=1000,
                beta_start=0.0015,
                beta_end=0.0195,
                parameterization="eps",
                clip_denoised=False,
                sampler="ddim",
                sample_steps=500,
                ddim_eta=0.0,
            ),
        ),
        data=DataConfig(name="celeb_a_hq_256", batch_size=48, random_flip=True),
        optim=OptimConfig(
            learning_rate=9.6e-5,
            warmup_steps=0,
            decay="constant",
            grad_clip_norm=None,
            ema_decay=0.9999,
        ),
        train=TrainConfig(
            num_steps=410_000, log_every=200, checkpoint_every=5000, sample_every=20_000
        ),
        eval=EvalConfig(split="train[:1000]", num_samples=64, batch_size=32),
        expected="paper (Table 1): FID 5.11, precision 0.72, recall 0.49 (500 DDIM steps)",
    )
