"""Consistency distillation on CIFAR-10 (Song, Dhariwal, Chen & Sutskever 2023, "CD").

The teacher is the DDPM of experiments/ddpm_cifar10.py (runs/ddpm_cifar10; train it first):
the paper distils EDM's unconditional CIFAR-10 model (Karras et al. 2022), which jaxgen's
CIFAR-10 configs do not reproduce exactly. The paper's CD settings otherwise: N = 18 Karras
levels (rho = 7) up to sigma_max = 80 (the DDPM's levels from 0.01, moved to its discrete
table), Heun teacher steps, an EMA target (mu = 0.95), uniform weighting and level index,
Adam 4e-4, batch 512, EMA 0.9999, 800k steps. The paper's metric is LPIPS, which jaxgen
does not ship: this config uses iCT's pseudo-Huber metric (Song & Dhariwal 2024 use it in
place of LPIPS, whose features overlap those of the FID network).

Needs CIFAR-10 prepared by tensorflow_datasets under data.data_dir.

    jaxgen train experiments/consistency_cifar10.py --workdir runs/consistency_cifar10 \
        data.data_dir=~/tensorflow_datasets
    jaxgen sample --workdir runs/consistency_cifar10 --steps 1
    jaxgen sample --workdir runs/consistency_cifar10 --steps 2

Paper results (CD with LPIPS, Table 1): FID 3.55 with one step, 2.93 with two. jaxgen
reports no FID (no Inception network); score the samples with an external FID tool.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.consistency import ConsistencyConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="consistency",
        name="consistency_cifar10",
        model=ConsistencyConfig(
            teacher_workdir="runs/ddpm_cifar10",
            num_levels=18,
            solver="heun",
            metric="pseudo_huber",
            weighting="uniform",
            index_distribution="uniform",
            target_ema=0.95,
            sigma_max=80.0,
            sample_steps=1,
        ),
        data=DataConfig(name="cifar10", batch_size=512, random_flip=True),
        optim=OptimConfig(
            learning_rate=4e-4,
            warmup_steps=0,
            decay="constant",
            grad_clip_norm=None,
            ema_decay=0.9999,
        ),
        train=TrainConfig(
            num_steps=800_000,
            log_every=100,
            checkpoint_every=10_000,
            sample_every=20_000,
            num_grid_samples=64,
        ),
        eval=EvalConfig(split="test", num_samples=50_000, batch_size=500),
        expected="paper (CD, LPIPS, EDM teacher): FID 3.55 one step, 2.93 two steps",
    )
