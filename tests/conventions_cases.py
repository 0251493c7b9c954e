"""Tiny closed-form cases for :mod:`tests.test_conventions` (issue 12's shared conventions).

Every public loss and sampler of every family gets one case (a sampler may get several
variants) built from closed-form callables: linear maps, ``lambda x, t: -0.5 * x``,
fixed logit tables. A loss case returns the loss's raw result; a sampler case draws with a
given key and batch size, wrapping every network callable it passes in a :class:`Counter`
so that the test can compare the reported ``nfe`` with the number of calls actually made.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import autoregressive, diffusion, flows, gan, sde, vae
from jaxgen import flow_matching as fm
from jaxgen.gan import pix2pix
from jaxgen.sde import samplers
from jaxgen.vae import DiagonalGaussian

B = 3  # the batch of every case


class Counter:
    """Counts calls of the callables it wraps (a Python counter: one per call made while the
    sampler runs, i.e. per loop iteration when loops run in Python under ``disable_jit``)."""

    def __init__(self) -> None:
        self.calls = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return fn(*args, **kwargs)

        return counted


def rows(batch: int, event: Sequence[int], scale: float = 1.0, offset: float = 0.0) -> jax.Array:
    """Deterministic ``(batch, *event)`` data whose row ``b`` depends on ``b`` only, so a
    batch of ``2B`` starts with the batch of ``B``."""
    size = math.prod(event)
    index = jnp.arange(batch * size, dtype=jnp.float32).reshape(batch, *event)
    return scale * jnp.sin(0.7 * index + offset)


def grid_rows(batch: int, event: Sequence[int], num_levels: int) -> jax.Array:
    """Rows on the ``num_levels`` grid ``2k / (L - 1) - 1`` of ``[-1, 1]``."""
    k = jnp.arange(batch * math.prod(event)).reshape(batch, *event) % num_levels
    return (2.0 * k / (num_levels - 1) - 1.0).astype(jnp.float32)


def _key(seed: int = 0) -> jax.Array:
    return jax.random.key(seed)


# ----------------------------------------------------------------------------- losses


@dataclasses.dataclass(frozen=True)
class LossCase:
    """``run()`` returns the loss's raw result for a batch of :data:`B`.

    ``game``: a game objective, which returns ``(per_example, terms, state_updates)``.
    ``players``: returns ``{player: (per_example, terms)}``."""

    name: str
    run: Callable[[], Any]
    game: bool = False
    players: bool = False


def _linear(w: np.ndarray) -> Callable[[jax.Array], jax.Array]:
    w = jnp.asarray(w, jnp.float32)
    return lambda x: x.reshape(x.shape[0], -1) @ w


_W_ENC = np.array([[0.5, -0.2], [0.1, 0.3], [-0.4, 0.2]])  # 3 -> 2
_W_DEC = _W_ENC.T  # 2 -> 3


def _encoder(x: jax.Array) -> DiagonalGaussian:
    mean = _linear(_W_ENC)(x)
    return DiagonalGaussian(mean, -0.5 + 0.1 * mean)


def _gaussian_ll(out: jax.Array, x: jax.Array) -> jax.Array:
    """``log N(x; out, I)`` summed over the event, (B,)."""
    d = (x - out).reshape(x.shape[0], -1)
    return -0.5 * jnp.sum(d * d + math.log(2 * math.pi), axis=1)


def _bottom_up(x: jax.Array) -> list[DiagonalGaussian]:
    h = _linear(_W_ENC)(x)
    return [DiagonalGaussian(h, -0.3 + 0.0 * h), DiagonalGaussian(0.5 * h, -0.2 + 0.0 * h)]


_TOP_DOWN = [lambda z: DiagonalGaussian(0.5 * z, jnp.full_like(z, -0.4))]


def _critic(x: jax.Array) -> jax.Array:
    flat = x.reshape(x.shape[0], -1)
    return jnp.sum(jnp.tanh(flat), axis=1) + 0.1 * jnp.sum(flat * flat, axis=1)


def _generator(z: jax.Array, labels: jax.Array | None) -> jax.Array:
    # Row-wise elementwise maps only (no matmul, whose blocking may change the rounding with
    # the number of rows), so a row's output is bitwise independent of the batch.
    out = jnp.tanh(jnp.concatenate([z, 0.5 * z[:, :1] * z[:, 1:]], axis=1))
    return out if labels is None else out + 0.1 * labels[:, None]


def _discriminator(x: jax.Array, labels: jax.Array | None) -> jax.Array:
    logits = _critic(x)
    return logits if labels is None else logits + 0.05 * labels


def _stateful_discriminator(x: jax.Array, labels: jax.Array | None):
    return _discriminator(x, labels), {"u": jnp.ones((2,))}


def _p2p_generator(condition: jax.Array, noise: jax.Array | None, num_reference: int = 0):
    h = condition if noise is None else condition + 0.1 * noise
    if num_reference:  # normalize with the reference rows' statistics only
        h = h - jnp.mean(h[:num_reference], axis=0, keepdims=True)
    return jnp.tanh(h)


def _p2p_discriminator(condition: jax.Array, image: jax.Array) -> jax.Array:
    return (condition * image)[..., 0]  # one logit per pixel: (B, H, W) patches


def _vae_gan_discriminator(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return _critic(x), jnp.tanh(x)


_SCHEDULE = diffusion.linear_schedule(10)
_VP = sde.VPSDE(beta_min=0.1, beta_max=2.0)


def _eps_model(x: jax.Array, t: jax.Array) -> jax.Array:
    return 0.1 * x


def _score(x: jax.Array, t: jax.Array) -> jax.Array:
    return -0.5 * x


# Flow matching (convention: data at t = 0, source at t = 1): a linear velocity field.
_FM_PATH = fm.LinearPath(sigma_min=0.0)


def _velocity(x: jax.Array, t: jax.Array) -> jax.Array:
    return 0.3 * x - 0.1 * t.reshape((-1,) + (1,) * (x.ndim - 1)) * x


def _flow_matching_loss_cases(x, images, noise, t_cont) -> list[LossCase]:
    exact = {"divergence": "exact", "rtol": 1e-3, "atol": 1e-3}
    return [
        LossCase(
            "flow_matching.flow_matching_loss",
            lambda: fm.flow_matching_loss(_velocity, _FM_PATH, x, _key(), x_source=noise),
        ),
        LossCase(
            "flow_matching.flow_matching_loss_at",
            lambda: fm.flow_matching_loss_at(
                _velocity, _FM_PATH, x, noise, t_cont, parameterization="x0"
            ),
        ),
        LossCase(
            "flow_matching.distillation_loss", lambda: fm.distillation_loss(_velocity, noise, x)
        ),
        LossCase(
            "flow_matching.log_likelihood",
            lambda: fm.log_likelihood(_velocity, x, None, **exact),
        ),
        LossCase(
            "flow_matching.bits_per_dim",
            lambda: fm.bits_per_dim(_velocity, images, _key(), num_levels=5, **exact),
        ),
    ]


def _loss_cases() -> list[LossCase]:
    x = rows(B, (3,))
    images = grid_rows(B, (2, 2, 1), 5)
    labels = jnp.arange(B) % 2
    fake_logits = jnp.array([0.3, -1.0, 2.0])
    tokens = jnp.arange(B * 4).reshape(B, 4) % 5
    token_logits = jnp.sin(jnp.arange(B * 4 * 5, dtype=jnp.float32)).reshape(B, 4, 5)
    t_index = jnp.array([0, 4, 9])
    t_cont = jnp.array([0.1, 0.5, 0.9])
    noise = rows(B, (3,), offset=1.0)
    loss_kw = {"model_fn": _eps_model, "schedule": _SCHEDULE}
    return [
        LossCase("diffusion.ddpm_loss", lambda: diffusion.ddpm_loss(**loss_kw, x0=x, key=_key())),
        LossCase(
            "diffusion.ddpm_loss_at",
            lambda: diffusion.ddpm_loss_at(**loss_kw, x0=x, t=t_index, noise=noise),
        ),
        LossCase(
            "diffusion.variational_bound",
            lambda: diffusion.variational_bound(**loss_kw, x0=images, key=_key(), num_levels=5),
        ),
        LossCase(
            "diffusion.variational_bound_estimate",
            lambda: diffusion.variational_bound_estimate(
                **loss_kw, x0=images, key=_key(), num_levels=5
            ),
        ),
        LossCase("sde.dsm_loss", lambda: sde.dsm_loss(_eps_model, _VP, x, _key())),
        LossCase(
            "sde.dsm_loss_at",
            lambda: sde.dsm_loss_at(_eps_model, _VP, x, t_cont, noise, parameterization="v"),
        ),
        LossCase(
            "sde.log_likelihood",
            lambda: sde.log_likelihood(_score, _VP, x, None, divergence="exact", rtol=1e-3),
        ),
        LossCase(
            "sde.bits_per_dim",
            lambda: sde.bits_per_dim(
                _score, _VP, images, _key(), num_levels=5, divergence="exact", rtol=1e-3
            ),
        ),
        LossCase(
            "vae.elbo_loss",
            lambda: vae.elbo_loss(
                _encoder, _linear(_W_DEC), _gaussian_ll, x, _key(), beta=0.5, free_bits=0.1
            ),
        ),
        LossCase(
            "vae.iwae_loss",
            lambda: vae.iwae_loss(
                _encoder, _linear(_W_DEC), _gaussian_ll, x, _key(), num_samples=3
            ),
        ),
        LossCase(
            "vae.importance_log_likelihood",
            lambda: vae.importance_log_likelihood(
                _encoder, _linear(_W_DEC), _gaussian_ll, x, _key(), num_samples=4, chunk_size=2
            ),
        ),
        LossCase(
            "vae.ladder_elbo_loss",
            lambda: vae.ladder_elbo_loss(
                _bottom_up, _TOP_DOWN, _linear(_W_DEC), _gaussian_ll, x, _key()
            ),
        ),
        LossCase(
            "vae.ladder_importance_log_likelihood",
            lambda: vae.ladder_importance_log_likelihood(
                _bottom_up, _TOP_DOWN, _linear(_W_DEC), _gaussian_ll, x, _key(), num_samples=3
            ),
        ),
        LossCase(
            "vae.autoencoder_loss",
            lambda: vae.autoencoder_loss(
                _linear(_W_ENC),
                _linear(_W_DEC),
                lambda out, y: -_gaussian_ll(out, y),
                x,
                _key(),
                penalty="contractive",
                penalty_weight=0.1,
                corruption="gaussian",
            ),
        ),
        LossCase(
            "vae.factorized_prior_loss",
            lambda: vae.factorized_prior_loss(
                jnp.sin(jnp.arange(2 * 2 * 4, dtype=jnp.float32)).reshape(2, 2, 4),
                jnp.arange(B * 4).reshape(B, 2, 2) % 4,
            ),
        ),
        LossCase(
            "vae.vqvae_loss",
            lambda: vae.vqvae_loss(
                lambda y: y.reshape(y.shape[0], 2, 2),  # z_e: 2 positions of D = 2
                lambda z: 2.0 * z.reshape(z.shape[0], -1),
                _gaussian_ll,
                vae.init_ema_codebook(jnp.array([[0.5, -0.5], [-0.5, 0.5], [3.0, 3.0]])),
                jnp.concatenate([x, x[:, :1]], axis=1),
                _key(),
                commitment_cost=0.25,
                prior_log_prob_fn=lambda k: -0.1 * jnp.sum(k, axis=1).astype(jnp.float32),
                dead_code_threshold=0.5,
            ),
            game=True,  # returns the EMA codebook's state update as a third element
        ),
        LossCase(
            "vae.vqvae2_loss",
            lambda: vae.vqvae2_loss(
                lambda y: y.reshape(y.shape[0], 2, 2),  # h_b: 2 positions of D = 2
                lambda h: jnp.mean(h, axis=1, keepdims=True),  # z_e^t: 1 position
                lambda h, e_t: h + 0.5 * e_t,  # z_e^b from [h_b, e_t]
                lambda e_t, e_b: 2.0 * e_b.reshape(e_b.shape[0], -1) + jnp.tile(e_t[:, 0], 2),
                _gaussian_ll,
                (
                    vae.init_ema_codebook(jnp.array([[0.5, -0.5], [-3.0, -3.0]])),
                    vae.init_ema_codebook(jnp.array([[0.5, -0.5], [-0.5, 0.5], [3.0, 3.0]])),
                ),
                jnp.concatenate([x, x[:, :1]], axis=1),
                _key(),
                commitment_cost=0.25,
                prior_log_prob_fn=lambda kt, kb: (
                    -0.1 * (jnp.sum(kt, axis=1) + jnp.sum(kb, axis=1)).astype(jnp.float32)
                ),
                dead_code_threshold=0.5,
            ),
            game=True,  # returns the two EMA codebooks' state updates as a third element
        ),
        LossCase(
            "vae.kl_autoencoder_loss",
            lambda: vae.kl_autoencoder_loss(
                lambda y: DiagonalGaussian(*(g.reshape(-1, 1, 1, 2) for g in _encoder(y))),
                _linear(_W_DEC),  # a spatial (B, 1, 1, 2) latent, flattened
                _gaussian_ll,
                x,
                _key(),
                kl_weight=0.5,
            ),
        ),
        LossCase(
            "vae.vae_gan_losses",
            lambda: vae.vae_gan_losses(
                _encoder, _linear(_W_DEC), _vae_gan_discriminator, x, _key()
            ),
            players=True,
        ),
        LossCase(
            "gan.discriminator_loss",
            lambda: gan.discriminator_loss(fake_logits + 1.0, fake_logits, kind="hinge"),
        ),
        LossCase("gan.generator_loss", lambda: gan.generator_loss(fake_logits)),
        LossCase(
            "gan.gradient_penalty",
            lambda: gan.gradient_penalty(_critic, x, rows(B, (3,), offset=2.0), _key()),
        ),
        LossCase("gan.r1_penalty", lambda: gan.r1_penalty(_critic, x)),
        LossCase(
            "gan.discriminator_objective",
            lambda: gan.discriminator_objective(
                _generator,
                _discriminator,
                x,
                _key(),
                latent_dim=2,
                labels=labels,
                penalty="gradient_penalty",
                stateful_discriminator_fn=_stateful_discriminator,
            ),
            game=True,
        ),
        LossCase(
            "gan.generator_objective",
            lambda: gan.generator_objective(
                _generator, _discriminator, _key(), (B, 2), labels=labels
            ),
            game=True,
        ),
        LossCase(
            "gan.pix2pix.discriminator_objective",
            lambda: pix2pix.discriminator_objective(
                _p2p_generator, _p2p_discriminator, images, -images, _key(), noise_channels=1
            ),
            game=True,
        ),
        LossCase(
            "gan.pix2pix.generator_objective",
            lambda: pix2pix.generator_objective(
                _p2p_generator, _p2p_discriminator, images, -images, _key(), noise_channels=1
            ),
            game=True,
        ),
        LossCase(
            "flows.flow_nll",
            lambda: flows.flow_nll(
                lambda y: (2.0 * y.reshape(y.shape[0], -1), jnp.full((y.shape[0],), 4 * 0.69)),
                images,
                _key(),
                num_levels=5,
            ),
        ),
        LossCase(
            "autoregressive.token_cross_entropy",
            lambda: autoregressive.token_cross_entropy(
                token_logits, tokens, mask=jnp.arange(4)[None, :] < jnp.array([[4], [2], [1]])
            ),
        ),
        LossCase(
            "autoregressive.image_nll",
            lambda: autoregressive.image_nll(
                jnp.sin(jnp.arange(B * 2 * 2 * 1 * 5, dtype=jnp.float32)).reshape(B, 2, 2, 1, 5),
                jnp.arange(B * 4).reshape(B, 2, 2, 1) % 5,
            ),
        ),
        *_flow_matching_loss_cases(x, images, noise, t_cont),
    ]


LOSS_CASES: list[LossCase] = _loss_cases()

# Public functions whose name looks like a loss (or that were candidates) but that are
# helpers returning one bare (B,) array on purpose: a term of an objective, not an objective.
LOSS_EXEMPT: dict[str, str] = {
    "vae.feature_matching_loss": (
        "a term of vae_gan_losses (L_llike, the feature-space Gaussian NLL), returned bare (B,)"
    ),
    "vae.kl_monte_carlo": (
        "a KL estimate used as a term (elbo_loss's 'monte_carlo' KL), returned bare (B,)"
    ),
    "vae.vq_negative_elbo": (
        "arithmetic on two (B,) arrays the caller already holds (-log p(x|z_q) - log p(k)); "
        "a term of vqvae_loss ('neg_elbo') and of the VQ-VAE recipe's evaluation"
    ),
}

# ----------------------------------------------------------------------------- samplers


@dataclasses.dataclass(frozen=True)
class SamplerCase:
    """``draw(key, batch, counter)`` calls the sampler for ``batch`` examples, every network
    callable wrapped by ``counter.wrap``, and returns its :class:`SamplerOutput`.

    ``nfe``: the documented count for this call; ``None`` for an adaptive solver (then
    ``nfe`` is an integer array). ``countable``: the calls can be counted by running the
    sampler under ``jax.disable_jit`` (every loop then runs in Python)."""

    name: str
    variant: str
    draw: Callable[[jax.Array, int, Counter], Any]
    nfe: int | None
    countable: bool = True

    @property
    def id(self) -> str:
        return f"{self.name}[{self.variant}]"


def _ladder_top_down(c: Counter) -> list[Callable[[jax.Array], DiagonalGaussian]]:
    return [
        c.wrap(lambda z: DiagonalGaussian(0.5 * z, jnp.full_like(z, -0.5))),
        c.wrap(lambda z: DiagonalGaussian(jnp.tanh(z), jnp.full_like(z, -0.2))),
    ]


def _ladder_with_latents(key: jax.Array, n: int, c: Counter):
    out, latents = vae.ladder_sample_with_latents(
        _ladder_top_down(c), c.wrap(lambda z: 2.0 * z), key, (n, 2), temperature=0.8
    )
    assert len(latents) == 3 and all(z.shape[0] == n for z in latents), [z.shape for z in latents]
    return out


def _reference_generator(z, labels, num_reference=0):
    h = _generator(z, labels)
    if num_reference:
        h = h - jnp.mean(h[:num_reference], axis=0, keepdims=True)
    return h


_SEQ_TABLE = jnp.sin(jnp.arange(5 * 5, dtype=jnp.float32)).reshape(5, 5)  # token -> logits
_IMG_BASE = jnp.cos(jnp.arange(2 * 2 * 1 * 3, dtype=jnp.float32)).reshape(2, 2, 1, 3)
_PC = {"num_steps": 3, "num_corrector_steps": 2, "snr": 0.2}
_PC_NFE = 3 * (1 + 2) + 1  # N (P + M C) + denoise


def _step_fn(carry, token, position):
    del position
    return carry + token, _SEQ_TABLE[token] + 0.1 * carry[:, None]


def _seq_prefix(n: int) -> jax.Array:
    """``(n, P = 2)`` condition tokens; row ``b`` depends on ``b`` only."""
    return (jnp.arange(n * 2, dtype=jnp.int32).reshape(n, 2) * 3) % 5


def _inpaint(key, n, c):
    data = rows(n, (2, 2, 1))
    mask = (jnp.arange(4).reshape(1, 2, 2, 1) % 2).astype(jnp.float32)
    return samplers.pc_inpaint(c.wrap(_score), _VP, key, (n, 2, 2, 1), data=data, mask=mask, **_PC)


def _colorize(key, n, c):
    return samplers.pc_colorize(
        c.wrap(_score), _VP, key, (n, 2, 2, 3), gray=rows(n, (2, 2, 1)), **_PC
    )


def _flow_matching_sampler_cases() -> list[SamplerCase]:
    ev = (2,)
    fixed = [("euler", fm.euler_sample, 1), ("midpoint", fm.midpoint_sample, 2)]
    fixed += [("heun", fm.heun_sample, 2), ("rk4", fm.rk4_sample, 4)]
    cases = [
        SamplerCase(
            f"flow_matching.{name}_sample",
            "N=3",
            lambda k, n, c, fn=fn: fn(c.wrap(_velocity), k, (n, *ev), num_steps=3),
            3 * per_step,
        )
        for name, fn, per_step in fixed
    ]
    return [
        *cases,
        SamplerCase(
            "flow_matching.one_step_sample",
            "1",
            lambda k, n, c: fm.one_step_sample(c.wrap(_velocity), k, (n, *ev)),
            1,
        ),
        SamplerCase(
            "flow_matching.adaptive_sample",
            "tsit5",
            lambda k, n, c: fm.adaptive_sample(
                c.wrap(_velocity), k, (n, *ev), rtol=1e-3, atol=1e-3
            ),
            None,
            countable=False,
        ),
    ]


def _sampler_cases() -> list[SamplerCase]:
    ev = (2,)
    return [
        SamplerCase(
            "diffusion.ancestral_sample",
            "T=10",
            lambda k, n, c: diffusion.ancestral_sample(c.wrap(_eps_model), _SCHEDULE, k, (n, *ev)),
            10,
        ),
        SamplerCase(
            "diffusion.ddim_sample",
            "S=5,eta=0.5",
            lambda k, n, c: diffusion.ddim_sample(
                c.wrap(_eps_model), _SCHEDULE, k, (n, *ev), num_steps=5, eta=0.5
            ),
            5,
        ),
        SamplerCase(
            "sde.samplers.euler_maruyama_sample",
            "N=4,denoise",
            lambda k, n, c: samplers.euler_maruyama_sample(
                c.wrap(_score), _VP, k, (n, *ev), num_steps=4
            ),
            4 + 1,
        ),
        SamplerCase(
            "sde.samplers.pc_sample",
            "N=3,M=2,denoise",
            lambda k, n, c: samplers.pc_sample(c.wrap(_score), _VP, k, (n, *ev), **_PC),
            _PC_NFE,
        ),
        SamplerCase("sde.samplers.pc_inpaint", "N=3,M=2,denoise", _inpaint, _PC_NFE),
        SamplerCase("sde.samplers.pc_colorize", "N=3,M=2,denoise", _colorize, _PC_NFE),
        SamplerCase(
            "sde.samplers.dpm_solver_sample",
            "N=4,order=2,denoise",
            lambda k, n, c: samplers.dpm_solver_sample(
                c.wrap(_score), _VP, k, (n, *ev), num_steps=4, denoise=True
            ),
            4 + 1,
        ),
        SamplerCase(
            "sde.samplers.edm_sample",
            "N=3,churn",
            lambda k, n, c: samplers.edm_sample(
                c.wrap(_score), _VP, k, (n, *ev), num_steps=3, churn=1.0
            ),
            2 * 3 - 1,
        ),
        SamplerCase(
            "sde.samplers.unipc_sample",
            "N=4,order=3,denoise",
            lambda k, n, c: samplers.unipc_sample(
                c.wrap(_score), _VP, k, (n, *ev), num_steps=4, order=3, denoise=True
            ),
            4 + 1,
        ),
        SamplerCase(
            "sde.samplers.probability_flow_sample",
            "heun,N=3,denoise",
            lambda k, n, c: samplers.probability_flow_sample(
                c.wrap(_score), _VP, k, (n, *ev), num_steps=3, denoise=True
            ),
            2 * 3 + 1,
        ),
        SamplerCase(
            "sde.samplers.probability_flow_sample",
            "adaptive",
            lambda k, n, c: samplers.probability_flow_sample(
                c.wrap(_score), _VP, k, (n, *ev), method="adaptive", rtol=1e-3, atol=1e-3
            ),
            None,
            countable=False,
        ),
        SamplerCase(
            "vae.ladder_sample",
            "L=3",
            lambda k, n, c: vae.ladder_sample(
                _ladder_top_down(c), c.wrap(lambda z: 2.0 * z), k, (n, 2), temperature=0.8
            ),
            3,  # L - 1 top-down passes + 1 decoder pass
        ),
        SamplerCase("vae.ladder_sample_with_latents", "L=3", _ladder_with_latents, 3),
        SamplerCase(
            "vae.factorized_prior_sample",
            "T=0.7",
            lambda k, n, c: vae.factorized_prior_sample(
                jnp.sin(jnp.arange(2 * 2 * 4, dtype=jnp.float32)).reshape(2, 2, 4),
                k,
                (n, 2, 2),
                temperature=0.7,
            ),
            1,  # one evaluation of the prior (a logit table here: nothing to count)
            countable=False,
        ),
        SamplerCase(
            "gan.sample",
            "conditional",
            lambda k, n, c: gan.sample(c.wrap(_generator), k, (n, 2), labels=jnp.arange(n) % 3),
            1,
        ),
        SamplerCase(
            "gan.sample",
            "reference_batch",
            lambda k, n, c: gan.sample(
                c.wrap(_reference_generator),
                k,
                (n, 2),
                reference_size=4,
                latent_distribution="uniform",
            ),
            1,
        ),
        SamplerCase(
            "gan.pix2pix.sample",
            "noise,reference",
            lambda k, n, c: pix2pix.sample(
                c.wrap(_p2p_generator),
                k,
                (n, 2, 2, 1),
                condition=rows(n, (2, 2, 1)),
                noise_channels=1,
                reference=rows(2, (2, 2, 1), offset=3.0),
            ),
            1,
        ),
        SamplerCase(
            "flows.sample",
            "T=0.7",
            lambda k, n, c: flows.sample(
                c.wrap(lambda z: 0.5 * z + 1.0), k, (n, 4), temperature=0.7
            ),
            1,
        ),
        SamplerCase(
            "autoregressive.sample_image",
            "HWC=4",
            lambda k, n, c: autoregressive.sample_image(
                c.wrap(lambda x: _IMG_BASE[None] + 0.3 * x[..., None]),
                k,
                (n, 2, 2, 1),
                num_levels=3,
                top_k=2,
            ),
            2 * 2 * 1,
        ),
        SamplerCase(
            "autoregressive.sample_sequence",
            "L=4",
            lambda k, n, c: autoregressive.sample_sequence(
                c.wrap(_step_fn), jnp.zeros((n,), jnp.int32), k, (n, 4), bos=0, top_p=0.9
            ),
            4,
        ),
        SamplerCase(
            "autoregressive.sample_sequence_uncached",
            "L=4",
            lambda k, n, c: autoregressive.sample_sequence_uncached(
                c.wrap(lambda inputs: _SEQ_TABLE[inputs]), k, (n, 4), bos=0, temperature=0.8
            ),
            4,
        ),
        SamplerCase(
            "autoregressive.sample_with_prefix",
            "P=2,N=3",
            lambda k, n, c: autoregressive.sample_with_prefix(
                c.wrap(_step_fn),
                jnp.zeros((n,), jnp.int32),
                k,
                (n, 3),
                prefix=_seq_prefix(n),
                bos=0,
                vocab_range=(1, 5),
                top_p=0.9,
            ),
            2 + 3,  # P + N: the prefix positions are fed through the network too
        ),
        SamplerCase(
            "autoregressive.sample_with_prefix_uncached",
            "P=2,N=3",
            lambda k, n, c: autoregressive.sample_with_prefix_uncached(
                c.wrap(lambda inputs: _SEQ_TABLE[inputs]),
                k,
                (n, 3),
                prefix=_seq_prefix(n),
                bos=0,
                vocab_range=(1, 5),
                temperature=0.8,
            ),
            3,  # N: one full-sequence pass per drawn token
        ),
        *_flow_matching_sampler_cases(),
    ]


SAMPLER_CASES: list[SamplerCase] = _sampler_cases()

# Public functions whose name looks like a sampler but that are not samplers of a model.
SAMPLER_EXEMPT: dict[str, str] = {
    "flow_matching.sample_time": (
        "draws training times t in [t_min, t_max] (uniform or logit-normal) for the loss; "
        "evaluates no network and returns a bare (batch,) array"
    ),
    "diffusion.q_sample": (
        "the forward process x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise at given t and "
        "noise: no key, no network, returns a bare array"
    ),
    "vae.decoder_sample": (
        "draws x ~ p(x | z) from a decoder output it is given; evaluates no network "
        "(takes `out`, returns a bare array)"
    ),
}
