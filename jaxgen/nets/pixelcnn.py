"""PixelCNN and gated PixelCNN image models (Flax NNX), logits over discrete pixel levels.

Both networks map an image ``x`` (B, H, W, C) to logits (B, H, W, C, L) over its
``L = num_levels`` values, with ``logits[:, i, j, c]`` a function of the pixels before
(i, j) in raster order and of channels < c of (i, j) only (van den Oord et al. 2016a,
sec. 2.1, eq. 2), so that ``log p(x) = sum_{i,j,c} log softmax(logits[:, i, j, c])[x_ijc]``
is an exact log-likelihood (:func:`jaxgen.autoregressive.image_sampling.image_log_prob`).
The input is either integer levels ``0..L-1``, scaled here to ``2 k / (L - 1) - 1``, or
floats already on that grid in ``[-1, 1]`` (the ``jaxgen.data.digits`` format; also what
makes the input differentiable for the receptive-field tests).

Colour channels: every hidden map of ``n`` channels is split into ``C`` contiguous groups,
group ``c`` carrying the features of colour ``c``; the centre tap of each masked kernel only
connects earlier groups (mask A) or earlier-or-same groups (mask B) (``masks.py``,
2016a sec. 3.4). The output's ``C * L`` channels are ``C`` groups of ``L`` logits, reshaped
to (C, L).

``MaskedConv``: a stride-1 ``SAME`` convolution whose kernel is multiplied, in the forward
pass, by :func:`~jaxgen.autoregressive.masks.causal_conv_mask`. The mask is recomputed from
the layer's static configuration (a NumPy constant folded into the trace), not stored, so the
module holds only the ``kernel`` and ``bias`` Params. Masked-out weights stay in the Param
and receive zero gradient. The kernel is initialised LeCun-normal over the full kernel's
fan-in.

``PixelCNN`` (2016a, sec. 3.5, Table 1; residual blocks sec. 3.3, fig. 5)::

    x -> k1 x k1 conv, mask A -> 2h
      -> num_layers x residual block:
           y = y + 1x1_B(relu(k x k_B(relu(1x1_B(relu(y))))))     (2h -> h -> h -> 2h)
      -> relu -> 1x1 conv, mask B -> 2h -> relu -> 1x1 conv, mask B -> C * L logits

with ``2h = hidden_channels`` (k1 = 7, k = 3 by default). A stack of masked k x k
convolutions has a blind spot (``masks.py``): the output at (i, j) never sees, e.g.,
(i - 1, j + 2).

``GatedPixelCNN`` (2016b, sec. 2.1-2.3, fig. 2) removes the blind spot with two stacks of
``p = hidden_channels`` features:

* vertical stack ``v``: a ``(k // 2 + 1) x k`` convolution padded with ``k // 2`` rows on
  top only (and ``k // 2`` columns on each side), so the output at row i sees rows
  ``i - k // 2 .. i`` (all columns ``j - k // 2 .. j + k // 2``). Stacked, ``v`` at row i
  depends on rows ``<= i`` of the image, including pixels right of (i, j) in row i.
* causality by shifting: before ``v`` enters the horizontal stack it is shifted down one
  row (:func:`shift_down`: pad one zero row on top, crop the last row), so what arrives at
  row i comes from rows ``< i`` only. No mask is needed in the vertical stack.
* horizontal stack ``h``: a ``1 x k`` masked convolution (centre row only: the ``k // 2``
  taps left of the centre, plus the centre tap with mask A in the first layer and mask B
  later, colour-grouped), so ``h`` at (i, j) sees (i, <= j) causally. It is a ``1 x k``
  ``MaskedConv`` whose ``k // 2`` right-hand taps are masked out (stored, never used).
* gates (eq. 2): ``y = tanh(W_f * x) * sigmoid(W_g * x)``; one convolution makes ``2p``
  channels and the ``f`` and ``g`` halves are taken inside each colour group (a group's
  ``2p / C`` channels are ``[f part, g part]``), so the gate keeps the groups aligned.
* per layer::

      v_pre = V_conv(v) [+ b_v[y]]
      h_pre = H_conv(h) + link(shift_down(v_pre)) [+ b_h[y]]     (link: 1x1 conv, 2p -> 2p)
      v' = gate(v_pre),  h' = h + 1x1_B(gate(h_pre))              (no residual in layer 1)

  with the residual connection in the horizontal stack only (sec. 2.2).
* class conditioning (sec. 2.3, eq. 4) with a one-hot ``y``:
  ``tanh(W_f * x + V_f^T y) * sigmoid(W_g * x + V_g^T y)``: ``V^T y`` is a learned bias
  vector per class (``b_v[y]``, ``b_h[y]`` above, each (num_classes, 2p), initialised to 0),
  added in both stacks of every layer; the link carries the conditioned ``v_pre``, so the
  class bias acts exactly like a class-dependent bias of the two stacks' convolutions.
* output: ``relu -> 1x1_B (p) -> relu -> 1x1_B (C * L)`` on the final horizontal stack.

The first layer uses ``first_kernel_size`` (default 7), later ones ``kernel_size``
(default 3). With ``R = sum_l k_l // 2`` over the layers, the output at (i, j) sees the
``R`` pixels left of it in row i and every pixel of rows ``i - 1 - R .. i - 1`` within
``R`` columns of j (and nothing at or after (i, j)): no blind spot. The tests check on a
4 x 4 image that three 3 x 3 layers see exactly the earlier entries.

References:
  van den Oord, Kalchbrenner, Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016a.
  van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu. Conditional Image
  Generation with PixelCNN Decoders. NeurIPS 2016b.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgen.autoregressive.masks import causal_conv_mask, kernel_hw
from jaxgen.nets.dcgan import check_labels

__all__ = ["GatedPixelCNN", "MaskedConv", "PixelCNN", "gate", "scale_levels", "shift_down"]

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


@functools.lru_cache(maxsize=256)
def _cached_mask(kernel_size, in_features, out_features, mask_type, num_colors) -> np.ndarray:
    mask = causal_conv_mask(
        kernel_size, in_features, out_features, mask_type=mask_type, num_colors=num_colors
    )
    mask.setflags(write=False)
    return mask


class MaskedConv(nnx.Module):
    """Stride-1 SAME convolution with a causal mask (A or B) applied to its kernel.

    ``dtype``: the computation dtype (None: the inputs' and parameters' common one); set by
    :func:`jaxgen.nets.precision.merge` for mixed precision, like Flax's own layers."""

    dtype: Any = None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | tuple[int, int],
        *,
        mask_type: str = "B",
        num_colors: int = 1,
        use_bias: bool = True,
        rngs: nnx.Rngs,
    ):
        self.kernel_size = kernel_hw(kernel_size)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.mask_type = mask_type
        self.num_colors = int(num_colors)
        self.mask()  # validates every option
        shape = (*self.kernel_size, self.in_features, self.out_features)
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), shape))
        self.bias = nnx.Param(jnp.zeros((self.out_features,), jnp.float32)) if use_bias else None

    def mask(self) -> np.ndarray:
        """The layer's (kh, kw, in, out) 0/1 mask (a constant, rebuilt from the config)."""
        return _cached_mask(
            self.kernel_size, self.in_features, self.out_features, self.mask_type, self.num_colors
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"MaskedConv expects (B, H, W, {self.in_features}) inputs, got shape {x.shape}."
            )
        kernel = self.kernel[...]
        dtype = self.dtype or jnp.result_type(x.dtype, kernel.dtype)
        kernel = kernel.astype(dtype) * jnp.asarray(self.mask(), dtype)
        kh, kw = self.kernel_size
        y = jax.lax.conv_general_dilated(
            x.astype(dtype),
            kernel,
            window_strides=(1, 1),
            padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
            dimension_numbers=_DIMENSION_NUMBERS,
        )
        if self.bias is not None:
            y = y + self.bias[...].astype(dtype).reshape(1, 1, 1, self.out_features)
        return y


