"""Token-sequence models as a recipe: causal transformer, LSTM / GRU and causal convolution.

One recipe trains any autoregressive sequence model on integer tokens
``x = (x_0, ..., x_{T-1})`` in ``0..V-1`` with the chain rule
``p(x) = prod_t p(x_t | x_{<t})`` (Bengio et al. 2003, sec. 1) and the shift convention of
:mod:`jaxgen.autoregressive.losses`: the network reads ``shift_right(x, bos=V)`` (start
token ``V``) and its output ``t`` scores ``x_t``. The loss is the per-example summed
negative log-likelihood in nats, ``-sum_t log softmax(logits_t)[x_t]``, logged as
``bits_per_token = nll / (T log 2)``.

**Data.** Either

* discrete images (``num_levels`` = ``L``, e.g. the 8x8 digits with ``L = 17``): each image
  becomes ``T = H W C`` tokens, the levels ``k = round((x + 1)(L - 1) / 2)`` in raster
  order (row by row, channels innermost), ``V = L``. The test bits/dim are then exact
  discrete likelihoods, ``-log2 P(levels) / (H W C)``, the unit of every likelihood in
  jaxgen (PixelCNN, DDPM's bound, the VAEs' importance-sampled bounds); or
* token windows (``data_key = "tokens"``, the ``stdlib_text`` dataset of
  :mod:`jaxgen.data.text`): ``V = num_levels = 256`` bytes, bits/dim = bits per byte.

**Networks** (``model.architecture``), all from :mod:`jaxgen.nets`:

* ``"transformer"``: decoder-only GPT-2-style transformer (Vaswani et al. 2017; Radford et
  al. 2019), width ``dim``, ``num_heads`` heads, ``num_layers`` blocks, MLP ``mlp_ratio *
  dim``, context ``T``;
* ``"lstm"`` / ``"gru"``: ``num_layers`` stacked cells of width ``dim`` (Hochreiter and
  Schmidhuber 1997; Cho et al. 2014);
* ``"causal_conv"``: WaveNet-style gated dilated causal convolutions (van den Oord et al.
  2016, sec. 2.1-2.4), ``num_layers`` blocks of ``dim`` channels, kernel ``kernel_size``,
  dilations ``2^l``, receptive field ``1 + (k - 1)(2^L - 1)`` tokens.

**Sampling** is ancestral, with temperature, top-k and nucleus filtering
(:mod:`jaxgen.autoregressive.sampling`; eval-time settings ``model.sample_*``): the
transformer through its key-value cache (``init_cache`` + ``decode_step``), the RNNs
through ``step`` (both O(1) network work per token in ``sample_sequence``), the causal
convolution by re-running on the prefix (``sample_sequence_uncached``); ``nfe`` is one
network step per token either way, and sequence ``i`` of a draw comes from its own key
``core.example_keys(key, n, start=first_index)[i]``. Image data come back as images in
[-1, 1] of the data shape; token data as ``(N, sample_length)`` int32 tokens, which
:meth:`SequenceModelRecipe.decode_samples` turns into text.

References:
  Bengio, Ducharme, Vincent, Jauvin. A Neural Probabilistic Language Model. JMLR 2003.
  Vaswani et al. Attention Is All You Need. NeurIPS 2017.
  Radford et al. Language Models are Unsupervised Multitask Learners (GPT-2). 2019.
  Hochreiter, Schmidhuber. Long Short-Term Memory. Neural Computation 1997.
  Cho et al. Learning Phrase Representations using RNN Encoder-Decoder. EMNLP 2014.
  van den Oord et al. WaveNet: A Generative Model for Raw Audio. arXiv:1609.03499, 2016.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import core
from jaxgen.autoregressive.losses import shift_right, token_cross_entropy
from jaxgen.autoregressive.sampling import sample_sequence, sample_sequence_uncached
from jaxgen.config import ConfigError
from jaxgen.core.levels import images_to_levels, levels_to_images
from jaxgen.data import text
from jaxgen.nets.causal_conv import CausalConvNet
from jaxgen.nets.rnn import RNNLM
from jaxgen.nets.transformer import CausalTransformer
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks, nll_summary
from jaxgen.recipes.modules import ModuleSet

ARCHITECTURES = ("transformer", "lstm", "gru", "causal_conv")
TOKEN_KEY = "tokens"


@dataclasses.dataclass(frozen=True)
class SequenceModelConfig:
    """Network size and sampling settings (``sample_*`` may change at evaluation time).

    ``dim`` is the transformer width, the RNN hidden size or the convolution channels;
    ``num_heads`` and ``mlp_ratio`` are the transformer's, ``kernel_size`` the convolution's.
    ``sample_length`` is the number of tokens drawn (default and, for images, only value:
    the data length ``T``; at most ``T`` for the transformer, whose context is ``T``).
    """

    architecture: str = "transformer"
    dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: int = 4
    kernel_size: int = 2
    sample_temperature: float = 1.0
    sample_top_k: int | None = None
    sample_top_p: float | None = None
    sample_length: int | None = None


class SequenceModelRecipe(Recipe):
    """Autoregressive token model with an exact likelihood; see the module docstring."""

    family = "sequence_model"
    config_class = SequenceModelConfig
    sample_options = ("temperature",)
    eval_time_fields = ("sample_temperature", "sample_top_k", "sample_top_p", "sample_length")

    def setup(self) -> None:
        m: SequenceModelConfig = self.config.model
        check_choice("model.architecture", m.architecture, ARCHITECTURES)
        self.is_text = self.data_key == TOKEN_KEY and len(self.data_shape) == 1
        is_image = len(self.data_shape) == 3
        if self.num_levels is None or not (self.is_text or is_image):
            raise ConfigError(
                f"sequence_model needs discrete images (H, W, C) or token windows (T,) under "
                f"{TOKEN_KEY!r}; {self.config.data.name!r} has {self.data_key!r} examples of shape "
                f"{self.data_shape} and levels {self.num_levels}"
            )
        sizes = {"dim": m.dim, "num_layers": m.num_layers}
        if m.architecture == "transformer":
            sizes.update(num_heads=m.num_heads, mlp_ratio=m.mlp_ratio)
        if m.architecture == "causal_conv":
            sizes["kernel_size"] = m.kernel_size
        for key, value in sizes.items():
            if value < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {value}")
        if m.architecture == "transformer" and m.dim % m.num_heads:
            raise ConfigError(
                f"model.dim ({m.dim}) must be a multiple of model.num_heads ({m.num_heads})"
            )
        self.vocab_size = int(self.num_levels)
        self.bos = self.vocab_size
        self.length = int(np.prod(self.data_shape))
        self.sample_length = self._check_sample_length(m)
        vocab, length = self.vocab_size, self.length
        if m.architecture == "transformer":
            factory = lambda rngs: CausalTransformer(  # noqa: E731
                vocab,
                max_len=length,
                dim=m.dim,
                num_heads=m.num_heads,
                num_layers=m.num_layers,
                mlp_ratio=m.mlp_ratio,
                rngs=rngs,
            )
        elif m.architecture in ("lstm", "gru"):
            factory = lambda rngs: RNNLM(  # noqa: E731
                vocab, cell=m.architecture, hidden=m.dim, num_layers=m.num_layers, rngs=rngs
            )
        else:
            factory = lambda rngs: CausalConvNet(  # noqa: E731
                vocab,
                channels=m.dim,
                num_layers=m.num_layers,
                kernel_size=m.kernel_size,
                rngs=rngs,
            )
        self.modules = ModuleSet({"model": factory})

    def _check_sample_length(self, m: SequenceModelConfig) -> int:
        if m.sample_length is None:
            return self.length
        if m.sample_length < 1:
            raise ConfigError(f"model.sample_length must be >= 1, got {m.sample_length}")
        if not self.is_text and m.sample_length != self.length:
            raise ConfigError(
                f"model.sample_length must be None or {self.length} (H W C) for image data, "
                f"got {m.sample_length}"
            )
        if m.architecture == "transformer" and m.sample_length > self.length:
            raise ConfigError(
                f"model.sample_length ({m.sample_length}) exceeds the transformer's context "
                f"{self.length} (the training window)"
            )
        return int(m.sample_length)

    def init_params(self, key: jax.Array, init_batch: Mapping[str, jax.Array] | None = None) -> Any:
        del init_batch  # no data-dependent initialisation
        return self.modules.init(key)

    # ------------------------------------------------------------------ data <-> tokens

    def to_tokens(self, data: jax.Array) -> jax.Array:
        """(B, T) int32 tokens: images flattened to levels in raster order, or the tokens."""
        if self.is_text:
            return jnp.asarray(data).astype(jnp.int32)
        levels = images_to_levels(jnp.asarray(data), num_levels=self.vocab_size)
        return levels.reshape(levels.shape[0], -1)

    def from_tokens(self, tokens: jax.Array) -> jax.Array:
        """Inverse of :meth:`to_tokens`: images in [-1, 1] of the data shape, or the tokens."""
        if self.is_text:
            return tokens
        levels = tokens.reshape(tokens.shape[0], *self.data_shape)
        return levels_to_images(levels, num_levels=self.vocab_size)

    def decode_samples(self, samples: Any) -> list[str]:
        """Sampled byte tokens (N, T) -> N strings (UTF-8, invalid bytes as U+FFFD)."""
        if not self.is_text:
            raise ValueError(
                "decode_samples needs token data (stdlib_text); this model draws images of "
                f"shape {self.data_shape}"
            )
        samples = np.asarray(samples)
        if samples.ndim != 2:
            raise ValueError(f"decode_samples expects tokens (N, T), got shape {samples.shape}")
        return [text.decode(row) for row in samples]

    # ------------------------------------------------------------------ likelihood

    def logits(self, params: Any, inputs: jax.Array) -> jax.Array:
        """(B, T, V) logits of the shifted ``inputs`` (B, T) (``bos`` first)."""
        return self.modules.bind(params, "model")(inputs)

    def log_likelihood(self, params: Any, tokens: jax.Array) -> jax.Array:
        """``log p(tokens)`` (B,) in nats: the negated summed token cross-entropy."""
        nll, _ = token_cross_entropy(self.logits(params, shift_right(tokens, bos=self.bos)), tokens)
        return -nll

    def loss(self, params, batch, key):
        """:func:`jaxgen.autoregressive.token_cross_entropy` of the shifted tokens: ``(nll,
        {bits_per_token})``."""
        tokens = self.to_tokens(batch[self.data_key])
        nll, terms = token_cross_entropy(
            self.logits(params, shift_right(tokens, bos=self.bos)), tokens
        )
        return nll, {"bits_per_token": terms["bits_per_token"]}

    def _eval_chunk(self, params, data, key):
        return self.log_likelihood(params, self.to_tokens(data))

    def evaluate(self, params, images, key):
        """Exact held-out negative log-likelihood (nats per example, standard error) and
        bits/dim (= bits per token: per pixel for images, per byte for text)."""
        log_prob = evaluate_in_chunks(
            self._eval_chunk, params, images, key, batch_size=self.config.eval.batch_size
        )
        out = nll_summary(-np.asarray(log_prob, np.float64), self.length)
        return {**out, "bits_per_token": out["bits_per_dim"]}

    # ------------------------------------------------------------------ sampling

    def sample_tokens(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        temperature: float | None = None,
    ) -> core.SamplerOutput:
        """``(num_samples, sample_length)`` int32 tokens by ancestral sampling (module
        docstring); ``key`` is one key or ``(num_samples,)`` per-example keys."""
        m: SequenceModelConfig = self.config.model
        net = self.modules.bind(params, "model")
        shape = (num_samples, self.sample_length)
        options = dict(
            bos=self.bos,
            temperature=m.sample_temperature if temperature is None else temperature,
            top_k=m.sample_top_k,
            top_p=m.sample_top_p,
        )
        if m.architecture == "transformer":
            cache = net.init_cache(num_samples, self.sample_length)
            return sample_sequence(net.decode_step, cache, key, shape, **options)
        if m.architecture in ("lstm", "gru"):
            return sample_sequence(net.step, net.initial_carry(num_samples), key, shape, **options)
        return sample_sequence_uncached(net, key, shape, **options)

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
        """``num_samples`` images in [-1, 1] (image data) or token rows (text); sequence
        ``i`` from ``core.example_keys(key, num_samples, start=first_index)[i]`` alone;
        ``temperature`` defaults to ``model.sample_temperature``."""
        del condition  # unconditional
        self.check_sample_options(options)
        keys = core.example_keys(key, num_samples, start=first_index)
        out = self.sample_tokens(params, keys, num_samples, temperature=temperature)
        return core.SamplerOutput(self.from_tokens(out.samples), out.nfe)
