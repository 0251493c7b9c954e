"""DCGAN generator and discriminator (Radford et al. 2016), with class conditioning.

Architecture guidelines (Radford et al. 2016, sec. 3): strided convolutions in the
discriminator and fractionally-strided (transposed) convolutions in the generator instead of
pooling; batch normalization in both, except on the generator's output layer and the
discriminator's input layer; no fully connected hidden layers; ReLU in the generator with a
tanh output; LeakyReLU (slope 0.2, sec. 4) in the discriminator. Weights are initialized
from N(0, 0.02^2) (sec. 4).

Generator (H = W = 2^m, m >= 3, n = m - 2 hidden layers)::

    z (B, latent_dim) [++ one-hot y] as a (B, 1, 1, .) map
      -> ConvTranspose 4x4 VALID -> 4x4 x base * 2^(n-1), BN, ReLU
      -> n - 1 x [ConvTranspose 4x4 stride 2 -> doubles H, halves channels, BN, ReLU]
      -> ConvTranspose 4x4 stride 2 -> H x W x C, tanh

The stride-2 transposed convolutions use explicit padding (2, 2) per side, which is
PyTorch's ``ConvTranspose2d(kernel_size=4, stride=2, padding=1)`` (the DCGAN reference):
the output is exactly twice the input (``(n - 1) * 2 - 2 * 1 + 4 = 2n``).

Discriminator: n stride-2 4x4 convolutions (padding 1) from H x W down to 4 x 4, channels
``base, 2 base, ..., base * 2^(n-1)``, LeakyReLU(0.2), batch norm after every convolution but
the first (so none at 8x8, where there is only one); then a 4x4 VALID convolution to one
logit. ``phi(x)`` is the last hidden feature map summed over its 4 x 4 positions
(B, base * 2^(n-1)). ``batch_norm=False`` drops the norms (the gradient penalties need a
critic without batch statistics).

Class conditioning (``num_classes > 0``):
* ``"concat"``: the label as an extra input (Mirza and Osindero 2014, sec. 3.2), in its
  convolutional form: the one-hot label, broadcast to (B, H, W, num_classes) maps, is
  concatenated to the image channels. The generator always concatenates the one-hot label
  to z (whichever conditioning the discriminator uses).
* ``"projection"`` (Miyato and Koyama 2018, eq. 3):
  ``D(x, y) = psi(h(x)) + embed(y)^T phi(x)``, with ``h`` the last hidden feature map,
  ``psi`` the final convolution (the unconditional logit), ``phi`` the sum-pooled ``h``
  and ``embed`` an ``nnx.Embed(num_classes, F)`` (the paper's ``y^T V``).

``spectral_norm=True`` makes every discriminator convolution a ``SpectralConv`` (Miyato et
al. 2018); the caller then passes ``update_stats`` (False for the second evaluation in a
step, or at evaluation). The embedding is left unnormalized.

Batch normalization here is ``BatchStatsNorm``: by default it uses the statistics of the
batch it is given. The GAN reference implementations normalize generator and discriminator
activations with batch statistics both in training and when sampling, and a module holding
only ``Param``s stays a pure function of (params, inputs). Under a data-parallel ``jit``
(batch sharded over devices) the mean and variance are reductions over the global batch, so
the statistics are synchronized across devices for free. The price, as with any batch
norm: an example's output depends on the rest of its batch. For sampling,
``DCGANGenerator(z, labels, num_reference=R)`` takes the statistics of every norm from the
first ``R`` rows only (reference batch normalization, Salimans et al. 2016, sec. 3.4; see
``jaxgen.gan.sampling``), which makes each other row's output independent of its batch.

References:
  Radford, Metz, Chintala. Unsupervised Representation Learning with Deep Convolutional
  Generative Adversarial Networks. ICLR 2016.
  Mirza, Osindero. Conditional Generative Adversarial Nets. arXiv:1411.1784, 2014.
  Miyato, Koyama. cGANs with Projection Discriminator. ICLR 2018.
  Ioffe, Szegedy. Batch Normalization. ICML 2015 (Algorithm 1).
  Salimans, Goodfellow, Zaremba, Cheung, Radford, Chen. Improved Techniques for Training
  GANs. NeurIPS 2016.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgen.nets.spectral_norm import SpectralConv

__all__ = [
    "CONDITIONINGS",
    "DCGAN_INIT",
    "BatchStatsNorm",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "LEAKY_SLOPE",
]

DCGAN_INIT = nnx.initializers.normal(0.02)
LEAKY_SLOPE = 0.2
CONDITIONINGS = ("projection", "concat")
# PyTorch ConvTranspose2d(kernel_size=4, stride=2, padding=1) == lax padding k - 1 - p = 2.
UP_PADDING = ((2, 2), (2, 2))
DOWN_PADDING = ((1, 1), (1, 1))  # Conv2d(kernel_size=4, stride=2, padding=1): halves H


def upsampling_conv(a: int, b: int, *, use_bias: bool, rngs: nnx.Rngs) -> nnx.ConvTranspose:
    """DCGAN's 4x4 stride-2 transposed convolution: exactly doubles H and W."""
    return nnx.ConvTranspose(
        a,
        b,
        (4, 4),
        strides=(2, 2),
        padding=UP_PADDING,
        use_bias=use_bias,
        kernel_init=DCGAN_INIT,
        rngs=rngs,
    )