def scale_levels(x: jax.Array, num_levels: int) -> jax.Array:
    """Integer levels ``k`` -> ``2 k / (L - 1) - 1`` (float32); float inputs pass unchanged."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.integer):
        return x.astype(jnp.float32) * (2.0 / (num_levels - 1)) - 1.0
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x
    raise ValueError(f"images must be integer levels or floats in [-1, 1], got dtype {x.dtype}.")


def shift_down(x: jax.Array) -> jax.Array:
    """Shift an NHWC map down one row: a zero row on top, the last row cropped.

    ``shift_down(x)[:, i] = x[:, i - 1]`` (zero for ``i = 0``): what a map says about rows
    ``<= i - 1`` arrives at row ``i``.
    """
    return jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def _check_config(
    name: str, image_shape: tuple[int, int, int], num_levels: int, hidden: int, multiple: int
) -> tuple[int, int, int]:
    if len(tuple(image_shape)) != 3 or any(int(s) != s or s < 1 for s in image_shape):
        raise ValueError(f"{name}: image_shape must be (H, W, C) positive ints, got {image_shape}.")
    if int(num_levels) != num_levels or num_levels < 2:
        raise ValueError(f"{name}: num_levels must be an integer >= 2, got {num_levels!r}.")
    if int(hidden) != hidden or hidden < multiple or hidden % multiple:
        raise ValueError(
            f"{name}: hidden_channels must be a positive multiple of {multiple} "
            f"(colour groups of {image_shape[2]} channels), got {hidden!r}."
        )
    return tuple(int(s) for s in image_shape)


def _prepare(name: str, x: jax.Array, image_shape: tuple[int, ...], num_levels: int) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 4 or x.shape[1:] != image_shape:
        raise ValueError(f"{name} expects images of shape (B, *{image_shape}), got {x.shape}.")
    return scale_levels(x, num_levels)


def _to_logits(out: jax.Array, num_levels: int) -> jax.Array:
    b, height, width, cl = out.shape
    return out.reshape(b, height, width, cl // num_levels, num_levels)


class _ResidualBlock(nnx.Module):
    """``y + 1x1_B(relu(kxk_B(relu(1x1_B(relu(y))))))``, 2h -> h -> h -> 2h (2016a fig. 5)."""

    def __init__(self, channels: int, kernel_size: int, num_colors: int, *, rngs: nnx.Rngs):
        half = channels // 2
        conv = functools.partial(MaskedConv, mask_type="B", num_colors=num_colors, rngs=rngs)
        self.reduce = conv(channels, half, 1)
        self.spatial = conv(half, half, kernel_size)
        self.expand = conv(half, channels, 1)

    def __call__(self, y: jax.Array) -> jax.Array:
        h = self.reduce(jax.nn.relu(y))
        h = self.spatial(jax.nn.relu(h))
        return y + self.expand(jax.nn.relu(h))


class PixelCNN(nnx.Module):
    """images (B, H, W, C) -> logits (B, H, W, C, num_levels); see the module docstring."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_levels: int,
        *,
        hidden_channels: int = 64,
        num_layers: int = 7,
        kernel_size: int = 3,
        first_kernel_size: int = 7,
        rngs: nnx.Rngs,
    ):
        self.image_shape = _check_config(
            "PixelCNN", image_shape, num_levels, hidden_channels, 2 * image_shape[2]
        )
        if int(num_layers) != num_layers or num_layers < 0:
            raise ValueError(f"PixelCNN: num_layers must be an integer >= 0, got {num_layers!r}.")
        self.num_levels = int(num_levels)
        colors = self.image_shape[2]
        conv = functools.partial(MaskedConv, num_colors=colors, rngs=rngs)
        self.input_conv = conv(colors, hidden_channels, first_kernel_size, mask_type="A")
        self.blocks = nnx.List(
            [
                _ResidualBlock(hidden_channels, kernel_size, colors, rngs=rngs)
                for _ in range(num_layers)
            ]
        )
        self.output_hidden = conv(hidden_channels, hidden_channels, 1, mask_type="B")
        self.output = conv(hidden_channels, colors * self.num_levels, 1, mask_type="B")

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.input_conv(_prepare("PixelCNN", x, self.image_shape, self.num_levels))
        for block in self.blocks:
            y = block(y)
        y = self.output_hidden(jax.nn.relu(y))
        return _to_logits(self.output(jax.nn.relu(y)), self.num_levels)


