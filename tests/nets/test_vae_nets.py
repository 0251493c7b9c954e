"""The VAE family's networks and data glue against hand computations.

* ``MLP`` is the composition of its dense layers and activation, computed by hand in NumPy;
  ``features`` returns that last hidden layer.
* The VQ-VAE conv encoder halves the image per downsampling and the decoder inverts the
  shape; with zero outer convolutions the residual stack is exactly ``relu(x)``.
* ``DecoderLikelihood`` turns a Gaussian density on dequantized data into a discrete bound
  by adding ``D log w``, and leaves the discretized logistic (already discrete) alone.
* ``reconstruction_grid`` puts each row of inputs directly above its reconstructions.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgen.images import make_grid
from jaxgen.nets.conv_autoencoder import ConvDecoder, ConvEncoder, ResidualStack
from jaxgen.nets.mlp import MLP
from jaxgen.recipes.decoder_likelihood import DecoderLikelihood
from jaxgen.recipes.latent_figures import reconstruction_grid


def test_mlp_is_its_layers_composed_by_hand():
    net = MLP(3, (5, 4), 2, activation="tanh", rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(net)
    params = jax.tree.map(np.asarray, nnx.to_pure_dict(state))
    rng = np.random.default_rng(0)
    for layer in [*params["hidden"].values(), params["out"]]:  # non-zero biases, so they count
        layer["bias"] = rng.normal(size=layer["bias"].shape).astype(np.float32)
    net = nnx.merge(graphdef, params)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    h = x
    for i in range(2):
        h = np.tanh(h @ params["hidden"][i]["kernel"] + params["hidden"][i]["bias"])
    out = h @ params["out"]["kernel"] + params["out"]["bias"]
    got, features = net.features(jnp.asarray(x))
    np.testing.assert_allclose(got, out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(features, h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net(jnp.asarray(x)), out, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, h @ params["out"]["kernel"], atol=1e-3)  # the bias counts
    with pytest.raises(ValueError, match="activation"):
        MLP(3, (4,), 2, activation="sigmoidal", rngs=nnx.Rngs(0))


def test_conv_encoder_decoder_shapes_and_residual_identity():
    enc = ConvEncoder(3, 5, channels=8, residual_channels=4, num_downsamples=2, rngs=nnx.Rngs(0))
    dec = ConvDecoder(5, 6, channels=8, residual_channels=4, num_downsamples=2, rngs=nnx.Rngs(1))
    z = enc(jnp.ones((2, 16, 16, 3)))
    assert z.shape == (2, 4, 4, 5)
    assert dec(z).shape == (2, 16, 16, 6)
    with pytest.raises(ValueError, match="not divisible"):
        enc(jnp.ones((2, 10, 16, 3)))
    graphdef, state = nnx.split(ResidualStack(4, 3, 2, rngs=nnx.Rngs(2)))
    params = nnx.to_pure_dict(state)
    params["outer"] = jax.tree.map(jnp.zeros_like, params["outer"])
    stack = nnx.merge(graphdef, params)
    x = jax.random.normal(jax.random.key(3), (2, 5, 5, 4))
    np.testing.assert_array_equal(stack(x), jax.nn.relu(x))


def test_gaussian_decoder_bits_are_a_discrete_bound_and_logistic_is_already_discrete():
    num_dims, levels = 64, 17
    log_px = jnp.array([-50.0, -80.0])
    gaussian = DecoderLikelihood("gaussian", levels)
    offset = num_dims * math.log(2.0 / (levels - 1))
    np.testing.assert_allclose(gaussian.discrete_log_prob(log_px, num_dims), log_px + offset)
    np.testing.assert_allclose(
        gaussian.bits_per_dim(log_px, num_dims), -(log_px + offset) / (num_dims * math.log(2))
    )
    logistic = DecoderLikelihood("discretized_logistic", levels)
    np.testing.assert_allclose(logistic.discrete_log_prob(log_px, num_dims), log_px)
    # dequantized training data stay within half a bin of the grid; the logistic's do not move
    x = jnp.linspace(-1.0, 1.0, levels)[None, :, None]
    noisy = gaussian.train_data(x, jax.random.key(0))
    assert 0 < float(jnp.max(jnp.abs(noisy - x))) <= 1.0 / (levels - 1)
    np.testing.assert_array_equal(logistic.train_data(x, jax.random.key(0)), x)


def test_reconstruction_grid_puts_each_input_row_above_its_reconstructions():
    inputs = np.full((16, 2, 2, 1), -1.0, np.float32)
    recons = np.full((16, 2, 2, 1), 1.0, np.float32)
    inputs[3] = 0.0  # a marker in the first row, fourth column
    grid = reconstruction_grid(inputs, recons, num_cols=8)
    pairs = np.concatenate([inputs[:8], recons[:8], inputs[8:], recons[8:]])
    np.testing.assert_array_equal(grid, make_grid(pairs, num_cols=8))
