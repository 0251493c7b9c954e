"""Glow (Kingma and Dhariwal 2018, sec. 5) on CIFAR-10: 3 levels of 32 steps (ActNorm with
data-dependent init, LU 1x1 convolution, affine coupling), 512-channel conditioners, the
learned prior for the factored-out parts, Adam 1e-3 with warm-up, batch 64; uniform
dequantization as in the paper.

Run (GPU/TPU; the data must be prepared by TFDS first, or add ``data.download=true``):

    jaxgen train experiments/glow_cifar10.py --workdir runs/glow_cifar10
    jaxgen eval --workdir runs/glow_cifar10

``jaxgen eval`` reports the test bits/dim (256 levels) over the CIFAR-10 test set.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.flow import FlowConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="flow",
        name="glow_cifar10",
        model=FlowConfig(
            architecture="glow",
            num_scales=3,
            num_couplings=32,
            hidden_channels=512,
            learn_prior=True,
            data_init_size=512,
        ),
        data=DataConfig(name="cifar10", batch_size=64, random_flip=True),
        optim=OptimConfig(
            learning_rate=1e-3, warmup_steps=5000, grad_clip_norm=50.0, ema_decay=0.999
        ),
        train=TrainConfig(
            num_steps=1000000, log_every=500, checkpoint_every=5000, sample_every=10_000
        ),
        eval=EvalConfig(split="test", num_samples=64, batch_size=500),
        expected="3.35 bits/dim (Kingma and Dhariwal 2018, table 2)",
    )