def gate(x: jax.Array, num_groups: int = 1) -> jax.Array:
    """``tanh(f) * sigmoid(g)``: (..., 2p) -> (..., p), ``f``/``g`` halves within each group."""
    *lead, two_p = x.shape
    x = x.reshape(*lead, num_groups, 2, two_p // (2 * num_groups))
    out = jnp.tanh(x[..., 0, :]) * jax.nn.sigmoid(x[..., 1, :])
    return out.reshape(*lead, two_p // 2)


class _GatedLayer(nnx.Module):
    """One gated layer: vertical and horizontal stacks, link, gates, class biases."""

    def __init__(
        self,
        in_features: int,
        channels: int,
        kernel_size: int,
        *,
        first: bool,
        num_colors: int,
        num_classes: int,
        rngs: nnx.Rngs,
    ):
        k = kernel_hw(kernel_size)[0]
        n = k // 2
        self.first = first
        self.num_colors = num_colors
        self.vertical = nnx.Conv(
            in_features, 2 * channels, (n + 1, k), padding=((n, 0), (n, n)), rngs=rngs
        )
        self.horizontal = MaskedConv(
            in_features,
            2 * channels,
            (1, k),
            mask_type="A" if first else "B",
            num_colors=num_colors,
            rngs=rngs,
        )
        self.link = nnx.Conv(2 * channels, 2 * channels, (1, 1), rngs=rngs)
        self.horizontal_out = MaskedConv(
            channels, channels, 1, mask_type="B", num_colors=num_colors, rngs=rngs
        )
        if num_classes:
            self.vertical_class_bias = nnx.Param(jnp.zeros((num_classes, 2 * channels)))
            self.horizontal_class_bias = nnx.Param(jnp.zeros((num_classes, 2 * channels)))
        else:
            self.vertical_class_bias = self.horizontal_class_bias = None

    def __call__(
        self, v: jax.Array, h: jax.Array, onehot: jax.Array | None
    ) -> tuple[jax.Array, jax.Array]:
        v_pre = self.vertical(v)
        if onehot is not None:
            v_bias = onehot.astype(v_pre.dtype) @ self.vertical_class_bias[...]
            v_pre = v_pre + v_bias[:, None, None, :]
        h_pre = self.horizontal(h) + self.link(shift_down(v_pre))
        if onehot is not None:
            h_bias = onehot.astype(h_pre.dtype) @ self.horizontal_class_bias[...]
            h_pre = h_pre + h_bias[:, None, None, :]
        v_new = gate(v_pre)
        h_new = self.horizontal_out(gate(h_pre, self.num_colors))
        if not self.first:
            h_new = h + h_new
        return v_new, h_new


class GatedPixelCNN(nnx.Module):
    """images (B, H, W, C) [and labels (B,)] -> logits (B, H, W, C, num_levels).

    ``num_layers`` gated layers (the first with ``first_kernel_size`` and the horizontal
    stack's mask A), ``hidden_channels`` features per stack; see the module docstring.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_levels: int,
        *,
        hidden_channels: int = 64,
        num_layers: int = 8,
        num_classes: int = 0,
        kernel_size: int = 3,
        first_kernel_size: int = 7,
        rngs: nnx.Rngs,
    ):
        self.image_shape = _check_config(
            "GatedPixelCNN", image_shape, num_levels, hidden_channels, image_shape[2]
        )
        if int(num_layers) != num_layers or num_layers < 1:
            raise ValueError(
                f"GatedPixelCNN: num_layers must be an integer >= 1, got {num_layers!r}."
            )
        if int(num_classes) != num_classes or num_classes < 0:
            raise ValueError(f"GatedPixelCNN: num_classes must be >= 0, got {num_classes!r}.")
        for size in (kernel_size, first_kernel_size):
            if not isinstance(size, (int, np.integer)):
                raise ValueError(f"GatedPixelCNN: kernel sizes must be odd ints, got {size!r}.")
            kernel_hw(size)
        self.num_levels = int(num_levels)
        self.num_classes = int(num_classes)
        colors = self.image_shape[2]
        self.layers = nnx.List(
            [
                _GatedLayer(
                    colors if i == 0 else hidden_channels,
                    hidden_channels,
                    first_kernel_size if i == 0 else kernel_size,
                    first=i == 0,
                    num_colors=colors,
                    num_classes=self.num_classes,
                    rngs=rngs,
                )
                for i in range(num_layers)
            ]
        )
        conv = functools.partial(MaskedConv, mask_type="B", num_colors=colors, rngs=rngs)
        self.output_hidden = conv(hidden_channels, hidden_channels, 1)
        self.output = conv(hidden_channels, colors * self.num_levels, 1)

    def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        x = _prepare("GatedPixelCNN", x, self.image_shape, self.num_levels)
        onehot = check_labels(labels, self.num_classes, x.shape[0], "GatedPixelCNN")
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, onehot)
        y = self.output_hidden(jax.nn.relu(h))
        return _to_logits(self.output(jax.nn.relu(y)), self.num_levels)
