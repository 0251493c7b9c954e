"""Progressive distillation, last round: the 2-step student of
experiments/progressive_digits_ddpm_2step.py (runs/progressive_digits_ddpm_2step) distilled
to one step.

The teacher's grid is exactly the 2-step grid it was distilled for (model.teacher_steps must
equal its final_steps); one halving round 2 -> 1 (Salimans & Ho 2022).

Run (after runs/progressive_digits_ddpm_2step; 2 CPU cores, about 4 minutes):

    jaxgen train experiments/progressive_digits_ddpm_1step.py \
        --workdir runs/progressive_digits_ddpm_1step
    jaxgen eval --workdir runs/progressive_digits_ddpm_1step

Expected result: a 1-step digit FD far below the DDPM's own 1-step DDIM (540 at 360 samples).
Measured: digit FD 64.1 with 1 step.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.progressive import ProgressiveConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="progressive",
        name="progressive_digits_ddpm_1step",
        model=ProgressiveConfig(
            teacher_workdir="runs/progressive_digits_ddpm_2step",
            teacher_steps=2,
            final_steps=1,
            steps_per_round=1000,
        ),
        data=DataConfig(name="digits", batch_size=128),
        optim=OptimConfig(
            learning_rate=1e-4,
            warmup_steps=100,
            decay="constant",
            grad_clip_norm=1.0,
            ema_decay=0.99,
        ),
        train=TrainConfig(
            num_steps=1000,
            log_every=100,
            checkpoint_every=500,
            sample_every=1000,
            num_grid_samples=64,
        ),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected="1-step digit FD far below the DDPM's 1-step DDIM (540)",
    )
