"""Bad inputs to the public maths API (issue 18): each case is a tiny eager call that must
raise ``ValueError`` (or a subclass) with a message naming the argument and what is allowed.

No silent result: out-of-range times and step indices, schedules that are not schedules,
data off a likelihood's support, sampler options outside their domain, masks that are not
0/1 and shapes that do not match.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import autoregressive as ar
from jaxgen import diffusion, flows, gan, sde, vae
from jaxgen.sde import samplers

T = 10
_SCHED = diffusion.linear_schedule(T)
_X = jnp.zeros((2, 3), jnp.float32)
_NOISE = jnp.ones((2, 3), jnp.float32)
_KEY = jax.random.key(0)
_VP = sde.VPSDE()
_VE = sde.VESDE()


def _model(x, t):
    return jnp.zeros_like(x)


def _score(x, t):
    return -x


def _t(*values):
    return jnp.asarray(values, jnp.int32)


def _ddpm_at(t):
    return lambda: diffusion.ddpm_loss_at(_model, _SCHED, _X, t, _NOISE)


def _dsm_at(t, **kw):
    return lambda: sde.dsm_loss_at(_model, _VP, _X, t, _NOISE, **kw)


def _bernoulli(x):
    x = jnp.asarray(x, jnp.float32).reshape(1, -1)
    return lambda: vae.log_likelihood("bernoulli", jnp.zeros_like(x), x)


def _logistic(x, num_levels=3):
    x = jnp.asarray(x, jnp.float32).reshape(1, -1)
    out = jnp.zeros((1, 2 * x.shape[1]), jnp.float32)
    return lambda: vae.log_likelihood("discretized_logistic", out, x, num_levels=num_levels)


_LOGITS = jnp.zeros((2, 5), jnp.float32)
_SEQ_LOGITS = jnp.zeros((1, 3, 4), jnp.float32)
_SEQ_TARGETS = jnp.zeros((1, 3), jnp.int32)


def _pc(**kw):
    args = dict(num_steps=2, corrector="none")
    args.update(kw)
    return lambda: samplers.pc_sample(_score, _VE, _KEY, (2, 3), **args)


def _inpaint(mask):
    return lambda: samplers.pc_inpaint(
        _score, _VE, _KEY, (2, 3), data=_X, mask=mask, num_steps=2, corrector="none"
    )


# (id, call, regex the ValueError's message must match)
CASES = [
    # -- diffusion: DDPM step indices t in [0, T - 1] (the cases) --
    ("ddpm_loss_at t=T", _ddpm_at(_t(T, 0)), r"t must lie in \[0, T - 1\] = \[0, 9\].*10"),
    ("ddpm_loss_at t=1e6", _ddpm_at(_t(10**6, 0)), r"t must lie in \[0, T - 1\].*1000000"),
    ("ddpm_loss_at t=-1", _ddpm_at(_t(-1, 0)), r"t must lie in \[0, T - 1\].*-1"),
    ("ddpm_loss_at t=-100", _ddpm_at(_t(-100, 0)), r"t must lie in \[0, T - 1\].*-100"),
    ("ddpm_loss_at float t", _ddpm_at(jnp.zeros((2,))), r"t must hold integer"),
    ("ddpm_loss_at t shape", _ddpm_at(_t(0, 1, 2)), r"t must have shape \(B,\)"),
    ("q_sample t=T", lambda: diffusion.q_sample(_SCHED, _X, _t(T, T), _NOISE), r"t must lie in"),
    ("q_mean_std t<0", lambda: diffusion.q_mean_std(_SCHED, _X, _t(-1, 0)), r"t must lie in"),
    (
        "q_posterior t=T",
        lambda: diffusion.q_posterior(_SCHED, _X, _X, _t(0, T)),
        r"t must lie in \[0, T - 1\]",
    ),
    ("extract t=T", lambda: diffusion.extract(_SCHED.betas, _t(T, 0), _X), r"t must lie in"),
    (
        "p_mean_variance t=T",
        lambda: diffusion.p_mean_variance(_model, _SCHED, _X, _t(T, 0)),
        r"t must lie in",
    ),
    (
        "x0_from_eps t<0",
        lambda: diffusion.x0_from_eps(_SCHED, _X, _t(-5, 0), _NOISE),
        r"t must lie in",
    ),
    (
        "prediction_target t=T",
        lambda: diffusion.prediction_target(_SCHED, _X, _t(T, 0), _NOISE, parameterization="v"),
        r"t must lie in",
    ),
    ("linear_schedule T=1", lambda: diffusion.linear_schedule(1), r"num_timesteps must be"),
    (
        "linear_schedule beta<0",
        lambda: diffusion.linear_schedule(T, beta_start=-0.1),
        r"betas must lie in \(0, 1\]",
    ),
    (
        "linear_schedule beta>1",
        lambda: diffusion.linear_schedule(T, beta_end=1.5),
        r"betas must lie in \(0, 1\]",
    ),
    ("cosine max_beta=0", lambda: diffusion.cosine_schedule(T, max_beta=0.0), r"max_beta"),
    ("schedule_from_betas 2-D", lambda: diffusion.schedule_from_betas(np.ones((2, 2))), "betas"),
    ("make_schedule name", lambda: diffusion.make_schedule("nope"), r"schedule name 'nope'"),
    ("ddim_timesteps steps=0", lambda: diffusion.ddim_timesteps(T, 0), r"num_steps"),
    ("ddim_timesteps steps>T", lambda: diffusion.ddim_timesteps(T, T + 1), r"num_steps"),
    (
        "ddim_sample eta<0",
        lambda: diffusion.ddim_sample(_model, _SCHED, _KEY, (2, 3), num_steps=2, eta=-0.5),
        r"eta must be .*-0.5",
    ),
    (
        "ddim_sample spacing",
        lambda: diffusion.ddim_sample(_model, _SCHED, _KEY, (2, 3), num_steps=2, spacing="x"),
        r"spacing",
    ),
    (
        "ancestral_sample shape",
        lambda: diffusion.ancestral_sample(_model, _SCHED, _KEY, (0, 3)),
        r"shape must be",
    ),
    (
        "variational_bound num_levels=1",
        lambda: diffusion.variational_bound(_model, _SCHED, _X, _KEY, num_levels=1),
        r"num_levels must be",
    ),
    # -- SDEs: hyperparameters and continuous times t in (0, T] --
    ("VESDE min>max", lambda: sde.VESDE(sigma_min=1.0, sigma_max=0.5), r"sigma_max must be .*"),
    ("VESDE min=max", lambda: sde.VESDE(sigma_min=2.0, sigma_max=2.0), r"sigma_max must be"),
    ("VESDE sigma_min=0", lambda: sde.VESDE(sigma_min=0.0), r"sigma_min must be .*> 0"),
    ("VESDE sigma_min<0", lambda: sde.VESDE(sigma_min=-1.0), r"sigma_min must be .*-1.0"),
    ("VESDE sigma_max=inf", lambda: sde.VESDE(sigma_max=float("inf")), r"sigma_max must be"),
    ("VPSDE beta_min<0", lambda: sde.VPSDE(beta_min=-1.0), r"beta_min must be .*>= 0"),
    ("VPSDE beta_max<min", lambda: sde.VPSDE(beta_min=5.0, beta_max=1.0), r"beta_max >= beta_min"),
    ("VPSDE beta_max=0", lambda: sde.VPSDE(beta_min=0.0, beta_max=0.0), r"beta_max must be"),
    ("VPSDE t_min=0", lambda: sde.VPSDE(t_min=0.0), r"t_min must lie in \(0, T\)"),
    ("SubVPSDE beta_min<0", lambda: sde.SubVPSDE(beta_min=-0.1), r"beta_min must be"),
    ("SubVPSDE beta_max<min", lambda: sde.SubVPSDE(beta_min=2.0, beta_max=1.0), r"beta_max >="),
    ("SubVPSDE t_min>T", lambda: sde.SubVPSDE(t_min=1.5), r"t_min must lie in"),
    ("make_sde beta_min<0", lambda: sde.make_sde("vp", beta_min=-1.0), r"beta_min"),
    ("make_sde name", lambda: sde.make_sde("xx"), r"unknown SDE 'xx'"),
    ("ddpm_schedule N=1", lambda: _VP.ddpm_schedule(1), r"num_steps must be an integer >= 2"),
    ("time_grid steps=0", lambda: _VP.time_grid(0), r"num_steps must be"),
    ("dsm_loss_at t>T", _dsm_at(jnp.array([1.5, 0.5])), r"t must lie in \(0, 1\].*1.5"),
    ("dsm_loss_at t<0", _dsm_at(jnp.array([-0.1, 0.5])), r"t must lie in \(0, 1\].*-0.1"),
    ("dsm_loss_at t=0", _dsm_at(0.0), r"t must lie in \(0, 1\]"),
    ("dsm_loss_at t=nan", _dsm_at(jnp.array([jnp.nan, 0.5])), r"t must be finite"),
    ("dsm_loss_at sigma_data", _dsm_at(0.5, sigma_data=0.0), r"sigma_data must be positive"),
    ("dsm_loss_at weighting", _dsm_at(0.5, weighting="w"), r"weighting 'w'"),
    ("dsm_loss t_min=0", lambda: sde.dsm_loss(_model, _VP, _X, _KEY, t_min=0.0), r"t_min"),
    (
        "dsm_loss p_std=0",
        lambda: sde.dsm_loss(_model, _VP, _X, _KEY, weighting="edm", p_std=0.0),
        r"p_std must be positive",
    ),
    # -- SDE samplers --
    ("time_steps steps=0", lambda: samplers.time_steps(_VP, 0), r"num_steps"),
    ("time_steps t_min=0", lambda: samplers.time_steps(_VP, 4, t_min=0.0), r"t_min"),
    ("edm_sigma_ratios rho=0", lambda: samplers.edm_sigma_ratios(_VP, 4, rho=0.0), r"rho"),
    (
        "euler_maruyama steps=0",
        lambda: samplers.euler_maruyama_sample(_score, _VP, _KEY, (2, 3), num_steps=0),
        r"num_steps",
    ),
    (
        "euler_maruyama t_min>T",
        lambda: samplers.euler_maruyama_sample(_score, _VP, _KEY, (2, 3), num_steps=2, t_min=2.0),
        r"t_min",
    ),
    ("pc_sample steps=0", _pc(num_steps=0), r"num_steps"),
    ("pc_sample snr<0", _pc(corrector="langevin", snr=-0.1), r"snr"),
    ("pc_sample predictor", _pc(predictor="nope"), r"predictor"),
    (
        "pc_inpaint mask=0.5",
        _inpaint(jnp.full((2, 3), 0.5)),
        r"mask must hold 0 \(unknown\) and 1 \(known\).*0\.5",
    ),
    ("pc_inpaint mask shape", _inpaint(jnp.ones((5,))), r"mask"),
    (
        "dpm_solver order=4",
        lambda: samplers.dpm_solver_sample(_score, _VP, _KEY, (2, 3), num_steps=2, order=4),
        r"order",
    ),
    (
        "edm_sample churn<0",
        lambda: samplers.edm_sample(_score, _VP, _KEY, (2, 3), num_steps=2, churn=-1.0),
        r"churn",
    ),
    (
        "probability_flow method",
        lambda: samplers.probability_flow_sample(_score, _VP, _KEY, (2, 3), method="x"),
        r"method",
    ),
    (
        "langevin num_steps=0",
        lambda: samplers.langevin_corrector(
            _score, _VP, _KEY, _X, jnp.full((2,), 0.5), snr=0.1, num_steps=0
        ),
        r"num_steps must be an integer >= 1",
    ),
    (
        "reverse_diffusion num_steps=0",
        lambda: samplers.reverse_diffusion_predictor(
            _score, _VP, _KEY, _X, jnp.full((2,), 0.5), jnp.full((2,), 0.4), num_steps=0
        ),
        r"num_steps must be an integer >= 1",
    ),
    (
        "pc_nfe num_steps=0",
        lambda: samplers.pc_nfe(0, "reverse_diffusion", "langevin", 1, True),
        r"num_steps",
    ),
    (
        "pf_solve t0>T",
        lambda: samplers.probability_flow_solve(_score, _VP, _X, t0=2.0, t1=0.5, num_steps=2),
        r"t0 must lie in \(0, 1\].*2",
    ),
    (
        "pf_solve t1<0",
        lambda: samplers.probability_flow_solve(_score, _VP, _X, t0=1.0, t1=-1.0, num_steps=2),
        r"t1 must lie in \(0, 1\].*-1",
    ),
    ("tweedie t>T", lambda: samplers.tweedie_denoise(_score, _VP, _X, 2.0), r"t must lie in"),
    ("tweedie t=0", lambda: samplers.tweedie_denoise(_score, _VP, _X, 0.0), r"t must lie in"),
    (
        "edm_coefficients sigma_data=0",
        lambda: sde.edm_coefficients(jnp.ones(2), 0.0),
        r"sigma_data must be a finite number in \(0, inf\)",
    ),
    (
        "edm_coefficients ratio<0",
        lambda: sde.edm_coefficients(-jnp.ones(2), 0.5),
        r"sigma_ratio must be > 0",
    ),
    (
        "network_to_score sigma_data<0",
        lambda: sde.network_to_score(_model, _VP, parameterization="edm", sigma_data=-1.0),
        r"sigma_data",
    ),
    (
        "discretized_gaussian x off grid",
        lambda: diffusion.discretized_gaussian_log_likelihood(
            jnp.full((1, 2), 0.3), mean=jnp.zeros((1, 2)), log_scale=jnp.zeros((1, 2)), num_levels=3
        ),
        r"x .*grid of num_levels = 3.*0\.3",
    ),
    (
        "variational_bound x0 > 1",
        lambda: diffusion.variational_bound(_model, _SCHED, jnp.full((2, 3), 3.0), _KEY),
        r"x .*grid of num_levels = 256.*3",
    ),
    # -- VAE likelihoods: data on the support (the cases) --
    ("bernoulli x=0.5", _bernoulli([0.0, 0.5]), r"x .*must hold only 0 or 1.*0\.5"),
    ("bernoulli x=2", _bernoulli([1.0, 2.0]), r"x .*must hold only 0 or 1.*2"),
    ("bernoulli x=-1", _bernoulli([-1.0, 1.0]), r"x .*must hold only 0 or 1.*-1"),
    ("logistic x off grid", _logistic([0.3, 0.0]), r"x .*grid of num_levels = 3.*0\.3"),
    ("logistic x>1", _logistic([1.5, 0.0]), r"x .*grid of num_levels = 3.*1\.5"),
    ("logistic x<-1", _logistic([-1.0, -3.0], num_levels=256), r"x .*grid of num_levels = 256"),
    ("logistic num_levels=1", _logistic([0.0], num_levels=1), r"num_levels must be"),
    ("logistic no num_levels", _logistic([0.0], num_levels=None), r"num_levels"),
    (
        "gaussian_fixed std=0",
        lambda: vae.log_likelihood("gaussian_fixed", _X, _X, fixed_std=0.0),
        r"fixed_std must be positive",
    ),
    ("likelihood name", lambda: vae.log_likelihood("poisson", _X, _X), r"likelihood must be"),
    (
        "iwae num_samples=0",
        lambda: vae.iwae_loss(None, None, None, _X, _KEY, num_samples=0),
        r"num_samples",
    ),
    ("kl_warmup steps<0", lambda: vae.kl_warmup(3, warmup_steps=-1), r"warmup_steps"),
    ("codebook_perplexity K=0", lambda: vae.codebook_perplexity(_t(0, 0), 0), r"num_codes"),
    (
        "factorized_prior temp<0",
        lambda: vae.factorized_prior_sample(_LOGITS, _KEY, (1, 2), temperature=-1.0),
        r"temperature",
    ),
    (
        "ema_codebook decay>1",
        lambda: vae.ema_codebook_update(
            vae.init_ema_codebook(jnp.ones((4, 3))), _X, _t(0, 1), decay=1.5
        ),
        r"decay",
    ),
    ("elbo_loss beta<0", lambda: vae.elbo_loss(None, None, None, _X, _KEY, beta=-1.0), r"beta"),
    (
        "uniform_prior index>=K",
        lambda: vae.uniform_prior_log_prob(jnp.full((1, 2), 9, jnp.int32), 4),
        r"indices must lie in \[0, K - 1\] = \[0, 3\].*9",
    ),
    (
        "factorized_prior index>=K",
        lambda: vae.factorized_prior_log_prob(jnp.zeros((2, 4)), jnp.full((1, 2), 9, jnp.int32)),
        r"indices must lie in \[0, K - 1\]",
    ),
    (
        "codebook_perplexity index<0",
        lambda: vae.codebook_perplexity(_t(-1, 0), 4),
        r"indices must lie in \[0, num_codes - 1\]",
    ),
    (
        "ema_codebook index>=K",
        lambda: vae.ema_codebook_update(
            vae.init_ema_codebook(jnp.ones((4, 3))), _X, jnp.full((2,), 9, jnp.int32)
        ),
        r"indices must lie in \[0, K - 1\]",
    ),
    (
        "autoencoder penalty_weight<0",
        lambda: vae.autoencoder_loss(
            lambda x: x, lambda z: z, None, _X, _KEY, penalty="l1", penalty_weight=-1.0
        ),
        r"penalty_weight",
    ),
    # -- autoregressive sampling options and data --
    ("filter_logits temp<0", lambda: ar.filter_logits(_LOGITS, temperature=-1.0), r"temperature"),
    ("filter_logits top_k=0", lambda: ar.filter_logits(_LOGITS, top_k=0), r"top_k"),
    ("filter_logits top_p=0", lambda: ar.filter_logits(_LOGITS, top_p=0.0), r"top_p"),
    ("filter_logits top_p>1", lambda: ar.filter_logits(_LOGITS, top_p=1.5), r"top_p"),
    (
        "sample_image num_levels=1",
        lambda: ar.sample_image(lambda x: x, _KEY, (1, 2, 2, 1), num_levels=1),
        r"num_levels must be",
    ),
    (
        "cross_entropy mask=0.5",
        lambda: ar.token_cross_entropy(_SEQ_LOGITS, _SEQ_TARGETS, mask=jnp.full((1, 3), 0.5)),
        r"mask",
    ),
    (
        "cross_entropy mask shape",
        lambda: ar.token_cross_entropy(_SEQ_LOGITS, _SEQ_TARGETS, mask=jnp.ones((1, 4))),
        r"mask",
    ),
    (
        "cross_entropy target>=V",
        lambda: ar.token_cross_entropy(_SEQ_LOGITS, _SEQ_TARGETS + 4),
        r"targets",
    ),
    (
        "image_log_prob level>=L",
        lambda: ar.image_log_prob(jnp.zeros((1, 2, 3)), jnp.full((1, 2), 3, jnp.int32)),
        r"x|level",
    ),
    ("causal_conv_mask type", lambda: ar.causal_conv_mask(3, 1, 1, mask_type="C"), r"mask_type"),
    # -- GANs --
    ("discriminator_loss kind", lambda: gan.discriminator_loss(_LOGITS, _LOGITS, kind="k"), "kind"),
    ("generator_loss kind", lambda: gan.generator_loss(_LOGITS, kind="k"), r"kind"),
    ("clip_weights clip<=0", lambda: gan.clip_weights({"w": _X}, clip=0.0), r"clip"),
    ("latents latent_dim=0", lambda: gan.latents(jax.random.split(_KEY, 2), 0), r"latent_dim"),
    (
        "gan.sample reference<0",
        lambda: gan.sample(lambda z, y: z, _KEY, (2, 3), reference_size=-1),
        r"reference_size",
    ),
    (
        "gradient_penalty target<0",
        lambda: gan.gradient_penalty(lambda x: x.sum(-1), _X, _X, _KEY, target=-1.0),
        r"target must be a finite number in \[0, inf\)",
    ),
    # -- flows --
    ("logit_forward alpha>=0.5", lambda: flows.logit_forward(_X, alpha=0.5), r"alpha"),
    ("logit_forward alpha<0", lambda: flows.logit_forward(_X, alpha=-0.1), r"alpha"),
    (
        "flows.sample temp<0",
        lambda: flows.sample(lambda z: z, _KEY, (2, 3), temperature=-1.0),
        "temp",
    ),
    ("checkerboard parity=2", lambda: flows.checkerboard_mask(2, 2, parity=2), r"parity"),
    ("channel_mask c=0", lambda: flows.channel_mask(0), r"c >= 2"),
    (
        "uniform_dequantize L=1",
        lambda: flows.uniform_dequantize(_t(0, 0), _KEY, num_levels=1),
        r"num_levels must be",
    ),
    (
        "bits_per_dim num_dims=0",
        lambda: flows.bits_per_dim(_X[:, 0], num_dims=0, num_levels=None),
        "num_dims",
    ),
    ("logit_forward y>1", lambda: flows.logit_forward(_X + 2.0), r"y .*must lie in \[0.0, 1.0\]"),
    ("squeeze odd", lambda: flows.squeeze(jnp.zeros((1, 3, 3, 1))), r"squeeze|even"),
]


@pytest.mark.parametrize("call, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_value_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_the_table_is_large_enough_and_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) >= 60
    assert len(set(ids)) == len(ids)


def test_traced_ddpm_steps_are_clipped_not_wrapped():
    """Under jit t cannot be checked: it is clipped to [0, T - 1] (documented), never NaN."""
    t_bad, t_clipped = _t(T, -100), _t(T - 1, 0)
    loss_fn = jax.jit(lambda t: diffusion.ddpm_loss_at(_model, _SCHED, _X, t, _NOISE))
    got, terms = loss_fn(t_bad)
    want, _ = diffusion.ddpm_loss_at(_model, _SCHED, _X, t_clipped, _NOISE)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_array_equal(terms["t"], t_clipped)
    mean, _ = jax.jit(lambda t: diffusion.q_mean_std(_SCHED, _X + 1.0, t))(_t(10**6, -1))
    want_mean, _ = diffusion.q_mean_std(_SCHED, _X + 1.0, t_clipped)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-6)


def test_traced_dsm_times_are_mapped_into_range_nan_free():
    """Under jit t > T becomes T and t <= 0 becomes eps * T (documented), never NaN."""
    loss_fn = jax.jit(
        lambda t: sde.dsm_loss_at(_model, _VP, _X, t, _NOISE, weighting="likelihood")[0]
    )
    got = loss_fn(jnp.array([1.5, -1.0]))
    assert np.all(np.isfinite(got))
    eps = float(jnp.finfo(jnp.float32).eps)
    want, _ = sde.dsm_loss_at(
        _model, _VP, _X, jnp.array([1.0, eps]), _NOISE, weighting="likelihood"
    )
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_on_support_data_and_traced_values_pass():
    """The support checks accept what they should (grid data in float32, 0/1, bool masks)."""
    levels = jnp.arange(256, dtype=jnp.float32).reshape(1, 256)
    x = levels * (2.0 / 255.0) - 1.0
    out = jnp.zeros((1, 512), jnp.float32)
    assert np.isfinite(vae.log_likelihood("discretized_logistic", out, x, num_levels=256)).all()
    assert np.isfinite(_bernoulli([0.0, 1.0])()).all()
    traced = jax.jit(lambda x: vae.log_likelihood("bernoulli", jnp.zeros_like(x), x))
    assert np.isfinite(traced(jnp.full((1, 2), 0.5))).all()  # not checked under jit
    mask = jnp.array([[True, False, True]])
    assert np.isfinite(ar.token_cross_entropy(_SEQ_LOGITS, _SEQ_TARGETS, mask=mask)[0]).all()
