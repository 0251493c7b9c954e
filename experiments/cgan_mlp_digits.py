"""Conditional GAN of Mirza and Osindero (2014) on the built-in 8x8 digits: MLP generator and
discriminator, the one-hot class concatenated to z and to the flattened image, non-saturating
game, Adam (2e-4, b1 = 0.5).

Run (2 CPU cores, a few minutes):

    jaxgen train experiments/cgan_mlp_digits.py --workdir runs/cgan_mlp_digits
    jaxgen eval --workdir runs/cgan_mlp_digits

Reports the digit FD of 360 EMA-generator samples (classes balanced).
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.gan import GANConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="gan",
        name="cgan_mlp_digits",
        model=GANConfig(
            game="non_saturating",
            architecture="mlp",
            latent_dim=32,
            generator_hidden=(256, 256),
            discriminator_hidden=(256, 256),
            num_classes=10,
            conditioning="concat",
        ),
        data=DataConfig(name="digits", batch_size=64),
        optim=OptimConfig(
            learning_rate=2e-4, b1=0.5, b2=0.999, grad_clip_norm=None, ema_decay=0.999
        ),
        train=TrainConfig(num_steps=5000, log_every=250, checkpoint_every=2500, sample_every=2500),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected="digit FD < 60",
    )
