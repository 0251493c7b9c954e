"""WGAN-GP (Gulrajani et al. 2017) on CIFAR-10 (TFDS): the Wasserstein critic with gradient
penalty 10, 5 critic steps per generator step, Adam (1e-4, b1 = 0, b2 = 0.9), batch 64,
100,000 generator steps; DCGAN networks without batch norm in the critic.

Run (GPU/TPU; the data must be prepared by TFDS first, or add ``data.download=true``):

    jaxgen train experiments/wgan_gp_cifar10.py --workdir runs/wgan_gp_cifar10

The paper's unsupervised CIFAR-10 inception score is 7.86 +- 0.07 (table 3) with its
ResNet generator and critic; with DCGAN networks, as here, its scores are lower. jaxgen has
no Inception network (it needs a download): ``jaxgen eval`` reports the critic's
diagnostics (its input-gradient norm should stay near 1); score ``jaxgen sample``'s output
with your Inception-score code.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.gan import GANConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="gan",
        name="wgan_gp_cifar10",
        model=GANConfig(
            game="wasserstein",
            architecture="dcgan",
            latent_dim=128,
            generator_features=128,
            discriminator_features=128,
            batch_norm=False,
            penalty="gradient_penalty",
            penalty_weight=10.0,
            discriminator_steps=5,
        ),
        data=DataConfig(name="cifar10", batch_size=64),
        optim=OptimConfig(learning_rate=1e-4, b1=0.0, b2=0.9, grad_clip_norm=None, ema_decay=0.999),
        train=TrainConfig(
            num_steps=100_000, log_every=500, checkpoint_every=5000, sample_every=5000
        ),
        eval=EvalConfig(split="test", num_samples=10_000, batch_size=500),
        expected="inception score 7.86 with the paper's ResNet; lower with these DCGAN networks",
    )
