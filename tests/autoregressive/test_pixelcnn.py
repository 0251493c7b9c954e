"""PixelCNN masks and networks against closed-form receptive fields.

* ``causal_conv_mask`` equals hand-written masks (3x3, one colour; the centre tap's colour
  groups for three colours); ``MaskedConv`` equals a NumPy convolution with the masked
  kernel, and one layer's gradient support is exactly the mask's taps (mask A without the
  centre, mask B with it, colours by group).
* PixelCNN (3x3 mask A, n residual blocks of 3x3 mask B): the input-output dependency
  pattern, from exact Jacobians on a 5x5 image, equals the closed-form receptive field
  with its blind spot: input (i + di, j + dj) reaches output (i, j) iff
  ``1 <= -di <= n + 1, -(n + 1) <= dj <= -di``, or ``di = 0, -(n + 1) <= dj <= -1``, or the
  same pixel with an earlier colour. Nothing at or after (i, j, c) in raster order is seen.
* Gated PixelCNN (three 3x3 layers, 4 x 4 image): the output at (i, j, c) depends on every
  earlier entry and on no later one (no blind spot); (i - 1, j + 2) is seen where the plain
  PixelCNN does not see it.
* Both define normalized distributions: ``sum_x exp(log p(x)) = 1`` over all 81 images
  of a 1 x 2 x 2 grid (two colours; PixelCNN) or a 2 x 2 x 1 grid (gated), 3 levels.
* Class conditioning (2016b eq. 4) is a per-class bias of the gates.
Negative controls: a mask-B first layer, a vertical stack without the down shift, the
wrong label, an unmasked kernel, each fail their check.
"""

from __future__ import annotations

import itertools
import math

import jax
import numpy as np
import pytest
from flax import nnx

from jaxgen.autoregressive.image_sampling import image_log_prob
from jaxgen.autoregressive.masks import causal_conv_mask, colour_mask
from jaxgen.nets import pixelcnn
from jaxgen.nets.pixelcnn import GatedPixelCNN, MaskedConv, PixelCNN


def build(ctor, seed: int = 0, std: float = 0.3, dtype=np.float32):
    """``(graphdef, params)``: the graph built abstractly, parameters drawn in NumPy
    (N(0, std^2)); the tests need generic weights, and a jitted Flax init would spend
    seconds compiling the random initializers."""
    graphdef, abstract = nnx.split(nnx.eval_shape(ctor))
    rng = np.random.default_rng(seed)
    params = jax.tree.map(
        lambda leaf: (std * rng.normal(size=leaf.shape)).astype(dtype),
        nnx.to_pure_dict(abstract),
    )
    return graphdef, params


def mask_b_first(ctor, get, put):
    """The graphdef of ``ctor()`` with the first causal layer (``get`` / ``put`` on the module)
    swapped for the same layer with mask B: the parameters keep their structure."""
    model = nnx.eval_shape(ctor)
    old = get(model)
    put(
        model,
        nnx.eval_shape(
            lambda: MaskedConv(
                old.in_features,
                old.out_features,
                old.kernel_size,
                mask_type="B",
                num_colors=old.num_colors,
                rngs=nnx.Rngs(0),
            )
        ),
    )
    return nnx.split(model)[0]


def _set(attr):
    return lambda model, layer: setattr(model, attr, layer)


PIXELCNN_FIRST = (lambda m: m.input_conv, _set("input_conv"))
GATED_FIRST = (lambda m: m.layers[0].horizontal, lambda m, v: setattr(m.layers[0], "horizontal", v))


def dependency(graphdef, params, image_shape, *, labels=None, num_points=3, seed=0):
    """(D, D) summed |d out[p] / d input[q]| over a few random inputs (and over the levels
    of network logits), with p, q raster indices ((i W + j) C + c, C-order flattening)."""
    d = math.prod(image_shape)

    def one(u):
        model = nnx.merge(graphdef, params)
        args = () if labels is None else (labels,)
        return model(u[None], *args)[0]

    points = np.random.default_rng(seed).uniform(-1, 1, (num_points, *image_shape))
    jac = jax.jit(jax.vmap(jax.jacfwd(one)))(points.astype(np.float32))
    jac = np.abs(np.asarray(jac, np.float64)).sum(axis=0)
    if jac.ndim == 7:  # network logits (H, W, C, L, H, W, C): sum over the levels
        jac = jac.sum(axis=3)
    return jac.reshape(d, d)


def raster_earlier(image_shape):
    """``E[p, q] = q < p``: the entries that output p may depend on."""
    d = math.prod(image_shape)
    return np.arange(d)[None, :] < np.arange(d)[:, None]


