"""Transformer priors over a frozen first stage's discrete codes: DALL-E (Ramesh et al. 2021,
"Zero-Shot Text-to-Image Generation": one causal transformer over ``[text tokens; image
codes]``) and the hierarchical priors of VQ-VAE-2 (Razavi et al. 2019: an autoregressive
prior over the top codes, and one over the bottom codes given the top).

The first stage (:mod:`jaxgen.recipes.first_stage`; a ``vqvae`` or ``vqvae2`` run) maps an
image to code grids ``k_1, ..., k_L`` (coarse to fine, raster order within a grid). Level
``l`` has its own causal transformer over the sequence

    x_l = [c; k_1; ...; k_{l-1}; k_l]

with ``c`` the ``P`` condition tokens: a caption (``model.condition = "caption"``: the
project's character tokenizer, :mod:`jaxgen.data.captions`; on the labelled digits the
caption is made from the label, "a handwritten seven", a template drawn at random per
example in training), a class label (``"label"``, one token), or nothing (``"none"``). The
model is ``p(k | c) = prod_l p(k_l | c, k_<l)`` and level ``l``'s loss is
``-log p(k_l | c, k_<l)`` (:func:`jaxgen.autoregressive.prefix_sequence_nll`): only the
level's own codes are targets, each from the softmax over its own codebook; the condition
and the coarser codes are inputs. Tokens of the sequence share one vocabulary: condition ids
first, then each level's codes shifted past them; ``bos`` is the last id. Attention is
causal, so no condition token sees a code and no code a later one.

**Classifier-free guidance on the logits** (Ho and Salimans 2022; Gafni et al. 2022 for
transformers): training replaces the condition by the null one (the all-pad caption, the
null label) with probability ``model.p_uncond``; sampling at scale ``s = 1 + w`` draws each
code from ``softmax(u + s (c - u))`` (:func:`jaxgen.autoregressive.guided_step_fn`), ``s =
1`` the conditional model exactly. Sampling filters logits by ``temperature``, ``top_k``
and ``top_p`` (:func:`jaxgen.autoregressive.filter_logits`).

Samples: the codes of every level, drawn coarse to fine with the cached transformer
(:func:`jaxgen.autoregressive.sample_with_prefix`; level ``l`` of example ``i`` from
``fold_in(k_i, l)``, ``k_i`` the example's key), decoded by the first stage. ``condition``
takes ``{"text": (B, P) tokens}``, ``{"label": (B,)}`` (its caption, template 0), or the
``text`` option (one caption for every sample, checked against the tokenizer and the
context); without them a conditional prior draws digit ``(first_index + i) mod 10``.

Evaluation: the held-out ``-log p(k | c)`` per level in nats and bits per code, and for a
conditional prior on the digits the fraction of samples that the project's digit classifier
recognises as the requested digit (``requested_digit_accuracy``, 1000 samples at the
configured sampling options).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import autoregressive as ar
from jaxgen.config import ConfigError
from jaxgen.core.sampling import SamplerOutput, example_keys
from jaxgen.data import captions
from jaxgen.images import make_grid
from jaxgen.nets.transformer import CausalTransformer
from jaxgen.recipes.base import check_choice, evaluate_in_chunks
from jaxgen.recipes.first_stage import FirstStageConfig, SecondStageRecipe
from jaxgen.recipes.modules import ModuleSet

CONDITIONS = ("none", "label", "caption")
CONDITION_KEY = 0xC0DE  # folded into the loss key for condition dropout and templates


@dataclasses.dataclass(frozen=True)
class CodePriorConfig:
    """Causal transformer priors over a first stage's codes (module docstring).

    Attributes:
      first_stage: the frozen ``vqvae`` / ``vqvae2`` run.
      condition: ``none``, ``label`` (a class token) or ``caption`` (text tokens).
      caption_length: the text context ``P`` in characters (``caption``).
      p_uncond: probability of the null condition in training (classifier-free guidance).
      dim, num_layers, num_heads, mlp_ratio: each level's transformer.
      dropout: GPT-2's embedding and residual dropout in training (the digits' 1437 code
        grids are memorised without it).
      temperature, top_k, top_p: default logit filtering at sampling (``top_k = 0`` and
        ``top_p = 1`` turn those filters off).
      guidance_scale: default classifier-free guidance scale ``s = 1 + w`` (1: conditional).
      eval_samples: samples scored for ``requested_digit_accuracy``.
    """

    first_stage: FirstStageConfig = dataclasses.field(default_factory=FirstStageConfig)
    condition: str = "none"
    caption_length: int = 32
    p_uncond: float = 0.1
    dim: int = 256
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.1
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    guidance_scale: float = 1.0
    eval_samples: int = 1000


class CodePriorRecipe(SecondStageRecipe):
    """Causal transformers over ``[condition; coarser codes; codes]``, one per code level."""

    family = "code_prior"
    config_class = CodePriorConfig
    first_stage_kind = "codes"
    state_collections = ("first_stage",)
    sample_options = ("temperature", "top_k", "top_p", "guidance_scale", "text")
    eval_time_fields = ("temperature", "top_k", "top_p", "guidance_scale", "eval_samples")

    def setup_second_stage(self) -> None:
        m: CodePriorConfig = self.config.model
        check_choice("model.condition", m.condition, CONDITIONS)
        if not 0.0 <= m.p_uncond < 1.0:
            raise ConfigError(f"model.p_uncond must be in [0, 1), got {m.p_uncond!r}")
        if m.condition == "caption" and m.caption_length < captions.MAX_CAPTION_LENGTH:
            raise ConfigError(
                f"model.caption_length={m.caption_length} is shorter than the longest digit "
                f"caption ({captions.MAX_CAPTION_LENGTH} characters)"
            )
        if m.condition != "none" and not self.num_classes:
            raise ConfigError(
                f"model.condition={m.condition!r} needs labelled data; {self.config.data.name!r} "
                "has no labels"
            )
        if m.condition == "caption" and self.num_classes != len(captions.DIGIT_NAMES):
            raise ConfigError(
                f"model.condition='caption' makes captions from digit labels (10 classes); "
                f"{self.config.data.name!r} has {self.num_classes}"
            )
        if m.top_k < 0 or not 0.0 < m.top_p <= 1.0 or m.temperature <= 0:
            raise ConfigError(
                "model.top_k must be >= 0 (0: off), model.top_p in (0, 1] (1: off) and "
                f"model.temperature > 0, got {m.top_k!r}, {m.top_p!r}, {m.temperature!r}"
            )
        self.evaluate_labels = m.condition != "none"  # the run floor passes the labels
        # the classes a conditional prior draws for (the CLI's --class / --guidance-scale)
        self.classes = int(self.num_classes or 0) if m.condition != "none" else 0
        if m.condition == "none":
            self.num_prefix, self.condition_vocab = 0, 0
        elif m.condition == "label":
            self.num_prefix, self.condition_vocab = 1, int(self.num_classes) + 1  # + null
        else:
            self.num_prefix = m.caption_length
            self.condition_vocab = captions.TOKENIZER.vocab_size

    def first_stage_attached(self) -> None:
        m: CodePriorConfig = self.config.model
        first = self.first_stage
        self.code_shapes = tuple(tuple(int(d) for d in s) for s in first.code_shapes)
        self.code_sizes = tuple(int(np.prod(s)) for s in self.code_shapes)
        self.vocab_sizes = tuple(int(k) for k in first.code_vocab_sizes)
        offsets = np.cumsum((self.condition_vocab, *self.vocab_sizes))
        self.offsets = tuple(int(o) for o in offsets[:-1])
        self.vocab = int(offsets[-1])
        self.bos = self.vocab  # CausalTransformer embeds ids 0..V (V: the start token)
        factories = {}
        for level in range(len(self.code_shapes)):
            length = self.num_prefix + sum(self.code_sizes[: level + 1])
            factories[f"prior_{level}"] = lambda rngs, n=length: CausalTransformer(
                self.vocab,
                max_len=n,
                dim=m.dim,
                num_heads=m.num_heads,
                num_layers=m.num_layers,
                mlp_ratio=m.mlp_ratio,
                dropout=m.dropout,
                rngs=rngs,
            )
        try:
            self.modules = ModuleSet(factories)
        except ValueError as err:
            raise ConfigError(f"code_prior model config: {err}") from None

    # ------------------------------------------------------------------ parameters

    def init_params(self, key: jax.Array, init_batch: Any = None) -> Any:
        self.require_first_stage()
        net_key, first_key = jax.random.split(key)
        return {**self.modules.init(net_key), "first_stage": self.first_stage_init(first_key)}

    # ------------------------------------------------------------------ conditions

    def null_condition(self, batch: int) -> jax.Array:
        """The null condition tokens (B, P): the all-pad caption or the null label."""
        if self.config.model.condition == "label":
            return jnp.full((batch, 1), self.num_classes, jnp.int32)
        return jnp.full((batch, self.num_prefix), captions.TOKENIZER.pad_id, jnp.int32)

    def condition_tokens(self, labels: jax.Array, key: jax.Array | None) -> jax.Array:
        """The condition (B, P) of digit labels: the label token, or the caption (template 0
        when ``key`` is None, a random template per example otherwise)."""
        if self.config.model.condition == "label":
            return labels.astype(jnp.int32)[:, None]
        return captions.label_captions(labels, key, length=self.num_prefix)

    def encode_text(self, text: str) -> np.ndarray:
        """Caption tokens (P,) of ``text``; ``ConfigError`` for text the tokenizer cannot
        encode or longer than the context."""
        if self.config.model.condition != "caption":
            raise ConfigError(
                f"the text option needs a caption-conditioned prior; this one has "
                f"model.condition={self.config.model.condition!r}"
            )
        try:
            return captions.TOKENIZER.encode(text, length=self.num_prefix)
        except ValueError as err:
            raise ConfigError(f"text {text!r}: {err}") from None

    # ------------------------------------------------------------------ engine hooks

    def _sequence(self, condition: jax.Array, codes: tuple[jax.Array, ...], level: int):
        parts = [condition] + [
            codes[j].reshape(codes[j].shape[0], -1) + self.offsets[j] for j in range(level + 1)
        ]
        return jnp.concatenate(parts, axis=1).astype(jnp.int32)

    def loss(self, params, batch, key):
        """``sum_l -log p(k_l | c, k_<l)`` per example, with the condition dropped to the null
        one with probability ``model.p_uncond``; terms ``nll_level<l>`` in nats."""
        self.require_first_stage()
        m: CodePriorConfig = self.config.model
        images = batch[self.data_key]
        codes = self.first_stage.encode_codes(params["first_stage"], images)
        batch_size = images.shape[0]
        condition = jnp.zeros((batch_size, 0), jnp.int32)
        if m.condition != "none":
            ckey = jax.random.fold_in(key, CONDITION_KEY)
            template_key, drop_key = jax.random.split(ckey)
            condition = self.condition_tokens(batch["label"], template_key)
            drop = jax.random.bernoulli(drop_key, m.p_uncond, (batch_size, 1))
            condition = jnp.where(drop, self.null_condition(batch_size), condition)
        terms = self._level_nlls(params, codes, condition, dropout_key=jax.random.fold_in(key, 1))
        return sum(terms.values()), terms

    def _level_nlls(self, params, codes, condition, *, dropout_key=None) -> dict[str, jax.Array]:
        """``-log p(k_l | c, k_<l)`` per example for each level ``l`` (``nll_level<l>``),
        with dropout when ``dropout_key`` is given (training)."""
        terms = {}
        for level in range(len(self.code_shapes)):
            tokens = self._sequence(condition, codes, level)
            net = self.modules.bind(params, f"prior_{level}")
            level_key = None if dropout_key is None else jax.random.fold_in(dropout_key, level)
            logits = net(ar.shift_right(tokens, bos=self.bos), dropout_key=level_key)
            lo = self.offsets[level]
            terms[f"nll_level{level}"] = ar.prefix_sequence_nll(
                logits,
                tokens,
                target_start=self.num_prefix + sum(self.code_sizes[:level]),
                vocab_range=(lo, lo + self.vocab_sizes[level]),
            )
        return terms

    def _sample_condition(self, condition, text, num_samples, first_index):
        if self.config.model.condition == "none":
            if text is not None:
                self.encode_text(text)  # the error for an unconditional prior
            return jnp.zeros((num_samples, 0), jnp.int32)
        if text is not None:
            return jnp.broadcast_to(
                jnp.asarray(self.encode_text(text)), (num_samples, self.num_prefix)
            )
        condition = dict(condition or {})
        if "text" in condition:
            tokens = jnp.asarray(condition["text"], jnp.int32)
            if tokens.shape != (num_samples, self.num_prefix):
                raise ValueError(
                    f"condition['text'] must be ({num_samples}, {self.num_prefix}) tokens, got "
                    f"{tuple(tokens.shape)}"
                )
            return tokens
        if "label" in condition:
            labels = jnp.asarray(condition["label"], jnp.int32).reshape(num_samples)
        else:
            labels = (first_index + jnp.arange(num_samples)) % int(self.num_classes)
        return self.condition_tokens(labels, None)

    def sample(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Any = None,
        **options: Any,
    ) -> SamplerOutput:
        """Codes level by level (coarse to fine), decoded by the first stage (module
        docstring). Options: ``temperature``, ``top_k`` (0: off), ``top_p`` (1: off),
        ``guidance_scale`` ``s`` (1: conditional; may be traced), ``text`` (one caption)."""
        self.check_sample_options(options)
        self.require_first_stage()
        m: CodePriorConfig = self.config.model
        temperature = options.get("temperature", m.temperature)
        top_k = options.get("top_k", m.top_k) or None
        top_p = options.get("top_p", m.top_p)
        top_p = None if isinstance(top_p, (int, float)) and top_p >= 1.0 else top_p
        scale = options.get("guidance_scale", m.guidance_scale)
        prefix = self._sample_condition(condition, options.get("text"), num_samples, first_index)
        keys = example_keys(key, num_samples, start=first_index)
        guided = m.condition != "none" and not (isinstance(scale, (int, float)) and scale == 1)
        codes, nfe = [], 0
        for level, shape in enumerate(self.code_shapes):
            net = self.modules.bind(params, f"prior_{level}")
            length = prefix.shape[1] + self.code_sizes[level]
            cache = net.init_cache(num_samples, max_len=length)
            step_fn = net.decode_step
            carry: Any = cache
            if guided:
                null = prefix.at[:, : self.num_prefix].set(self.null_condition(num_samples))
                step_fn = ar.guided_step_fn(step_fn, null, guidance_scale=scale)
                carry = (cache, cache)
            lo = self.offsets[level]
            out = ar.sample_with_prefix(
                step_fn,
                carry,
                jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, level),
                (num_samples, self.code_sizes[level]),
                prefix=prefix,
                bos=self.bos,
                vocab_range=(lo, lo + self.vocab_sizes[level]),
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
            )
            nfe += out.nfe
            codes.append((out.samples - lo).reshape(num_samples, *shape))
            prefix = jnp.concatenate([prefix, out.samples], axis=1)
        images = self.first_stage.decode_codes(params["first_stage"], tuple(codes))
        return SamplerOutput(images, nfe + 1)

    # ------------------------------------------------------------------ evaluation

    def _eval_chunk(self, params, batch, key):
        del key
        images = batch[self.data_key]
        codes = self.first_stage.encode_codes(params["first_stage"], images)
        if self.config.model.condition == "none":
            condition = self.null_condition(images.shape[0])
        else:
            condition = self.condition_tokens(batch["label"], None)
        return self._level_nlls(params, codes, condition)

    def evaluate(self, params, images, key, labels=None):
        """Held-out ``-log p(k | c)`` per level (a conditional prior given each example's
        label, as its caption of template 0), and the requested-digit accuracy of a
        conditional prior on the digits."""
        self.require_first_stage()
        m: CodePriorConfig = self.config.model
        images = np.asarray(images, np.float32)
        if m.condition != "none" and labels is None:
            raise ConfigError("a conditional code prior is evaluated with the split's labels")
        labels = np.zeros(len(images), np.int32) if labels is None else np.asarray(labels)
        out = evaluate_in_chunks(
            self._eval_chunk,
            params,
            {self.data_key: images, "label": labels.astype(np.int32)},
            key,
            batch_size=self.config.eval.batch_size,
        )
        result: dict[str, float] = {"num_examples": float(len(images))}
        for level, size in enumerate(self.code_sizes):
            nats = float(np.mean(out[f"nll_level{level}"]))
            result[f"nll_level{level}_nats"] = nats
            result[f"bits_per_code_level{level}"] = nats / size / np.log(2.0)
        if m.condition != "none" and self.num_classes == 10:
            result.update(self.requested_digit_accuracy(params, key))
        return result

    def requested_digit_accuracy(self, params, key) -> dict[str, float]:
        """The fraction of ``model.eval_samples`` samples (digit ``i mod 10`` asked for by
        its caption or label) that the project's digit classifier labels as asked."""
        from jaxgen.evaluation.digit_fd import digit_logits

        n = int(self.config.model.eval_samples)
        draw = jax.jit(lambda p, k, first: self.sample(p, k, 200, first_index=first).samples)
        chunks = [np.asarray(draw(params, key, start)) for start in range(0, n, 200)]
        samples = np.concatenate(chunks)[:n]
        predicted = np.argmax(digit_logits(samples), axis=-1)
        asked = np.arange(n) % 10
        per_digit = [float(np.mean(predicted[asked == d] == d)) for d in range(10)]
        return {
            "requested_digit_accuracy": float(np.mean(predicted == asked)),
            "requested_digit_accuracy_worst": float(min(per_digit)),
        }

    def figures(self, params, images, key):
        samples = jax.jit(self.sample, static_argnums=2)(params, key, 100).samples
        return {"samples": make_grid(np.asarray(samples), num_cols=10)}
