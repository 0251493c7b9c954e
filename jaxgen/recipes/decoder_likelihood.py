"""The data side of the VAE recipes: which decoder likelihood, on which version of the data,
and how its log-likelihood becomes bits/dim.

* ``bernoulli`` models binary data: grey images in [-1, 1] are mapped to [0, 1] and
  binarized, dynamically during training (a fresh Bernoulli draw of every pixel at every
  step, as in Burda et al. 2016) and with one fixed draw for evaluation. Bits/dim are
  exact for the binarized data.
* ``discretized_logistic`` models the data's ``num_levels`` grey levels directly, so its
  bits/dim are discrete and compare with DDPM's bound and the exact-likelihood models.
* ``gaussian`` and ``gaussian_fixed`` are densities: on discrete data they are trained on
  uniformly dequantized data ``x + w (u - 1/2)`` (bin width ``w = 2 / (L - 1)``), so
  ``log p(x + u) + D log w`` is a lower bound on the discrete log-probability (Theis et al.
  2016) and their bits/dim are comparable too; on continuous data they are plain nats.

The bin width, the offset ``D log w`` and bits/dim are those of :mod:`jaxgen.core.units`
(the ``"centered"`` grid of images in ``[-1, 1]``).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from jaxgen.config import ConfigError
from jaxgen.core import units
from jaxgen.recipes.base import check_choice
from jaxgen.vae import likelihoods

BINARIZATIONS = ("none", "dynamic")

# The fixed key of the evaluation binarization: the same test set for every model.
EVAL_BINARIZATION_SEED = 20160101


@dataclasses.dataclass(frozen=True)
class DecoderLikelihood:
    """One decoder likelihood on a dataset with ``num_levels`` levels (None: continuous)."""

    name: str
    num_levels: int | None
    fixed_std: float = 1.0
    binarize: str = "none"

    def __post_init__(self):
        check_choice("model.likelihood", self.name, likelihoods.LIKELIHOODS)
        check_choice("model.binarize", self.binarize, BINARIZATIONS)
        if self.name == "bernoulli" and self.binarize == "none":
            raise ConfigError(
                "model.likelihood='bernoulli' needs binary data: set model.binarize='dynamic'"
            )
        if self.name != "bernoulli" and self.binarize != "none":
            raise ConfigError(
                f"model.binarize={self.binarize!r} only goes with model.likelihood='bernoulli'"
            )
        if self.name == "discretized_logistic" and self.num_levels is None:
            raise ConfigError(
                "model.likelihood='discretized_logistic' needs discrete data (the dataset has "
                "no num_levels); use 'gaussian' for continuous data"
            )
        if self.fixed_std <= 0:
            raise ConfigError(f"model.fixed_std must be positive, got {self.fixed_std}")

    @property
    def dequantize(self) -> bool:
        return self.name in ("gaussian", "gaussian_fixed") and self.num_levels is not None

    def decoder_channels(self, data_channels: int) -> int:
        """Channels the decoder outputs for ``data_channels`` channels of data."""
        return likelihoods.num_decoder_params(self.name) * data_channels

    def train_data(self, x: jax.Array, key: jax.Array) -> jax.Array:
        """The data the likelihood models during training (binarized / dequantized)."""
        if self.name == "bernoulli":
            return jax.random.bernoulli(key, 0.5 * (x + 1.0)).astype(x.dtype)
        if self.dequantize:
            width = units.bin_width(self.num_levels, grid="centered")
            return x + width * (jax.random.uniform(key, x.shape, x.dtype) - 0.5)
        return x

    def eval_data(self, x: jax.Array, key: jax.Array) -> jax.Array:
        """Held-out data: one fixed binarization, or one dequantization draw from ``key``."""
        if self.name == "bernoulli":
            fixed = jax.random.key(EVAL_BINARIZATION_SEED)
            index = jnp.arange(x.shape[0])  # each example its own, batch-independent draw
            draw = jax.vmap(lambda i, xi: jax.random.bernoulli(jax.random.fold_in(fixed, i), xi))
            return draw(index, 0.5 * (x + 1.0)).astype(x.dtype)
        return self.train_data(x, key)

    @property
    def log_likelihood(self):
        """``fn(out, x) -> (B,)``, the decoder's log-likelihood."""
        return functools.partial(
            likelihoods.log_likelihood,
            self.name,
            num_levels=self.num_levels,
            fixed_std=self.fixed_std,
        )

    def picture(self, out: jax.Array) -> jax.Array:
        """The decoder's mean in the data's [-1, 1] scale (for grids and sample scores)."""
        mean = likelihoods.decoder_mean(self.name, out, num_levels=self.num_levels)
        return 2.0 * mean - 1.0 if self.name == "bernoulli" else mean

    def sample(self, out: jax.Array, key: jax.Array) -> jax.Array:
        """One draw from the decoder in the [-1, 1] scale; ``key``: one key or ``(B,)``
        per-example keys (each example drawn from its own key)."""
        x = likelihoods.decoder_sample(
            self.name, out, key, num_levels=self.num_levels, fixed_std=self.fixed_std
        )
        return 2.0 * x - 1.0 if self.name == "bernoulli" else x

    def discrete_log_prob(self, log_px: jax.Array, num_dims: int) -> jax.Array:
        """Log-probability of the discrete data (nats): densities get ``+ D log w``."""
        if not self.dequantize:
            return log_px
        return log_px + units.dequantization_offset(self.num_levels, num_dims, grid="centered")

    def bits_per_dim(self, log_px: jax.Array, num_dims: int) -> jax.Array:
        """``-log P(x) / (D log 2)`` on the discrete (or continuous) data."""
        return units.bits_per_dim(-self.discrete_log_prob(log_px, num_dims), num_dims)
