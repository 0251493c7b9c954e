"""Class-conditional score SDE (Song et al. 2021, VP SDE) with classifier-free guidance
(Ho and Salimans 2022) on the built-in 8x8 digits.

The network, SDE and training of experiments/sde_vp_digits.py with the digit class as a
learned label embedding (``unet.num_classes=10`` plus a learned null label), dropped with
probability ``p_uncond = 0.1`` in training. Guidance is a transform of the score,
``u + s (c - u)``, so every sampler takes it; this config samples with the 2nd-order
DPM-Solver on 25 steps (fast evaluation) at the default guidance scale
``model.guidance.scale``.

Run (2 CPU cores, about 10 minutes including compilation):

    jaxgen train experiments/sde_vp_cfg_digits.py --workdir runs/sde_vp_cfg_digits
    jaxgen eval --workdir runs/sde_vp_cfg_digits
    jaxgen sample --workdir runs/sde_vp_cfg_digits --class 7 --guidance-scale 2 \
        model.sampler=pc model.sample_steps=1000

Expected result (an estimate, to be measured; see README): guided samples of each class
recognised by the digit classifier at >= 95%; digit FD < 15 at 360 samples; test bits/dim
(ODE, unconditional model) < 2.5.

A laptop-sized smoke variant: append `train.num_steps=200 train.sample_every=200`.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.nets.unet import UNetConfig
from jaxgen.recipes.guidance import GuidanceConfig
from jaxgen.recipes.score_sde import ScoreSDEConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="score_sde",
        name="sde_vp_cfg_digits",
        model=ScoreSDEConfig(
            unet=UNetConfig(
                channels=32,
                channel_mult=(1, 2),
                num_res_blocks=1,
                attention_resolutions=(4,),
                dropout=0.0,
                num_groups=8,
                num_heads=1,
                num_classes=10,
            ),
            sde="vp",
            beta_min=0.1,
            beta_max=20.0,
            predictor="reverse_diffusion",
            corrector="none",
            parameterization="eps",
            weighting="sigma2",
            sampler="dpm_solver",
            solver_order=2,
            sample_steps=25,
            likelihood_rtol=1e-4,
            likelihood_atol=1e-4,
            guidance=GuidanceConfig(p_uncond=0.1, scale=2.0),
        ),
        data=DataConfig(name="digits", batch_size=128),
        optim=OptimConfig(
            learning_rate=1e-3,
            warmup_steps=200,
            decay="cosine",
            grad_clip_norm=1.0,
            ema_decay=0.999,
        ),
        train=TrainConfig(
            num_steps=2500,
            log_every=100,
            checkpoint_every=500,
            sample_every=1250,
            num_grid_samples=64,
        ),
        eval=EvalConfig(split="test", num_samples=360, batch_size=120, max_examples=120),
        expected=(
            "digit classifier accuracy >= 95% on guided samples of each class (expected); "
            "digit FD < 15; test bits/dim (ODE, 17 levels) < 2.5"
        ),
    )
