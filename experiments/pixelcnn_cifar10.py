"""PixelCNN (van den Oord et al. 2016a) on CIFAR-10: a 7x7 mask-A convolution, 15 residual
blocks of mask-B convolutions with 128 hidden channels split into R, G, B groups, a
256-way softmax per colour channel (R before G before B within a pixel).

Run (GPU/TPU; the data must be prepared by TFDS first, or add ``data.download=true``):

    jaxgen train experiments/pixelcnn_cifar10.py --workdir runs/pixelcnn_cifar10
    jaxgen eval --workdir runs/pixelcnn_cifar10

``jaxgen eval`` reports the test bits/dim (256 levels) over the CIFAR-10 test set.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.pixelcnn import PixelCNNConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="pixelcnn",
        name="pixelcnn_cifar10",
        model=PixelCNNConfig(architecture="pixelcnn", hidden_channels=128 * 3, num_layers=15),
        data=DataConfig(name="cifar10", batch_size=16, random_flip=True),
        optim=OptimConfig(learning_rate=3e-4, grad_clip_norm=1.0, ema_decay=0.9995),
        train=TrainConfig(
            num_steps=1000000, log_every=500, checkpoint_every=5000, sample_every=10_000
        ),
        eval=EvalConfig(split="test", num_samples=64, batch_size=500),
        expected="3.14 bits/dim (van den Oord et al. 2016a, table 2)",
    )
