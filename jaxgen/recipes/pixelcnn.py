"""PixelCNN and gated PixelCNN as a recipe: exact discrete likelihood of images.

The model factorizes ``p(x) = prod_i p(x_i | x_<i)`` over pixels and colour channels in
raster order (van den Oord et al. 2016a, eq. 1-2) with a softmax over the ``num_levels``
values of each (17 for the built-in digits, 256 for 8-bit images); the loss is the
per-example negative log-likelihood in nats (:func:`jaxgen.autoregressive.image_nll`), so
the test bits/dim are exact and in the same discrete unit as DDPM's bound and the VAEs'
importance-sampled likelihoods.
``architecture="pixelcnn"`` is the masked-convolution PixelCNN with residual blocks
(2016a); ``"gated"`` the gated PixelCNN with vertical and horizontal stacks (van den Oord
et al. 2016b), optionally class-conditional (``num_classes``). Sampling runs the network
once per pixel and channel (``jaxgen.autoregressive.image_sampling``; ``nfe = H W C``),
with temperature, top-k and top-p (eval-time settings ``model.sample_*``; the temperature
also as ``sample(temperature=...)``); example ``i`` of a draw uses its own key
``core.example_keys(key, n, start=first_index)[i]`` and, for a class-conditional model,
the label ``(first_index + i) mod num_classes``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxgen import core
from jaxgen.autoregressive import image_log_prob, image_nll, sample_image
from jaxgen.config import ConfigError
from jaxgen.core.levels import images_to_levels, levels_to_images
from jaxgen.nets.pixelcnn import GatedPixelCNN, PixelCNN
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks, nll_summary
from jaxgen.recipes.modules import ModuleSet

ARCHITECTURES = ("pixelcnn", "gated")


@dataclasses.dataclass(frozen=True)
class PixelCNNConfig:
    """Network size and sampling settings (``sample_*`` may change at evaluation time)."""

    architecture: str = "gated"
    hidden_channels: int = 64
    num_layers: int = 8
    kernel_size: int = 3
    first_kernel_size: int = 7
    num_classes: int = 0
    sample_temperature: float = 1.0
    sample_top_k: int | None = None
    sample_top_p: float | None = None


class PixelCNNRecipe(Recipe):
    """Autoregressive image model with an exact likelihood; see the module docstring."""

    family = "pixelcnn"
    config_class = PixelCNNConfig
    sample_options = ("temperature",)
    eval_time_fields = ("sample_temperature", "sample_top_k", "sample_top_p")

    def setup(self) -> None:
        m: PixelCNNConfig = self.config.model
        check_choice("model.architecture", m.architecture, ARCHITECTURES)
        if len(self.data_shape) != 3 or self.num_levels is None:
            raise ConfigError(
                f"pixelcnn models discrete images; {self.config.data.name!r} has examples of shape "
                f"{self.data_shape} and levels {self.num_levels}"
            )
        if m.num_classes and m.architecture != "gated":
            raise ConfigError("class conditioning needs model.architecture='gated'")
        self.num_dims = int(np.prod(self.data_shape))
        common = dict(
            hidden_channels=m.hidden_channels,
            num_layers=m.num_layers,
            kernel_size=m.kernel_size,
            first_kernel_size=m.first_kernel_size,
        )
        if m.architecture == "gated":
            factory = lambda rngs: GatedPixelCNN(  # noqa: E731
                self.data_shape, self.num_levels, num_classes=m.num_classes, rngs=rngs, **common
            )
        else:
            factory = lambda rngs: PixelCNN(self.data_shape, self.num_levels, rngs=rngs, **common)  # noqa: E731
        self.modules = ModuleSet({"model": factory})

    def init_params(self, key: jax.Array, init_batch: Mapping[str, jax.Array] | None = None) -> Any:
        del init_batch  # no data-dependent initialisation
        return self.modules.init(key)

    def logits(self, params: Any, levels: jax.Array, labels: jax.Array | None = None):
        """(B, H, W, C, num_levels) logits of every value given the ones before it."""
        net = self.modules.bind(params, "model")
        if self.config.model.architecture == "gated":
            return net(levels, labels)
        return net(levels)

    def _labels(self, batch: dict[str, jax.Array]) -> jax.Array | None:
        if not self.config.model.num_classes:
            return None
        if "label" not in batch:
            raise ConfigError(f"model.num_classes > 0 needs labelled data; got {sorted(batch)}")
        return batch["label"]

    def loss(self, params, batch, key):
        """:func:`jaxgen.autoregressive.image_nll` of the levels: ``(-log p(x),
        {bits_per_dim})``."""
        levels = images_to_levels(batch[self.data_key], num_levels=self.num_levels)
        return image_nll(self.logits(params, levels, self._labels(batch)), levels)

    def sample_labels(self, num_samples: int, first_index: int | jax.Array = 0) -> jax.Array | None:
        """Labels ``(first_index + i) mod num_classes`` of a class-conditional draw (None
        for an unconditional model)."""
        m: PixelCNNConfig = self.config.model
        if not m.num_classes:
            return None
        return core.sampling.cyclic_labels(num_samples, m.num_classes, start=first_index)

    def sample(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Mapping[str, jax.Array] | None = None,
        temperature: float | None = None,
        **options: Any,
    ) -> core.SamplerOutput:
        """``num_samples`` images in [-1, 1] by ancestral sampling (``nfe = H W C``);
        ``temperature`` defaults to ``model.sample_temperature``, top-k / top-p are the
        model config's."""
        del condition  # labels come from the example index
        self.check_sample_options(options)
        m: PixelCNNConfig = self.config.model
        labels = self.sample_labels(num_samples, first_index)
        out = sample_image(
            lambda x: self.logits(params, x, labels),
            core.example_keys(key, num_samples, start=first_index),
            (num_samples, *self.data_shape),
            num_levels=self.num_levels,
            temperature=m.sample_temperature if temperature is None else temperature,
            top_k=m.sample_top_k,
            top_p=m.sample_top_p,
        )
        return core.SamplerOutput(
            levels_to_images(out.samples, num_levels=self.num_levels), out.nfe
        )

    def _eval_chunk(self, params, images, key):
        levels = images_to_levels(images, num_levels=self.num_levels)
        return image_log_prob(self.logits(params, levels), levels)

    def evaluate(self, params, images, key):
        """Exact test negative log-likelihood (nats, standard error) and bits/dim
        (unconditional models; held-out labels do not reach ``evaluate``)."""
        if self.config.model.num_classes:
            return {}
        log_prob = evaluate_in_chunks(
            self._eval_chunk, params, images, key, batch_size=self.config.eval.batch_size
        )
        return nll_summary(-np.asarray(log_prob, np.float64), self.num_dims)
