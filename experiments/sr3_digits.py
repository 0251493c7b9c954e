"""SR3-style super-resolution of the built-in digits (Saharia et al. 2022): a DDPM of the
8x8 digit given its 4x4 area-downsampled version, which the U-Net sees enlarged (nearest
neighbour) and concatenated with ``x_t``. Trained with Gaussian noise-conditioning
augmentation (Ho et al. 2022) at levels ``s ~ U[0, 0.5]`` told to the network, so the same
run is the second stage of the digits cascade (``experiments/cascade_digits.py``).

Run (2 CPU cores):

    jaxgen train experiments/sr3_digits.py --workdir runs/sr3_digits
    jaxgen eval --workdir runs/sr3_digits

``jaxgen eval`` super-resolves the 360 test digits (their 4x4 versions, augmentation level
0) and reports L1 and PSNR against the truth next to the nearest and bilinear baselines,
the conditional bits/dim ``-log2 p(x | y) / D`` and the digit FD of the super-resolved
digits. ``jaxgen sample --workdir runs/sr3_digits --augmentation-level 0.2`` samples at
another level.

Measured (eval seed 0; 25 minutes of training on 2 cores shared with other jobs): PSNR
19.1 dB for one sample (1000 ancestral steps) and 20.7 dB for the mean of 8 samples (an
estimate of the posterior mean, which a sharp sample trails by about 3 dB), L1 0.132 /
0.115, against pix2pix's 20.5 dB and the bilinear 12.9 dB; digit FD: measured 1.47 (pix2pix
1.5; 1.52 and 1.65 at eval seeds 1 and 2); conditional test bits/dim 2.47. A 32-wide
U-Net with one block a level (6400 steps) had 18.4 / 20.0 dB and FD 2.3; 16 wide, 17.7 dB
and FD 4.0.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.nets.unet import UNetConfig
from jaxgen.recipes.ddpm import DDPMConfig
from jaxgen.recipes.super_resolution import SuperResolutionConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="ddpm",
        name="sr3_digits",
        model=DDPMConfig(
            unet=UNetConfig(
                channels=32,
                channel_mult=(1, 2),
                num_res_blocks=2,
                attention_resolutions=(4,),
                dropout=0.0,
                num_groups=8,
                num_heads=1,
            ),
            schedule="linear",
            num_timesteps=1000,
            parameterization="eps",
            model_variance="beta",
            clip_denoised=True,
            sampler="ancestral",
            super_resolution=SuperResolutionConfig(
                factor=2,
                upsample="nearest",
                augmentation="gaussian",
                max_augmentation=0.5,
                augmentation_level=0.0,
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
            num_steps=9600,
            log_every=100,
            checkpoint_every=1600,
            sample_every=3200,
            num_grid_samples=64,
        ),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected=(
            "PSNR above pix2pix's 20.5 dB (the mean of 8 samples) and the bilinear 12.9 dB; "
            "digit FD < 2"
        ),
    )
