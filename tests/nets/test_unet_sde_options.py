"""Tests for the DDPM++ / NCSN++ options of the U-Net (Song et al. 2021, appendix H)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgen.nets.embeddings import gaussian_fourier_embedding, gaussian_fourier_frequencies
from jaxgen.nets.unet import (
    AttentionBlock,
    Downsample,
    ResBlock,
    UNet,
    UNetConfig,
    Upsample,
    avg_pool_downsample,
    ddpmpp_config,
    fir_downsample,
    fir_filter,
    fir_kernel,
    fir_upsample,
    ncsnpp_config,
    nearest_upsample,
)

SHAPE = (8, 8, 2)
_TINY = dict(
    channels=16,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(4,),
    num_groups=4,
)
# Every NCSN++ option on at once, with dropout so that the dropout-key count is exercised.
NCSN_SMALL = ncsnpp_config(**_TINY, dropout=0.1, progressive_output="output_skip")
# The other variants: separate resample layers, input skip, residual output pyramid.
ALT_SMALL = UNetConfig(
    **_TINY, dropout=0.0, progressive_input="input_skip", progressive_output="residual"
)


@functools.cache
def _abstract(config, image_shape=SHAPE):
    """The module with ShapeDtypeStruct parameters (cached: tracing a U-Net takes seconds)."""
    return nnx.eval_shape(lambda: UNet(config, image_shape=image_shape, rngs=nnx.Rngs(0)))


def _count(config, image_shape=SHAPE):
    return sum(
        math.prod(a.shape) for a in jax.tree.leaves(nnx.state(_abstract(config, image_shape)))
    )


def _numpy_params(abstract, seed=1, scale=0.2, dtype=None):
    """Random parameters for an abstract module, made in numpy (no init compilation)."""
    shapes = nnx.to_pure_dict(nnx.state(abstract))
    leaves, treedef = jax.tree.flatten(shapes)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(
        treedef, [(scale * rng.standard_normal(a.shape)).astype(dtype or a.dtype) for a in leaves]
    )


def _apply(graphdef):
    return jax.jit(lambda p, x, t, key=None: nnx.merge(graphdef, p)(x, t, key=key))


def _x(batch=3, shape=SHAPE, seed=2):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((batch, *shape)), jnp.float32)


# ---------------------------------------------------------------- defaults are unchanged


def test_defaults_unchanged(x64):
    """The default U-Net has the same parameter tree and outputs as before the options.

    The digest, count and output moments were recorded from the code before this change
    (float64, numpy parameters, so they do not depend on a PRNG implementation).
    """
    config = UNetConfig(**{**_TINY, "channels": 8}, dropout=0.0, num_heads=2)
    assert config == dataclasses.replace(
        config,
        resblock_updown=False,
        skip_rescale=False,
        time_embedding="sinusoidal",
        resample_filter="none",
        progressive_input="none",
        progressive_output="none",
        up_attention="every_block",
        init_scale=0.0,
    )

    def digest(cfg):
        flat = nnx.to_flat_state(nnx.state(_abstract(cfg)))
        entries = sorted(
            "/".join(map(str, k)) + ":" + "x".join(map(str, v.get_value().shape)) for k, v in flat
        )
        return len(entries), hashlib.sha256("\n".join(entries).encode()).hexdigest()

    assert digest(config) == (
        128,
        "c1c71bc2b9a0717d6484ff8ae6c76aa8ed8396073bcb1c16efae780169844c66",
    )
    assert _count(config) == 45_114
    # Negative control: an option that changes the tree changes the digest.
    assert digest(dataclasses.replace(config, resblock_updown=True))[1] != digest(config)[1]

    abstract = _abstract(config)
    shapes = nnx.to_pure_dict(nnx.state(abstract))
    leaves, treedef = jax.tree.flatten(shapes)
    rng = np.random.default_rng(0)
    params = jax.tree.unflatten(treedef, [0.2 * rng.standard_normal(a.shape) for a in leaves])
    x = rng.standard_normal((2, *SHAPE))
    t = np.array([3.5, 250.0])
    apply = _apply(nnx.graphdef(abstract))
    out = np.asarray(apply(params, x, t))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.sum(), -5.652467592499807, rtol=1e-10)
    np.testing.assert_allclose((out**2).sum(), 6.1272317888243055, rtol=1e-10)
    # Negative control: a small change of one weight moves the recorded moments.
    params["conv_out"]["bias"] = params["conv_out"]["bias"] + 1e-3
    assert abs(np.asarray(apply(params, x, t)).sum() - out.sum()) > 1e-2


@pytest.mark.parametrize(
    "config, expected",
    [
        (NCSN_SMALL, (148, "444e1c0651c757853b0d3f9974511c813691a44363adc90329ab0eb241fd68ea")),
        (ALT_SMALL, (136, "6dd1fca54182ac47fc10b8afb58d2d5fce445dca31c417423ad64565d185e5fe")),
    ],
)
def test_option_trees_unchanged(config, expected):
    """The parameter paths and shapes with the DDPM++ / NCSN++ options on, recorded from the
    single-file U-Net before it was split into blocks (checkpoints keep loading)."""
    flat = nnx.to_flat_state(nnx.state(_abstract(config)))
    entries = sorted(
        "/".join(map(str, k)) + ":" + "x".join(map(str, v.get_value().shape)) for k, v in flat
    )
    assert (len(entries), hashlib.sha256("\n".join(entries).encode()).hexdigest()) == expected


# ---------------------------------------------------------------- parameter counts


def _official_count(
    nf=128,
    ch_mult=(1, 2, 2, 2),
    nrb=4,
    attn_res=(16,),
    res=32,
    c=3,
    fourier=False,
    progressive="none",
    progressive_input="none",
):
    """Trainable parameters of the official NCSN++ module list (score_sde ``ncsnpp.py`` with
    ``resblock_type='biggan'``, ``progressive_combine='sum'``), counted layer by layer.
    The Fourier frequencies (a ``requires_grad=False`` tensor there) are not counted."""

    def conv3(i, o):
        return 9 * i * o + o

    def conv1(i, o):
        return i * o + o

    def gn(ch):
        return 2 * ch

    def block(i, o=None, updown=False):
        o = o or i
        n = gn(i) + conv3(i, o) + conv1(4 * nf, o) + gn(o) + conv3(o, o)
        return n + (conv1(i, o) if i != o or updown else 0)

    def attn(ch):
        return gn(ch) + 4 * conv1(ch, ch)

    n = conv1(2 * nf if fourier else nf, 4 * nf) + conv1(4 * nf, 4 * nf) + conv3(c, nf)
    hs, cur, pyr, levels = [nf], nf, c, len(ch_mult)
    for i, m in enumerate(ch_mult):
        for _ in range(nrb):
            n, cur = n + block(cur, nf * m), nf * m
            n += attn(cur) if res // 2**i in attn_res else 0
            hs.append(cur)
        if i != levels - 1:
            n += block(cur, updown=True)
            if progressive_input == "input_skip":
                n += conv1(pyr, cur)
            elif progressive_input == "residual":
                n, pyr = n + conv3(pyr, cur), cur
            hs.append(cur)
    n += 2 * block(cur) + attn(cur)
    pyr = None
    for i in reversed(range(levels)):
        for _ in range(nrb + 1):
            n, cur = n + block(cur + hs.pop(), nf * ch_mult[i]), nf * ch_mult[i]
        n += attn(cur) if res // 2**i in attn_res else 0
        if progressive == "output_skip":
            n += gn(cur) + conv3(cur, c)
        elif progressive == "residual":
            n += gn(cur) + conv3(cur, cur) if pyr is None else conv3(pyr, cur)
            pyr = cur
        n += block(cur, updown=True) if i != 0 else 0
    return n + (gn(cur) + conv3(cur, c) if progressive != "output_skip" else 0)


def test_paper_cifar10_parameter_counts():
    # Song et al. (2021), the official CIFAR-10 configs, counted from the official layer
    # list. ``UNet`` gives the same counts (checked when this was written, by tracing the
    # modules; about 10 s per 32x32 config, so here only the small configs below are traced,
    # which pins the same layer layout).
    assert _official_count() == 61_804_419  # DDPM++ cont.
    assert _official_count(nrb=8) == 106_632_579  # DDPM++ cont. (deep)
    ncsn = dict(fourier=True, progressive_input="residual")
    assert _official_count(**ncsn) == 62_758_787  # NCSN++ cont.
    assert _official_count(nrb=8, **ncsn) == 107_586_947  # NCSN++ cont. (deep)


@pytest.mark.parametrize(
    "inp, out", [("none", "none"), ("input_skip", "output_skip"), ("residual", "residual")]
)
def test_small_parameter_counts_match_official_layer_list(inp, out):
    small = dict(channels=16, channel_mult=(1, 2, 2), num_groups=4, attention_resolutions=(8,))
    config = ncsnpp_config(**small, num_res_blocks=1, progressive_input=inp, progressive_output=out)
    expected = _official_count(16, (1, 2, 2), 1, (8,), 16, 3, True, out, inp)
    assert _count(config, (16, 16, 3)) == expected
    if inp == "none":
        # Negative control: DDPM's attention after every up block is not the NCSN++ layout.
        every = dataclasses.replace(config, up_attention="every_block")
        assert _count(every, (16, 16, 3)) != expected


def test_progressive_layer_structure():
    params = nnx.to_pure_dict(nnx.state(_abstract(NCSN_SMALL)))
    assert "conv_out" not in params and "norm_out" not in params  # output = the pyramid
    # One output head per level, from that level's width to the image channels.
    assert params["up"][0]["pyramid_conv"]["kernel"].shape == (3, 3, 32, 2)
    assert params["up"][1]["pyramid_conv"]["kernel"].shape == (3, 3, 16, 2)
    assert params["down"][0]["pyramid_resample"]["conv"]["kernel"].shape == (3, 3, 2, 16)
    assert "pyramid_resample" not in params["down"][1]  # no downsampling after the last level
    assert params["down"][0]["resample"]["skip"]["kernel"].shape == (16, 16)  # BigGAN skip
    assert len(params["up"][0]["attn"]) == 1  # attention once per level on the way up

    alt = nnx.to_pure_dict(nnx.state(_abstract(ALT_SMALL)))
    assert alt["down"][0]["pyramid_conv"]["kernel"].shape == (1, 1, 2, 16)
    assert alt["up"][0]["pyramid_conv"]["kernel"].shape == (3, 3, 32, 32)
    assert alt["up"][1]["pyramid_resample"]["conv"]["kernel"].shape == (3, 3, 32, 16)
    assert len(alt["up"][0]["attn"]) == 2 and "conv_out" in alt


# ---------------------------------------------------------------- the networks run


@pytest.fixture(scope="module")
def ncsn_small():
    """(graphdef, init params, perturbed params, apply) for NCSN_SMALL.

    ``apply(p, x, t)`` always runs with a dropout key (one compilation for every test).
    """

    def make(key):
        return nnx.to_pure_dict(nnx.state(UNet(NCSN_SMALL, image_shape=SHAPE, rngs=nnx.Rngs(key))))

    params = jax.jit(make)(jax.random.key(0, impl="unsafe_rbg"))
    rng = np.random.default_rng(1)
    perturbed = jax.tree.map(
        lambda p: jnp.asarray(np.asarray(p) + 0.2 * rng.standard_normal(p.shape), p.dtype), params
    )
    graphdef = nnx.graphdef(_abstract(NCSN_SMALL))
    step = jax.jit(lambda p, x, t, k: nnx.merge(graphdef, p)(x, t, key=k))

    def apply(p, x, t, key=None):
        return step(p, x, t, jax.random.key(0) if key is None else key)

    return graphdef, params, perturbed, apply


@pytest.mark.parametrize("which", ["ncsn", "alt"])
def test_runs_under_jit_with_float_t(which, ncsn_small):
    if which == "ncsn":
        _, _, params, apply = ncsn_small
    else:
        abstract = _abstract(ALT_SMALL)
        params, apply = _numpy_params(abstract), _apply(nnx.graphdef(abstract))
    x = _x()
    t = jnp.array([-4.6, 0.3, 3.9], jnp.float32)  # e.g. log sigma, or 999 t
    out = apply(params, x, t)
    assert out.shape == (3, *SHAPE) and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
    assert float(jnp.min(jnp.abs(out).reshape(3, -1).max(axis=1))) > 1e-3
    assert float(jnp.max(jnp.abs(apply(params, x, t + 0.5) - out))) > 1e-4
    assert float(jnp.max(jnp.abs(apply(params, x + 0.5, t) - out))) > 1e-3


def test_dropout_keys_with_resblock_updown(ncsn_small):
    graphdef, _, params, apply = ncsn_small
    module = nnx.merge(graphdef, params)
    n_blocks = sum(isinstance(m, ResBlock) for _, m in nnx.iter_graph(module))
    assert module._num_res_blocks_total == n_blocks == 10  # incl. the 2 resampling blocks
    x, t = _x(), jnp.array([0.1, 1.0, 2.0])
    a = apply(params, x, t, jax.random.key(1))
    np.testing.assert_array_equal(apply(params, x, t, jax.random.key(1)), a)
    assert float(jnp.max(jnp.abs(apply(params, x, t, jax.random.key(2)) - a))) > 1e-4


def test_zero_output_at_init_and_init_scale(ncsn_small):
    _, params, perturbed, apply = ncsn_small
    x, t = _x(), jnp.array([0.0, 1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(apply(params, x, t)), 0.0)  # heads start at 0
    assert float(jnp.max(jnp.abs(apply(perturbed, x, t)))) > 1e-3  # negative control

    # init_scale > 0: the "zero" layers get variance scaling(scale, fan_avg, uniform).
    def conv2_kernel(scale):
        block = ResBlock(8, 8, 16, num_groups=4, dropout=0.0, rngs=nnx.Rngs(0), init_scale=scale)
        return block.conv2.kernel.get_value()

    for scale in (0.0, 0.5):
        k = np.asarray(jax.jit(conv2_kernel, static_argnums=0)(scale))
        bound = math.sqrt(3 * scale / (9 * 8))  # fan_avg = (9*8 + 9*8) / 2
        assert np.max(np.abs(k)) <= bound + 1e-7
        assert np.max(np.abs(k)) >= 0.8 * bound and (scale == 0) == (np.max(np.abs(k)) == 0)


# ---------------------------------------------------------------- skip rescaling


def test_skip_rescale_by_construction(x64):
    # At init the residual branch is exactly zero (conv2 / proj_out start at 0), so a block
    # returns its skip path: x, or x / sqrt(2) with skip_rescale.
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 4, 8)))
    temb = jnp.asarray(np.random.default_rng(1).standard_normal((2, 16)))
    common = dict(num_groups=4, dropout=0.0)

    @jax.jit  # build and run every block in one compilation (eager init is slow)
    def run(x, temb):
        out = {}
        for rescale in (True, False):
            res = ResBlock(8, 8, 16, **common, rngs=nnx.Rngs(0), skip_rescale=rescale)
            att = AttentionBlock(
                8, num_heads=2, num_groups=4, rngs=nnx.Rngs(0), skip_rescale=rescale
            )
            out[f"res{rescale}"], out[f"att{rescale}"] = res(x, temb), att(x)
        # BigGAN resampling blocks: the skip path resamples first, then its 1x1 conv.
        for direction, fir, resample in (
            ("down", True, fir_downsample),
            ("up", False, nearest_upsample),
        ):
            block = ResBlock(
                8, 8, 16, **common, rngs=nnx.Rngs(0), resample=direction, fir=fir, skip_rescale=True
            )
            out[direction] = block(x, temb), block.skip(resample(x)) / math.sqrt(2)
        return out

    out = run(x, temb)
    for rescale, factor in ((True, 1 / math.sqrt(2)), (False, 1.0)):
        np.testing.assert_allclose(out[f"res{rescale}"], factor * x, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(out[f"att{rescale}"], factor * x, rtol=1e-13, atol=1e-13)
    for direction in ("down", "up"):
        np.testing.assert_allclose(*out[direction], rtol=1e-12, atol=1e-12)
    assert out["down"][0].shape == (2, 2, 2, 8) and out["up"][0].shape == (2, 8, 8, 8)


# ---------------------------------------------------------------- FIR resampling


def test_fir_filter_normalisation():
    k = fir_kernel()
    np.testing.assert_allclose(k, np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0, rtol=0, atol=0)
    assert k.sum() == 1.0  # downsampling keeps constants
    k4 = fir_kernel(4.0)
    # Upsampling: each of the four polyphase components of 4k sums to 1.
    for a in range(2):
        for b in range(2):
            assert k4[a::2, b::2].sum() == 1.0


def _upfirdn_reference(x, k, up, down, pad):
    """NumPy upfirdn2d on (H, W): zero insertion, zero padding, correlation, decimation."""
    h, w = x.shape
    u = np.zeros((h * up, w * up))
    u[::up, ::up] = x
    u = np.pad(u, (pad, pad))
    n = k.shape[0]
    out = np.array(
        [
            [np.sum(k * u[i : i + n, j : j + n]) for j in range(u.shape[1] - n + 1)]
            for i in range(u.shape[0] - n + 1)
        ]
    )
    return out[::down, ::down]


def test_fir_resampling_matches_upfirdn(x64):
    x = np.random.default_rng(0).standard_normal((1, 8, 6, 1))
    down = np.asarray(fir_downsample(jnp.asarray(x)))[0, :, :, 0]
    np.testing.assert_allclose(
        down, _upfirdn_reference(x[0, :, :, 0], fir_kernel(), 1, 2, (1, 1)), atol=1e-13
    )
    up = np.asarray(fir_upsample(jnp.asarray(x)))[0, :, :, 0]
    np.testing.assert_allclose(
        up, _upfirdn_reference(x[0, :, :, 0], fir_kernel(4.0), 2, 1, (2, 1)), atol=1e-13
    )
    assert down.shape == (4, 3) and up.shape == (16, 12)


def test_fir_up_is_four_times_adjoint_of_down(x64):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 8, 8, 3)))
    y = jnp.asarray(rng.standard_normal((2, 4, 4, 3)))
    lhs = float(jnp.sum(fir_upsample(y) * x))
    rhs = 4 * float(jnp.sum(y * fir_downsample(x)))
    assert abs(lhs - rhs) < 1e-12 * abs(rhs) + 1e-12
    # Negative control: a one-pixel misalignment of the upsampling breaks the identity.
    shifted = fir_filter(y, gain=4.0, padding=(1, 3), dilation=2)
    assert abs(float(jnp.sum(shifted * x)) - rhs) > 1e-3


def test_fir_constant_and_nyquist(x64):
    c = jnp.full((1, 16, 16, 2), 1.5)
    down = fir_downsample(c)
    roundtrip = fir_upsample(down)
    # Constants are kept away from the border (zero padding acts on 1-2 border pixels).
    np.testing.assert_allclose(down[:, 1:-1, 1:-1], 1.5, rtol=0, atol=1e-14)
    np.testing.assert_allclose(roundtrip[:, 3:-3, 3:-3], 1.5, rtol=0, atol=1e-14)
    assert float(jnp.max(jnp.abs(roundtrip[:, 0] - 1.5))) > 0.1  # the border does see zeros
    # Anti-aliasing: [1, 3, 3, 1] has a zero at Nyquist, so the checkerboard vanishes in
    # the interior, while plain stride-2 subsampling aliases it to a constant.
    i = np.arange(16)
    checker = jnp.asarray(((-1.0) ** (i[:, None] + i[None, :]))[None, :, :, None])
    np.testing.assert_allclose(fir_downsample(checker)[:, 1:-1, 1:-1], 0.0, atol=1e-14)
    np.testing.assert_array_equal(checker[:, ::2, ::2], 1.0)
    # The filter-less pair: 2x2 average pooling undoes nearest upsampling exactly.
    y = jnp.asarray(np.random.default_rng(0).standard_normal((1, 4, 4, 2)))
    np.testing.assert_allclose(avg_pool_downsample(nearest_upsample(y)), y, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    "layer_cls, resample", [(Downsample, fir_downsample), (Upsample, fir_upsample)]
)
def test_fir_conv_resampling_layers_align_with_fir(x64, layer_cls, resample):
    # With a centred delta kernel, "blur then stride-2 conv" is the FIR downsampling, and
    # "stride-2 transposed conv then blur" is the FIR upsampling: the padding is aligned.
    layer = layer_cls(2, out_ch=2, fir=True, rngs=nnx.Rngs(0))
    delta = np.zeros((3, 3, 2, 2))
    delta[1, 1] = np.eye(2)
    layer.conv.kernel.set_value(jnp.asarray(delta))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 2)))
    np.testing.assert_allclose(layer(x), resample(x), rtol=1e-12, atol=1e-12)
    # Negative control: an off-centre delta is a shifted (different) map.
    delta_off = np.zeros((3, 3, 2, 2))
    delta_off[0, 1] = np.eye(2)
    layer.conv.kernel.set_value(jnp.asarray(delta_off))
    assert float(jnp.max(jnp.abs(layer(x) - resample(x)))) > 1e-2


# ---------------------------------------------------------------- Fourier features


def test_fourier_embedding_formula(x64):
    freqs = np.array([0.5, -2.0, 16.0])
    t = np.array([-4.6, 0.0, 0.37])
    emb = np.asarray(gaussian_fourier_embedding(jnp.asarray(t), freqs))
    args = 2 * np.pi * t[:, None] * freqs[None, :]
    np.testing.assert_allclose(emb, np.concatenate([np.sin(args), np.cos(args)], 1), atol=1e-13)
    assert gaussian_fourier_embedding(jnp.array([1, 2]), freqs).dtype == jnp.float64


def test_fourier_frequencies_fixed_and_scaled():
    w = gaussian_fourier_frequencies(20_000, scale=16.0, seed=0)
    np.testing.assert_array_equal(w, np.random.RandomState(0).standard_normal(20_000) * 16.0)
    assert not w.flags.writeable
    assert not np.array_equal(gaussian_fourier_frequencies(20_000, scale=16.0, seed=1), w)
    # N(0, 16^2): the sample std is within 3% of 16 and the mean within 4 standard errors.
    assert abs(w.std() / 16.0 - 1) < 0.03 and abs(w.mean()) < 4 * 16.0 / math.sqrt(w.size)
    # Negative control: scale 8 fails the same check.
    assert abs(gaussian_fourier_frequencies(20_000, scale=8.0).std() / 16.0 - 1) > 0.03


def test_fourier_features_are_not_parameters(ncsn_small):
    sinus = dataclasses.replace(NCSN_SMALL, time_embedding="sinusoidal")
    # The only change is temb_dense0's input width, ch -> 2 ch: ch * 4 ch more weights.
    abstract = _abstract(NCSN_SMALL)
    assert _count(NCSN_SMALL) - _count(sinus) == 16 * 64
    variables = jax.tree.leaves(nnx.state(abstract), is_leaf=lambda v: isinstance(v, nnx.Variable))
    assert all(type(v) is nnx.Param for v in variables)  # so the optimizer's tree is all of it
    paths = ["/".join(map(str, k)) for k, _ in nnx.to_flat_state(nnx.state(abstract))]
    assert not [p for p in paths if "fourier" in p or "freq" in p]

    # The embedding is a fixed function of the config, whatever the init key ...
    t = jnp.array([-3.0, 0.5, 2.0])
    # (an abstract module, whose parameters are only shapes, gives the same concrete result
    # as an initialised one).
    a = abstract._embed_time(t, jnp.float32)
    graphdef, params, _, _ = ncsn_small
    np.testing.assert_array_equal(nnx.merge(graphdef, params)._embed_time(t, jnp.float32), a)
    np.testing.assert_allclose(
        a, gaussian_fourier_embedding(t, gaussian_fourier_frequencies(16, scale=16.0)), rtol=1e-6
    )
    # ... and a different fourier_seed gives different features (negative control).
    other = _abstract(dataclasses.replace(NCSN_SMALL, fourier_seed=1))
    assert float(jnp.max(jnp.abs(other._embed_time(t, jnp.float32) - a))) > 0.1
    # No gradient reaches the frequencies (they are constants, stop_gradient'ed).
    g = jax.grad(lambda w: jnp.sum(gaussian_fourier_embedding(t, w)))(jnp.ones(4))
    np.testing.assert_array_equal(g, 0.0)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"time_embedding": "positional"},
            r"time_embedding must be one of 'sinusoidal', 'fourier'",
        ),
        ({"resample_filter": "FIR"}, r"resample_filter must be one of 'none', 'fir'"),
        ({"progressive_input": "skip"}, r"'none', 'input_skip', 'residual'; got 'skip'"),
        ({"progressive_output": "input_skip"}, r"'none', 'output_skip', 'residual'"),
        ({"up_attention": "per_level"}, r"'every_block', 'last_block'"),
        ({"resblock_updown": 1}, "resblock_updown must be a bool"),
        ({"skip_rescale": "yes"}, "skip_rescale must be a bool"),
        ({"fourier_scale": 0.0}, "fourier_scale must be finite and > 0"),
        ({"init_scale": -1.0}, "init_scale must be finite and >= 0"),
        ({"fourier_seed": -1}, "fourier_seed must be an integer >= 0"),
    ],
)
def test_option_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**kwargs)


def test_presets():
    d, n = ddpmpp_config(), ncsnpp_config(deep=True)
    assert (d.num_res_blocks, d.resblock_updown, d.skip_rescale, d.up_attention) == (
        4,
        True,
        True,
        "last_block",
    )
    assert (n.num_res_blocks, n.resample_filter, n.time_embedding, n.fourier_scale) == (
        8,
        "fir",
        "fourier",
        16.0,
    )
    assert (n.progressive_input, n.progressive_output, n.dropout) == ("residual", "none", 0.1)
    assert ncsnpp_config(channels=64).channels == 64
