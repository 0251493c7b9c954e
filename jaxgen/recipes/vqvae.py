"""VQ-VAE (van den Oord et al. 2017) as a recipe: the paper's convolutional encoder and
decoder, nearest-code quantization with the straight-through estimator, the codebook and
commitment losses or an EMA codebook with dead-code restarts, and a learned prior over the
code grid so that the model generates.

The EMA codebook is non-gradient state: it lives in the ``codebook_ema`` entry of the
parameters (a state collection), which the engine updates from the global batch each step.
The prior is the factorized one of ``jaxgen.vae.code_prior``, trained jointly on the
(integer, gradient-free) code indices; it does not affect the autoencoder.

Evaluation: the bound ``-ELBO = -log p(x | z_q) - log p(k)`` (sec. 3.1) in nats and bits/dim,
with the learned prior (``bits_per_dim``) and the paper's uniform prior
(``bits_per_dim_uniform_prior``), the reconstruction part alone, the codebook perplexity on
the held-out set and the number of codes used.
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
from jaxgen.nets.conv_autoencoder import ConvDecoder, ConvEncoder
from jaxgen.recipes import latent_figures
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks
from jaxgen.recipes.decoder_likelihood import DecoderLikelihood
from jaxgen.recipes.modules import ModuleSet
from jaxgen.vae import code_prior
from jaxgen.vae import vector_quantization as vq
from jaxgen.vae.vqvae import vqvae_loss

CODEBOOK_UPDATES = ("ema", "gradient")


@dataclasses.dataclass(frozen=True)
class VQVAEConfig:
    """Defaults: the paper's CIFAR-10 model (256 hidden channels, two residual blocks, two
    stride-2 downsamplings, K = 512 codes, commitment cost 0.25, EMA decay 0.99)."""

    num_codes: int = 512
    embedding_dim: int = 64
    channels: int = 256
    residual_channels: int = 256
    num_residual_blocks: int = 2
    num_downsamples: int = 2
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


class VQVAERecipe(Recipe):
    """Conv VQ-VAE with a factorized learned code prior; see the module docstring."""

    family = "vqvae"
    config_class = VQVAEConfig
    sample_options = ("temperature",)
    eval_time_fields = ("sample_temperature",)

    def setup(self) -> None:
        m: VQVAEConfig = self.config.model
        check_choice("model.codebook_update", m.codebook_update, CODEBOOK_UPDATES)
        if len(self.data_shape) != 3:
            raise ConfigError(
                f"VQ-VAE needs (H, W, C) images, the data have shape {self.data_shape}"
            )
        factor = 2**m.num_downsamples
        if self.data_shape[0] % factor or self.data_shape[1] % factor:
            raise ConfigError(
                f"model.num_downsamples={m.num_downsamples}: the image size {self.data_shape[:2]} "
                f"is not divisible by {factor}"
            )
        if m.num_codes < 2 or m.embedding_dim < 1:
            raise ConfigError("model.num_codes must be >= 2 and model.embedding_dim >= 1")
        if m.dead_code_threshold > 0 and m.codebook_update != "ema":
            raise ConfigError("model.dead_code_threshold > 0 needs model.codebook_update='ema'")
        self.likelihood = DecoderLikelihood(
            m.likelihood, self.num_levels, fixed_std=m.fixed_std, binarize=m.binarize
        )
        self.grid = (self.data_shape[0] // factor, self.data_shape[1] // factor)
        self.latent_shape = (*self.grid, m.embedding_dim)
        self.code_shapes = (self.grid,)
        self.code_vocab_sizes = (m.num_codes,)
        self.num_dims = int(np.prod(self.data_shape))
        self.state_collections = ("codebook_ema",) if m.codebook_update == "ema" else ()
        net = dict(
            channels=m.channels,
            residual_channels=m.residual_channels,
            num_residual_blocks=m.num_residual_blocks,
            num_downsamples=m.num_downsamples,
        )
        self.modules = ModuleSet(
            {
                "encoder": lambda rngs: ConvEncoder(
                    self.data_shape[-1], m.embedding_dim, rngs=rngs, **net
                ),
                "decoder": lambda rngs: ConvDecoder(
                    m.embedding_dim,
                    self.likelihood.decoder_channels(self.data_shape[-1]),
                    rngs=rngs,
                    **net,
                ),
            }
        )

    # ------------------------------------------------------------------ parameters

    def init_params(self, key: jax.Array, init_batch: Any = None) -> Any:
        m: VQVAEConfig = self.config.model
        net_key, code_key = jax.random.split(key)
        params = self.modules.init(net_key)
        codebook = m.codebook_init_scale * jax.random.normal(
            code_key, (m.num_codes, m.embedding_dim)
        )
        if m.codebook_update == "ema":
            params["codebook_ema"] = vq.init_ema_codebook(codebook)._asdict()
        else:
            params["codebook"] = codebook
        params["prior_logits"] = jnp.zeros((*self.grid, m.num_codes))
        return params

    def codebook(self, params: Any) -> jax.Array:
        if self.config.model.codebook_update == "ema":
            return params["codebook_ema"]["codebook"]
        return params["codebook"]

    def encode(self, params, x):
        """``(z_e, Quantized)`` for images ``x``."""
        z_e = self.modules.bind(params, "encoder")(x)
        return z_e, vq.quantize(z_e, self.codebook(params))

    def decode(self, params, z_q):
        return self.modules.bind(params, "decoder")(z_q)

    # ------------------------------------------------------------------ first-stage protocol

    def _check_shape(self, array: jax.Array, expected: tuple[int, ...], what: str) -> None:
        if array.ndim != 1 + len(expected) or tuple(array.shape[1:]) != tuple(expected):
            raise ValueError(
                f"{what} must have shape (B, {', '.join(map(str, expected))}), i.e. "
                f"{'(h, w, c)' if len(expected) == 3 else '(h, w)'} = {tuple(expected)}, "
                f"got {tuple(array.shape)}"
            )

    def encode_latents(self, params: Any, images: jax.Array) -> jax.Array:
        """The pre-quantisation latents ``z_e(x)`` (B, h, w, D) of images in [-1, 1]: the
        continuous latents of LDM's VQ-regularised first stage (Rombach et al. 2022). A
        Bernoulli model's encoder was trained on {0, 1} data, so it gets ``(x + 1) / 2``."""
        self._check_shape(images, self.data_shape, "images")
        return self.modules.bind(params, "encoder")(self._encoder_input(images))

    def _encoder_input(self, images: jax.Array) -> jax.Array:
        if self.likelihood.name == "bernoulli":
            return 0.5 * (images + 1.0)
        return images

    def decode_latents(self, params: Any, latents: jax.Array) -> jax.Array:
        """Latents (B, h, w, D) quantised to their nearest codes ``e_k``, ``k = argmin_j
        ||z - e_j||``, then decoded: the decoder's mean picture in [-1, 1] (LDM's
        VQ-regularised first stage puts the quantiser in the decoder)."""
        self._check_shape(latents, self.latent_shape, "latents")
        z_q = vq.quantize(latents, self.codebook(params)).z_q
        return self.likelihood.picture(self.decode(params, z_q))

    def encode_codes(self, params: Any, images: jax.Array) -> tuple[jax.Array, ...]:
        """``(indices,)``: the int32 nearest-code indices (B, h, w) of ``z_e(x)`` (a Bernoulli
        model's encoder gets ``(x + 1) / 2``, as in :meth:`encode_latents`)."""
        self._check_shape(images, self.data_shape, "images")
        return (self.encode(params, self._encoder_input(images))[1].indices.astype(jnp.int32),)

    def decode_codes(self, params: Any, codes: tuple[jax.Array, ...]) -> jax.Array:
        """The decoder's mean picture in [-1, 1] of the code rows ``e_k`` for ``codes =
        (indices,)``, integer indices (B, h, w) in ``[0, num_codes)`` (not checked under
        ``jit``); ``decode_codes(encode_codes(x))`` is :meth:`reconstruct`."""
        if not isinstance(codes, (tuple, list)) or len(codes) != 1:
            got = f"a {type(codes).__name__}"
            if isinstance(codes, (tuple, list)):
                got += f" of {len(codes)} arrays"
            raise ValueError(f"codes must be a tuple of 1 array (one level, (indices,)), got {got}")
        (indices,) = codes
        dtype = jnp.result_type(indices)
        if not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(f"codes[0] must hold integer code indices, got dtype {dtype}")
        self._check_shape(indices, self.grid, "codes[0]")
        check_index_range(indices, self.config.model.num_codes, "codes[0]", what="num_codes")
        z_q = jnp.take(self.codebook(params), indices, axis=0)
        return self.likelihood.picture(self.decode(params, z_q))

    # ------------------------------------------------------------------ engine hooks

    def loss(self, params, batch, key):
        per_example, terms, _ = self.training_loss(params, batch, key, jnp.asarray(0))
        return per_example, terms

    def training_loss(self, params, batch, key, step):
        """:func:`jaxgen.vae.vqvae_loss` with the conv networks, the factorized prior and the
        codebook (an EMA state in ``params["codebook_ema"]`` or the parameter ``codebook``)."""
        m: VQVAEConfig = self.config.model
        data_key, restart_key = jax.random.split(key)
        x = self.likelihood.train_data(batch[self.data_key], data_key)
        if m.codebook_update == "ema":
            codebook = vq.EMACodebookState(**params["codebook_ema"])
        else:
            codebook = params["codebook"]
        per_example, terms, updates = vqvae_loss(
            self.modules.bind(params, "encoder"),
            self.modules.bind(params, "decoder"),
            self.likelihood.log_likelihood,
            codebook,
            x,
            restart_key,
            commitment_cost=m.commitment_cost,
            prior_log_prob_fn=lambda k: code_prior.factorized_prior_log_prob(
                params["prior_logits"], k
            ),
            ema_decay=m.ema_decay,
            ema_epsilon=m.ema_epsilon,
            dead_code_threshold=m.dead_code_threshold,
        )
        if "codebook" in updates:
            return per_example, terms, {"codebook_ema": updates["codebook"]._asdict()}
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
        """Code grids from the prior at ``temperature`` (default ``model.sample_temperature``),
        example ``i`` from its key ``example_keys(key, num_samples, start=first_index)[i]``,
        decoded: the prior's evaluation and one decoder pass."""
        del condition  # unconditional
        m: VQVAEConfig = self.config.model
        t = m.sample_temperature if temperature is None else temperature
        codes = code_prior.factorized_prior_sample(
            params["prior_logits"],
            example_keys(key, num_samples, start=first_index),
            (num_samples, *self.grid),
            temperature=t,
        )
        z_q = jnp.take(self.codebook(params), codes.samples, axis=0)
        return SamplerOutput(self.likelihood.picture(self.decode(params, z_q)), codes.nfe + 1)

    # ------------------------------------------------------------------ evaluation

    def _eval_chunk(self, params, images, key):
        m: VQVAEConfig = self.config.model
        x = self.likelihood.eval_data(images, key)
        _, q = self.encode(params, x)
        reconstruction = -self.likelihood.log_likelihood(self.decode(params, q.z_q), x)
        return {
            "reconstruction": reconstruction,
            "prior_log_prob": code_prior.factorized_prior_log_prob(
                params["prior_logits"], q.indices
            ),
            "uniform_log_prob": code_prior.uniform_prior_log_prob(q.indices, m.num_codes),
            "indices": q.indices,
        }

    def evaluate(self, params, images, key):
        m: VQVAEConfig = self.config.model
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
        counts = np.bincount(np.asarray(out["indices"]).reshape(-1), minlength=m.num_codes)
        usage = counts / counts.sum()
        entropy = -np.sum(usage[usage > 0] * np.log(usage[usage > 0]))
        return {
            "neg_elbo_nats": nats(np.asarray(learned)),
            "bits_per_dim": bits(nats(np.asarray(learned))),
            "bits_per_dim_uniform_prior": bits(nats(np.asarray(uniform))),
            "reconstruction_bits_per_dim": bits(nats(rec)),
            "codebook_perplexity": float(np.exp(entropy)),
            "codes_used": float(np.sum(counts > 0)),
            "num_examples": float(len(rec)),
        }

    def reconstruct(self, params, x):
        """The decoder's picture of ``z_q(x)``: the model's reconstruction of ``x``."""
        return self.likelihood.picture(self.decode(params, self.encode(params, x)[1].z_q))

    def figures(self, params, images, key):
        x = jnp.asarray(np.asarray(images[:32], np.float32))
        recon = jax.jit(self.reconstruct)(params, x)
        samples = jax.jit(self.sample, static_argnums=2)(params, key, 64).samples
        return {
            "reconstructions": latent_figures.reconstruction_grid(x, recon),
            "samples": make_grid(np.asarray(samples)),
        }
