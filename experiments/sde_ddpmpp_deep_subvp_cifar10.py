"""DDPM++ cont. (deep) with the sub-VP SDE on CIFAR-10: Song et al. (2021), Table 2 / App. H.

Network: the official ``configs/subvp/cifar10_ddpmpp_deep_continuous.py`` layout (ch 128,
multipliers 1,2,2,2, 8 residual blocks per level, attention at 16x16, BigGAN up/down
blocks, skip rescaling, sinusoidal embedding of 999 t; 106.6M parameters). sub-VP SDE with
beta in [0.1, 20], continuous-time DSM with the sigma^2 weighting (per-pixel mean), the
network predicting the noise. Adam 2e-4, 5000 warm-up steps, gradient clipping 1, EMA
0.9999, batch 128, random flips, 1.3M steps. Likelihood: the probability-flow ODE with
one Rademacher Hutchinson probe, RK45-type adaptive solver at rtol = atol = 1e-5, uniform
dequantization (the paper's protocol).

Needs CIFAR-10 prepared by tensorflow_datasets under data.data_dir.

    jaxgen train experiments/sde_ddpmpp_deep_subvp_cifar10.py --workdir runs/ddpmpp_deep_subvp \
        data.data_dir=~/tensorflow_datasets
    jaxgen eval --workdir runs/ddpmpp_deep_subvp

Paper result: 2.99 bits/dim on the test set (Table 2).
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.nets.unet import ddpmpp_config
from jaxgen.recipes.score_sde import ScoreSDEConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="score_sde",
        name="sde_ddpmpp_deep_subvp_cifar10",
        model=ScoreSDEConfig(
            unet=ddpmpp_config(deep=True),
            sde="subvp",
            beta_min=0.1,
            beta_max=20.0,
            parameterization="eps",
            weighting="sigma2",
            loss_reduction="mean",
            noise_conditioning="time",
            sampler="pc",
            sample_steps=1000,
            predictor="euler_maruyama",
            corrector="none",
            likelihood_divergence="rademacher",
            likelihood_probes=1,
            likelihood_rtol=1e-5,
            likelihood_atol=1e-5,
        ),
        data=DataConfig(name="cifar10", batch_size=128, random_flip=True),
        optim=OptimConfig(
            learning_rate=2e-4,
            warmup_steps=5000,
            decay="constant",
            grad_clip_norm=1.0,
            ema_decay=0.9999,
        ),
        train=TrainConfig(
            num_steps=1_300_000,
            log_every=100,
            checkpoint_every=10_000,
            sample_every=50_000,
            num_grid_samples=64,
            keep_checkpoints=3,
        ),
        eval=EvalConfig(split="test", num_samples=10_000, batch_size=256, max_examples=None),
        expected="2.99 bits/dim test NLL (Song et al. 2021, Table 2, DDPM++ cont. deep, sub-VP)",
    )
