"""SRGAN-VGG54 (Ledig et al. 2017) as closely as the dataset registry allows: 4x
super-resolution with the SRResNet generator (B = 16 residual blocks of 64 channels, 9x9
outer convolutions, two sub-pixel upsampling blocks), the eight-convolution discriminator
(64 to 512 channels, dense 1024), the VGG54 content loss (VGG19 ``relu5_4`` features scaled
by 1/12.75) plus 1e-3 times the adversarial loss, Adam (1e-4, b1 = 0.9), batch 16; 10^5
steps of SRResNet (MSE) initialisation, then 10^5 SRGAN steps.

Run (GPU/TPU; the data must be prepared by TFDS first, see below; the VGG19 weights must be
converted to an ``.npz`` first, see ``jaxgen.nets.vgg``)::

    jaxgen train experiments/srgan_paper.py --workdir runs/srgan_paper \\
        model.vgg19_weights=/path/to/vgg19.npz
    jaxgen eval --workdir runs/srgan_paper

Use ``model.vgg_preprocessing=caffe`` for weights converted from Keras'
``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` (the default, ``imagenet``, is for
torchvision's).

Where this differs from the paper: Ledig et al. train on 350 thousand ImageNet images
(random 96x96 crops, downsampled 4x with a bicubic kernel, LR in [0, 1]); the registry's
closest data is the downsampled ImageNet of Chrabaszcz et al. (TFDS
``imagenet_resized/64x64``, ``tfds build imagenet_resized/64x64
--file_format=array_record``), so this trains on whole 64x64 images (16x16 inputs, area
downsampling, random flips). Their SRResNet initialisation runs 10^6 steps and their SRGAN
phase lowers the learning rate to 1e-5 after 10^5 steps (not expressible with
``optim.decay``). They evaluate PSNR (dB) and SSIM on the Y channel of YCbCr with a
4-pixel border removed; ``jaxgen eval`` reports the PSNR over all channels of the whole
[-1, 1] image, on 1000 images of the ImageNet validation split.

The paper's results (Table 2, 4x; Set5, Set14 and BSD100 are small public benchmark sets
of 5, 14 and 100 natural images, BSD100 being the Berkeley segmentation test set; none of
them is in TFDS), PSNR / SSIM and mean opinion score (MOS, 1 to 5, 26 raters):

============  ================  ================  ================
method        Set5              Set14             BSD100
============  ================  ================  ================
bicubic       28.43 / 0.8211    25.99 / 0.7486    25.94 / 0.6935
SRResNet      32.05 / 0.9019    28.49 / 0.8184    27.58 / 0.7620
SRGAN-VGG54   29.40 / 0.8472    26.02 / 0.7397    25.16 / 0.6688
MOS bicubic   1.97              1.80              1.47
MOS SRResNet  3.37              2.98              2.29
MOS SRGAN     3.58              3.72              3.56
MOS HR        4.32              4.32              4.46
============  ================  ================  ================

SRGAN's PSNR is below SRResNet's (and below bicubic on BSD100) while its MOS is far higher:
the paper's point is that PSNR does not measure perceived quality.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.srgan import SRGANConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="srgan",
        name="srgan_paper",
        model=SRGANConfig(
            factor=4,
            generator_features=64,
            generator_blocks=16,
            generator_kernel_size=9,
            discriminator_features=(64, 128, 256, 512),
            discriminator_dense=1024,
            content_loss="vgg19",
            vgg19_weights="vgg19.npz",
            vgg_layer="relu5_4",
            vgg_preprocessing="imagenet",
            feature_scale=1.0 / 12.75,
            pixel_weight=0.0,
            adversarial_weight=1e-3,
            pretrain_steps=100_000,
        ),
        data=DataConfig(name="imagenet_resized_64", batch_size=16, random_flip=True),
        optim=OptimConfig(
            learning_rate=1e-4, b1=0.9, b2=0.999, grad_clip_norm=None, ema_decay=0.999
        ),
        train=TrainConfig(
            num_steps=200_000, log_every=500, checkpoint_every=10_000, sample_every=10_000
        ),
        eval=EvalConfig(split="validation", num_samples=1000, batch_size=250, max_examples=1000),
        expected=(
            "not run here; the paper's SRGAN-VGG54 reaches PSNR 29.40 / 26.02 / 25.16 dB on "
            "Set5 / Set14 / BSD100 (Y channel, trained on ImageNet crops)"
        ),
    )