def pixelcnn_field(image_shape, num_blocks):
    """Closed-form receptive field of a 3x3 mask-A layer + ``num_blocks`` 3x3 mask-B layers
    (see the module docstring)."""
    height, width, colors = image_shape
    n = num_blocks
    field = np.zeros((height, width, colors) * 2, bool)
    for i, j, c, i2, j2, c2 in itertools.product(
        range(height), range(width), range(colors), range(height), range(width), range(colors)
    ):
        r, dj = i - i2, j2 - j
        above = 1 <= r <= n + 1 and -(n + 1) <= dj <= r
        left = r == 0 and -(n + 1) <= dj <= -1
        same = r == 0 and dj == 0 and c2 < c
        field[i, j, c, i2, j2, c2] = above or left or same
    d = math.prod(image_shape)
    return field.reshape(d, d)


def small_pixelcnn(image_shape, num_blocks, hidden=8):
    return lambda: PixelCNN(
        image_shape,
        4,
        hidden_channels=hidden,
        num_layers=num_blocks,
        first_kernel_size=3,
        rngs=nnx.Rngs(0),
    )


def small_gated(image_shape, num_layers, hidden, num_levels=4, num_classes=0):
    return lambda: GatedPixelCNN(
        image_shape,
        num_levels,
        hidden_channels=hidden,
        num_layers=num_layers,
        num_classes=num_classes,
        first_kernel_size=3,
        rngs=nnx.Rngs(0),
    )


# ---------------------------------------------------------------------------- masks


def test_masks_match_hand_written_arrays():
    a = causal_conv_mask(3, 1, 1, mask_type="A")[..., 0, 0]
    b = causal_conv_mask(3, 1, 1, mask_type="B")[..., 0, 0]
    np.testing.assert_array_equal(a, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(b, [[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    wide = causal_conv_mask((1, 5), 1, 1, mask_type="B")[..., 0, 0]
    np.testing.assert_array_equal(wide, [[1, 1, 1, 0, 0]])
    # Three colours: image (3 channels, one per group) -> 6 features (2 per group), mask A;
    # then 6 -> 3 with mask B. Rows: input channel; columns: output channel.
    np.testing.assert_array_equal(
        colour_mask(3, 6, mask_type="A", num_colors=3),
        [[0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]],
    )
    np.testing.assert_array_equal(
        colour_mask(6, 3, mask_type="B", num_colors=3),
        [[1, 1, 1], [1, 1, 1], [0, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 1]],
    )
    full = causal_conv_mask(3, 3, 6, mask_type="A", num_colors=3)
    np.testing.assert_array_equal(full[1, 1], colour_mask(3, 6, mask_type="A", num_colors=3))
    assert np.all(full[0] == 1) and np.all(full[1, 0] == 1)
    assert np.all(full[1, 2] == 0) and np.all(full[2] == 0)
    # Negative control: A and B differ exactly at the centre tap.
    assert np.argwhere(a != b).tolist() == [[1, 1]]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel_size": 4, "in_channels": 1, "out_channels": 1}, "odd"),
        ({"kernel_size": 3, "in_channels": 1, "out_channels": 1, "mask_type": "C"}, "'A', 'B'"),
        ({"kernel_size": 3, "in_channels": 3, "out_channels": 4, "num_colors": 3}, "multiple"),
        ({"kernel_size": 3, "in_channels": 1, "out_channels": 1, "num_colors": 0}, "num_colors"),
    ],
)
def test_mask_options_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        causal_conv_mask(**kwargs)


def test_masked_conv_equals_numpy_convolution_with_masked_kernel(x64):
    graphdef, params = build(
        lambda: MaskedConv(3, 6, 3, mask_type="A", num_colors=3, rngs=nnx.Rngs(0)),
        std=1.0,
        dtype=np.float64,
    )
    x = np.random.default_rng(1).normal(size=(2, 4, 5, 3))
    got = np.asarray(jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))(params, x))

    def numpy_conv(kernel):
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        out = np.zeros((2, 4, 5, 6))
        for i, j, a, b in itertools.product(range(4), range(5), range(3), range(3)):
            out[:, i, j] += padded[:, i + a, j + b] @ kernel[a, b]
        return out + params["bias"]

    masked = params["kernel"] * causal_conv_mask(3, 3, 6, mask_type="A", num_colors=3)
    err = np.max(np.abs(got - numpy_conv(masked)))
    off = np.max(np.abs(got - numpy_conv(params["kernel"])))  # negative control: no mask
    print(f"MaskedConv vs NumPy: {err:.1e}; unmasked kernel off by {off:.2f}")
    assert err < 1e-12, err
    assert off > 0.1, off


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_single_layer_gradient_support_is_the_mask(mask_type):
    shape = (4, 4, 3)
    graphdef, params = build(
        lambda: MaskedConv(3, 3, 3, mask_type=mask_type, num_colors=3, rngs=nnx.Rngs(0))
    )
    dep = dependency(graphdef, params, shape, num_points=1) > 0
    expected = np.zeros(shape * 2, bool)
    for i, j, c, i2, j2, c2 in itertools.product(*(range(s) for s in shape * 2)):
        di, dj = i2 - i, j2 - j
        if di == -1 and abs(dj) <= 1 or di == 0 and dj == -1:
            expected[i, j, c, i2, j2, c2] = True
        elif di == 0 and dj == 0:
            expected[i, j, c, i2, j2, c2] = c2 < c if mask_type == "A" else c2 <= c
    expected = expected.reshape(dep.shape)
    np.testing.assert_array_equal(dep, expected)
    centre = np.diagonal(dep)  # d y[i, j, c] / d x[i, j, c]
    assert not centre.any() if mask_type == "A" else centre.all()


