"""The first stage of VQ-VAE-2 on ImageNet 256x256 (Razavi, van den Oord, Vinyals 2019,
"Generating Diverse High-Fidelity Images with VQ-VAE-2"): a two-level VQ autoencoder with a
64x64 bottom grid and a 32x32 top grid of codes, 512 codes of dimension 64 at each level,
128 hidden and 64 residual channels, two residual blocks, commitment cost 0.25 and EMA
codebooks (decay 0.99) -- the paper's ImageNet model (its appendix table of
hyperparameters). The class-conditional hierarchical priors are
``experiments/vqvae2_prior_imagenet256.py``, which trains this run first.

What is ours, not the paper's: the decoder likelihood is a discretized logistic (the paper
uses the mean squared error), the dead-code restarts, the optimiser settings and steps.

Needs ImageNet prepared by tensorflow_datasets (manual download: ``ILSVRC2012_img_train.tar``
and ``ILSVRC2012_img_val.tar`` in ``<data_dir>/downloads/manual``, then ``tfds build
imagenet2012 --file_format=array_record --data_dir <data_dir>``); jaxgen's
``imagenet2012_256`` takes each image's central square resized to 256x256:

    jaxgen train experiments/vqvae2_imagenet256.py --workdir runs/vqvae2_imagenet256 \\
        data.data_dir=~/tensorflow_datasets
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.vqvae2 import VQVAE2Config


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="vqvae2",
        name="vqvae2_imagenet256",
        model=VQVAE2Config(
            num_codes_top=512,
            num_codes_bottom=512,
            embedding_dim=64,
            channels=128,
            residual_channels=64,
            num_residual_blocks=2,
            bottom_downsamples=2,
            top_downsamples=1,
            commitment_cost=0.25,
            codebook_update="ema",
            ema_decay=0.99,
            dead_code_threshold=1.0,
            likelihood="discretized_logistic",
        ),
        data=DataConfig(name="imagenet2012_256", batch_size=128, random_flip=True),
        optim=OptimConfig(learning_rate=3e-4, warmup_steps=1000, decay="cosine", ema_decay=0.999),
        train=TrainConfig(
            num_steps=300_000, log_every=200, checkpoint_every=5000, sample_every=10_000
        ),
        eval=EvalConfig(split="validation[:1000]", num_samples=64, batch_size=50),
        expected="first stage of the VQ-VAE-2 ImageNet model (the paper reports no FID for it)",
    )
