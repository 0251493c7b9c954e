"""WGAN-GP (Gulrajani et al. 2017, Algorithm 1) on the built-in 8x8 digits: the Wasserstein
critic with the gradient penalty (lambda = 10) on random interpolates, 5 critic steps per
generator step, Adam (1e-4, b1 = 0, b2 = 0.9), the paper's hyperparameters. DCGAN networks
without batch norm in the critic (the penalty is per example, which batch norm would break;
the paper uses layer norm or none).

Run (2 CPU cores, a few minutes):

    jaxgen train experiments/wgan_gp_digits.py --workdir runs/wgan_gp_digits
    jaxgen eval --workdir runs/wgan_gp_digits

Reports the digit FD of 360 EMA-generator samples, the critic's mean scores
(``d_real - d_fake`` estimates W_1) and its input-gradient norm (near 1 when the penalty
holds).
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.gan import GANConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="gan",
        name="wgan_gp_digits",
        model=GANConfig(
            game="wasserstein",
            architecture="dcgan",
            latent_dim=32,
            batch_norm=False,
            penalty="gradient_penalty",
            penalty_weight=10.0,
            discriminator_steps=5,
        ),
        data=DataConfig(name="digits", batch_size=64),
        optim=OptimConfig(learning_rate=1e-4, b1=0.0, b2=0.9, grad_clip_norm=None, ema_decay=0.999),
        train=TrainConfig(num_steps=5000, log_every=250, checkpoint_every=2500, sample_every=2500),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected="digit FD < 30",
    )
