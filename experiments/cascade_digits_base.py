"""The base stage of the two-stage digits cascade (``experiments/cascade_digits.py``): a
DDPM of the 4x4 digits, the built-in 8x8 digits area-downsampled by 2 (``data.resolution =
4``; 65 levels per pixel). Unconditional; its samples are super-resolved to 8x8 by
``experiments/sr3_digits.py``.

Run (2 CPU cores):

    jaxgen train experiments/cascade_digits_base.py --workdir runs/cascade_digits_base
    jaxgen eval --workdir runs/cascade_digits_base

``jaxgen eval`` reports test bits/dim on the 65-level 4x4 digits (no digit FD: the
classifier reads 8x8 digits; the cascade's samples are scored by
``jaxgen eval --cascade experiments/cascade_digits.py``).
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.nets.unet import UNetConfig
from jaxgen.recipes.ddpm import DDPMConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="ddpm",
        name="cascade_digits_base",
        model=DDPMConfig(
            unet=UNetConfig(
                channels=32,
                channel_mult=(1, 2),
                num_res_blocks=2,
                attention_resolutions=(2,),
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
        ),
        data=DataConfig(name="digits", batch_size=64, resolution=4),
        optim=OptimConfig(
            learning_rate=2e-3,
            warmup_steps=100,
            decay="cosine",
            grad_clip_norm=1.0,
            ema_decay=0.999,
        ),
        train=TrainConfig(
            num_steps=8000,
            log_every=100,
            checkpoint_every=1600,
            sample_every=3200,
            num_grid_samples=64,
        ),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected="test bits/dim on the 65-level 4x4 digits below log2(65) = 6.02",
    )
