"""VAE with a 2-D latent space on the built-in 8x8 digits: the learned manifold picture of
Kingma and Welling (2014, fig. 4), decoded over a grid of latent quantiles.

Run (2 CPU cores, under a minute for training and evaluation):

    jaxgen train experiments/vae_2d_latent_digits.py --workdir runs/vae_2d_latent_digits
    jaxgen eval --workdir runs/vae_2d_latent_digits

``figures/latent_manifold_step<N>.png`` shows the digits laid out over the 2-D latent
plane. With only two latent units the bound is much looser than ``vae_digits.py``'s.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.vae import VAEConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="vae",
        name="vae_2d_latent_digits",
        model=VAEConfig(
            latent_dim=2,
            hidden=(256, 256),
            activation="silu",
            likelihood="discretized_logistic",
            eval_importance_samples=1000,
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
        expected="test NLL <= 2.3 bits/dim (K=1000; measured 2.09); a manifold of digits",
    )
