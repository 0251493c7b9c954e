"""Spectrally normalized GAN (Miyato et al. 2018) on the built-in 8x8 digits: every
discriminator convolution divided by its largest singular value (one power iteration per
step, the vector kept across steps), the hinge loss, no batch norm in the discriminator,
Adam (2e-4, b1 = 0.5, b2 = 0.999), one discriminator step per generator step.

Run (2 CPU cores, a few minutes):

    jaxgen train experiments/sngan_digits.py --workdir runs/sngan_digits
    jaxgen eval --workdir runs/sngan_digits

Reports the digit FD of 360 EMA-generator samples.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.gan import GANConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="gan",
        name="sngan_digits",
        model=GANConfig(
            game="hinge",
            architecture="dcgan",
            latent_dim=32,
            batch_norm=False,
            spectral_norm=True,
            discriminator_steps=1,
        ),
        data=DataConfig(name="digits", batch_size=64),
        optim=OptimConfig(
            learning_rate=2e-4, b1=0.5, b2=0.999, grad_clip_norm=None, ema_decay=0.999
        ),
        train=TrainConfig(num_steps=5000, log_every=250, checkpoint_every=2500, sample_every=2500),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected="digit FD < 30",
    )
