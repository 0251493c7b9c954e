"""NCSN++ cont. (deep) with the VE SDE on CIFAR-10: Song et al. (2021), Table 3 / App. H.

Network: the official ``configs/ve/cifar10_ncsnpp_deep_continuous.py`` layout (ch 128,
multipliers 1,2,2,2, 8 residual blocks per level, attention at 16x16, BigGAN up/down
blocks, FIR resampling, skip rescaling, Gaussian Fourier features of log sigma, residual
input pyramid; 107.6M parameters). VE SDE with sigma in [0.01, 50], continuous-time DSM
with the sigma^2 weighting and summed per-pixel loss; the network's output divided by
sigma is the score (the paper's ``scale_by_sigma``; here the ``eps`` parameterization,
which is the same thing up to sign). Adam 2e-4, 5000 warm-up steps, gradient clipping 1,
EMA 0.999, batch 128, random flips, 1.3M steps. Samples: predictor-corrector with the
reverse-diffusion predictor and one Langevin corrector step (snr 0.16), N = 1000.

Needs CIFAR-10 prepared by tensorflow_datasets under data.data_dir.

    jaxgen train experiments/sde_ncsnpp_deep_ve_cifar10.py --workdir runs/ncsnpp_deep_ve \
        data.data_dir=~/tensorflow_datasets
    jaxgen eval --workdir runs/ncsnpp_deep_ve

Paper result: FID 2.20, Inception score 9.89 (PC sampler). `jaxgen eval` reports the
probability-flow bits/dim; FID needs the Inception network, which jaxgen does not ship.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.nets.unet import ncsnpp_config
from jaxgen.recipes.score_sde import ScoreSDEConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="score_sde",
        name="sde_ncsnpp_deep_ve_cifar10",
        model=ScoreSDEConfig(
            unet=ncsnpp_config(deep=True),
            sde="ve",
            sigma_min=0.01,
            sigma_max=50.0,
            parameterization="eps",
            weighting="sigma2",
            loss_reduction="sum",
            noise_conditioning="log_sigma",
            sampler="pc",
            sample_steps=1000,
            predictor="reverse_diffusion",
            corrector="langevin",
            snr=0.16,
        ),
        data=DataConfig(name="cifar10", batch_size=128, random_flip=True),
        optim=OptimConfig(
            learning_rate=2e-4,
            warmup_steps=5000,
            decay="constant",
            grad_clip_norm=1.0,
            ema_decay=0.999,
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
        expected="FID 2.20, IS 9.89 (Song et al. 2021, Table 3, NCSN++ cont. deep, VE)",
    )
