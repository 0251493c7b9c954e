"""WGAN (Arjovsky et al. 2017, Algorithm 1) on the built-in 8x8 digits: the Wasserstein
critic kept Lipschitz by clipping its weights to [-0.01, 0.01] after every update, 5 critic
steps per generator step, RMSProp with learning rate 5e-5 (the paper's settings; ``optim.b2``
is RMSProp's decay, 0.99 as in PyTorch). DCGAN networks, batch norm in both.

Run (2 CPU cores, a few minutes):

    jaxgen train experiments/wgan_digits.py --workdir runs/wgan_digits
    jaxgen eval --workdir runs/wgan_digits

Reports the digit FD of 360 EMA-generator samples.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.gan import GANConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="gan",
        name="wgan_digits",
        model=GANConfig(
            game="wasserstein",
            architecture="dcgan",
            latent_dim=32,
            batch_norm=True,
            weight_clip=0.01,
            discriminator_steps=5,
        ),
        data=DataConfig(name="digits", batch_size=64),
        optim=OptimConfig(
            optimizer="rmsprop", learning_rate=5e-5, b2=0.99, grad_clip_norm=None, ema_decay=0.999
        ),
        train=TrainConfig(num_steps=5000, log_every=250, checkpoint_every=2500, sample_every=2500),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected="digit FD < 60",
    )
