"""Progressive distillation (Salimans & Ho 2022) of the digits DDPM from 64 DDIM steps down
to 4, in one run of four halving rounds (64 -> 32 -> 16 -> 8 -> 4).

The teacher is the DDPM of experiments/ddpm_digits.py (in runs/ddpm_digits; train it first).
The base grid is the levels ``s = sigma / alpha`` of DDIM's 64 uniform timesteps of the
DDPM (then 0), so every level is an integer DDPM step; round r distils the 64 / 2^r-step
DDIM sampler on every 2^r-th level into a student of half the steps (truncated-SNR
weighting ``max(1 / s^2, 1)``). The student has the teacher's U-Net and starts as it; the
teacher of round r + 1 is the student at the end of round r (swapped inside the compiled
step). Its x0 is clipped to [-1, 1] as the DDPM's own DDIM sampler clips
(straight-through in training).

Run (after the teacher; 2 CPU cores, about 8 minutes), then the follow-ups
experiments/progressive_digits_ddpm_2step.py and progressive_digits_ddpm_1step.py, whose
teacher is the previous run (4 -> 2 and 2 -> 1 steps):

    jaxgen train experiments/progressive_digits_ddpm.py --workdir runs/progressive_digits_ddpm
    jaxgen eval --workdir runs/progressive_digits_ddpm

It samples with exactly 4 DDIM steps (``--steps`` other than 4 is refused).

Expected result: a 4-step digit FD well below the teacher's own 5-step DDIM (111 at 360
samples), near its 20-step DDIM (15.3). A check run with 150 steps per round
(``model.steps_per_round=150 train.num_steps=600``) reached digit FD 40.3 with 4 steps (360
samples). Measured (500 steps per round; teacher runs/ddpm_digits trained with the former
main-job config): digit FD 23.9 with 4 steps.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.progressive import ProgressiveConfig

STEPS_PER_ROUND = 500


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="progressive",
        name="progressive_digits_ddpm",
        model=ProgressiveConfig(
            teacher_workdir="runs/ddpm_digits",
            teacher_steps=64,
            final_steps=4,
            steps_per_round=STEPS_PER_ROUND,
            weighting="truncated_snr",
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
            num_steps=4 * STEPS_PER_ROUND,
            log_every=100,
            checkpoint_every=500,
            sample_every=1000,
            num_grid_samples=64,
        ),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected="4-step digit FD below the DDPM's 5-step DDIM (111), near its 20-step (15.3)",
    )