# ---------------------------------------------------------------------------- PixelCNN


@pytest.mark.parametrize(("colors", "hidden"), [(1, 8), (3, 24)])
def test_pixelcnn_receptive_field_is_causal_with_a_blind_spot(colors, hidden):
    shape, blocks = (5, 5, colors), 2
    graphdef, params = build(small_pixelcnn(shape, blocks, hidden))
    dep = dependency(graphdef, params, shape)
    seen = dep > 0
    later = ~raster_earlier(shape)
    leak = float(dep[later].max())
    expected = pixelcnn_field(shape, blocks)
    smallest = float(dep[expected].min())
    print(f"C={colors}: max |grad| at/after = {leak}; min |grad| in field = {smallest:.1e}")
    assert leak == 0.0
    np.testing.assert_array_equal(seen, expected)
    # the blind spot: (2, 2) does not see (1, 4), above-right, though it is earlier
    p, q = np.ravel_multi_index(([2, 1], [2, 4], [0, 0]), shape)
    assert not seen[p, q] and q < p

    if colors > 1:
        return  # the negative control below is the same check; run once (compile time)
    # Negative control: a mask-B first layer sees the current pixel.
    graphdef_b = mask_b_first(small_pixelcnn(shape, blocks, hidden), *PIXELCNN_FIRST)
    dep_b = dependency(graphdef_b, params, shape)
    bad = float(dep_b[later].max())
    print(f"mask-B first layer: max |grad| at/after = {bad:.2e}")
    assert bad > 1e-3


# ---------------------------------------------------------------------------- gated


@pytest.mark.parametrize(("colors", "hidden"), [(1, 8), (3, 24)])
def test_gated_pixelcnn_sees_every_earlier_entry_and_no_later_one(colors, hidden, monkeypatch):
    shape = (4, 4, colors)  # three 3x3 layers reach 3 columns left and 3 rows up
    graphdef, params = build(small_gated(shape, 3, hidden))
    dep = dependency(graphdef, params, shape, num_points=2)  # 2 points: the head's ReLUs
    earlier = raster_earlier(shape)
    leak, smallest = float(dep[~earlier].max()), float(dep[earlier].min())
    print(f"gated C={colors}: max |grad| at/after = {leak}; min |grad| before = {smallest:.1e}")
    assert leak == 0.0
    assert smallest > 1e-7, smallest
    # The plain PixelCNN with as many 3x3 layers misses (1, 3) from (2, 1); the gated sees it.
    p, q = np.ravel_multi_index(([2, 1], [1, 3], [0, 0]), shape)
    assert not pixelcnn_field(shape, 2)[p, q] and dep[p, q] > 0

    if colors > 1:
        return  # the negative control below is the same check; run once (compile time)
    # Negative control: without the down shift the vertical stack leaks the current row.
    monkeypatch.setattr(pixelcnn, "shift_down", lambda x: x)
    dep_leak = dependency(graphdef, params, shape, num_points=2)
    bad = float(dep_leak[~earlier].max())
    print(f"gated without shift: max |grad| at/after = {bad:.2e}")
    assert bad > 1e-6


