"""Consistency distillation (Song et al. 2023, Alg. 2) of the digits score SDE (VP) into a one- to
four-step generator.

The teacher is the VP score SDE of experiments/sde_vp_digits.py (in runs/sde_vp_digits; train
it first). The student has its U-Net and eps parameterisation and starts as the teacher; 18
Karras levels (rho = 7) of ``s = sigma / alpha`` from the SDE's sigma_ratio(t_min = 1e-3) =
0.0105 to sigma_max = 20 (not sigma_ratio(1) = 152: an eps network's x0 = x~ - s eps amplifies
its error by s), the network seeing ``t = sde.t_from_sigma_ratio(s)``;
one Heun step of the teacher between neighbouring levels; pseudo-Huber metric (iCT), uniform
weighting and level index, an EMA target with decay 0.95 (Song et al.'s CD setting). The
teacher's hash is recorded in the workdir: a resume after the teacher changed is refused.

Run (after the teacher; 2 CPU cores, about 10 minutes):

    jaxgen train experiments/consistency_digits_sde.py --workdir runs/consistency_digits_sde
    jaxgen eval --workdir runs/consistency_digits_sde --steps 1
    jaxgen eval --workdir runs/consistency_digits_sde --steps 2
    jaxgen eval --workdir runs/consistency_digits_sde --steps 4

(``--steps k``: multistep consistency sampling at k of the 18 training levels, evenly spaced
in the Karras index from sigma_max; k from 1 to 17.) Variants: ``model.metric=feature``
(the digit classifier's features, an LPIPS analogue; digit FD then scores the model with
its own training metric), ``model.target_ema=0.0`` (iCT's stop-gradient target).

Expected result: the two-step model within 1.5x of the teacher's 20-step digit FD (9.4 with
DPM-Solver at 360 samples); one step far better than the teacher's one-step DPM-Solver
(451). A check run of 300 steps (``train.num_steps=300``) reached digit FD 35.0 / 17.2 /
18.4 at 1 / 2 / 4 steps (360 samples). Measured (2000 steps): digit FD 16.6 / 11.9 / 12.3
at 1 / 2 / 4 steps; the two-step model is 1.3x the teacher's 20-step FD (9.4; 9.8 with its
1000-step reverse-diffusion sampler).
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.consistency import ConsistencyConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="consistency",
        name="consistency_digits_sde",
        model=ConsistencyConfig(
            teacher_workdir="runs/sde_vp_digits",
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
        expected="2-step digit FD within 1.5x of the teacher's 20-step FD (9.4, DPM-Solver)",
    )