def downsampling_conv(a: int, b: int, *, use_bias: bool, rngs: nnx.Rngs) -> nnx.Conv:
    """DCGAN's 4x4 stride-2 convolution: exactly halves H and W."""
    return nnx.Conv(
        a,
        b,
        (4, 4),
        strides=(2, 2),
        padding=DOWN_PADDING,
        use_bias=use_bias,
        kernel_init=DCGAN_INIT,
        rngs=rngs,
    )


class BatchStatsNorm(nnx.Module):
    """Batch normalization with the statistics of the given batch, always (no running mean).

    ``y = scale * (x - mean) / sqrt(var + 1e-5) + bias`` with the mean and (biased) variance
    over all axes but the last (Ioffe and Szegedy 2015, Algorithm 1). Holds only the
    ``scale`` (init 1) and ``bias`` (init 0) Params.

    With ``num_reference = R > 0`` the mean and variance are those of the first ``R`` rows
    (a reference batch, Salimans et al. 2016, sec. 3.4) and every row is normalized with
    them: rows after the ``R``-th then do not influence each other.
    """

    epsilon = 1e-5

    def __init__(self, num_features: int, *, rngs: nnx.Rngs | None = None):
        del rngs  # no random initialization; accepted for a uniform layer signature
        self.num_features = num_features
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))

    def __call__(self, x: jax.Array, *, num_reference: int = 0) -> jax.Array:
        if x.ndim < 2 or x.shape[-1] != self.num_features:
            raise ValueError(
                f"BatchStatsNorm expects (B, ..., {self.num_features}), got shape {x.shape}"
            )
        if not 0 <= num_reference <= x.shape[0]:
            raise ValueError(
                f"num_reference must be in [0, {x.shape[0]}] (the batch), got {num_reference}"
            )
        stats = x[:num_reference] if num_reference else x
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(stats, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(stats - mean), axis=axes, keepdims=True)
        shape = (1,) * (x.ndim - 1) + (self.num_features,)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        return y * self.scale[...].reshape(shape) + self.bias[...].reshape(shape)


def num_hidden_layers(image_shape: tuple[int, int, int], name: str) -> int:
    """``log2(H) - 2`` for a square power-of-two ``image_shape`` (H, W, C) with H >= 8."""
    if len(image_shape) != 3:
        raise ValueError(f"{name}: image_shape must be (H, W, C), got {image_shape!r}")
    height, width, channels = image_shape
    if height != width or height < 8 or height & (height - 1) or channels < 1:
        raise ValueError(
            f"{name}: image_shape must be (H, H, C) with H a power of two >= 8, got "
            f"{tuple(image_shape)}"
        )
    return int(math.log2(height)) - 2


def check_labels(
    labels: jax.Array | None, num_classes: int, batch: int, name: str
) -> jax.Array | None:
    """One-hot ``labels`` (B, num_classes), or None when unconditional; raises if inconsistent."""
    if num_classes == 0:
        if labels is not None:
            raise ValueError(f"{name} is unconditional (num_classes=0) but got labels")
        return None
    if labels is None:
        raise ValueError(f"{name} has num_classes={num_classes} and needs labels")
    labels = jnp.asarray(labels)
    if labels.shape != (batch,) or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"{name}: labels must be integers of shape ({batch},), got {labels.dtype} "
            f"{labels.shape}"
        )
    return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)