def test_gated_class_conditioning_is_a_per_class_gate_bias():
    shape, hidden = (4, 4, 1), 4
    graphdef, params = build(small_gated(shape, 2, hidden, num_classes=3))
    uncond_def, _ = build(small_gated(shape, 2, hidden))
    x = np.random.default_rng(2).integers(0, 4, (2, *shape)).astype(np.int32)

    @jax.jit
    def conditional(p, labels):
        return nnx.merge(graphdef, p)(x, labels)

    @jax.jit
    def unconditional(p):
        return nnx.merge(uncond_def, p)(x)

    outs = []
    for y in range(3):
        folded = jax.tree.map(np.copy, params)
        for layer in folded["layers"].values():  # eq. 4: V^T onehot(y) = a bias per class
            layer["vertical"]["bias"] += layer.pop("vertical_class_bias")[y]
            layer["horizontal"]["bias"] += layer.pop("horizontal_class_bias")[y]
        out = np.asarray(conditional(params, np.full((2,), y, np.int32)))
        err = np.max(np.abs(out - np.asarray(unconditional(folded))))
        assert err < 1e-5, (y, err)
        outs.append(out)
    # Negative control: another label gives other logits.
    other = float(np.max(np.abs(outs[0] - outs[1])))
    print(f"class bias folded into the conv bias: exact; labels 0 vs 1 differ by {other:.2f}")
    assert other > 1e-2
    model = nnx.merge(graphdef, params)
    with pytest.raises(ValueError, match="needs labels"):
        model(x)
    with pytest.raises(ValueError, match="labels must be integers"):
        model(x, np.zeros((3,), np.int32))


# ---------------------------------------------------------------------------- normalization


@pytest.mark.parametrize(("kind", "shape"), [("pixelcnn", (1, 2, 2)), ("gated", (2, 2, 1))])
def test_models_define_normalized_distributions(x64, kind, shape):
    """Causality makes ``prod_t softmax(logits_t)[x_t]`` a distribution: it sums to one over
    all L^D images."""
    levels, colors = 3, shape[2]
    if kind == "pixelcnn":
        ctor = lambda: PixelCNN(  # noqa: E731
            shape, levels, hidden_channels=8, num_layers=1, first_kernel_size=3, rngs=nnx.Rngs(0)
        )
    else:
        ctor = small_gated(shape, 2, 4 * colors, num_levels=levels)
    graphdef, params = build(ctor, std=1.0, dtype=np.float64)
    images = np.array(list(itertools.product(range(levels), repeat=4)), np.int32)
    images = images.reshape(-1, *shape)

    @jax.jit
    def log_prob(p, x):
        return image_log_prob(nnx.merge(graphdef, p)(x), x)

    total = float(np.exp(np.asarray(log_prob(params, images))).sum())
    # Negative control: the same sum with a mask-B first layer is not 1.
    graphdef_b = mask_b_first(ctor, *(PIXELCNN_FIRST if kind == "pixelcnn" else GATED_FIRST))
    lp_b = jax.jit(lambda p, x: image_log_prob(nnx.merge(graphdef_b, p)(x), x))
    total_b = float(np.exp(np.asarray(lp_b(params, images))).sum())
    print(f"{kind} {shape}: sum p = 1 + {total - 1:.1e}; mask-B first layer: {total_b:.3f}")
    assert abs(total - 1.0) < 1e-12
    assert abs(total_b - 1.0) > 1e-3


def test_integer_levels_are_scaled_to_the_data_grid():
    levels = np.arange(17, dtype=np.int32)
    scaled = np.asarray(pixelcnn.scale_levels(levels, 17))
    np.testing.assert_allclose(scaled, 2.0 * levels / 16 - 1.0, rtol=0, atol=1e-7)
    assert scaled[0] == -1.0 and scaled[-1] == 1.0
    grid = scaled.astype(np.float32)
    np.testing.assert_array_equal(np.asarray(pixelcnn.scale_levels(grid, 17)), grid)
    # Negative control: the [0, 1] scaling k / (L - 1) is not the data grid.
    assert np.max(np.abs(levels / 16 - scaled)) > 0.5
    with pytest.raises(ValueError, match="dtype"):
        pixelcnn.scale_levels(np.zeros(3, bool), 17)


def test_network_options_are_validated():
    with pytest.raises(ValueError, match="multiple of 6"):
        PixelCNN((5, 5, 3), 4, hidden_channels=8, num_layers=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_levels"):
        GatedPixelCNN((5, 5, 1), 1, hidden_channels=4, num_layers=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="odd"):
        GatedPixelCNN((5, 5, 1), 4, hidden_channels=4, kernel_size=4, rngs=nnx.Rngs(0))
    graphdef, params = build(small_pixelcnn((5, 5, 1), 1))
    with pytest.raises(ValueError, match="shape"):
        nnx.merge(graphdef, params)(np.zeros((2, 4, 5, 1), np.int32))
