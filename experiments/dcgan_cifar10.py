"""DCGAN (Radford et al. 2016) on CIFAR-10 (TFDS): generator 1 -> 4 -> 8 -> 16 -> 32 with
512, 256, 128 channels and batch norm, strided discriminator 32 -> 16 -> 8 -> 4 -> 1 with
batch norm and LeakyReLU(0.2), z ~ U[-1, 1]^100, Adam (2e-4, b1 = 0.5), batch 128, the
non-saturating game: the paper's settings.

Run (GPU/TPU; the data must be prepared by TFDS first, or add ``data.download=true``):

    jaxgen train experiments/dcgan_cifar10.py --workdir runs/dcgan_cifar10

The DCGAN paper reports no inception score for its CIFAR-10 model; Gulrajani et al. (2017,
table 3) list DCGAN at 6.16 +- 0.07 (unsupervised). jaxgen has no Inception network (it
needs a download), so ``jaxgen eval`` reports the discriminator diagnostics only; score the
samples (``jaxgen sample``) with your Inception-score code.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.gan import GANConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="gan",
        name="dcgan_cifar10",
        model=GANConfig(
            game="non_saturating",
            architecture="dcgan",
            latent_dim=100,
            latent_distribution="uniform",
            generator_features=128,
            discriminator_features=128,
            batch_norm=True,
            discriminator_steps=1,
        ),
        data=DataConfig(name="cifar10", batch_size=128),
        optim=OptimConfig(
            learning_rate=2e-4, b1=0.5, b2=0.999, grad_clip_norm=None, ema_decay=0.999
        ),
        train=TrainConfig(
            num_steps=100_000, log_every=500, checkpoint_every=5000, sample_every=5000
        ),
        eval=EvalConfig(split="test", num_samples=10_000, batch_size=500),
        expected="inception score about 6.2 (Gulrajani et al. 2017, table 3: DCGAN 6.16)",
    )
