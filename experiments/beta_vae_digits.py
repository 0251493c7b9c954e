"""beta-VAE (Higgins et al. 2017) on the built-in 8x8 digits: beta = 4 with a linear KL
warm-up (Bowman et al. 2016; Sonderby et al. 2016) over the first 1000 steps.

Run (2 CPU cores, under a minute for training and evaluation):

    jaxgen train experiments/beta_vae_digits.py --workdir runs/beta_vae_digits
    jaxgen eval --workdir runs/beta_vae_digits

A larger beta buys a simpler posterior (fewer active units, smaller KL) with a worse
likelihood than ``vae_digits.py``: compare ``active_units``, ``kl_nats`` and
``bits_per_dim`` in the two runs' ``eval_test_step<N>.json``.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.vae import VAEConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="vae",
        name="beta_vae_digits",
        model=VAEConfig(
            latent_dim=16,
            hidden=(256, 256),
            activation="silu",
            likelihood="discretized_logistic",
            beta=4.0,
            kl_warmup_steps=1000,
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
        train=TrainConfig(num_steps=2000, log_every=100, checkpoint_every=1000, sample_every=1000),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected="fewer active units and a smaller KL than vae_digits; test NLL worse than it",
    )
