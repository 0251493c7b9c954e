"""VQ-VAE-2 (Razavi, van den Oord, Vinyals 2019) as a recipe: a two-level VQ autoencoder
(top and bottom code grids, the decoder conditioned on both; :mod:`jaxgen.vae.vqvae2` and
:mod:`jaxgen.nets.vqvae2`), each level with its own codebook, trained by EMA with dead-code
restarts or by gradient.

This is the first stage of a two-stage model. The paper's priors are hierarchical
autoregressive ones trained afterwards on the frozen codes (a PixelCNN/transformer over the
top codes and one over the bottom codes given the top); second-stage recipes reach the codes
through the first-stage protocol, ``code_shapes``, ``code_vocab_sizes``, ``encode_codes``
and ``decode_codes``. So that the family samples on its own (the engine's sample grids and
scores), the recipe also fits a factorized prior per level (``prior_logits_top`` and
``prior_logits_bottom``, :mod:`jaxgen.vae.code_prior`, on the gradient-free indices; it does
not affect the autoencoder): ``log p(k_t, k_b) = log p_t(k_t) + log p_b(k_b)``.

The EMA codebooks are non-gradient state in the ``codebook_ema`` entry of the parameters
(``{"top": ..., "bottom": ...}``), updated by the engine from the global batch each step.

Evaluation: the bound ``-log p(x | e_t, e_b) - log p(k_t, k_b)`` in bits/dim with the
factorized priors (``bits_per_dim``) and with uniform priors
(``bits_per_dim_uniform_prior``), the reconstruction part alone, and per level the held-out
codebook perplexity and the number of codes used.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import ConfigError
from jaxgen.core.sampling import SamplerOutput, example_keys
from jaxgen.core.units import bits_per_dim
from jaxgen.core.validation import check_index_range
from jaxgen.images import make_grid
from jaxgen.nets.conv_autoencoder import ConvEncoder
from jaxgen.nets.vqvae2 import BottomConditioner, TwoLevelDecoder
from jaxgen.recipes import latent_figures
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks
from jaxgen.recipes.decoder_likelihood import DecoderLikelihood
from jaxgen.recipes.modules import ModuleSet
from jaxgen.vae import code_prior
from jaxgen.vae import vector_quantization as vq
from jaxgen.vae.vqvae2 import LEVELS, vqvae2_encode, vqvae2_loss

CODEBOOK_UPDATES = ("ema", "gradient")


@dataclasses.dataclass(frozen=True)
class VQVAE2Config:
    """Defaults: the paper's ImageNet 256x256 VQ-VAE (its appendix table of hyperparameters):
    128 hidden units, 64 residual units, 2 residual layers, codebooks of 512 codes of
    dimension 64 at both levels, a bottom grid of 64x64 (two stride-2 downsamplings) and a
    top grid of 32x32 (one more), commitment cost 0.25, EMA decay 0.99. The paper's decoder
    loss is the mean squared error; here the decoder likelihood is a choice (discretized
    logistic by default, so the bound is in bits/dim on the discrete data).

    Per level: ``num_codes_top`` / ``num_codes_bottom`` codes (sizes may differ), one code
    dimension ``embedding_dim``; ``bottom_downsamples`` stride-2 steps from the image to the
    bottom grid and ``top_downsamples`` (>= 1) more to the top grid. ``dead_code_threshold``
    > 0 restarts EMA codes used less (``ema`` codebooks only)."""

    num_codes_top: int = 512
    num_codes_bottom: int = 512
    embedding_dim: int = 64
    channels: int = 128
    residual_channels: int = 64
    num_residual_blocks: int = 2
    bottom_downsamples: int = 2
    top_downsamples: int = 1
    commitment_cost: float = 0.25
    codebook_update: str = "ema"
    ema_decay: float = 0.99
    ema_epsilon: float = 1e-5
    dead_code_threshold: float = 0.0
    codebook_init_scale: float = 1.0
    likelihood: str = "discretized_logistic"
    fixed_std: float = 1.0
    binarize: str = "none"
    sample_temperature: float = 1.0


class VQVAE2Recipe(Recipe):
    """Two-level VQ-VAE with factorized learned code priors; see the module docstring."""

    family = "vqvae2"
    config_class = VQVAE2Config
    sample_options = ("temperature",)
    eval_time_fields = ("sample_temperature",)

    def setup(self) -> None:
        m: VQVAE2Config = self.config.model
        check_choice("model.codebook_update", m.codebook_update, CODEBOOK_UPDATES)
        if len(self.data_shape) != 3:
            raise ConfigError(
                f"VQ-VAE-2 needs (H, W, C) images, the data have shape {self.data_shape}"
            )
        if m.bottom_downsamples < 0 or m.top_downsamples < 1:
            raise ConfigError(
                f"model.bottom_downsamples={m.bottom_downsamples} must be >= 0 and "
                f"model.top_downsamples={m.top_downsamples} >= 1"
            )
        factor = 2 ** (m.bottom_downsamples + m.top_downsamples)
        if self.data_shape[0] % factor or self.data_shape[1] % factor:
            raise ConfigError(
                f"model.bottom_downsamples={m.bottom_downsamples} + model.top_downsamples="
                f"{m.top_downsamples}: the image size {self.data_shape[:2]} is not divisible "
                f"by {factor}"
            )
        if min(m.num_codes_top, m.num_codes_bottom) < 2 or m.embedding_dim < 1:
            raise ConfigError(
                "model.num_codes_top and model.num_codes_bottom must be >= 2 and "
                f"model.embedding_dim >= 1, got {m.num_codes_top}, {m.num_codes_bottom}, "
                f"{m.embedding_dim}"
            )
        if m.dead_code_threshold > 0 and m.codebook_update != "ema":
            raise ConfigError("model.dead_code_threshold > 0 needs model.codebook_update='ema'")
        self.likelihood = DecoderLikelihood(
            m.likelihood, self.num_levels, fixed_std=m.fixed_std, binarize=m.binarize
        )
        h, w = self.data_shape[:2]
        fb, ft = 2**m.bottom_downsamples, 2**m.top_downsamples
        self.code_shapes = ((h // fb // ft, w // fb // ft), (h // fb, w // fb))
        self.code_vocab_sizes = (m.num_codes_top, m.num_codes_bottom)
        self.num_dims = int(np.prod(self.data_shape))
        self.state_collections = ("codebook_ema",) if m.codebook_update == "ema" else ()
        net = dict(
            channels=m.channels,
            residual_channels=m.residual_channels,
            num_residual_blocks=m.num_residual_blocks,
        )
        d, c = m.embedding_dim, m.channels
        out = self.likelihood.decoder_channels(self.data_shape[-1])
        self.modules = ModuleSet(
            {
                "bottom_encoder": lambda rngs: ConvEncoder(
                    self.data_shape[-1], c, num_downsamples=m.bottom_downsamples, rngs=rngs, **net
                ),
                "top_encoder": lambda rngs: ConvEncoder(
                    c, d, num_downsamples=m.top_downsamples, rngs=rngs, **net
                ),
                "bottom_conditioner": lambda rngs: BottomConditioner(
                    c, d, d, num_upsamples=m.top_downsamples, rngs=rngs, **net
                ),
                "decoder": lambda rngs: TwoLevelDecoder(
                    d,
                    d,
                    out,
                    num_top_upsamples=m.top_downsamples,
                    num_upsamples=m.bottom_downsamples,
                    rngs=rngs,
                    **net,
                ),
            }
        )

    # ------------------------------------------------------------------ parameters

    def init_params(self, key: jax.Array, init_batch: Any = None) -> Any:
        m: VQVAE2Config = self.config.model
        net_key, *code_keys = jax.random.split(key, 3)
        params = self.modules.init(net_key)
        books = {
            name: m.codebook_init_scale * jax.random.normal(k, (size, m.embedding_dim))
            for name, k, size in zip(LEVELS, code_keys, self.code_vocab_sizes, strict=True)
        }
        if m.codebook_update == "ema":
            params["codebook_ema"] = {
                name: vq.init_ema_codebook(book)._asdict() for name, book in books.items()
            }
        else:
            params["codebook"] = books
        for name, grid, size in zip(LEVELS, self.code_shapes, self.code_vocab_sizes, strict=True):
            params[f"prior_logits_{name}"] = jnp.zeros((*grid, size))
        return params

    def codebooks(self, params: Any, *, ema_state: bool = False) -> tuple[Any, Any]:
        """``(top, bottom)`` codebooks (K_l, D), or their EMA states with ``ema_state``."""
        if self.config.model.codebook_update == "ema":
            states = tuple(vq.EMACodebookState(**params["codebook_ema"][n]) for n in LEVELS)
            return states if ema_state else tuple(s.codebook for s in states)
        return tuple(params["codebook"][n] for n in LEVELS)

    def _encoder_fns(self, params):
        return (
            self.modules.bind(params, "bottom_encoder"),
            self.modules.bind(params, "top_encoder"),
            self.modules.bind(params, "bottom_conditioner"),
        )

    def encode(self, params, x):
        """``((z_e^t, z_e^b), (Quantized top, Quantized bottom))`` for images ``x``."""
        return vqvae2_encode(*self._encoder_fns(params), self.codebooks(params), x)

    def decode(self, params, e_top, e_bottom):
        """The raw decoder output for the code vectors ``e_t``, ``e_b``."""
        return self.modules.bind(params, "decoder")(e_top, e_bottom)

    def prior_log_prob(self, params, k_top, k_bottom):
        """``log p_t(k_t) + log p_b(k_b)`` under the factorized priors, (B,)."""
        return code_prior.factorized_prior_log_prob(
            params["prior_logits_top"], k_top
        ) + code_prior.factorized_prior_log_prob(params["prior_logits_bottom"], k_bottom)

    # ------------------------------------------------------------------ first-stage protocol

    def encode_codes(self, params: Any, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """int32 code grids ``(top (B, h_t, w_t), bottom (B, h_b, w_b))`` of ``images``
        (B, H, W, C) in [-1, 1]: the nearest codes ``k_l = argmin_i ||z_e^l - e_i||^2`` at each
        level. A Bernoulli model's encoder was trained on {0, 1} data, so it gets the pixel
        means ``(x + 1) / 2`` (the expected binarized image)."""
        images = jnp.asarray(images)
        if images.ndim != 4 or tuple(images.shape[1:]) != self.data_shape:
            raise ValueError(
                f"images must have shape (B, {', '.join(map(str, self.data_shape))}), "
                f"got {tuple(images.shape)}"
            )
        if self.likelihood.name == "bernoulli":
            images = 0.5 * (images + 1.0)
        _, (q_top, q_bottom) = self.encode(params, images)
        return q_top.indices, q_bottom.indices

    def decode_codes(self, params: Any, codes: Any) -> jax.Array:
        """The decoder's mean picture in [-1, 1] of code grids ``(top, bottom)``
        (``DecoderLikelihood.picture(decoder(C_t[k_t], C_b[k_b]))``); a ValueError names the
        shapes expected for the wrong number of levels, grid shapes or a non-integer dtype,
        and concrete codes outside ``[0, K_l)`` are refused (under jit they are not checked)."""
        expected = ", ".join(f"(B, {h}, {w})" for h, w in self.code_shapes)
        if not isinstance(codes, (tuple, list)) or len(codes) != len(self.code_shapes):
            got = len(codes) if isinstance(codes, (tuple, list)) else type(codes).__name__
            raise ValueError(
                f"decode_codes expects {len(self.code_shapes)} code grids (top, bottom) of "
                f"shapes {expected}, got {got}"
            )
        codes = tuple(jnp.asarray(k) for k in codes)
        batch = codes[0].shape[0] if codes[0].ndim else None
        for name, k, grid, size in zip(
            LEVELS, codes, self.code_shapes, self.code_vocab_sizes, strict=True
        ):
            if not jnp.issubdtype(k.dtype, jnp.integer):
                raise ValueError(
                    f"decode_codes: the {name} codes must be integers, got dtype {k.dtype}"
                )
            if k.ndim != 3 or k.shape[1:] != grid or k.shape[0] != batch:
                raise ValueError(
                    f"decode_codes expects code grids of shapes {expected} with one B; "
                    f"got {[tuple(c.shape) for c in codes]}"
                )
            check_index_range(k, size, f"decode_codes: the {name} codes", what=f"K_{name}")
        e_top, e_bottom = (
            jnp.take(book, k, axis=0) for book, k in zip(self.codebooks(params), codes, strict=True)
        )
        return self.likelihood.picture(self.decode(params, e_top, e_bottom))

    # ------------------------------------------------------------------ engine hooks

    def loss(self, params, batch, key):
        per_example, terms, _ = self.training_loss(params, batch, key, jnp.asarray(0))
        return per_example, terms

    def training_loss(self, params, batch, key, step):
        """:func:`jaxgen.vae.vqvae2_loss` with the conv networks, the factorized priors and
        the two codebooks (EMA states in ``params["codebook_ema"]`` or gradient-trained)."""
        m: VQVAE2Config = self.config.model
        data_key, restart_key = jax.random.split(key)
        x = self.likelihood.train_data(batch[self.data_key], data_key)
        per_example, terms, updates = vqvae2_loss(
            *self._encoder_fns(params),
            self.modules.bind(params, "decoder"),
            self.likelihood.log_likelihood,
            self.codebooks(params, ema_state=True),
            x,
            restart_key,
            commitment_cost=m.commitment_cost,
            prior_log_prob_fn=lambda kt, kb: self.prior_log_prob(params, kt, kb),
            ema_decay=m.ema_decay,
            ema_epsilon=m.ema_epsilon,
            dead_code_threshold=m.dead_code_threshold,
        )
        if updates:
            return (
                per_example,
                terms,
                {"codebook_ema": {n: s._asdict() for n, s in updates.items()}},
            )
        return per_example, terms, {}

    def sample(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Any = None,
        temperature: float | None = None,
    ) -> SamplerOutput:
        """Top and bottom code grids from the factorized priors at ``temperature`` (default
        ``model.sample_temperature``), example ``i`` from ``example_keys(key, num_samples,
        start=first_index)[i]`` (folded with 0 for the top, 1 for the bottom), decoded: two
        prior evaluations and one decoder pass."""
        del condition  # unconditional
        m: VQVAE2Config = self.config.model
        t = m.sample_temperature if temperature is None else temperature
        keys = example_keys(key, num_samples, start=first_index)
        codes, nfe = [], 0
        for i, (name, grid) in enumerate(zip(LEVELS, self.code_shapes, strict=True)):
            level_keys = jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(keys)
            out = code_prior.factorized_prior_sample(
                params[f"prior_logits_{name}"], level_keys, (num_samples, *grid), temperature=t
            )
            codes.append(out.samples)
            nfe += out.nfe
        return SamplerOutput(self.decode_codes(params, tuple(codes)), nfe + 1)

    # ------------------------------------------------------------------ evaluation

    def _eval_chunk(self, params, images, key):
        x = self.likelihood.eval_data(images, key)
        _, (q_top, q_bottom) = self.encode(params, x)
        out = self.decode(params, q_top.z_q, q_bottom.z_q)
        return {
            "reconstruction": -self.likelihood.log_likelihood(out, x),
            "prior_log_prob": self.prior_log_prob(params, q_top.indices, q_bottom.indices),
            "uniform_log_prob": sum(
                code_prior.uniform_prior_log_prob(q.indices, k)
                for q, k in zip((q_top, q_bottom), self.code_vocab_sizes, strict=True)
            ),
            "indices_top": q_top.indices,
            "indices_bottom": q_bottom.indices,
        }

    def evaluate(self, params, images, key):
        out = evaluate_in_chunks(
            self._eval_chunk, params, images, key, batch_size=self.config.eval.batch_size
        )

        def bits(nats_value):
            return float(bits_per_dim(nats_value, self.num_dims))

        def nats(neg_log_p):  # mean -log P on the discrete data
            return float(-self.likelihood.discrete_log_prob(-neg_log_p, self.num_dims).mean())

        rec = np.asarray(out["reconstruction"], np.float64)
        learned = code_prior.vq_negative_elbo(rec, np.asarray(out["prior_log_prob"], np.float64))
        uniform = code_prior.vq_negative_elbo(rec, np.asarray(out["uniform_log_prob"], np.float64))
        result = {
            "neg_elbo_nats": nats(np.asarray(learned)),
            "bits_per_dim": bits(nats(np.asarray(learned))),
            "bits_per_dim_uniform_prior": bits(nats(np.asarray(uniform))),
            "reconstruction_bits_per_dim": bits(nats(rec)),
        }
        for name, size in zip(LEVELS, self.code_vocab_sizes, strict=True):
            counts = np.bincount(np.asarray(out[f"indices_{name}"]).reshape(-1), minlength=size)
            usage = counts / counts.sum()
            entropy = -np.sum(usage[usage > 0] * np.log(usage[usage > 0]))
            result[f"codebook_perplexity_{name}"] = float(np.exp(entropy))
            result[f"codes_used_{name}"] = float(np.sum(counts > 0))
        result["num_examples"] = float(len(rec))
        return result

    def reconstruct(self, params, x):
        """The decoder's picture of ``(e_t(x), e_b(x))``: the model's reconstruction of ``x``."""
        return self.decode_codes(params, self.encode_codes(params, x))

    def figures(self, params, images, key):
        x = jnp.asarray(np.asarray(images[:32], np.float32))
        recon = jax.jit(self.reconstruct)(params, x)
        samples = jax.jit(self.sample, static_argnums=2)(params, key, 64).samples
        return {
            "reconstructions": latent_figures.reconstruction_grid(x, recon),
            "samples": make_grid(np.asarray(samples)),
        }
