"""Decoder likelihoods ``p(x | z)`` for VAEs, per example (B,), summed over the event axes.

A decoder network outputs one array ``out`` of shape ``(*x.shape[:-1], m * C)`` where
``C = x.shape[-1]`` (channels / features last) and ``m = num_decoder_params(name)``; the last
axis is split into ``m`` consecutive parts of size ``C``: the first is the location (or the
logits), the second, where present, the log scale. Every log-likelihood below is in nats.

* ``"bernoulli"`` (``m = 1``, Kingma and Welling 2014, appendix C.1), ``x`` in {0, 1},
  ``out = l`` the logits: ``log p(x | z) = sum [x l - softplus(l)]``, which equals
  ``x log sigmoid(l) + (1 - x) log(1 - sigmoid(l))`` without overflow for large ``|l|``.
* ``"gaussian_fixed"`` (``m = 1``), ``out = mu``, a fixed Python-float ``sigma``:
  ``log p = sum [-1/2 ((x - mu) / sigma)^2 - log sigma - 1/2 log 2 pi]``
  (Kingma and Welling 2014, appendix C.2).
* ``"gaussian"`` (``m = 2``), ``out = [mu, log sigma]``, with ``log sigma`` clipped below at
  ``min_log_scale`` (a learned scale can otherwise collapse onto a discrete pixel value).
* ``"discretized_logistic"`` (``m = 2``, Salimans, Karpathy, Chen, Kingma 2017, PixelCNN++,
  eq. 2 with a single mixture component), ``out = [mu, log s]``: the data lie on the grid of
  ``L = num_levels`` values ``x_k = 2 k / (L - 1) - 1``, ``k = 0..L-1``, in ``[-1, 1]``; each
  value owns the bin ``[x - h, x + h]``, ``h = 1 / (L - 1)``, with the bin of ``x = -1``
  extended to ``-inf`` and that of ``x = 1`` to ``+inf``, so the ``L`` probabilities sum to
  one exactly. With ``sigma(u) = 1 / (1 + e^-u)`` the logistic CDF and
  ``a = (x + h - mu) / s``, ``b = (x - h - mu) / s``::

      P(x) = sigma(a) - sigma(b)           (interior bins)
      P(-1) = sigma(a),   P(1) = 1 - sigma(b) = sigma(-b).

  The interior difference is evaluated in log space through the identity
  ``sigma(a) - sigma(b) = sigma(a) sigma(-b) (1 - e^{-(a - b)})``::

      log P(x) = log sigma(a) + log sigma(-b) + log(-expm1(-(a - b))),

  a sum of three non-positive terms (``a - b = 2 h / s > 0``), so there is no cancellation
  and no underflow however small ``P`` is. PixelCNN++ instead forms ``sigma(a) - sigma(b)``
  directly and, where that difference falls below 1e-5, falls back to the midpoint density
  ``log p_logistic(x) + log(2 h)``; with the identity above the exact value stays available
  there, so no fallback is needed (the tests compare both against an mpmath reference).
  Concrete data off the grid (or outside ``[-1, 1]``) raise ``ValueError``; under ``jit`` the
  values cannot be checked, and off-grid data are scored with the bin of width ``2 h``
  centred on them (finite, but not a probability of the model).

Support checks: concrete ``x`` off the support of ``"bernoulli"`` ({0, 1}) or
``"discretized_logistic"`` (the grid) raise ``ValueError`` naming the value; traced ``x``
(under ``jit``) is not checked (Bernoulli then gives the finite, unnormalised
``x l - softplus(l)``).

:func:`decoder_mean` gives the picture in data space (Bernoulli: ``sigmoid(l)``; Gaussians:
``mu``; discretized logistic: ``mu`` clipped to ``[-1, 1]``) and :func:`decoder_sample` one draw
``x ~ p(x | z)`` (discretized logistic: a logistic draw ``mu + s (log u - log(1 - u))``
rounded to the nearest grid value and clipped to ``[-1, 1]``, which has exactly the bin
probabilities above).

References:
  Kingma and Welling. Auto-Encoding Variational Bayes. ICLR 2014 (appendix C).
  Salimans, Karpathy, Chen, Kingma. PixelCNN++: Improving the PixelCNN with Discretized
  Logistic Mixture Likelihood and Other Modifications. ICLR 2017 (eq. 2).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxgen.core.levels import images_to_levels, levels_to_images
from jaxgen.core.sampling import as_example_keys
from jaxgen.core.validation import check_binary, check_choice, check_num_levels, check_on_grid
from jaxgen.vae.gaussian import sum_event

__all__ = [
    "LIKELIHOODS",
    "decoder_mean",
    "decoder_sample",
    "log_likelihood",
    "num_decoder_params",
]

LIKELIHOODS: tuple[str, ...] = ("bernoulli", "gaussian_fixed", "gaussian", "discretized_logistic")
_NUM_PARAMS = {"bernoulli": 1, "gaussian_fixed": 1, "gaussian": 2, "discretized_logistic": 2}
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def num_decoder_params(name: str) -> int:
    """How many parts of size ``C`` the decoder output's last axis holds for ``name``."""
    return _NUM_PARAMS[check_choice("likelihood", name, LIKELIHOODS)]


