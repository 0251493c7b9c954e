"""Spectral normalization (Miyato et al. 2018, sec. 2.1 and Algorithm 1) as layers.

A spectrally normalized layer uses the kernel ``W / sigma(W)``, where ``sigma(W)`` is the
largest singular value of the kernel reshaped to a matrix ``W`` of shape
``(fan_in, out)`` (a convolution kernel ``(kh, kw, in, out)`` becomes
``(kh * kw * in, out)``, the matrix view of a convolution kernel that the paper
normalizes), so that the layer's Lipschitz constant is (approximately) bounded by one.
Note that this bounds the reshaped kernel, not the convolution's exact operator norm.

``sigma`` is estimated by power iteration with a persistent vector ``u`` of shape ``(out,)``
(the output space of the ``(in, out)`` layout). One step (Algorithm 1) is::

    v  = W u  / ||W u||          (in the input space, (fan_in,))
    u' = W^T v / ||W^T v||       (back in the output space, (out,))
    sigma = v^T W u'

with ``u'`` and ``v`` treated as constants (``stop_gradient``), so the gradient of
``sigma`` with respect to ``W`` is ``v u'^T`` and the layer's gradient is that of
``x @ (W / (v^T W u'))`` (the gradient analysed in Miyato et al. 2018, sec. 2.2). Across
training steps ``u'`` is carried forward (Algorithm 1 runs one iteration per update), so
the estimate converges as the weights move slowly.

Unlike ``nnx.SpectralNorm`` (which writes the normalized kernel over the wrapped layer's
kernel), these layers never change the kernel ``nnx.Param``: each call computes
``W / sigma`` afresh. The power-iteration vector is a ``SpectralVector`` variable, not a
``Param``: the optimizer must not update it; a training step that calls the layer with
``update_stats=True`` gets the new ``u`` back in the module state and persists it, e.g.
``graphdef, params, stats = nnx.split(module, nnx.Param, SpectralVector)``, or after the
call ``nnx.to_pure_dict(nnx.state(module, SpectralVector))``. ``u`` gets a zero gradient
(it is only used under ``stop_gradient``); ``u'`` is written with ``Variable.set_value``,
which replaces the held array rather than writing into it (``variable[...] = value``
would write in place into a NumPy array passed in through ``nnx.merge``).

Reference:
  Miyato, Kataoka, Koyama, Yoshida. Spectral Normalization for Generative Adversarial
  Networks. ICLR 2018.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    "SpectralConv",
    "SpectralConvTranspose",
    "SpectralLinear",
    "SpectralVector",
    "normalized_kernel",
    "spectral_norm_estimate",
]

_NORM_EPS = 1e-12
DEFAULT_KERNEL_INIT = nnx.initializers.lecun_normal()  # as nnx.Linear and nnx.Conv
_CONV_DIMS = ("NHWC", "HWIO", "NHWC")

Padding = str | Sequence[tuple[int, int]]


class SpectralVector(nnx.Variable):
    """The persistent power-iteration vector ``u`` of a spectrally normalized layer.

    Not an ``nnx.Param``: it receives no gradient update; the layer overwrites it with the
    next power-iteration iterate when called with ``update_stats=True``.
    """


def _l2_normalize(x: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x), _NORM_EPS**2))


def spectral_norm_estimate(
    w2d: jax.Array, u: jax.Array, *, num_iterations: int = 1
) -> tuple[jax.Array, jax.Array]:
    """Power-iteration estimate of the largest singular value of ``w2d`` (in, out).

    Runs ``num_iterations`` steps ``v = normalize(W u)``, ``u = normalize(W^T v)`` from
    ``u`` (out,) and returns ``(sigma, new_u)`` with ``sigma = v^T W new_u``. Gradients flow
    to ``w2d`` only through the last formula (``v`` and ``new_u`` are constants).
    """
    w2d = jnp.asarray(w2d)
    u = jnp.asarray(u)
    if w2d.ndim != 2:
        raise ValueError(f"w2d must be a matrix (in, out), got shape {w2d.shape}")
    if u.shape != (w2d.shape[1],):
        raise ValueError(f"u must have shape ({w2d.shape[1]},) for w2d {w2d.shape}, got {u.shape}")
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
    w_const = jax.lax.stop_gradient(w2d)
    u = jax.lax.stop_gradient(u)
    v = u  # overwritten below (num_iterations >= 1)
    for _ in range(num_iterations):
        v = _l2_normalize(w_const @ u)
        u = _l2_normalize(w_const.T @ v)
    sigma = jnp.dot(v, w2d @ u)
    return sigma, u


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(k, int) for k in value):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return value


def _padding(padding: Padding) -> str | tuple[tuple[int, int], ...]:
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID' or pairs, got {padding!r}")
        return padding
    pads = tuple((int(a), int(b)) for a, b in padding)
    if len(pads) != 2:
        raise ValueError(f"padding needs one (low, high) pair per spatial axis, got {padding!r}")
    return pads


class _SpectralLayer(nnx.Module):
    """Holds ``kernel`` (Param), ``bias`` (Param or None) and ``u`` (SpectralVector)."""

    def _init_params(
        self,
        kernel_shape: tuple[int, ...],
        out_features: int,
        *,
        use_bias: bool,
        num_iterations: int,
        kernel_init: nnx.Initializer,
        rngs: nnx.Rngs,
    ) -> None:
        if num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
        self.num_iterations = num_iterations
        self.kernel = nnx.Param(kernel_init(rngs.params(), kernel_shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None
        u0 = jax.random.normal(rngs.params(), (out_features,), jnp.float32)
        self.u = SpectralVector(_l2_normalize(u0))

    def _normalized_kernel(self, update_stats: bool) -> jax.Array:
        kernel = self.kernel[...]
        sigma, new_u = spectral_norm_estimate(
            kernel.reshape(-1, kernel.shape[-1]), self.u[...], num_iterations=self.num_iterations
        )
        if update_stats:
            self.u.set_value(new_u)  # replaces (never writes into) the array held
        return kernel / sigma

    def _add_bias(self, y: jax.Array) -> jax.Array:
        if self.bias is None:
            return y
        return y + self.bias[...].reshape((1,) * (y.ndim - 1) + (-1,))


def normalized_kernel(layer: _SpectralLayer, *, update_stats: bool = False) -> jax.Array:
    """The kernel ``W / sigma`` a spectrally normalized ``layer`` would use on its next call.

    With ``update_stats`` the power-iteration vector is advanced, as a call would.
    """
    if not isinstance(layer, _SpectralLayer):
        raise ValueError(f"expected a spectrally normalized layer, got {type(layer).__name__}")
    return layer._normalized_kernel(update_stats)


class SpectralLinear(_SpectralLayer):
    """``x @ (W / sigma(W)) + b`` with ``W`` of shape (in_features, out_features)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        num_iterations: int = 1,
        kernel_init: nnx.Initializer = DEFAULT_KERNEL_INIT,
        rngs: nnx.Rngs,
    ):
        self.in_features = in_features
        self._init_params(
            (in_features, out_features),
            out_features,
            use_bias=use_bias,
            num_iterations=num_iterations,
            kernel_init=kernel_init,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, *, update_stats: bool = True) -> jax.Array:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"SpectralLinear expects (..., {self.in_features}), got {x.shape}")
        return self._add_bias(x @ self._normalized_kernel(update_stats))


