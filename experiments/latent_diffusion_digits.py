"""Latent diffusion (Rombach et al. 2022) on the built-in 8x8 digits: a DDPM over the 4x4x3
latents of the KL autoencoder ``experiments/kl_autoencoder_digits.py``.

One command trains both stages (the autoencoder first, into ``runs/kl_autoencoder_digits``,
resuming whichever stage was interrupted; about 1.5 minutes for the autoencoder and 11 for
the latent DDPM on 2 CPU cores shared with two other runs):

    jaxgen train experiments/latent_diffusion_digits.py --workdir runs/latent_diffusion_digits
    jaxgen eval --workdir runs/latent_diffusion_digits

When the second stage starts, the latent scale ``s = 1 / std`` of the training set's
latents is computed, printed (0.384132), recorded in
``runs/latent_diffusion_digits/first_stage.json`` and stored in the checkpoints; ``jaxgen
eval`` reports it (``latent_scale``) with the held-out latents' standard deviation after
scaling (1.0007), the first stage's reconstruction PSNR and the digit FD of decoded samples.

The denoiser is the pixel DDPM's recipe (``experiments/ddpm_digits.py``: linear schedule,
T = 1000, eps prediction, the same optimiser and batch) on the latents, with
``clip_denoised=False`` (latents are not bounded), a U-Net of two levels (4x4 with 32
channels, 2x2 with 64 and attention), twice the pixel DDPM's steps (12800), and 100 DDIM
steps to sample (LDM samples with DDIM too).

Expected result (measured; see README): digit FD < 13.65, 1.5x the pixel DDPM's 9.1, at 100
DDIM steps (measured 8.8; 13.3 and 11.6 at eval seeds 1 and 2, mean 11.3, against the
pixel DDPM's 9.4 / 12.2 / 12.4, mean 11.3, at 1000 ancestral steps). Sampling cost per image
against the pixel DDPM: ``python bench/latent_sampling_cost.py``. The same model with 6400
steps scored 11.7 / 21.8 / 13.3 (mean 15.6), and with a 48-channel U-Net at 6400 steps
11.5 / 17.5 / 12.1.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.nets.unet import UNetConfig
from jaxgen.recipes.ddpm import DDPMConfig
from jaxgen.recipes.first_stage import FirstStageConfig
from jaxgen.recipes.latent_diffusion import LatentDiffusionConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="latent_diffusion",
        name="latent_diffusion_digits",
        model=LatentDiffusionConfig(
            first_stage=FirstStageConfig(
                workdir="runs/kl_autoencoder_digits",
                config="experiments/kl_autoencoder_digits.py",
            ),
            denoiser="ddpm",
            ddpm=DDPMConfig(
                unet=UNetConfig(
                    channels=32,
                    channel_mult=(1, 2),
                    num_res_blocks=1,
                    attention_resolutions=(2,),
                    dropout=0.0,
                    num_groups=8,
                    num_heads=1,
                ),
                schedule="linear",
                num_timesteps=1000,
                parameterization="eps",
                model_variance="beta",
                clip_denoised=False,
                sampler="ddim",
                sample_steps=100,
                ddim_eta=0.0,
            ),
        ),
        data=DataConfig(name="digits", batch_size=64),
        optim=OptimConfig(
            learning_rate=2e-3,
            warmup_steps=100,
            decay="cosine",
            grad_clip_norm=1.0,
            ema_decay=0.999,
        ),
        train=TrainConfig(
            num_steps=12800,
            log_every=100,
            checkpoint_every=3200,
            sample_every=6400,
            num_grid_samples=64,
        ),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected=("digit FD < 13.65 (1.5x the pixel DDPM's 9.1) at 100 DDIM steps (measured 8.8)"),
    )
