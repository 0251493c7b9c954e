"""The score-SDE recipe's model config, :class:`ScoreSDEConfig`, and its choices (kept apart
from :mod:`jaxgen.recipes.score_sde` so that file stays under the size limit)."""

from __future__ import annotations

import dataclasses

from jaxgen.nets import UNetConfig
from jaxgen.recipes.guidance import GuidanceConfig
from jaxgen.recipes.super_resolution import SuperResolutionConfig

__all__ = ["NOISE_CONDITIONINGS", "SAMPLERS", "ScoreSDEConfig"]

SAMPLERS: tuple[str, ...] = (
    "pc",
    "euler_maruyama",
    "ode_euler",
    "ode_heun",
    "ode_adaptive",
    "dpm_solver",
    "edm",
    "unipc",
)
NOISE_CONDITIONINGS: tuple[str, ...] = ("auto", "time", "log_sigma")


@dataclasses.dataclass(frozen=True)
class ScoreSDEConfig:
    """SDE, objective, network and sampler of a score-based model.

    Attributes:
      unet: the network (DDPM++ / NCSN++ options included).
      sde: ``"vp"``, ``"subvp"`` or ``"ve"``; ``beta_min/beta_max`` (VP, sub-VP) and
        ``sigma_min/sigma_max`` (VE) are its hyperparameters (Song et al.'s defaults).
      parameterization: what the network predicts: score, eps, x0, v or edm.
      weighting: DSM weighting ``sigma2`` (Song et al.), ``likelihood`` (g^2; Song et al.
        2021b) or ``edm`` (Karras et al. 2022); ``importance_sampling`` draws t with density
        proportional to g^2/sigma^2 (likelihood weighting only).
      train_t_min: smallest training time (Song et al. use 1e-5).
      loss_reduction: ``mean`` or ``sum`` of the per-pixel loss (Song et al.'s
        ``reduce_mean``: True for their VP/sub-VP configs, False for VE).
      sigma_data: EDM's data std (only for ``parameterization="edm"``/``weighting="edm"``).
      noise_conditioning: what the network is told about the noise level: ``time``
        (``999 t``, the DDPM timestep scale), ``log_sigma`` (``log(sigma/alpha)``, NCSN++'s
        input for VE), or ``auto`` (time for VP/sub-VP, log_sigma for VE). EDM's
        parameterization always feeds ``c_noise = log(sigma/alpha)/4``.
      sampler: one of :data:`SAMPLERS`; ``sample_steps`` steps (``pc``: predictor
        ``predictor`` + ``num_corrector_steps`` of ``corrector`` with ``snr``);
        ``solver_order`` for ``dpm_solver`` and ``unipc`` (1 to 3); ``spacing`` their time
        grid (:data:`jaxgen.sde.samplers.SPACINGS`); ``unipc_variant`` UniPC's ``B(h)``
        (``bh1``/``bh2``); ``sample_t_min`` None uses the SDE's
        default end time; ``denoise`` ends stochastic samplers with Tweedie's formula.
      likelihood_*: the probability-flow likelihood used by ``jaxgen eval`` (Hutchinson
        ``likelihood_divergence`` with ``likelihood_probes`` probes, diffrax tolerances,
        integration from ``likelihood_t_min`` to T).
      guidance: condition dropout and default guidance of a class-conditional network
        (``unet.num_classes > 0``; ignored otherwise).
    """

    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    sde: str = "vp"
    beta_min: float = 0.1
    beta_max: float = 20.0
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    parameterization: str = "eps"
    weighting: str = "sigma2"
    importance_sampling: bool = False
    train_t_min: float = 1e-5
    loss_reduction: str = "mean"
    sigma_data: float = 0.5
    noise_conditioning: str = "auto"
    sampler: str = "pc"
    sample_steps: int = 1000
    sample_t_min: float | None = None
    predictor: str = "reverse_diffusion"
    corrector: str = "langevin"
    snr: float = 0.16
    num_corrector_steps: int = 1
    solver_order: int = 2
    spacing: str = "log_snr"
    unipc_variant: str = "bh2"
    denoise: bool = True
    likelihood_divergence: str = "rademacher"
    likelihood_probes: int = 1
    likelihood_rtol: float = 1e-5
    likelihood_atol: float = 1e-5
    likelihood_t_min: float = 1e-5
    guidance: GuidanceConfig = dataclasses.field(default_factory=GuidanceConfig)
    super_resolution: SuperResolutionConfig = dataclasses.field(
        default_factory=SuperResolutionConfig
    )