def _required_levels(num_levels: int | None) -> int:
    """The discretized logistic's ``L`` (:func:`jaxgen.core.validation.check_num_levels`)."""
    if num_levels is None:
        raise ValueError(
            "the discretized_logistic likelihood needs num_levels (an integer >= 2), got None."
        )
    return check_num_levels(num_levels)


def _check_fixed_std(fixed_std: float) -> None:
    if isinstance(fixed_std, (int, float)) and not 0.0 < fixed_std < math.inf:
        raise ValueError(f"fixed_std must be positive, got {fixed_std}.")


def _split(name: str, out: jax.Array, channels: int | None = None) -> list[jax.Array]:
    """Split ``out``'s last axis into ``m`` parts of size ``C``."""
    num = num_decoder_params(name)
    out = jnp.asarray(out)
    if out.ndim < 2:
        raise ValueError(f"decoder output must have shape (B, ..., m * C), got {out.shape}.")
    if channels is None:
        if out.shape[-1] % num:
            raise ValueError(
                f"{name!r} needs a decoder output whose last axis is a multiple of {num}, "
                f"got shape {out.shape}."
            )
        channels = out.shape[-1] // num
    return [out[..., i * channels : (i + 1) * channels] for i in range(num)]


def _discretized_logistic_log_prob(
    x: jax.Array, loc: jax.Array, log_scale: jax.Array, num_levels: int
) -> jax.Array:
    """Elementwise ``log P(x)`` of the discretized logistic (see the module docstring)."""
    half = 1.0 / (num_levels - 1)
    inv_scale = jnp.exp(-log_scale)
    centred = x - loc
    upper = inv_scale * (centred + half)  # a
    lower = inv_scale * (centred - half)  # b
    log_cdf_upper = jax.nn.log_sigmoid(upper)  # log P(X <= x + h)
    log_sf_lower = jax.nn.log_sigmoid(-lower)  # log P(X > x - h)
    # a - b = 2 h / s, computed without the cancellation of upper - lower.
    width = (2.0 * half) * inv_scale
    log_interior = log_cdf_upper + log_sf_lower + jnp.log(-jnp.expm1(-width))
    # Edge bins, told apart by the midpoints between the two outermost grid values.
    return jnp.where(
        x < -1.0 + half,
        log_cdf_upper,
        jnp.where(x > 1.0 - half, log_sf_lower, log_interior),
    )


