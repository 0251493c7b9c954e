"""The condition of a conditional network: class labels with a learned null label, and a
general embedding vector with a learned null vector (classifier-free guidance).

Classifier-free guidance (Ho and Salimans 2022) trains one network both conditionally and
unconditionally: with probability ``p_uncond`` the condition of a training example is
replaced by a *null* condition, and at sampling time ``eps(x, null)`` is the unconditional
model. :class:`ConditionEmbedding` gives that null condition a learned embedding:

* class labels ``y in {0 .. K - 1}`` index a table of ``K + 1`` rows, the last one being the
  learned null class; the label ``NULL_LABEL = -1`` selects it (Ho and Salimans 2022,
  Sec. 3.2; Dhariwal and Nichol 2021 add the class embedding to the timestep embedding);
* an embedding vector ``e in R^D`` (a token or text encoder's output) goes through a
  two-layer MLP ``W_2 SiLU(W_1 e + b_1) + b_2``; where ``keep`` is False the learned null
  vector ``e_null in R^D`` replaces ``e`` (the learned null text embedding of Imagen,
  Saharia et al. 2022, Sec. 2.3).

The module's output is the sum of the parts present, ``E[y] + MLP(keep ? e : e_null)``, of
width ``out_features``; a network adds it to its timestep embedding.

References:
  Ho and Salimans, "Classifier-free diffusion guidance", 2022.
  Dhariwal and Nichol, "Diffusion models beat GANs on image synthesis", NeurIPS 2021.
  Saharia et al., "Photorealistic text-to-image diffusion models with deep language
  understanding" (Imagen), NeurIPS 2022.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgen.core.validation import is_concrete

__all__ = ["NULL_LABEL", "ConditionEmbedding", "check_labels"]

# The label meaning "no condition". Equal to jaxgen.guidance.NULL_LABEL (defined here too so
# that the networks do not depend on the guidance package).
NULL_LABEL = -1

_DENSE_INIT = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def check_labels(labels: jax.Array, num_classes: int, *, name: str = "labels") -> jax.Array:
    """Check class labels against ``{NULL_LABEL} U [0, num_classes)`` and return them.

    The labels must be an integer array of shape ``(B,)``. Concrete labels outside
    ``[-1, num_classes)`` raise ``ValueError`` naming the offending values; traced labels
    are not checked here (see :meth:`ConditionEmbedding.label_rows` for what they select).
    """
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"{name} must be integer class labels of shape (B,), "
            f"got shape {labels.shape} dtype {labels.dtype}"
        )
    if is_concrete(labels) and labels.size:
        values = np.asarray(labels)
        bad = np.unique(values[(values < NULL_LABEL) | (values >= num_classes)])
        if bad.size:
            raise ValueError(
                f"{name} must lie in [-1, num_classes) = [-1, {num_classes}) (-1 = NULL_LABEL, "
                f"no condition), got {bad.tolist()}"
            )
    return labels


class ConditionEmbedding(nnx.Module):
    """The embedding ``E[y] + MLP(keep ? e : e_null)`` of a condition (see the module doc).

    Args:
      out_features: width of the output (the network's timestep-embedding width).
      num_classes: number of classes ``K`` *without* the null class; the table has ``K + 1``
        rows, row ``K`` being the learned null class. 0: no label input.
      embedding_dim: width ``D`` of the embedding input; 0: no embedding input.
      rngs: used for parameter initialisation only (not stored).

    At least one of ``num_classes`` and ``embedding_dim`` must be positive. Parameters:
    ``label_embed`` (an ``nnx.Embed`` of ``K + 1`` rows), ``embedding_dense0`` /
    ``embedding_dense1`` and ``null_embedding`` (shape ``(D,)``), each only when used.
    """

    def __init__(
        self,
        out_features: int,
        *,
        num_classes: int = 0,
        embedding_dim: int = 0,
        rngs: nnx.Rngs,
    ):
        for name, value, minimum in (
            ("out_features", out_features, 1),
            ("num_classes", num_classes, 0),
            ("embedding_dim", embedding_dim, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(
                    f"ConditionEmbedding.{name} must be an integer >= {minimum}, got {value!r}"
                )
        if num_classes == 0 and embedding_dim == 0:
            raise ValueError(
                "ConditionEmbedding needs num_classes > 0 or embedding_dim > 0, got both 0"
            )
        self.out_features = out_features
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.label_embed = (
            nnx.Embed(num_classes + 1, out_features, rngs=rngs) if num_classes else None
        )
        if embedding_dim:
            self.embedding_dense0 = nnx.Linear(
                embedding_dim, out_features, kernel_init=_DENSE_INIT, rngs=rngs
            )
            self.embedding_dense1 = nnx.Linear(
                out_features, out_features, kernel_init=_DENSE_INIT, rngs=rngs
            )
            self.null_embedding = nnx.Param(
                nnx.initializers.normal(1.0)(rngs.params(), (embedding_dim,), jnp.float32)
            )

    def label_rows(self, labels: jax.Array) -> jax.Array:
        """The table row of each label: ``y`` for ``0 <= y < K``, ``K`` (the null row) for
        ``y = -1``. Under ``jit``, where values cannot be checked, every label outside
        ``[0, K)`` selects the null row (no NaN, no wrap-around)."""
        k = self.num_classes
        return jnp.where((labels >= 0) & (labels < k), labels, k)

    def check(
        self,
        labels: jax.Array | None = None,
        embedding: jax.Array | None = None,
        embedding_keep: jax.Array | None = None,
        *,
        batch_size: int | None = None,
    ) -> int:
        """Check the inputs (``ValueError`` naming the bad one) and return the batch size."""
        sizes = {}
        if self.num_classes:
            if labels is None:
                raise ValueError(
                    f"this network is class-conditional (num_classes = {self.num_classes}); "
                    f"pass labels y (use {NULL_LABEL} for no condition)"
                )
            sizes["y"] = check_labels(labels, self.num_classes, name="labels y").shape[0]
        elif labels is not None:
            raise ValueError("this network takes no class labels (num_classes = 0) but y was given")
        if self.embedding_dim:
            if embedding is None:
                raise ValueError(
                    f"this network is conditioned on an embedding (embedding_dim = "
                    f"{self.embedding_dim}); pass embedding (and embedding_keep=False rows "
                    f"for no condition)"
                )
            embedding = jnp.asarray(embedding)
            if embedding.ndim != 2 or embedding.shape[1] != self.embedding_dim:
                raise ValueError(
                    f"embedding must have shape (B, {self.embedding_dim}), got {embedding.shape}"
                )
            if not jnp.issubdtype(embedding.dtype, jnp.floating):
                raise ValueError(f"embedding must be float, got dtype {embedding.dtype}")
            sizes["embedding"] = embedding.shape[0]
            if embedding_keep is not None:
                keep = jnp.asarray(embedding_keep)
                if keep.ndim != 1 or keep.dtype != jnp.bool_:
                    raise ValueError(
                        f"embedding_keep must be a bool array of shape (B,), "
                        f"got shape {keep.shape} dtype {keep.dtype}"
                    )
                sizes["embedding_keep"] = keep.shape[0]
        elif embedding is not None or embedding_keep is not None:
            raise ValueError(
                "this network takes no embedding (embedding_dim = 0) but embedding or "
                "embedding_keep was given"
            )
        if batch_size is not None:
            sizes = {"x": batch_size, **sizes}
        if len(set(sizes.values())) > 1:
            raise ValueError(
                "the condition's batch sizes disagree: "
                + ", ".join(f"{name} has {size}" for name, size in sizes.items())
            )
        return next(iter(sizes.values()))

    def __call__(
        self,
        labels: jax.Array | None = None,
        embedding: jax.Array | None = None,
        embedding_keep: jax.Array | None = None,
        *,
        batch_size: int | None = None,
    ) -> jax.Array:
        """The condition embedding ``E[row(y)] + MLP(where(keep, e, e_null))``.

        Args:
          labels: ``(B,)`` integer labels in ``[-1, num_classes)``, ``-1`` = null; required
            iff ``num_classes > 0``.
          embedding: ``(B, embedding_dim)`` float; required iff ``embedding_dim > 0``.
          embedding_keep: ``(B,)`` bool; where False the learned null vector replaces the
            example's embedding. ``None``: keep every embedding.
          batch_size: if given, the inputs' batch size must equal it.

        Returns:
          An array of shape ``(B, out_features)``, float32.
        """
        self.check(labels, embedding, embedding_keep, batch_size=batch_size)
        out = 0.0
        if self.label_embed is not None:
            out = out + self.label_embed(self.label_rows(jnp.asarray(labels)))
        if self.embedding_dim:
            e = jnp.asarray(embedding, jnp.float32)
            if embedding_keep is not None:
                null = self.null_embedding[...].astype(e.dtype)
                e = jnp.where(jnp.asarray(embedding_keep)[:, None], e, null[None, :])
            out = out + self.embedding_dense1(jax.nn.silu(self.embedding_dense0(e)))
        return out
