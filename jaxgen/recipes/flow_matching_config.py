"""The model config of the flow-matching recipe (:mod:`jaxgen.recipes.flow_matching`) and its
checks, kept apart so the recipe file stays short.

**Convention: data at t = 0, source at t = 1** (:mod:`jaxgen.flow_matching`): the path is
``x_t = alpha(t) x_data + sigma(t) x_source`` and samples integrate ``dx/dt = u(x, t)`` from
the source at ``t = 1`` down to the data at ``t = 0``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from jaxgen import flow_matching as fm
from jaxgen.config import ConfigError
from jaxgen.nets import UNetConfig
from jaxgen.recipes.base import check_choice
from jaxgen.recipes.guidance import GuidanceConfig
from jaxgen.recipes.super_resolution import SuperResolutionConfig

SAMPLERS: tuple[str, ...] = (
    "euler",
    "midpoint",
    "heun",
    "rk4",
    "adaptive",
    "dpm_solver",
    "edm",
    "unipc",
)
GAUSSIAN_ONLY_SAMPLERS: tuple[str, ...] = ("dpm_solver", "edm", "unipc")
COUPLINGS: tuple[str, ...] = ("independent", "ot_exact", "ot_sinkhorn", "paired")
PARAMETERIZATIONS: tuple[str, ...] = ("velocity", "x0", "eps")
OBJECTIVES: tuple[str, ...] = ("flow_matching", "distill")
GAUSSIAN = "gaussian"


@dataclasses.dataclass(frozen=True)
class FlowMatchingConfig:
    """Network, probability path, coupling, source and sampler of a flow-matching model.

    Attributes:
      unet: the U-Net of image data (``(H, W, C)``); ``unet.num_classes = K > 0`` makes the
        model class-conditional (classifier-free guidance through ``guidance``).
      mlp_hidden: hidden widths of the :class:`jaxgen.nets.DenoisingMLP` of flat data
        (``(D,)``, e.g. the 2-D toys); the network is chosen by the data's shape.
      path: ``linear`` (conditional OT ``alpha = 1 - t``, ``sigma = sigma_min + (1 -
        sigma_min) t``; Lipman et al. 2023), ``vp`` (``beta_min``, ``beta_max``) or
        ``cosine`` (``alpha = cos(pi t / 2)``, ``sigma = sin(pi t / 2)``).
      time_sampler: ``uniform`` or ``logit_normal`` (``sigmoid(loc + scale n)``, Esser et
        al. 2024) over ``[train_t_min, 1]``; ``train_t_min`` None is 0 (1e-5 for ``vp``).
      parameterization: what the network predicts: ``velocity`` ``u = alpha' x_data +
        sigma' x_source``, ``x0`` (``x_data``) or ``eps`` (``x_source``), converted to the
        velocity for sampling (:func:`jaxgen.flow_matching.convert_model`).
      coupling: ``independent``, ``ot_exact`` (minibatch assignment, Tong et al. 2024),
        ``ot_sinkhorn`` (entropic, ``sinkhorn_epsilon``) or ``paired`` (pairs given: a
        paired source data set of equal count, or a teacher's pairs).
      source: ``gaussian`` (N(0, I)) or a dataset name (data-to-data transport) of the
        data's shape; ``source_split`` trains, ``source_sample_split`` is sampled from
        (example ``i`` starts at source row ``i mod N``); ``source_class`` /
        ``target_class`` keep one class of the source / the data (labelled data only).
      sampler: one of :data:`SAMPLERS` with ``sample_steps`` steps; ``dpm_solver``,
        ``edm`` and ``unipc`` (its defaults: order 2, bh2, log-SNR grid) sample through
        :class:`jaxgen.flow_matching.PathSDE` (Gaussian source only); ``adaptive`` uses
        ``adaptive_rtol`` / ``adaptive_atol``; ``sample_t_min``
        None ends at 0 (1e-3 for ``vp``).
      likelihood_*: the exact likelihood of ``jaxgen eval`` (Gaussian source): Hutchinson
        ``likelihood_divergence`` with ``likelihood_probes`` probes, tolerances, and
        ``likelihood_t_min`` None as ``sample_t_min``.
      guidance: condition dropout and default guidance (class-conditional U-Net only).
      teacher_workdir: a trained flow-matching run whose (source, sample) pairs are the
        training data (reflow, Liu et al. 2023): ``num_pairs`` pairs drawn with the
        teacher's sampler (or ``teacher_sampler`` / ``teacher_steps``), cached in
        ``<workdir>/teacher_pairs.npz``; the coupling must be ``paired``.
      objective: ``flow_matching`` or ``distill`` (one-step student trained at ``t = 1``
        only on teacher pairs, Liu et al. Sec. 2.3; samples with one Euler step).
    """

    RENAMED: ClassVar[dict[str, str]] = {"prediction": "parameterization"}

    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    mlp_hidden: tuple[int, ...] = (256, 256, 256)
    path: str = "linear"
    sigma_min: float = 0.0
    beta_min: float = 0.1
    beta_max: float = 20.0
    time_sampler: str = "uniform"
    logit_normal_loc: float = 0.0
    logit_normal_scale: float = 1.0
    train_t_min: float | None = None
    parameterization: str = "velocity"
    coupling: str = "independent"
    sinkhorn_epsilon: float = 0.05
    source: str = GAUSSIAN
    source_split: str = "train"
    source_sample_split: str = "test"
    source_class: int | None = None
    target_class: int | None = None
    sampler: str = "rk4"
    sample_steps: int = 20
    sample_t_min: float | None = None
    adaptive_rtol: float = 1e-5
    adaptive_atol: float = 1e-5
    likelihood_divergence: str = "rademacher"
    likelihood_probes: int = 1
    likelihood_rtol: float = 1e-5
    likelihood_atol: float = 1e-5
    likelihood_t_min: float | None = None
    guidance: GuidanceConfig = dataclasses.field(default_factory=GuidanceConfig)
    super_resolution: SuperResolutionConfig = dataclasses.field(
        default_factory=SuperResolutionConfig
    )
    teacher_workdir: str | None = None
    num_pairs: int = 10_000
    teacher_sampler: str | None = None
    teacher_steps: int | None = None
    objective: str = "flow_matching"


def check_config(m: FlowMatchingConfig) -> None:
    """``ConfigError`` (one line, naming the value) for a choice outside its list or an
    inconsistent combination."""
    check_choice("model.path", m.path, tuple(fm.PATHS))
    check_choice("model.time_sampler", m.time_sampler, fm.TIME_SAMPLERS)
    check_choice("model.parameterization", m.parameterization, PARAMETERIZATIONS)
    check_choice("model.coupling", m.coupling, COUPLINGS)
    check_choice("model.sampler", m.sampler, SAMPLERS)
    check_choice("model.objective", m.objective, OBJECTIVES)
    if m.teacher_sampler is not None:
        check_choice("model.teacher_sampler", m.teacher_sampler, SAMPLERS)
    for name in ("sample_steps", "num_pairs", "likelihood_probes"):
        value = getattr(m, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model.{name} must be an integer >= 1, got {value!r}")
    if m.teacher_steps is not None and (
        isinstance(m.teacher_steps, bool)
        or not isinstance(m.teacher_steps, int)
        or m.teacher_steps < 1
    ):
        raise ConfigError(f"model.teacher_steps must be an integer >= 1, got {m.teacher_steps!r}")
    for name in ("train_t_min", "sample_t_min", "likelihood_t_min"):
        value = getattr(m, name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1
        ):
            raise ConfigError(f"model.{name} must be a time in [0, 1) or None, got {value!r}")
    if m.source != GAUSSIAN and m.sampler in GAUSSIAN_ONLY_SAMPLERS:
        raise ConfigError(
            f"model.sampler={m.sampler!r} samples through the Gaussian-path SDE and needs "
            f"model.source='gaussian', got source {m.source!r}"
        )
    if m.teacher_workdir is not None:
        if m.coupling != "paired":
            raise ConfigError(
                f"model.teacher_workdir={m.teacher_workdir!r} trains on the teacher's pairs: "
                f"model.coupling must be 'paired', got {m.coupling!r}"
            )
        if m.source != GAUSSIAN:
            raise ConfigError(
                f"model.teacher_workdir: the teacher's source is used; model.source must be "
                f"'gaussian', got {m.source!r}"
            )
    elif m.objective == "distill":
        raise ConfigError(
            "model.objective='distill' trains a one-step student on a teacher's pairs: set "
            "model.teacher_workdir"
        )
    elif m.coupling == "paired" and m.source == GAUSSIAN:
        raise ConfigError(
            "model.coupling='paired' needs given pairs: a source data set (model.source) of "
            "the same count as the data, or model.teacher_workdir"
        )