class DCGANGenerator(nnx.Module):
    """z (B, latent_dim) [and labels (B,)] -> images (B, H, W, C) in [-1, 1]."""

    def __init__(
        self,
        latent_dim: int,
        image_shape: tuple[int, int, int],
        *,
        base_features: int = 64,
        num_classes: int = 0,
        rngs: nnx.Rngs,
    ):
        n = num_hidden_layers(image_shape, "DCGANGenerator")
        if latent_dim < 1 or base_features < 1 or num_classes < 0:
            raise ValueError(
                "DCGANGenerator: latent_dim and base_features must be >= 1 and num_classes "
                f">= 0, got {latent_dim}, {base_features}, {num_classes}"
            )
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        widths = [base_features * 2 ** (n - 1 - i) for i in range(n)]
        self.project = nnx.ConvTranspose(
            latent_dim + num_classes,
            widths[0],
            (4, 4),
            padding="VALID",
            use_bias=False,
            kernel_init=DCGAN_INIT,
            rngs=rngs,
        )
        self.up = nnx.List(
            [
                upsampling_conv(a, b, use_bias=False, rngs=rngs)
                for a, b in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        self.norms = nnx.List([BatchStatsNorm(w, rngs=rngs) for w in widths])
        self.out = upsampling_conv(widths[-1], image_shape[2], use_bias=True, rngs=rngs)

    def __call__(
        self, z: jax.Array, labels: jax.Array | None = None, *, num_reference: int = 0
    ) -> jax.Array:
        """Images ``G(z [, y])``; ``num_reference = R > 0``: the first ``R`` rows are a
        reference batch whose statistics every norm uses (see ``BatchStatsNorm``)."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"DCGANGenerator expects z of shape (B, {self.latent_dim}), got {z.shape}"
            )
        onehot = check_labels(labels, self.num_classes, z.shape[0], "DCGANGenerator")
        h = z if onehot is None else jnp.concatenate([z, onehot.astype(z.dtype)], axis=-1)
        h = h[:, None, None, :]
        for layer, norm in zip([self.project, *self.up], self.norms, strict=True):
            h = jax.nn.relu(norm(layer(h), num_reference=num_reference))
        return jnp.tanh(self.out(h))


class DCGANDiscriminator(nnx.Module):
    """images (B, H, W, C) [and labels (B,)] -> logits (B,)."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        *,
        base_features: int = 64,
        num_classes: int = 0,
        conditioning: str = "projection",
        batch_norm: bool = True,
        spectral_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        n = num_hidden_layers(image_shape, "DCGANDiscriminator")
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
        if base_features < 1 or num_classes < 0:
            raise ValueError(
                "DCGANDiscriminator: base_features must be >= 1 and num_classes >= 0, got "
                f"{base_features}, {num_classes}"
            )
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.conditioning = conditioning
        concat = num_classes > 0 and conditioning == "concat"
        widths = [base_features * 2**i for i in range(n)]
        ins = [image_shape[2] + (num_classes if concat else 0), *widths[:-1]]

        def conv(a: int, b: int, **kwargs) -> nnx.Module:
            if spectral_norm:
                return SpectralConv(a, b, (4, 4), rngs=rngs, **kwargs)
            return nnx.Conv(a, b, (4, 4), kernel_init=DCGAN_INIT, rngs=rngs, **kwargs)

        # A convolution followed by batch norm needs no bias (the norm's bias replaces it).
        self.down = nnx.List(
            [
                conv(a, b, strides=(2, 2), padding=DOWN_PADDING, use_bias=not (batch_norm and i))
                for i, (a, b) in enumerate(zip(ins, widths, strict=True))
            ]
        )
        self.norms = nnx.List(
            [BatchStatsNorm(w, rngs=rngs) for w in widths[1:]] if batch_norm else []
        )
        self.final = conv(widths[-1], 1, padding="VALID")
        if num_classes > 0 and conditioning == "projection":
            self.embed = nnx.Embed(num_classes, widths[-1], rngs=rngs)
        else:
            self.embed = None

    def features(
        self, x: jax.Array, labels: jax.Array | None = None, *, update_stats: bool = True
    ) -> tuple[jax.Array, jax.Array]:
        """``(logits (B,), phi (B, F))``, phi the sum-pooled last hidden feature map."""
        if x.ndim != 4 or x.shape[1:] != self.image_shape:
            raise ValueError(
                f"DCGANDiscriminator expects images (B, *{self.image_shape}), got {x.shape}"
            )
        onehot = check_labels(labels, self.num_classes, x.shape[0], "DCGANDiscriminator")
        h = x
        if onehot is not None and self.conditioning == "concat":
            maps = jnp.broadcast_to(
                onehot.astype(x.dtype)[:, None, None, :], (*x.shape[:3], self.num_classes)
            )
            h = jnp.concatenate([h, maps], axis=-1)
        for i, layer in enumerate(self.down):
            h = _apply(layer, h, update_stats)
            if i > 0 and len(self.norms):
                h = self.norms[i - 1](h)
            h = jax.nn.leaky_relu(h, LEAKY_SLOPE)
        phi = jnp.sum(h, axis=(1, 2))
        logits = _apply(self.final, h, update_stats).reshape(x.shape[0])
        if self.embed is not None:
            logits = logits + jnp.sum(self.embed(labels) * phi, axis=-1)
        return logits, phi

    def __call__(
        self, x: jax.Array, labels: jax.Array | None = None, *, update_stats: bool = True
    ) -> jax.Array:
        return self.features(x, labels, update_stats=update_stats)[0]


def _apply(layer: nnx.Module, h: jax.Array, update_stats: bool) -> jax.Array:
    if isinstance(layer, SpectralConv):
        return layer(h, update_stats=update_stats)
    return layer(h)