def _check_image(x: jax.Array, layer: nnx.Module) -> None:
    if x.ndim != 4 or x.shape[-1] != layer.in_features:
        raise ValueError(
            f"{type(layer).__name__} expects (B, H, W, {layer.in_features}), got {x.shape}"
        )


class SpectralConv(_SpectralLayer):
    """A 2-D convolution (NHWC, kernel (kh, kw, in, out) as ``nnx.Conv``) with ``W / sigma``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        *,
        strides: int | Sequence[int] = 1,
        padding: Padding = "SAME",
        use_bias: bool = True,
        num_iterations: int = 1,
        kernel_init: nnx.Initializer = DEFAULT_KERNEL_INIT,
        rngs: nnx.Rngs,
    ):
        self.in_features = in_features
        self.strides = _pair(strides, "strides")
        self.padding = _padding(padding)
        kh, kw = _pair(kernel_size, "kernel_size")
        self._init_params(
            (kh, kw, in_features, out_features),
            out_features,
            use_bias=use_bias,
            num_iterations=num_iterations,
            kernel_init=kernel_init,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, *, update_stats: bool = True) -> jax.Array:
        _check_image(x, self)
        kernel = self._normalized_kernel(update_stats)
        y = jax.lax.conv_general_dilated(
            x.astype(kernel.dtype),  # lax does not promote (a bf16 input, an f32 kernel)
            kernel,
            window_strides=self.strides,
            padding=self.padding,
            dimension_numbers=_CONV_DIMS,
        )
        return self._add_bias(y)


class SpectralConvTranspose(SpectralConv):
    """A 2-D transposed convolution (as ``nnx.ConvTranspose``, kernel (kh, kw, in, out));
    the constructor is :class:`SpectralConv`'s."""

    def __call__(self, x: jax.Array, *, update_stats: bool = True) -> jax.Array:
        _check_image(x, self)
        kernel = self._normalized_kernel(update_stats)
        y = jax.lax.conv_transpose(
            x.astype(kernel.dtype),
            kernel,
            self.strides,
            self.padding,
            dimension_numbers=_CONV_DIMS,
        )
        return self._add_bias(y)
