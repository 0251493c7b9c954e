"""The recipe protocol: the interface between a model family and the training engine.

A recipe owns a family's networks and wires them to its pure losses and samplers. The
engine only ever calls these methods, so every family trains, checkpoints, logs and
samples the same way. A recipe also *declares* what the floors around it need to know,
so neither the engine nor the command line names a family:

* ``samplers``: the names ``sample(sampler=...)`` accepts (``()``: one fixed sampler);
* ``sample_options``: the keyword options of ``sample`` a user may set from the command
  line, a subset of ``SAMPLE_OPTIONS`` (``sampler``, ``num_steps``, ``eta``,
  ``temperature``, and the guidance options of conditional diffusion models:
  ``guidance_scale`` and ``guidance_rescale``, which may be traced arrays,
  ``guidance_interval`` ``(low, high)`` in EDM noise level, and ``classifier``, a pair
  ``(log_prob_fn, classifier_params)`` with ``log_prob_fn(classifier_params, x, t, labels)``
  for classifier guidance; ``augmentation_level`` of super-resolution models, the
  noise-conditioning augmentation level of their low-resolution condition; ``top_k``,
  ``top_p`` and ``text`` (a caption) of token priors);
* ``eval_time_fields``: model-config fields that may change after training (a sampler,
  its steps, likelihood tolerances): ``jaxgen.run.load_run`` accepts ``model.<field>``
  overrides for these and ``eval.*``, nothing else;
* ``init_batch_size``: > 0 when ``init_params`` needs that many training examples
  (data-dependent initialisation); the run floor passes them as an argument of the jitted
  initialisation, never read from disk inside it;
* ``sample_condition_split``: a held-out split ``sample`` is conditioned on (image-to-
  image models); the run floor loads it and passes ``condition=``.
* ``generative``: False for a recipe that does not sample (a noise-aware classifier):
  the run floor draws no sample grid or sample-quality score for it;
* ``evaluate_labels``: True when ``evaluate`` needs the held-out labels: the run floor
  then calls ``evaluate(params, images, key, labels=...)`` with the split's ``label``
  column (noise-aware classifiers).

Methods:

* ``init_params(key, init_batch=None)``: parameters as a plain nested dict (pure; the
  engine jits it with output shardings and plans shapes with ``jax.eval_shape``).
* ``loss(params, batch, key)``: ``batch[self.data_key]`` holds the data; returns the
  per-example loss (B,) and a dict of named per-example terms; the engine's step averages
  and differentiates it.
* ``training_loss(params, batch, key, step)``: what the engine calls; by default ``loss``
  plus no state updates. Families with a schedule over steps (KL warm-up) or non-gradient
  state (``state_collections``: EMA codebooks, running statistics) override it and return
  ``(per_example, terms, state_updates)``.
* ``sample(params, key, num_samples, *, first_index=0, condition=None, **options)``: a
  :class:`jaxgen.core.SamplerOutput`. Example ``i`` of the result is example
  ``first_index + i`` of the draw: its randomness comes only from
  ``core.example_keys(key, num_samples, start=first_index)[i]``, so a draw does not depend
  on the batch size or the number of devices (``first_index`` may be traced,
  ``num_samples`` is static).
* ``evaluate(params, images, key)``: host-level evaluation numbers (bits/dim, scores).
* ``figures(params, images, key)``: named (H, W, C) uint8 pictures for ``jaxgen eval``.

How a step trains is also the recipe's to say, through the engine's step builders:

* ``make_optimizer(num_steps)``: one optax optimizer from ``config.optim`` (default), or
  one per player, ``{name: optimizer}`` over top-level parameter entries (GANs);
* ``make_train_step(tx)``: the uncompiled ``step(state, batch) -> (state, metrics)``; the
  default is the single-objective :func:`jaxgen.engine.step.make_train_step` over
  ``training_loss``, GANs use :mod:`jaxgen.engine.adversarial_step`; both take
  ``compute_dtype=config.train.compute_dtype`` (mixed precision: networks built with
  ``jaxgen.nets.precision.merge`` compute in it while the step is traced);
* ``minibatches_per_step``: how many minibatches of ``data.batch_size`` one step consumes
  (``k`` discriminator minibatches for GANs; 1 by default).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import numpy as np

from jaxgen.config import ConfigError, ExperimentConfig
from jaxgen.core.sampling import SamplerOutput
from jaxgen.engine import distributed, sharding
from jaxgen.engine.optimizer import make_optimizer
from jaxgen.engine.state import TrainState
from jaxgen.engine.step import Optimizer, make_train_step

# The sample options a recipe may declare in ``sample_options`` (what a user can set).
SAMPLE_OPTIONS: tuple[str, ...] = (
    "sampler",
    "num_steps",
    "eta",
    "temperature",
    "guidance_scale",
    "guidance_interval",
    "guidance_rescale",
    "classifier",
    "augmentation_level",
    "top_k",
    "top_p",
    "text",
)


class Recipe(abc.ABC):
    """Base class of model-family recipes; see the module docstring."""

    family: ClassVar[str]
    config_class: ClassVar[type]
    state_collections: ClassVar[tuple[str, ...]] = ()
    samplers: ClassVar[tuple[str, ...]] = ()
    sample_options: ClassVar[tuple[str, ...]] = ()
    eval_time_fields: ClassVar[tuple[str, ...]] = ()
    init_batch_size: ClassVar[int] = 0
    sample_condition_split: ClassVar[str | None] = None
    evaluate_labels: ClassVar[bool] = False
    generative: ClassVar[bool] = True

    def __init__(
        self,
        config: ExperimentConfig,
        *,
        data_shape: tuple[int, ...],
        num_levels: int | None,
        data_key: str = "image",
        num_classes: int | None = None,
    ):
        if not isinstance(config.model, self.config_class):
            raise TypeError(
                f"recipe {self.family!r} needs model config {self.config_class.__name__}, "
                f"got {type(config.model).__name__}"
            )
        self.config = config
        self.data_shape = tuple(data_shape)
        self.num_levels = num_levels
        self.data_key = data_key
        self.num_classes = num_classes
        self.setup()

    @abc.abstractmethod
    def setup(self) -> None:
        """Check the family's config and build its networks (``self.config``,
        ``self.data_shape``, ``self.num_levels``, ``self.data_key`` and ``self.num_classes``
        are set); families override this instead of ``__init__``."""

    @abc.abstractmethod
    def init_params(self, key: jax.Array, init_batch: Mapping[str, jax.Array] | None = None) -> Any:
        """Fresh parameters; ``init_batch`` holds ``init_batch_size`` training examples
        (traced under ``jit``) when the recipe asks for them."""

    @abc.abstractmethod
    def loss(
        self, params: Any, batch: dict[str, jax.Array], key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]: ...

    def training_loss(
        self, params: Any, batch: dict[str, jax.Array], key: jax.Array, step: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array], dict[str, Any]]:
        """The engine's objective at ``step``: ``(per_example, terms, state_updates)``."""
        per_example, terms = self.loss(params, batch, key)
        return per_example, terms, {}

    @abc.abstractmethod
    def sample(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Mapping[str, jax.Array] | None = None,
        **options: Any,
    ) -> SamplerOutput: ...

    @classmethod
    def check_sample_options(cls, options: Mapping[str, Any]) -> None:
        """``ConfigError`` (one line) for a sample option the family does not declare in
        ``sample_options``, or a sampler name not in its ``samplers``; every recipe's
        ``sample`` and the run floor call this one check."""
        allowed = tuple(cls.sample_options)
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            has = ", ".join(allowed) if allowed else "none"
            raise ConfigError(
                f"family {cls.family!r} has no sample option {', '.join(unknown)} "
                f"(its sample options: {has})"
            )
        sampler = options.get("sampler")
        if sampler is not None and cls.samplers and sampler not in cls.samplers:
            raise ConfigError(
                f"family {cls.family!r} has no sampler {sampler!r} "
                f"(its samplers: {', '.join(cls.samplers)})"
            )

    @property
    def minibatches_per_step(self) -> int:
        """Minibatches of ``data.batch_size`` examples that one training step consumes."""
        return 1

    def make_optimizer(self, num_steps: int) -> Optimizer:
        """The optimizer(s) of a ``num_steps`` run (default: one, from ``config.optim``)."""
        return make_optimizer(self.config.optim, num_steps)

    def make_train_step(
        self, tx: Optimizer
    ) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
        """The uncompiled training step (default: one objective, ``training_loss``), its
        networks computing in ``config.train.compute_dtype``."""
        return make_train_step(
            self.training_loss,
            tx,
            ema_decay=self.config.optim.ema_decay,
            state_collections=self.state_collections,
            compute_dtype=self.config.train.compute_dtype,
        )

    def evaluate(self, params: Any, images: Any, key: jax.Array) -> dict[str, float]:
        """Evaluation numbers on held-out ``images``; families override this."""
        return {}

    def figures(self, params: Any, images: Any, key: jax.Array) -> dict[str, np.ndarray]:
        """Named (H, W, C) uint8 pictures made from held-out ``images``."""
        return {}


