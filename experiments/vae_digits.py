"""VAE (Kingma and Welling 2014) on the built-in 8x8 digits: MLP encoder and decoder, a
discretized-logistic decoder on the digits' 17 grey levels, so the test NLL is in the same
discrete bits/dim as DDPM's bound and the exact-likelihood models.

Run (2 CPU cores, under a minute for training and evaluation):

    jaxgen train experiments/vae_digits.py --workdir runs/vae_digits
    jaxgen eval --workdir runs/vae_digits

``jaxgen eval`` writes the importance-sampled test NLL (K = 1000, Burda et al. 2016), the
negative ELBO, the KL and the active units to ``eval_test_step<N>.json``, the digit FD of
360 samples, and pictures (reconstructions, interpolations, samples) to ``figures/``.
Variants: ``model.beta=4`` (beta-VAE), ``model.kl_warmup_steps=2000`` (KL warm-up),
``model.free_bits=0.05`` (free bits per latent unit).
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.vae import VAEConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="vae",
        name="vae_digits",
        model=VAEConfig(
            latent_dim=16,
            hidden=(256, 256),
            activation="silu",
            likelihood="discretized_logistic",
            objective="elbo",
            beta=1.0,
            eval_importance_samples=1000,
            eval_chunk_size=100,
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
        expected="test NLL <= 2.0 bits/dim (K=1000; measured 1.86); digit FD < 80 (measured 68)",
    )
