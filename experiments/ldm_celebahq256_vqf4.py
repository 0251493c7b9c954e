"""The first stage of LDM-4 on CelebA-HQ 256x256 (Rombach et al. 2022, "High-Resolution
Image Synthesis with Latent Diffusion Models"): a VQ-regularised autoencoder with
downsampling factor f = 4, latents of 64x64x3 and a codebook of |Z| = 8192 (the paper's
Table 8 / Table 12 row for CelebA-HQ LDM-4). Latent diffusion runs on its pre-quantisation
latents and its decoder quantises them (the paper's "VQ-reg." models, sec. 3 / appendix G).
The second stage is ``experiments/ldm_celebahq256.py``, which trains this run first.

What is ours, not the paper's: the paper's autoencoder is a VQGAN (Esser et al. 2021)
trained with an L1 + LPIPS perceptual loss and a patch-GAN discriminator; jaxgen's VQ-VAE
has a discretized-logistic likelihood, the plain convolutional encoder and decoder of
van den Oord et al. (2017) at 128 channels, two residual blocks, and an EMA codebook with
dead-code restarts. Expect blurrier reconstructions than the paper's (its rFID is 2.58 for
this f = 4 VQ autoencoder on ImageNet, Table 8), which bounds the second stage's FID.

Needs CelebA-HQ prepared by tensorflow_datasets (manual download: ``data256x256.tar`` in
``<data_dir>/downloads/manual``, then ``tfds build celeb_a_hq/256
--file_format=array_record --data_dir <data_dir>``):

    jaxgen train experiments/ldm_celebahq256_vqf4.py --workdir runs/ldm_celebahq256_vqf4 \\
        data.data_dir=~/tensorflow_datasets
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.vqvae import VQVAEConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="vqvae",
        name="ldm_celebahq256_vqf4",
        model=VQVAEConfig(
            num_codes=8192,
            embedding_dim=3,
            channels=128,
            residual_channels=128,
            num_residual_blocks=2,
            num_downsamples=2,
            commitment_cost=0.25,
            codebook_update="ema",
            ema_decay=0.99,
            dead_code_threshold=1.0,
            likelihood="discretized_logistic",
        ),
        data=DataConfig(name="celeb_a_hq_256", batch_size=16, random_flip=True),
        optim=OptimConfig(
            learning_rate=4.5e-6 * 16,
            warmup_steps=1000,
            decay="constant",
            grad_clip_norm=1.0,
            ema_decay=0.999,
        ),
        train=TrainConfig(
            num_steps=200_000, log_every=200, checkpoint_every=5000, sample_every=10_000
        ),
        eval=EvalConfig(split="train[:1000]", num_samples=64, batch_size=32),
        expected="first stage of LDM-4 CelebA-HQ (the paper reports no FID for it alone)",
    )
