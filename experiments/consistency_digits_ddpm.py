"""Consistency distillation (Song et al. 2023, Alg. 2) of the digits DDPM into a one- to
four-step generator.

The teacher is the DDPM of experiments/ddpm_digits.py (in runs/ddpm_digits; train it first).
The student has its U-Net and eps parameterisation and starts as the teacher; 18 Karras
levels (rho = 7) of ``s = sigma / alpha`` from the DDPM's smallest level 0.01 to
sigma_max = 20 (not the DDPM's 157: an eps network's x0 = x~ - s eps amplifies its error by
s, and at s = 20 the data is already buried, 0.5 / 20 of the noise), moved to the DDPM's
discrete table so teacher and student are evaluated at integer timesteps; one
Heun step of the teacher between neighbouring levels; pseudo-Huber metric (iCT), uniform
weighting and level index, an EMA target with decay 0.95 (Song et al.'s CD setting). The
teacher's hash is recorded in the workdir: a resume after the teacher changed is refused.

Run (after the teacher; 2 CPU cores, about 10 minutes):

    jaxgen train experiments/consistency_digits_ddpm.py --workdir runs/consistency_digits_ddpm
    jaxgen eval --workdir runs/consistency_digits_ddpm --steps 1
    jaxgen eval --workdir runs/consistency_digits_ddpm --steps 2
    jaxgen eval --workdir runs/consistency_digits_ddpm --steps 4

(``--steps k``: multistep consistency sampling at k of the 18 training levels, evenly spaced
in the Karras index from sigma_max; k from 1 to 17.) Variants: ``model.metric=feature``
(the digit classifier's features, an LPIPS analogue; digit FD then scores the model with
its own training metric), ``model.target_ema=0.0`` (iCT's stop-gradient target).

Expected result: the two-step model within 1.5x of the teacher's 20-step DDIM digit FD
(15.3 at 360 samples; the issue's target); one step far better than the teacher's one-step
DDIM (540). A check run of 500 steps (this config, ``train.num_steps=500``) reached digit
FD 23.2 / 17.2 / 15.3 at 1 / 2 / 4 steps (360 samples). Measured (2000 steps, teacher
runs/ddpm_digits trained with the former main-job config, 32 wide, 2500 x 128): digit FD
15.8 / 11.6 / 12.8 at 1 / 2 / 4 steps, 10.6 minutes of training on 2 shared cores; the
two-step model is 1.2x the teacher's best 20-call FD (9.8 with UniPC; DDIM 15.3).
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.consistency import ConsistencyConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="consistency",
        name="consistency_digits_ddpm",
        model=ConsistencyConfig(
            teacher_workdir="runs/ddpm_digits",
            num_levels=18,
            solver="heun",
            metric="pseudo_huber",
            weighting="uniform",
            index_distribution="uniform",
            target_ema=0.95,
            sigma_max=20.0,
            sample_steps=2,
        ),
        data=DataConfig(name="digits", batch_size=128),
        optim=OptimConfig(
            learning_rate=1e-4,
            warmup_steps=100,
            decay="constant",
            grad_clip_norm=1.0,
            ema_decay=0.999,
        ),
        train=TrainConfig(
            num_steps=2000,
            log_every=100,
            checkpoint_every=500,
            sample_every=1000,
            num_grid_samples=64,
        ),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected="2-step digit FD within 1.5x of the teacher's 20-step DDIM FD (15.3)",
    )
