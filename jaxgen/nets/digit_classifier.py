"""A small CNN classifier for the built-in 8x8 digits, the feature extractor of "digit FD".

The Frechet distance on digits (:mod:`jaxgen.evaluation.digit_fd`) plays the role FID
plays for natural images; :meth:`DigitClassifier.features` is its "pool3" layer: the
128 ReLU activations just before the logits.

Architecture (about 65k parameters)::

    (N, 8, 8, 1) -> conv 3x3, 32 -> ReLU
                 -> conv 3x3, 64, stride 2 -> ReLU     (N, 4, 4, 64)
                 -> conv 3x3, 64 -> ReLU
                 -> global mean pool                    (N, 64)
                 -> dense 128 -> ReLU                   features (N, 128)
                 -> dense 10                            logits (N, 10)

No dropout or batch norm: the forward pass is a pure, deterministic function of the
parameters, so ``nnx.merge(graphdef, params).features(x)`` can be jitted directly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

NUM_FEATURES = 128
NUM_CLASSES = 10


class DigitClassifier(nnx.Module):
    """CNN for (N, 8, 8, 1) images in [-1, 1]; ``__call__`` gives logits (N, 10)."""

    def __init__(self, *, rngs: nnx.Rngs, num_features: int = NUM_FEATURES):
        self.conv1 = nnx.Conv(1, 32, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, (3, 3), strides=2, rngs=rngs)
        self.conv3 = nnx.Conv(64, 64, (3, 3), rngs=rngs)
        self.dense = nnx.Linear(64, num_features, rngs=rngs)
        self.head = nnx.Linear(num_features, NUM_CLASSES, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        """Penultimate activations (N, num_features): the layer digit FD compares."""
        h = jax.nn.relu(self.conv1(x))
        h = jax.nn.relu(self.conv2(h))
        h = jax.nn.relu(self.conv3(h))
        h = jnp.mean(h, axis=(1, 2))
        return jax.nn.relu(self.dense(h))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Class logits (N, 10)."""
        return self.head(self.features(x))
