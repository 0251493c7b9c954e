"""VQ-VAE (van den Oord et al. 2017) on the built-in 8x8 digits: the paper's conv encoder
and decoder at a small size, a 4x4 grid of codes from K = 64, EMA codebook updates with
dead-code restarts, and a factorized learned prior over the codes for sampling.

Run (2 CPU cores, about 3 minutes for training and evaluation):

    jaxgen train experiments/vqvae_digits.py --workdir runs/vqvae_digits
    jaxgen eval --workdir runs/vqvae_digits

Reports the bound -log p(x | z_q) - log p(k) in bits/dim with the learned factorized prior
and the paper's uniform prior, the reconstruction part, the test codebook perplexity and
the codes used. The factorized prior ignores how codes depend on each other, so samples
are far worse than reconstructions (the paper fits a PixelCNN prior instead).
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.vqvae import VQVAEConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="vqvae",
        name="vqvae_digits",
        model=VQVAEConfig(
            num_codes=64,
            embedding_dim=16,
            channels=64,
            residual_channels=32,
            num_residual_blocks=2,
            num_downsamples=1,
            commitment_cost=0.25,
            codebook_update="ema",
            ema_decay=0.99,
            dead_code_threshold=0.1,
            likelihood="discretized_logistic",
        ),
        data=DataConfig(name="digits", batch_size=128),
        optim=OptimConfig(
            learning_rate=1e-3,
            warmup_steps=100,
            decay="cosine",
            grad_clip_norm=10.0,
            ema_decay=0.999,
        ),
        train=TrainConfig(num_steps=3000, log_every=100, checkpoint_every=1000, sample_every=1500),
        eval=EvalConfig(split="test", num_samples=360, batch_size=360),
        expected="test codebook perplexity > 20 of 64 codes; reconstruction below 1.5 bits/dim",
    )
