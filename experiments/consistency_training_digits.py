"""Consistency training without a teacher (Song et al. 2023, Alg. 3) with the improved
techniques of Song & Dhariwal 2024 (iCT) on the built-in 8x8 digits.

The digits U-Net of experiments/ddpm_digits.py with EDM's preconditioning (sigma_data 0.5,
noise input 250 log s), levels on [0.002, 80] (rho = 7) with iCT's curriculum: N doubles
from 11 to 1281 levels in equal stages over the run (eq. 7); pseudo-Huber metric, weighting
1 / (s_{n+1} - s_n), lognormal level index (P_mean -1.1, P_std 2), the student under
stop-gradient as its own target (no EMA). No teacher run is needed.

Run (2 CPU cores, about 10 minutes):

    jaxgen train experiments/consistency_training_digits.py \
        --workdir runs/consistency_training_digits
    jaxgen eval --workdir runs/consistency_training_digits --steps 1
    jaxgen eval --workdir runs/consistency_training_digits --steps 2

Expected result: digits, though worse than the distilled models at this budget (iCT trains
for 400k steps on CIFAR-10); a one-step digit FD well below uniform noise (543). A check run
of 600 steps (``train.num_steps=600``, the whole curriculum compressed into it) reached
digit FD 142 / 105 / 109 at 1 / 2 / 4 steps (360 samples). Measured (3000 steps, 10
minutes on 2 shared cores): digit FD 38.2 / 16.6 / 20.7 at 1 / 2 / 4 steps.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.nets.unet import UNetConfig
from jaxgen.recipes.consistency import ConsistencyConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="consistency",
        name="consistency_training_digits",
        model=ConsistencyConfig(
            teacher_workdir=None,
            unet=UNetConfig(
                channels=32,
                channel_mult=(1, 2),
                num_res_blocks=1,
                attention_resolutions=(4,),
                dropout=0.0,
                num_groups=8,
                num_heads=1,
            ),
            metric="pseudo_huber",
            weighting="inverse_gap",
            index_distribution="lognormal",
            target_ema=0.0,
            sigma_min=0.002,
            sigma_max=80.0,
            initial_levels=10,
            final_levels=1280,
            sample_steps=1,
        ),
        data=DataConfig(name="digits", batch_size=128),
        optim=OptimConfig(
            learning_rate=2e-4,
            warmup_steps=200,
            decay="constant",
            grad_clip_norm=1.0,
            ema_decay=0.999,
        ),
        train=TrainConfig(
            num_steps=3000,
            log_every=100,
            checkpoint_every=500,
            sample_every=1500,
            num_grid_samples=64,
        ),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected="one-step digit FD well below uniform noise (543)",
    )
