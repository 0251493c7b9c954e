"""A regularized autoencoder (RAE, Ghosh et al. 2020)
on the built-in 8x8 digits (MLP encoder and decoder, 16-D code).

An L2 penalty on the code keeps the code space compact, which makes the ex-post Gaussian
over codes a better sampler than the plain autoencoder's.

Run (2 CPU cores, under a minute for training and evaluation):

    jaxgen train experiments/rae_digits.py --workdir runs/rae_digits
    jaxgen eval --workdir runs/rae_digits

An autoencoder has no likelihood; ``jaxgen eval`` reports the held-out reconstruction loss
(nats and bits/dim under the decoder's discretized logistic), the squared error, and the
digit FD of samples decoded from a Gaussian fitted to the training codes (Ghosh et al.
2020's ex-post density estimation).
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.autoencoder import AutoencoderConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="autoencoder",
        name="rae_digits",
        model=AutoencoderConfig(
            latent_dim=16,
            hidden=(256, 256),
            activation="silu",
            likelihood="discretized_logistic",
            penalty="l2",
            penalty_weight=1e-2,
        ),
        data=DataConfig(name="digits", batch_size=128),
        optim=OptimConfig(
            learning_rate=1e-3,
            warmup_steps=100,
            decay="cosine",
            grad_clip_norm=10.0,
            ema_decay=0.999,
        ),
        train=TrainConfig(num_steps=4000, log_every=200, checkpoint_every=2000, sample_every=2000),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected="held-out squared error < 0.05 per pixel (measured 0.024); digit FD < 80",
    )
