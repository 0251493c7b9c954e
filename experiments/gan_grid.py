"""The non-saturating GAN (Goodfellow et al. 2014) on the 5 x 5 grid of Gaussians (std 0.05,
spacing 2), the mode-collapse benchmark of VEEGAN (Srivastava et al. 2017) and PacGAN (Lin
et al. 2018): MLP generator and discriminator, one discriminator step per generator step.

Run (2 CPU cores, about two minutes):

    jaxgen train experiments/gan_grid.py --workdir runs/gan_grid
    jaxgen eval --workdir runs/gan_grid

``jaxgen eval`` draws 2500 samples from the EMA generator and reports ``modes_covered``
(of 25: modes nearest to at least one sample within 3 std), ``high_quality_fraction`` and
``reverse_kl`` (``jaxgen.evaluation.mode_coverage``), and writes the samples' density to
``figures/``.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.gan import GANConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="gan",
        name="gan_grid",
        model=GANConfig(
            game="non_saturating",
            architecture="mlp",
            latent_dim=2,
            generator_hidden=(128, 128, 128),
            discriminator_hidden=(128, 128, 128),
            activation="leaky_relu",
            discriminator_steps=1,
            eval_num_samples=2500,
        ),
        data=DataConfig(name="grid", batch_size=256),
        optim=OptimConfig(
            learning_rate=2e-4, b1=0.5, b2=0.999, grad_clip_norm=None, ema_decay=0.999
        ),
        train=TrainConfig(num_steps=20000, log_every=500, checkpoint_every=5000, sample_every=0),
        eval=EvalConfig(split="test", batch_size=2500, max_examples=2500),
        expected=(
            "about 18 of 25 modes covered, high-quality fraction about 0.1: the plain game "
            "drops modes and strings samples between them here (PacGAN's packing is the remedy)"
        ),
    )
