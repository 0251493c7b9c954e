"""Causal masks for PixelCNN convolutions (van den Oord, Kalchbrenner, Kavukcuoglu 2016a).

An image ``x`` of shape (H, W, C) is modelled in raster order, row by row, left to right,
and within a pixel channel by channel (R before G before B; sec. 2.1, eq. 2)::

    p(x) = prod_{i, j} prod_c p(x[i, j, c] | x[< (i, j)], x[i, j, < c]).

A convolution keeps this order when its kernel ``K`` (kh, kw, in, out), centred at
``(kh // 2, kw // 2)``, is multiplied by a fixed 0/1 mask ``M`` (sec. 3.4, fig. 2):

* taps in the rows above the centre: 1;
* taps in the centre row left of the centre: 1;
* taps right of the centre in the centre row, and every tap below it: 0;
* the centre tap itself connects colour groups. The ``n`` channels of a feature map are
  split into ``num_colors`` contiguous groups of ``n / num_colors`` channels, group ``g``
  being the features of colour ``g`` (channel ``k`` is in group ``k // (n / num_colors)``).
  Mask A (the first layer, which sees the image itself) connects input group ``g_in`` to
  output group ``g_out`` only if ``g_in < g_out`` (a colour must not see itself); mask B
  (every later layer, whose inputs are already causal features) if ``g_in <= g_out``.

With ``num_colors = 1`` mask A drops the centre tap and mask B keeps it. After one mask-A
layer, any stack of mask-B layers keeps the output at (i, j, colour c) a function of pixels
strictly before (i, j) and of colours < c of (i, j): the receptive field claimed by the
tests. A stack of k x k masks has a *blind spot*: the offsets (di, dj) reachable from the
output satisfy ``dj <= -di`` in the rows above, so a pixel such as (i - 1, j + 2) is never
seen however deep the stack (van den Oord et al. 2016b, sec. 2.2, fig. 1); the gated
PixelCNN's two stacks remove it.

References:
  van den Oord, Kalchbrenner, Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016a.
  van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu. Conditional Image
  Generation with PixelCNN Decoders. NeurIPS 2016b.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MASK_TYPES", "causal_conv_mask", "colour_mask", "kernel_hw"]

MASK_TYPES: tuple[str, ...] = ("A", "B")


def kernel_hw(kernel_size: int | tuple[int, int]) -> tuple[int, int]:
    """``(kh, kw)`` from an int or a pair, both odd and positive (so the centre is a tap)."""
    if isinstance(kernel_size, (int, np.integer)):
        kernel_size = (int(kernel_size), int(kernel_size))
    size = tuple(kernel_size)
    if len(size) != 2 or any(int(k) != k or k < 1 or k % 2 == 0 for k in size):
        raise ValueError(f"kernel_size must be an odd positive int or pair, got {kernel_size!r}.")
    return int(size[0]), int(size[1])


def _check(in_channels: int, out_channels: int, mask_type: str, num_colors: int) -> None:
    if mask_type not in MASK_TYPES:
        raise ValueError(f"unknown mask_type {mask_type!r}; expected one of {MASK_TYPES}.")
    if int(num_colors) != num_colors or num_colors < 1:
        raise ValueError(f"num_colors must be a positive integer, got {num_colors!r}.")
    for name, n in (("in_channels", in_channels), ("out_channels", out_channels)):
        if int(n) != n or n < 1 or n % num_colors:
            raise ValueError(
                f"{name} must be a positive multiple of num_colors={num_colors}, got {n!r}."
            )


def colour_mask(
    in_channels: int, out_channels: int, *, mask_type: str = "A", num_colors: int = 1
) -> np.ndarray:
    """The centre tap's (in, out) float32 0/1 connectivity between colour groups.

    ``M[a, b] = 1`` iff ``g(a) < g(b)`` (mask A) or ``g(a) <= g(b)`` (mask B), with
    ``g(k) = k // (n / num_colors)`` the colour group of channel ``k`` of an ``n``-channel map.
    """
    _check(in_channels, out_channels, mask_type, num_colors)
    g_in = np.arange(in_channels) // (in_channels // num_colors)
    g_out = np.arange(out_channels) // (out_channels // num_colors)
    if mask_type == "A":
        allowed = g_in[:, None] < g_out[None, :]
    else:
        allowed = g_in[:, None] <= g_out[None, :]
    return allowed.astype(np.float32)


def causal_conv_mask(
    kernel_size: int | tuple[int, int],
    in_channels: int,
    out_channels: int,
    *,
    mask_type: str = "A",
    num_colors: int = 1,
) -> np.ndarray:
    """The (kh, kw, in, out) float32 0/1 mask of a PixelCNN convolution (module docstring).

    Args:
      kernel_size: odd ``k`` or ``(kh, kw)``; the centre tap is ``(kh // 2, kw // 2)``.
      in_channels, out_channels: multiples of ``num_colors``.
      mask_type: ``"A"`` (first layer: no centre connection within a colour) or ``"B"``.
      num_colors: the number of colour channels ``C`` of the image.
    """
    kh, kw = kernel_hw(kernel_size)
    centre = colour_mask(in_channels, out_channels, mask_type=mask_type, num_colors=num_colors)
    mask = np.zeros((kh, kw, in_channels, out_channels), np.float32)
    ci, cj = kh // 2, kw // 2
    mask[:ci] = 1.0  # rows above
    mask[ci, :cj] = 1.0  # left of the centre, same row
    mask[ci, cj] = centre
    return mask