def sample_array(out: Any) -> jax.Array:
    """The samples of what ``Recipe.sample`` returned (a :class:`SamplerOutput`)."""
    if not isinstance(out, SamplerOutput):
        raise TypeError(
            f"Recipe.sample must return a jaxgen.core.SamplerOutput, got {type(out).__name__}"
        )
    return out.samples


def evaluate_in_chunks(
    fn: Callable[[Any, jax.Array, jax.Array], Any],
    params: Any,
    images: Any,
    key: jax.Array,
    *,
    batch_size: int,
) -> Any:
    """``fn(params, chunk, key_i)`` jitted over chunks of ``batch_size`` images split over all
    devices, with per-example outputs concatenated on the host (a pytree of NumPy arrays).

    ``images`` is an array (cast to float32), or a dict of arrays with a common leading axis
    (images with their labels: floating leaves cast to float32, integer leaves kept), chunked
    alike. The last chunk is padded to the same size, so ``fn`` compiles once; its padding
    rows are dropped. Outputs are per example (leading axis = chunk size); scalar outputs are
    repeated for each example."""
    if isinstance(images, Mapping):
        data = {k: _host_array(v) for k, v in images.items()}
    else:
        data = np.asarray(images, np.float32)
    leaves, treedef = jax.tree.flatten(data)
    mesh = sharding.make_mesh()
    jitted = jax.jit(fn)
    chunks = []
    for i, start in enumerate(range(0, len(leaves[0]), batch_size)):
        padded = [
            sharding.pad_to_devices(a[start : start + batch_size], batch_size, mesh) for a in leaves
        ]
        chunk, n = treedef.unflatten([a for a, _ in padded]), padded[0][1]
        out = jitted(params, chunk, jax.random.fold_in(key, i))
        chunks.append(jax.tree.map(lambda a, n=n: _per_example(distributed.to_host(a), n), out))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *chunks)


def _host_array(x: Any) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else x


def nll_summary(nll: Any, num_dims: int) -> dict[str, float]:
    """Mean held-out negative log-likelihood in nats, its standard error, and bits/dim
    (``nats / (D log 2)``) from per-example NLLs."""
    nll = np.asarray(nll, np.float64)
    return {
        "nll_nats": float(nll.mean()),
        "nll_nats_stderr": float(nll.std(ddof=1) / np.sqrt(len(nll))) if len(nll) > 1 else 0.0,
        "bits_per_dim": float(nll.mean() / (num_dims * np.log(2.0))),
        "num_examples": float(len(nll)),
    }


def _per_example(values: np.ndarray, n: int) -> np.ndarray:
    return np.full(n, values) if values.ndim == 0 else values[:n]
