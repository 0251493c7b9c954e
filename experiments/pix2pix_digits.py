"""pix2pix (Isola et al. 2017) as 2x super-resolution of the built-in digits: the generator
(a U-Net) maps a 4x4 digit, average-pooled from the 8x8 one and enlarged back by nearest
neighbour, to the 8x8 digit; a PatchGAN discriminator judges (condition, output) pairs.
Adversarial (non-saturating) plus lambda = 100 times L1, Adam (2e-4, b1 = 0.5), one
discriminator step per generator step, as in the paper.

Run (2 CPU cores, a few minutes):

    jaxgen train experiments/pix2pix_digits.py --workdir runs/pix2pix_digits
    jaxgen eval --workdir runs/pix2pix_digits

Reports, on the 360 test digits, L1 and PSNR of the super-resolved digits against the
truth next to the nearest-neighbour and bilinear baselines, the digit FD of super-resolved
test digits, and writes (input, output, truth) columns to ``figures/``.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.pix2pix import Pix2PixConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="pix2pix",
        name="pix2pix_digits",
        model=Pix2PixConfig(
            factor=2,
            generator_features=(32, 64, 128),
            discriminator_features=(32, 64),
            l1_weight=100.0,
            noise_channels=0,
        ),
        data=DataConfig(name="digits", batch_size=64),
        optim=OptimConfig(
            learning_rate=2e-4, b1=0.5, b2=0.999, grad_clip_norm=None, ema_decay=0.999
        ),
        train=TrainConfig(num_steps=2000, log_every=250, checkpoint_every=1000, sample_every=1000),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected="PSNR above the bilinear baseline's; digit FD < 15",
    )
