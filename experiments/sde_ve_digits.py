"""Score SDE (Song et al. 2021), VE SDE (the continuous SMLD / NCSN), on the built-in 8x8 digits.

Run (2 CPU cores, about 10 minutes including compilation):

    jaxgen train experiments/sde_ve_digits.py --workdir runs/sde_ve_digits
    jaxgen eval --workdir runs/sde_ve_digits

Denoising score matching with the sigma^2 weighting (epsilon-parameterized network), the
predictor-corrector sampler for pictures and the sample-quality score, and the exact
likelihood of the probability-flow ODE (uniformly dequantized on the 17 grey levels) for
test bits/dim, in the same unit as DDPM's discretized bound.

Expected result: test bits/dim (ODE, 17 levels) < 3.0; digit FD < 20.
Measured numbers are in the README.

A laptop-sized smoke variant: append `train.num_steps=200 train.sample_every=200
model.sample_steps=100`.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.nets.unet import UNetConfig
from jaxgen.recipes.score_sde import ScoreSDEConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="score_sde",
        name="sde_ve_digits",
        model=ScoreSDEConfig(
            unet=UNetConfig(
                channels=32,
                channel_mult=(1, 2),
                num_res_blocks=1,
                attention_resolutions=(4,),
                dropout=0.0,
                num_groups=8,
                num_heads=1,
            ),
            sde="ve",
            sigma_min=0.01,
            # Song & Ermon (2020), technique 1: sigma_max ~ the largest distance between two
            # training points (9.6 for the digits in [-1, 1]^64).
            sigma_max=10.0,
            predictor="reverse_diffusion",
            corrector="langevin",
            snr=0.16,
            parameterization="eps",
            weighting="sigma2",
            sampler="pc",
            sample_steps=500,  # 2 evaluations per step (predictor + corrector)
            likelihood_rtol=1e-4,
            likelihood_atol=1e-4,
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
        # The likelihood ODE costs ~400 network evaluations (each with a VJP) per image at
        # rtol = atol = 1e-4 (1e-5 doubles that and moved bits/dim by 2e-4 in a check):
        # the first 120 test digits keep `jaxgen eval` to minutes on a CPU.
        eval=EvalConfig(split="test", num_samples=360, batch_size=120, max_examples=120),
        expected="test bits/dim (ODE, 17 levels) < 3.0; digit FD < 20",
    )
