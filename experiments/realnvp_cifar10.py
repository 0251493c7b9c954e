"""RealNVP (Dinh et al. 2017, sec. 4) on CIFAR-10: the multi-scale architecture (3 scales:
checkerboard couplings, squeeze, channel couplings, factoring out half; 3 + 3 + 4
couplings), ResNet conditioners with 8 residual blocks of 64 features, the logit
preprocessing (alpha = 0.05), uniform dequantization, Adam 1e-3, batch 64. The paper's
weight normalization and batch normalization in the couplings are not reproduced.

Run (GPU/TPU; the data must be prepared by TFDS first, or add ``data.download=true``):

    jaxgen train experiments/realnvp_cifar10.py --workdir runs/realnvp_cifar10
    jaxgen eval --workdir runs/realnvp_cifar10

``jaxgen eval`` reports the test bits/dim (256 levels) over the CIFAR-10 test set.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.flow import FlowConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="flow",
        name="realnvp_cifar10",
        model=FlowConfig(
            architecture="realnvp",
            num_scales=3,
            num_couplings=3,
            hidden_channels=64,
            num_res_blocks=8,
        ),
        data=DataConfig(name="cifar10", batch_size=64, random_flip=True),
        optim=OptimConfig(learning_rate=1e-3, grad_clip_norm=100.0, ema_decay=0.999),
        train=TrainConfig(
            num_steps=500000, log_every=500, checkpoint_every=5000, sample_every=10_000
        ),
        eval=EvalConfig(split="test", num_samples=64, batch_size=500),
        expected="3.49 bits/dim (Dinh et al. 2017, table 1)",
    )
