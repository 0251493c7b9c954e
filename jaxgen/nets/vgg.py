"""A VGG19 feature extractor (Simonyan and Zisserman 2015) for perceptual losses, with
weights loaded from a user's ``.npz`` file (they cannot be downloaded here).

VGG19's convolutional part: five blocks of 3x3 SAME convolutions with ReLU, of widths 64,
128, 256, 512, 512 and 2, 2, 4, 4, 4 convolutions, each block followed by 2x2 max pooling
(stride 2). Layers are named ``conv{i}_{j}`` (the j-th convolution of block i, before its
ReLU), ``relu{i}_{j}`` (after it) and ``pool{i}``. Ledig et al.'s ``phi_{i,j}``, "the
feature map obtained by the j-th convolution (after activation) before the i-th maxpooling
layer", is ``relu{i}_{j}``: VGG22 is ``relu2_2``, VGG54 ``relu5_4``. The module only holds
the convolutions up to the output layer.

Inputs are NHWC images in [-1, 1] with 3 (RGB) channels; a single grey channel is
repeated three times. ``preprocessing`` says what the weights were trained on:

* ``"imagenet"`` (torchvision's VGG19): ``(x01 - mean) / std`` per channel with
  ``x01 = (x + 1) / 2``, ``mean = (0.485, 0.456, 0.406)``, ``std = (0.229, 0.224, 0.225)``;
* ``"caffe"`` (Keras' VGG19, converted from the original Caffe model): channels reversed to
  BGR, ``x255 = 127.5 (x + 1)`` minus the BGR means ``(103.939, 116.779, 123.68)``.

The weights file
----------------
An ``.npz`` with, for every convolution up to the output layer, ``conv{i}_{j}/kernel`` of
shape ``(3, 3, C_in, C_out)`` (HWIO, float) and ``conv{i}_{j}/bias`` of shape ``(C_out,)``;
extra entries (later layers) are ignored. :func:`save_vgg19_weights` writes one from a
parameter dict. From the usual sources:

Keras (``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``, kernels already HWIO; use
``preprocessing="caffe"``)::

    import h5py, numpy as np
    from jaxgen.nets.vgg import from_keras_layers, save_vgg19_weights
    with h5py.File("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "r") as f:
        layers = {}
        for name in f.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else name
            group = f[name]
            weights = [w.decode() if isinstance(w, bytes) else w
                       for w in group.attrs["weight_names"]]
            if weights:  # [kernel, bias] of the convolutions; pooling layers have none
                layers[name] = [np.asarray(group[w]) for w in weights]
    save_vgg19_weights("vgg19.npz", from_keras_layers(layers))

torchvision (``torchvision.models.vgg19(weights="IMAGENET1K_V1").state_dict()``, kernels
OIHW, transposed here; use ``preprocessing="imagenet"``)::

    import torchvision
    from jaxgen.nets.vgg import from_torchvision_state_dict, save_vgg19_weights
    state = torchvision.models.vgg19(weights="IMAGENET1K_V1").state_dict()
    state = {k: v.numpy() for k, v in state.items()}
    save_vgg19_weights("vgg19.npz", from_torchvision_state_dict(state))

Reference:
  Simonyan and Zisserman. Very Deep Convolutional Networks for Large-Scale Image
  Recognition. ICLR 2015.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "PREPROCESSINGS",
    "VGG19_BLOCKS",
    "VGG19Features",
    "from_keras_layers",
    "from_torchvision_state_dict",
    "load_vgg19_weights",
    "save_vgg19_weights",
    "vgg19_convolutions",
    "vgg19_feature_fn",
    "vgg19_layers",
]

VGG19_BLOCKS: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
"""(width, number of 3x3 convolutions) of VGG19's five blocks."""

PREPROCESSINGS: tuple[str, ...] = ("imagenet", "caffe")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def vgg19_layers() -> tuple[str, ...]:
    """Every layer name in order: ``conv1_1, relu1_1, conv1_2, relu1_2, pool1, ...``."""
    names: list[str] = []
    for i, (_, n) in enumerate(VGG19_BLOCKS, start=1):
        for j in range(1, n + 1):
            names += [f"conv{i}_{j}", f"relu{i}_{j}"]
        names.append(f"pool{i}")
    return tuple(names)


def _check_layer(layer: str) -> str:
    if layer not in vgg19_layers():
        raise ValueError(
            f"unknown VGG19 layer {layer!r}; expected conv{{i}}_{{j}}, relu{{i}}_{{j}} or "
            f"pool{{i}} of VGG19 (e.g. 'relu2_2' for VGG22, 'relu5_4' for VGG54)"
        )
    return layer


def vgg19_convolutions(layer: str = "relu5_4") -> tuple[tuple[str, int, int], ...]:
    """``(name, C_in, C_out)`` of the convolutions up to ``layer`` (3 input channels)."""
    _check_layer(layer)
    out, c_in = [], 3
    for name in vgg19_layers()[: vgg19_layers().index(layer) + 1]:
        if name.startswith("conv"):
            i = int(name[4 : name.index("_")])
            width = VGG19_BLOCKS[i - 1][0]
            out.append((name, c_in, width))
            c_in = width
    return tuple(out)


def _preprocess(x: jax.Array, preprocessing: str) -> jax.Array:
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"VGG19 expects (B, H, W, 3) or (B, H, W, 1) images, got {x.shape}")
    if x.shape[-1] == 1:
        x = jnp.concatenate([x, x, x], axis=-1)
    channels = lambda v: jnp.asarray(v, x.dtype).reshape(1, 1, 1, 3)  # noqa: E731
    if preprocessing == "imagenet":
        return ((x + 1.0) / 2.0 - channels(IMAGENET_MEAN)) / channels(IMAGENET_STD)
    return 127.5 * (x[..., ::-1] + 1.0) - channels(CAFFE_MEAN_BGR)


