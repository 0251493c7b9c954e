"""A multilayer perceptron as a Flax NNX module: the encoders, decoders and discriminators
of the VAE family on flat data (Kingma and Welling 2014 and Burda et al. 2016 use MLPs).

``MLP(in_features, hidden, out_features)`` maps ``(..., in_features)`` to
``(..., out_features)`` through ``len(hidden)`` hidden layers with the chosen activation;
``features(x)`` also returns the last hidden layer (the VAE-GAN discriminator's feature
layer). The module holds only ``nnx.Param`` leaves.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.2),
    "softplus": jax.nn.softplus,
}


def activation_fn(name: str):
    """The activation called ``name`` (one of ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


class MLP(nnx.Module):
    """Dense layers ``in -> hidden[0] -> ... -> hidden[-1] -> out``, activation between."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        activation: str = "relu",
        zero_init_output: bool = False,
        rngs: nnx.Rngs,
    ):
        self.activation = activation
        activation_fn(activation)  # validate early
        sizes = [in_features, *hidden]
        self.hidden = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        inits = nnx.initializers
        init = inits.zeros_init() if zero_init_output else inits.lecun_normal()
        self.out = nnx.Linear(sizes[-1], out_features, kernel_init=init, rngs=rngs)

    def features(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(output, last hidden layer)``."""
        act = activation_fn(self.activation)
        h = x
        for layer in self.hidden:
            h = act(layer(h))
        return self.out(h), h

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.features(x)[0]
