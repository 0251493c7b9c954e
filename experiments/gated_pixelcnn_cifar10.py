"""Gated PixelCNN (van den Oord et al. 2016b) on CIFAR-10: 15 gated layers with vertical and
horizontal stacks (no blind spot), 128 features per colour group, a 256-way softmax per
colour channel.

Run (GPU/TPU; the data must be prepared by TFDS first, or add ``data.download=true``):

    jaxgen train experiments/gated_pixelcnn_cifar10.py --workdir runs/gated_pixelcnn_cifar10
    jaxgen eval --workdir runs/gated_pixelcnn_cifar10

``jaxgen eval`` reports the test bits/dim (256 levels) over the CIFAR-10 test set.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.pixelcnn import PixelCNNConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="pixelcnn",
        name="gated_pixelcnn_cifar10",
        model=PixelCNNConfig(architecture="gated", hidden_channels=128 * 3, num_layers=15),
        data=DataConfig(name="cifar10", batch_size=16, random_flip=True),
        optim=OptimConfig(learning_rate=3e-4, grad_clip_norm=1.0, ema_decay=0.9995),
        train=TrainConfig(
            num_steps=1000000, log_every=500, checkpoint_every=5000, sample_every=10_000
        ),
        eval=EvalConfig(split="test", num_samples=64, batch_size=500),
        expected="3.03 bits/dim (van den Oord et al. 2016b, table 1)",
    )