def log_likelihood(
    name: str,
    out: jax.Array,
    x: jax.Array,
    *,
    num_levels: int | None = None,
    fixed_std: float = 1.0,
    min_log_scale: float = -7.0,
) -> jax.Array:
    """``log p(x | z)`` per example, (B,), summed over every axis of ``x`` but the first.

    Args:
      name: one of :data:`LIKELIHOODS`.
      out: the raw decoder output, shape ``(*x.shape[:-1], m * C)`` with ``C = x.shape[-1]``
        and ``m = num_decoder_params(name)``.
      x: data ``(B, ..., C)``: {0, 1} for ``"bernoulli"``; grid values in ``[-1, 1]`` for
        ``"discretized_logistic"``; real for the Gaussians.
      num_levels: the number of grid values ``L`` (``"discretized_logistic"`` only; required).
      fixed_std: the standard deviation of ``"gaussian_fixed"``.
      min_log_scale: lower clip of the predicted log scale (``"gaussian"``,
        ``"discretized_logistic"``).

    Returns:
      ``(B,)`` log-likelihoods in nats, in the dtype of ``out``.
    """
    num = num_decoder_params(name)
    out = jnp.asarray(out)
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (B, ..., C), got {x.shape}.")
    expected = (*x.shape[:-1], num * x.shape[-1])
    if out.shape != expected:
        raise ValueError(
            f"decoder output for {name!r} must have shape {expected} (= x.shape[:-1] + "
            f"({num} * {x.shape[-1]},)), got {out.shape}."
        )
    if name == "discretized_logistic":
        num_levels = _required_levels(num_levels)
    if name == "gaussian_fixed":
        _check_fixed_std(fixed_std)
    if name == "bernoulli":
        check_binary(x, "x (data of the bernoulli likelihood)")
    elif name == "discretized_logistic":
        check_on_grid(x, num_levels, "x (data of the discretized_logistic likelihood)")
    dtype = jnp.result_type(out.dtype, jnp.float32)
    out = out.astype(dtype)
    x = x.astype(dtype)
    parts = _split(name, out, x.shape[-1])

    if name == "bernoulli":
        logits = parts[0]
        values = x * logits - jax.nn.softplus(logits)
    elif name == "gaussian_fixed":
        u = (x - parts[0]) / fixed_std
        values = -0.5 * u * u - (jnp.log(jnp.asarray(fixed_std, dtype)) + _HALF_LOG_2PI)
    elif name == "gaussian":
        log_std = jnp.maximum(parts[1], min_log_scale)
        u = (x - parts[0]) * jnp.exp(-log_std)
        values = -0.5 * u * u - log_std - _HALF_LOG_2PI
    else:
        log_scale = jnp.maximum(parts[1], min_log_scale)
        values = _discretized_logistic_log_prob(x, parts[0], log_scale, num_levels)
    return sum_event(values)


def decoder_mean(name: str, out: jax.Array, *, num_levels: int | None = None) -> jax.Array:
    """The mean / mode picture in data space, shape ``(*out.shape[:-1], C)``.

    Bernoulli: ``sigmoid(logits)`` in ``[0, 1]``; Gaussians: the mean; discretized logistic:
    the location clipped to ``[-1, 1]`` (``num_levels`` is accepted for a uniform call
    signature and only validated).
    """
    parts = _split(name, out)
    if name == "discretized_logistic":
        check_num_levels(num_levels, allow_none=True)
        return jnp.clip(parts[0], -1.0, 1.0)
    if name == "bernoulli":
        return jax.nn.sigmoid(parts[0])
    return parts[0]


def decoder_sample(
    name: str,
    out: jax.Array,
    key: jax.Array,
    *,
    num_levels: int | None = None,
    fixed_std: float = 1.0,
    min_log_scale: float = -7.0,
) -> jax.Array:
    """One draw ``x ~ p(x | z)``, shape ``(*out.shape[:-1], C)``, in the float dtype of ``out``.

    Not a sampler of the model (it evaluates no network): it draws from the decoder output
    ``out`` it is given. ``key`` is one key or a ``(B,)`` batch of per-example keys
    (:func:`jaxgen.core.sampling.as_example_keys`); example ``b``'s draw uses its own key
    only, so it does not depend on the batch it is drawn in. Bernoulli draws are 0.0 / 1.0;
    discretized-logistic draws lie on the ``num_levels`` grid in ``[-1, 1]`` (the logistic
    draw clipped to ``[-1, 1]`` and rounded to the nearest level,
    :mod:`jaxgen.core.levels`).
    """
    if name == "discretized_logistic":
        num_levels = _required_levels(num_levels)
    if name == "gaussian_fixed":
        _check_fixed_std(fixed_std)
    parts = _split(name, out)
    dtype = jnp.result_type(parts[0].dtype, jnp.float32)
    parts = [p.astype(dtype) for p in parts]
    loc = parts[0]
    keys = as_example_keys(key, loc.shape[0])
    event = loc.shape[1:]

    def per_example(draw):
        return jax.vmap(lambda k: draw(k, event, dtype))(keys)

    if name == "bernoulli":
        return (per_example(jax.random.uniform) < jax.nn.sigmoid(loc)).astype(dtype)
    if name == "gaussian_fixed":
        return loc + fixed_std * per_example(jax.random.normal)
    log_scale = jnp.maximum(parts[1], min_log_scale)
    if name == "gaussian":
        return loc + jnp.exp(log_scale) * per_example(jax.random.normal)
    draw = loc + jnp.exp(log_scale) * per_example(jax.random.logistic)
    levels = images_to_levels(jnp.clip(draw, -1.0, 1.0), num_levels=num_levels)
    return levels_to_images(levels, num_levels=num_levels, dtype=dtype)