class VGG19Features(nnx.Module):
    """Images (B, H, W, 3 or 1) in [-1, 1] -> the activations of ``layer``."""

    def __init__(self, *, layer: str = "relu5_4", preprocessing: str = "imagenet", rngs: nnx.Rngs):
        if preprocessing not in PREPROCESSINGS:
            raise ValueError(
                f"VGG19 preprocessing must be one of {PREPROCESSINGS}, got {preprocessing!r}"
            )
        self.layer = layer
        self.preprocessing = preprocessing
        self.conv_names = tuple(name for name, _, _ in vgg19_convolutions(layer))
        for name, c_in, c_out in vgg19_convolutions(layer):
            setattr(self, name, nnx.Conv(c_in, c_out, (3, 3), padding="SAME", rngs=rngs))

    def __call__(self, x: jax.Array) -> jax.Array:
        h = _preprocess(x, self.preprocessing)
        for name in vgg19_layers():
            if name.startswith("conv"):
                h = getattr(self, name)(h)
            elif name.startswith("relu"):
                h = jax.nn.relu(h)
            else:
                b, hh, ww, c = h.shape
                if hh % 2 or ww % 2:
                    raise ValueError(f"VGG19: {name} needs even H, W, got {(hh, ww)}")
                h = h.reshape(b, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))
            if name == self.layer:
                return h
        raise AssertionError("unreachable: the layer name was checked")


def load_vgg19_weights(path: str | pathlib.Path, *, layer: str = "relu5_4") -> dict[str, Any]:
    """The parameters ``{conv_name: {"kernel", "bias"}}`` of the convolutions up to ``layer``
    from an ``.npz`` (see the module docstring for the keys and shapes), as float32 NumPy
    arrays.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: an unknown layer, or a missing or ill-shaped entry (named).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGG19 weights file {str(path)!r} does not exist")
    params: dict[str, Any] = {}
    with np.load(path) as f:
        for name, c_in, c_out in vgg19_convolutions(layer):
            entry = {}
            for leaf, shape in (("kernel", (3, 3, c_in, c_out)), ("bias", (c_out,))):
                key = f"{name}/{leaf}"
                if key not in f.files:
                    raise ValueError(f"{path}: missing VGG19 weight {key!r} (shape {shape})")
                value = f[key]
                if value.shape != shape:
                    raise ValueError(
                        f"{path}: VGG19 weight {key!r} has shape {value.shape}, expected {shape}"
                    )
                entry[leaf] = np.asarray(value, np.float32)
            params[name] = entry
    return params


def save_vgg19_weights(path: str | pathlib.Path, params: Mapping[str, Any]) -> None:
    """Write ``{conv_name: {"kernel", "bias"}}`` as the flat ``.npz`` that
    :func:`load_vgg19_weights` reads (``conv{i}_{j}/kernel``, ``conv{i}_{j}/bias``)."""
    flat = {
        f"{name}/{leaf}": np.asarray(value)
        for name, entry in params.items()
        for leaf, value in entry.items()
    }
    np.savez(path, **flat)


def from_keras_layers(layers: Mapping[str, Any]) -> dict[str, Any]:
    """Keras' ``{"block{i}_conv{j}": [kernel (HWIO), bias]}`` -> ``{"conv{i}_{j}": {...}}``."""
    out: dict[str, Any] = {}
    for name, _, _ in vgg19_convolutions("relu5_4"):
        i, j = name[4:].split("_")
        keras = f"block{i}_conv{j}"
        if keras in layers:
            kernel, bias = layers[keras]
            out[name] = {"kernel": np.asarray(kernel), "bias": np.asarray(bias)}
    return out


def from_torchvision_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """torchvision's ``vgg19().state_dict()`` (``features.{k}.weight`` OIHW, ``.bias``) ->
    ``{"conv{i}_{j}": {"kernel" (HWIO), "bias"}}``. ``features`` is a Sequential with one
    entry per layer of :func:`vgg19_layers` (convolution, ReLU, ..., max pool), so layer
    ``k`` of that list is ``features.{k}``."""
    out: dict[str, Any] = {}
    for index, name in enumerate(vgg19_layers()):
        weight = state.get(f"features.{index}.weight") if name.startswith("conv") else None
        if weight is not None:
            out[name] = {
                "kernel": np.transpose(np.asarray(weight), (2, 3, 1, 0)),
                "bias": np.asarray(state[f"features.{index}.bias"]),
            }
    return out


def vgg19_feature_fn(
    params: Mapping[str, Any], *, layer: str = "relu5_4", preprocessing: str = "imagenet"
) -> Callable[[jax.Array], jax.Array]:
    """``images -> VGG19 activations of layer`` with fixed ``params`` (a pure callable; the
    parameters are constants of it, so nothing differentiates them)."""
    graphdef, state = nnx.split(
        nnx.eval_shape(
            lambda: VGG19Features(layer=layer, preprocessing=preprocessing, rngs=nnx.Rngs(0))
        )
    )
    names = {name for name, _, _ in vgg19_convolutions(layer)}
    missing = names - set(params)
    if missing:
        raise ValueError(f"VGG19 parameters lack {sorted(missing)} for layer {layer!r}")
    del state
    fixed = {name: dict(params[name]) for name in names}

    def features(images: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, fixed)(images)

    return features
