"""Improved consistency training on CIFAR-10 (Song & Dhariwal 2024, "iCT"), no teacher.

The paper's settings: pseudo-Huber metric (c = 0.00054 sqrt(d)), weighting 1 / (s_{n+1} -
s_n), lognormal level index (P_mean = -1.1, P_std = 2), no EMA target, the exponential
curriculum from 11 to 1281 levels on [0.002, 80] (rho = 7), sigma_data 0.5, dropout 0.3,
Adam 1e-4, batch 1024, 400k steps, sampling EMA 0.99993. The paper's network is NCSN++;
this config uses DDPM++ (jaxgen's ``ddpmpp_config``) with the sinusoidal embedding of the
noise input 250 log s of Song et al.'s code (NCSN++'s Fourier features at scale 16 suit
``log s`` itself, not that input).

Needs CIFAR-10 prepared by tensorflow_datasets under data.data_dir.

    jaxgen train experiments/consistency_training_cifar10.py --workdir runs/ict_cifar10 \
        data.data_dir=~/tensorflow_datasets
    jaxgen sample --workdir runs/ict_cifar10 --steps 1
    jaxgen sample --workdir runs/ict_cifar10 --steps 2

Paper results (iCT, Table 2): FID 2.83 with one step, 2.46 with two. jaxgen reports no FID
(no Inception network); score the samples with an external FID tool.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.nets.unet import ddpmpp_config
from jaxgen.recipes.consistency import ConsistencyConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="consistency",
        name="consistency_training_cifar10",
        model=ConsistencyConfig(
            teacher_workdir=None,
            unet=ddpmpp_config(dropout=0.3),
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
        data=DataConfig(name="cifar10", batch_size=1024, random_flip=True),
        optim=OptimConfig(
            learning_rate=1e-4,
            warmup_steps=0,
            decay="constant",
            grad_clip_norm=None,
            ema_decay=0.99993,
        ),
        train=TrainConfig(
            num_steps=400_000,
            log_every=100,
            checkpoint_every=10_000,
            sample_every=20_000,
            num_grid_samples=64,
        ),
        eval=EvalConfig(split="test", num_samples=50_000, batch_size=500),
        expected="paper (iCT, NCSN++): FID 2.83 one step, 2.46 two steps",
    )
