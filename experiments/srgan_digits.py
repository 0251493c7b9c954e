"""SRGAN (Ledig et al. 2017) as 2x super-resolution of the built-in digits: the SRResNet
generator maps the 4x4 digit (the 8x8 one area-downsampled) itself to 8x8 through one
sub-pixel upsampling block; a strided-convolution discriminator judges 8x8 digits alone.

Content loss: the MSE between the 128 penultimate features of the project's frozen digit
classifier (the network of the digit FD, never trained; features scaled by 1/4 to bring the
loss near the pixel MSE's scale) plus the pixel MSE (weight 1), with the adversarial loss
weighted 1e-3 as in the paper. The first 1000 of the 3000 steps train the generator as an
SRResNet on the pixel MSE alone (the paper's initialisation); the discriminator starts
after them. Adam (2e-4, b1 = 0.9), batch 64; the generator has 4 residual blocks of width
32, the discriminator widths 16 and 32 and a dense layer of 128.

Run (2 CPU cores, a few minutes):

    jaxgen train experiments/srgan_digits.py --workdir runs/srgan_digits
    jaxgen eval --workdir runs/srgan_digits

Reports, on the 360 test digits, L1 and PSNR of the super-resolved digits against the
truth next to the nearest-neighbour, bilinear and bicubic baselines, the digit FD of the
super-resolved test digits, and writes (input, output, truth) columns to ``figures/``.

Measured (3000 steps, 204 s on 2 cores shared with other jobs; eval seed 0): PSNR 20.0 dB
and L1 0.123 against bilinear 12.9 dB and bicubic 13.5 dB; digit FD: measured 2.5 (pix2pix:
20.5 dB, FD 1.5; SR3: 19.1 dB for one sample, FD 1.47).
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.srgan import SRGANConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="srgan",
        name="srgan_digits",
        model=SRGANConfig(
            factor=2,
            generator_features=32,
            generator_blocks=4,
            generator_kernel_size=9,
            discriminator_features=(16, 32),
            discriminator_dense=128,
            content_loss="digit_classifier",
            feature_scale=0.25,
            pixel_weight=1.0,
            adversarial_weight=1e-3,
            pretrain_steps=1000,
        ),
        data=DataConfig(name="digits", batch_size=64),
        optim=OptimConfig(
            learning_rate=2e-4, b1=0.9, b2=0.999, grad_clip_norm=None, ema_decay=0.999
        ),
        train=TrainConfig(num_steps=3000, log_every=250, checkpoint_every=1000, sample_every=1000),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected="PSNR above the bilinear baseline's",
    )
