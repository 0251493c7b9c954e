"""The GAN networks against hand computations.

* Spectral normalization: power iteration on a kernel with known singular values
  (3, 1.5, 1, 0.5) converges to 3 and the effective kernel has spectral norm 1; one step
  from a fresh ``u`` is visibly off; the kernel Param never changes; ``update_stats=False``
  keeps ``u``. The layer's kernel gradient is that of ``x @ (W / (v^T W u'))`` with ``u'``,
  ``v`` from a hand-written power step held constant (not that of ``x @ W / const``). The
  spectral layers equal the plain Flax layers run with ``W / sigma``.
* ``BatchStatsNorm`` is the batch-norm formula with statistics over all axes but channels;
  on a batch sharded over 8 devices it gives the unsharded (global-statistics) result.
* DCGAN: layer shapes per the architecture, PyTorch-aligned stride-2 transposed
  convolutions, no dense layers; the projection discriminator is
  ``psi(phi) + <embed(y), phi>`` rebuilt from its parts; labels matter where they should.
* pix2pix: the U-Net's skips carry the input past a dead bottleneck; a PatchGAN logit has
  zero gradient outside its documented receptive field.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxgen.engine.sharding import DATA_AXIS, make_mesh
from jaxgen.nets.dcgan import UP_PADDING, BatchStatsNorm, DCGANDiscriminator, DCGANGenerator
from jaxgen.nets.pix2pix import PatchDiscriminator, UNetGenerator, patch_receptive_field
from jaxgen.nets.spectral_norm import (
    SpectralConv,
    SpectralConvTranspose,
    SpectralLinear,
    SpectralVector,
    normalized_kernel,
    spectral_norm_estimate,
)


def build(ctor, seed: int = 0, std: float = 0.2):
    """``(graphdef, params)``: the graph built abstractly, the parameters drawn in NumPy
    (``N(0, std^2)``, norm scales ``1 + N(0, std^2)``). A jitted Flax init of these nets
    spends about 10 s compiling the random initializers on 2 cores; the tests need
    generic weights, not the initial distribution."""
    graphdef, abstract = nnx.split(nnx.eval_shape(ctor))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        value = std * rng.normal(size=leaf.shape)
        if path[-1].key == "scale":
            value = value + 1.0
        return value.astype(leaf.dtype)

    return graphdef, jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(abstract))


def normal(seed: int, *shape: int) -> np.ndarray:
    """Standard normal float32 draws made in NumPy (eager ``jax.random`` compiles per shape)."""
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def as_numpy(tree):
    return jax.tree.map(np.asarray, tree)


def kernel_shapes(params, *names):
    return [
        tuple(layer["kernel"].shape)
        for n in names
        for _, layer in sorted(params.get(n, {}).items())
    ]


# ---------------------------------------------------------------- spectral normalization


def test_power_iteration_converges_and_never_touches_the_kernel(x64):
    graphdef, _ = build(lambda: SpectralConv(2, 4, (3, 3), rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    left = np.linalg.qr(rng.normal(size=(18, 4)))[0]
    right = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    s1, s2 = 3.0, 2.5
    w2d = left @ np.diag([s1, s2, 1.0, 0.5]) @ right.T  # sigma_max = 3 by construction
    a, b = 0.3, 1.0  # u0 = a r1 + b r2 (r the right singular vectors), mostly off r1
    u0 = (a * right[:, 0] + b * right[:, 1]) / np.hypot(a, b)
    params = {"kernel": w2d.reshape(3, 3, 2, 4), "bias": np.zeros(4), "u": u0}

    def sigma_after(k):  # k steps: u_k ~ (W^T W)^k u0, sigma_k = |W^T W u_(k-1)| / |W u_(k-1)|
        num = a**2 * s1 ** (4 * k) + b**2 * s2 ** (4 * k)
        den = a**2 * s1 ** (4 * k - 2) + b**2 * s2 ** (4 * k - 2)
        return np.sqrt(num / den)

    @functools.partial(jax.jit, static_argnames="update")
    def step(p, x, update=True):
        layer = nnx.merge(graphdef, p)
        layer(x, update_stats=update)
        return nnx.to_pure_dict(nnx.state(layer))

    @jax.jit
    def next_call(p):  # the sigma and W / sigma that a call makes from p's u (one more step)
        sigma = spectral_norm_estimate(p["kernel"].reshape(18, 4), p["u"])[0]
        return sigma, normalized_kernel(nnx.merge(graphdef, p)).reshape(18, 4)

    x = rng.normal(size=(1, 5, 5, 2))
    p = step(params, x)
    u1 = a * s1**2 * right[:, 0] + b * s2**2 * right[:, 1]  # (W^T W) u0, normalized below
    np.testing.assert_allclose(p["u"], u1 / np.linalg.norm(u1), rtol=1e-12, atol=1e-14)
    sigma_one = float(next_call(params)[0])
    np.testing.assert_allclose(sigma_one, sigma_after(1), rtol=1e-12)
    for _ in range(59):
        p = step(p, x)
    # after 60 calls u holds 60 power steps from u0; the next call makes the 61st
    sigma, wn = next_call(p)
    assert sigma_after(61) == pytest.approx(s1, rel=1e-14)
    np.testing.assert_allclose(sigma, sigma_after(61), rtol=1e-12)
    svd_top = np.linalg.svd(w2d, compute_uv=False)[0]
    assert abs(sigma - svd_top) < 1e-4 * svd_top
    assert abs(np.linalg.svd(wn, compute_uv=False)[0] - 1.0) < 1e-10
    assert abs(sigma_one - s1) > 0.1  # negative control: one step from u0 is far off (2.56)
    np.testing.assert_array_equal(p["kernel"], params["kernel"])  # the Param never changes
    assert np.abs(p["u"] - u0).max() > 0.1  # ... while u moved
    np.testing.assert_array_equal(step(params, x, update=False)["u"], u0)
    # u is a SpectralVector, not a Param: an optimizer over Params never sees it
    layer = nnx.merge(graphdef, params)
    assert set(nnx.to_pure_dict(nnx.state(layer, SpectralVector))) == {"u"}
    assert "u" not in nnx.to_pure_dict(nnx.state(layer, nnx.Param))


def test_spectral_gradient_is_the_explicit_formula_with_u_and_v_constant(x64):
    graphdef, _ = build(lambda: SpectralLinear(5, 3, rngs=nnx.Rngs(1)))
    rng = np.random.default_rng(1)
    w = rng.normal(size=(5, 3))
    u = rng.normal(size=3)
    u /= np.linalg.norm(u)
    bias = rng.normal(size=3)
    x = rng.normal(size=(4, 5))
    cot = rng.normal(size=(4, 3))
    # one power step by hand (Algorithm 1 in the (in, out) layout)
    v = w @ u / np.linalg.norm(w @ u)
    u_new = w.T @ v / np.linalg.norm(w.T @ v)
    sigma = v @ w @ u_new

    def layer_loss(kernel):
        layer = nnx.merge(graphdef, {"kernel": kernel, "bias": bias, "u": u})
        return jnp.sum(cot * layer(x, update_stats=True))

    def explicit_loss(kernel):
        return jnp.sum(cot * (x @ (kernel / (v @ kernel @ u_new)) + bias[None, :]))

    def constant_sigma_loss(kernel):
        return jnp.sum(cot * (x @ kernel / sigma + bias[None, :]))

    @jax.jit
    def everything(kernel):
        losses = [
            jax.value_and_grad(f)(kernel) for f in (layer_loss, explicit_loss, constant_sigma_loss)
        ]
        return losses, spectral_norm_estimate(kernel, jnp.asarray(u))

    [(got, grad), (want, want_grad), (_, const_grad)], (got_sigma, got_u) = everything(w)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)
    gap = np.abs(grad - const_grad).max()
    assert gap > 1e-2 * np.abs(grad).max()  # negative control: sigma's own gradient matters
    np.testing.assert_allclose([got_sigma, *got_u], [sigma, *u_new], rtol=1e-12)
    with pytest.raises(ValueError, match="u must have shape"):
        spectral_norm_estimate(w, np.ones(5))
    with pytest.raises(ValueError, match="padding"):
        SpectralConv(2, 3, 3, padding="FULL", rngs=nnx.Rngs(0))


def test_spectral_layers_are_the_plain_layers_with_the_normalized_kernel():
    x = normal(2, 2, 6, 6, 3)
    cases = [
        (
            lambda: SpectralConv(
                3, 5, (4, 4), strides=2, padding=((1, 1), (1, 1)), rngs=nnx.Rngs(3)
            ),
            lambda: nnx.Conv(3, 5, (4, 4), strides=2, padding=((1, 1), (1, 1)), rngs=nnx.Rngs(0)),
        ),
        (
            lambda: SpectralConvTranspose(
                3, 5, (4, 4), strides=2, padding=UP_PADDING, rngs=nnx.Rngs(4)
            ),
            lambda: nnx.ConvTranspose(
                3, 5, (4, 4), strides=2, padding=UP_PADDING, rngs=nnx.Rngs(0)
            ),
        ),
    ]
    for spectral_ctor, plain_ctor in cases:
        sgraph, sparams = build(spectral_ctor)
        pgraph, _ = build(plain_ctor)
        sparams["bias"] = normal(5, 5)

        @jax.jit
        def both(sp, x, sgraph=sgraph, pgraph=pgraph):
            layer = nnx.merge(sgraph, sp)
            wn = normalized_kernel(layer)
            plain = nnx.merge(pgraph, {"kernel": wn, "bias": sp["bias"]})
            raw = nnx.merge(pgraph, {"kernel": sp["kernel"], "bias": sp["bias"]})
            return layer(x, update_stats=False), plain(x), raw(x)

        got, want, raw = both(sparams, x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert np.abs(raw - want).max() > 1e-2  # negative control: the kernel is rescaled
    graphdef, params = build(lambda: SpectralLinear(3, 2, rngs=nnx.Rngs(6)))
    layer = nnx.merge(graphdef, params)
    with pytest.raises(ValueError, match="SpectralLinear expects"):
        layer(np.ones((2, 4), np.float32))


# ---------------------------------------------------------------- batch statistics norm


def test_batch_stats_norm_is_the_formula_with_global_batch_statistics(x64):
    rng = np.random.default_rng(3)
    x = 2.0 * rng.normal(size=(6, 3, 3, 4)) + rng.normal(size=(1, 3, 3, 4))
    scale, bias = rng.normal(size=4), rng.normal(size=4)
    norm = BatchStatsNorm(4)
    graphdef, state = nnx.split(norm)
    params = nnx.to_pure_dict(state)
    assert set(params) == {"scale", "bias"}  # no running averages, no hidden state
    assert set(nnx.to_pure_dict(nnx.state(norm, nnx.Param))) == {"scale", "bias"}
    np.testing.assert_array_equal(params["scale"], np.ones(4))
    np.testing.assert_array_equal(params["bias"], np.zeros(4))
    fn = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
    mean = x.mean(axis=(0, 1, 2))
    var = ((x - mean) ** 2).mean(axis=(0, 1, 2))
    want = (x - mean) / np.sqrt(var + 1e-5) * scale + bias
    got = fn({"scale": scale, "bias": bias}, jnp.asarray(x))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    unit = np.asarray(fn({"scale": np.ones(4), "bias": np.zeros(4)}, jnp.asarray(x)))
    assert np.abs(unit.mean(axis=(0, 1, 2))).max() < 1e-5
    assert np.abs(unit.var(axis=(0, 1, 2)) - 1.0).max() < 1e-5
    # negative control: per-position statistics (over the batch axis only) are different
    per_position = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5) * scale + bias
    assert np.abs(per_position - want).max() > 0.1
    with pytest.raises(ValueError, match="BatchStatsNorm expects"):
        fn({"scale": scale, "bias": bias}, np.ones((2, 3)))


def test_batch_stats_norm_with_a_reference_batch_uses_its_statistics_only(x64):
    """``num_reference = R``: mean and variance of the first ``R`` rows, applied to all."""
    rng = np.random.default_rng(4)
    x = 2.0 * rng.normal(size=(10, 3, 3, 4)) + rng.normal(size=(1, 3, 3, 4))
    scale, bias = rng.normal(size=4), rng.normal(size=4)
    graphdef, _ = nnx.split(BatchStatsNorm(4))
    params = {"scale": scale, "bias": bias}
    fn = jax.jit(lambda p, x, r: nnx.merge(graphdef, p)(x, num_reference=r), static_argnums=2)
    ref = x[:4]
    mean = ref.mean(axis=(0, 1, 2))
    var = ((ref - mean) ** 2).mean(axis=(0, 1, 2))
    want = (x - mean) / np.sqrt(var + 1e-5) * scale + bias
    np.testing.assert_allclose(fn(params, jnp.asarray(x), 4), want, rtol=1e-12, atol=1e-12)
    # the rows after the reference do not influence each other: change them, row 4 stays
    other = x.copy()
    other[5:] = 10.0 * rng.normal(size=other[5:].shape)
    np.testing.assert_allclose(fn(params, jnp.asarray(other), 4)[:5], want[:5], rtol=1e-12)
    # R = the whole batch is the plain batch norm; negative control: R = 4 is not
    full = np.asarray(fn(params, jnp.asarray(x), 10))
    np.testing.assert_allclose(full, fn(params, jnp.asarray(x), 0), rtol=1e-12, atol=1e-12)
    assert np.abs(full - want).max() > 0.1
    with pytest.raises(ValueError, match="num_reference"):
        fn(params, jnp.asarray(x), 11)


def test_batch_stats_norm_on_a_sharded_batch_uses_global_statistics():
    mesh = make_mesh(8)
    graphdef, _ = build(lambda: BatchStatsNorm(3))
    params = {"scale": np.float32([1.0, 2.0, 0.5]), "bias": np.float32([0.0, 1.0, -1.0])}
    # each device's 2 examples get a different offset, so local statistics would differ
    x = normal(7, 16, 4, 4, 3) + np.repeat(np.arange(8.0, dtype=np.float32), 2)[:, None, None, None]
    fn = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
    x_sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec(DATA_AXIS)))
    assert {s.data.shape for s in x_sharded.addressable_shards} == {(2, 4, 4, 3)}
    assert len(x_sharded.sharding.device_set) == 8
    got = fn(params, x_sharded)
    want = fn(params, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # negative control: normalizing each device's shard by its own statistics
    xs = np.asarray(x).reshape(8, 2, 4, 4, 3)
    mean = xs.mean(axis=(1, 2, 3), keepdims=True)
    var = xs.var(axis=(1, 2, 3), keepdims=True)
    local = (xs - mean) / np.sqrt(var + 1e-5) * np.array([1.0, 2.0, 0.5]) + np.array([0, 1, -1])
    assert np.abs(local.reshape(want.shape) - want).max() > 0.5


# ---------------------------------------------------------------- DCGAN


def test_transposed_convolution_padding_is_pytorch_k4_s2_p1():
    graphdef, params = build(
        lambda: nnx.ConvTranspose(
            1, 1, (4, 4), strides=2, padding=UP_PADDING, use_bias=False, rngs=nnx.Rngs(8)
        )
    )
    w = np.asarray(params["kernel"])[:, :, 0, 0]
    x = np.random.default_rng(4).normal(size=(3, 3))
    got = np.asarray(nnx.merge(graphdef, params)(x[None, :, :, None]))[0, :, :, 0]

    def scatter(first):  # out[2 i - p + a] += x[i] w'[a], w' the flipped kernel (Flax convention)
        out = np.zeros((10, 10))
        for i, j, a, b in np.ndindex(3, 3, 4, 4):
            out[2 * i + first + a + 2, 2 * j + first + b + 2] += x[i, j] * w[3 - a, 3 - b]
        return out[2:8, 2:8]

    assert got.shape == (6, 6)  # exactly doubled
    np.testing.assert_allclose(got, scatter(-1), rtol=1e-5, atol=1e-6)  # PyTorch padding=1
    assert np.abs(got - scatter(0)).max() > 0.1  # negative control: padding=0 alignment


def test_dcgan_architecture_shapes_range_and_no_dense_layers():
    for image_shape, widths in [((8, 8, 1), [4]), ((32, 32, 3), [16, 8, 4])]:
        gen_graph, gen = build(
            lambda s=image_shape: DCGANGenerator(5, s, base_features=4, rngs=nnx.Rngs(9))
        )
        dis_graph, dis = build(
            lambda s=image_shape: DCGANDiscriminator(s, base_features=4, rngs=nnx.Rngs(10))
        )
        channels = image_shape[2]
        ins = [5, *widths]
        outs = [*widths, channels]
        assert [tuple(gen["project"]["kernel"].shape)] + kernel_shapes(gen, "up") + [
            tuple(gen["out"]["kernel"].shape)
        ] == [(4, 4, a, b) for a, b in zip(ins, outs, strict=True)]
        assert len(gen.get("norms", {})) == len(widths)  # BN on every layer but the output
        d_widths = widths[::-1]
        assert kernel_shapes(dis, "down") == [
            (4, 4, a, b) for a, b in zip([channels, *d_widths[:-1]], d_widths, strict=True)
        ]
        assert tuple(dis["final"]["kernel"].shape) == (4, 4, d_widths[-1], 1)
        assert len(dis.get("norms", {})) == len(widths) - 1  # none on the input layer
        for graphdef, params in [(gen_graph, gen), (dis_graph, dis)]:
            types = {type(node) for _, node in nnx.iter_graph(nnx.merge(graphdef, params))}
            assert nnx.Linear not in types and (nnx.Conv in types or nnx.ConvTranspose in types)

        @jax.jit
        def run(gen, dis, z, gen_graph=gen_graph, dis_graph=dis_graph):
            images = nnx.merge(gen_graph, gen)(z)
            return images, nnx.merge(dis_graph, dis).features(images)

        images, (logits, phi) = run(gen, dis, normal(11, 3, 5))
        assert images.shape == (3, *image_shape) and logits.shape == (3,)
        assert phi.shape == (3, d_widths[-1])
        assert np.abs(images).max() <= 1.0 and np.abs(images).max() > 0.01
    for bad in [(4, 4, 1), (12, 12, 1), (8, 16, 1), (8, 8)]:
        with pytest.raises(ValueError, match="image_shape"):
            DCGANGenerator(5, bad, base_features=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="conditioning"):
        DCGANDiscriminator((8, 8, 1), conditioning="film", rngs=nnx.Rngs(0))


def test_projection_discriminator_is_psi_plus_embedding_inner_product():
    graphdef, params = build(
        lambda: DCGANDiscriminator((16, 16, 1), base_features=4, num_classes=3, rngs=nnx.Rngs(12))
    )
    features = jax.jit(lambda p, x, y: nnx.merge(graphdef, p).features(x, y))
    x = normal(13, 4, 16, 16, 1)
    y0, y1 = np.array([0, 1, 2, 1]), np.array([2, 2, 0, 0])
    embed = np.asarray(params["embed"]["embedding"])
    params_free = jax.tree.map(np.copy, params)  # a copy with the learned final kernel
    # psi with a spatially constant final kernel k is k . (sum-pooled map) + b = k . phi + b
    k = normal(14, 8)
    params["final"]["kernel"] = np.broadcast_to(k[None, None, :, None], (4, 4, 8, 1))
    params["final"]["bias"] = np.float32([0.3])
    logits, phi = as_numpy(features(params, x, y0))
    want = phi @ k + 0.3 + np.sum(embed[np.asarray(y0)] * phi, axis=-1)
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
    mean_pooled = phi / 16 @ k + 0.3 + np.sum(embed[np.asarray(y0)] * phi / 16, axis=-1)
    assert np.abs(logits - mean_pooled).max() > 1e-2  # negative control: phi is a sum pool
    # with the learned final kernel: logit - <embed(y), phi> is the unconditional logit
    unconditional = dict(params_free, embed={"embedding": np.zeros_like(embed)})
    base, _ = as_numpy(features(unconditional, x, y0))
    for y in (y0, y1):
        logits, phi = as_numpy(features(params_free, x, y))
        np.testing.assert_allclose(
            logits, base + np.sum(embed[np.asarray(y)] * phi, axis=-1), rtol=1e-5, atol=1e-5
        )
    assert np.abs(features(params_free, x, y0)[0] - features(params_free, x, y1)[0]).max() > 1e-3


def test_labels_condition_the_concat_discriminator_and_the_generator():
    d_graph, d_params = build(
        lambda: DCGANDiscriminator(
            (8, 8, 1), base_features=4, num_classes=3, conditioning="concat", rngs=nnx.Rngs(15)
        )
    )
    g_graph, g_params = build(
        lambda: DCGANGenerator(4, (8, 8, 1), base_features=4, num_classes=3, rngs=nnx.Rngs(16))
    )
    assert d_params["down"][0]["kernel"].shape == (4, 4, 1 + 3, 4)  # label maps concatenated
    d = jax.jit(lambda p, x, y: nnx.merge(d_graph, p)(x, y))
    g = jax.jit(lambda p, z, y: nnx.merge(g_graph, p)(z, y))
    x = normal(17, 2, 8, 8, 1)
    z = normal(18, 2, 4)
    same = np.array([1, 2])
    np.testing.assert_array_equal(d(d_params, x, same), d(d_params, x, same))
    assert np.abs(d(d_params, x, np.array([0, 0])) - d(d_params, x, same)).min() > 1e-5
    assert np.abs(g(g_params, z, np.array([0, 0])) - g(g_params, z, same)).max() > 1e-4
    discriminator = nnx.merge(d_graph, d_params)
    with pytest.raises(ValueError, match="needs labels"):
        discriminator(x)
    with pytest.raises(ValueError, match="labels must be integers"):
        discriminator(x, np.zeros((2,), np.float32))
    with pytest.raises(ValueError, match="needs labels"):
        nnx.merge(g_graph, g_params)(z)
    u_graph, u_params = build(
        lambda: DCGANDiscriminator((8, 8, 1), base_features=4, rngs=nnx.Rngs(19))
    )
    with pytest.raises(ValueError, match="unconditional"):
        nnx.merge(u_graph, u_params)(x, same)


def test_spectral_norm_discriminator_uses_spectral_convs_and_update_stats():
    graphdef, params = build(
        lambda: DCGANDiscriminator(
            (16, 16, 1), base_features=4, batch_norm=False, spectral_norm=True, rngs=nnx.Rngs(20)
        )
    )
    module = nnx.merge(graphdef, params)
    convs = [n for _, n in nnx.iter_graph(module) if isinstance(n, (nnx.Conv, SpectralConv))]
    assert len(convs) == 3 and all(isinstance(c, SpectralConv) for c in convs)
    assert not [n for _, n in nnx.iter_graph(module) if isinstance(n, BatchStatsNorm)]

    @jax.jit
    def call(p, x):
        kept, moved = nnx.merge(graphdef, p), nnx.merge(graphdef, p)
        kept(x, update_stats=False)
        moved(x, update_stats=True)
        return [nnx.to_pure_dict(nnx.state(d, SpectralVector)) for d in (kept, moved)]

    x = normal(21, 2, 16, 16, 1)
    old_u = nnx.to_pure_dict(nnx.state(module, SpectralVector))
    kept, moved = call(params, x)
    leaves = [jax.tree.leaves(t) for t in (old_u, kept, moved)]
    assert len(leaves[0]) == 3
    for a, b, c in zip(*leaves, strict=True):
        np.testing.assert_array_equal(a, b)
        if a.size > 1:  # the final conv's u is 1-D: a unit scalar, +-1 forever
            assert not np.allclose(a, c)
        else:
            np.testing.assert_allclose(np.abs(c), 1.0, rtol=1e-6)


# ---------------------------------------------------------------- pix2pix


def test_unet_skip_connections_carry_the_input_past_a_dead_bottleneck():
    graphdef, params = build(
        lambda: UNetGenerator(1, 1, features=(4, 8, 16), noise_channels=2, rngs=nnx.Rngs(22))
    )
    run = jax.jit(lambda p, x, n: nnx.merge(graphdef, p)(x, n))
    assert [tuple(params["decoder"][i]["kernel"].shape) for i in (0, 1)] == [
        (4, 4, 16, 8),
        (4, 4, 16, 4),  # 8 decoder + 8 skip channels
    ]
    assert tuple(params["out"]["kernel"].shape) == (4, 4, 8, 1)  # 4 decoder + 4 skip
    # batch norm on the encoder's middle layer only (not the first, not the 1 x 1 bottleneck)
    assert [tuple(v["scale"].shape) for v in params["encoder_norms"].values()] == [(8,)]
    assert [tuple(v["scale"].shape) for v in params["decoder_norms"].values()] == [(8,), (4,)]
    x, x_other, noise = normal(23, 2, 8, 8, 1), normal(24, 2, 8, 8, 1), normal(25, 2, 8, 8, 2)
    out = run(params, x, noise)
    assert out.shape == (2, 8, 8, 1) and np.abs(out).max() <= 1.0
    assert np.abs(run(params, x, -noise) - out).max() > 1e-4  # the noise is used
    # cut the bottleneck -> decoder path: the input still reaches the output via the skips
    dead = jax.tree.map(np.copy, params)
    dead["decoder"][0]["kernel"] = np.zeros_like(params["decoder"][0]["kernel"])
    assert np.abs(run(dead, x, noise) - run(dead, x_other, noise)).max() > 1e-4
    # negative control: also cut the skip halves of the decoder inputs -> input-independent
    dead["decoder"][1]["kernel"][:, :, 8:, :] = 0.0
    dead["out"]["kernel"][:, :, 4:, :] = 0.0
    np.testing.assert_allclose(run(dead, x, noise), run(dead, x_other, noise), atol=1e-6)
    generator = nnx.merge(graphdef, params)
    with pytest.raises(ValueError, match="needs noise"):
        generator(x)
    with pytest.raises(ValueError, match="divisible"):
        generator(np.ones((2, 12, 12, 1), np.float32), np.ones((2, 12, 12, 2), np.float32))


def test_patch_logit_gradient_vanishes_outside_its_receptive_field():
    size, stride, offset = patch_receptive_field(2)
    # hand derivation (module docstring): rows [4 i - 7, 4 i + 10], 18 pixels
    assert (size, stride, offset) == (18, 4, 7)
    assert patch_receptive_field(1) == (8, 2, 3)  # rows [2 i - 3, 2 i + 4]
    fields = {}
    for batch_norm in (False, True):
        graphdef, params = build(
            lambda bn=batch_norm: PatchDiscriminator(
                2, features=(4, 8), batch_norm=bn, rngs=nnx.Rngs(24)
            )
        )
        condition = normal(26, 2, 16, 16, 1)
        target = normal(27, 2, 16, 16, 1)

        @jax.jit
        def jacobian(p, target, graphdef=graphdef, condition=condition):
            logits = lambda t: nnx.merge(graphdef, p)(condition, t)[0]  # noqa: E731
            return logits(target), jax.jacrev(logits)(target)  # (4, 4, 2, 16, 16, 1)

        assert nnx.merge(graphdef, params).receptive_field == (size, stride, offset)
        logits, jac = jacobian(params, target)
        assert logits.shape == (4, 4)
        fields[batch_norm] = np.abs(np.asarray(jac)[:, :, 0, :, :, 0])  # wrt example 0
    rows = np.arange(16)
    inside_edges = 0
    for i, j in np.ndindex(4, 4):
        lo_i, hi_i = stride * i - offset, stride * i - offset + size - 1
        lo_j, hi_j = stride * j - offset, stride * j - offset + size - 1
        inside = ((rows >= lo_i) & (rows <= hi_i))[:, None] & ((rows >= lo_j) & (rows <= hi_j))
        grad = fields[False][i, j]
        assert grad[~inside].max() == 0.0
        # the field is not too large either: its unclipped edge rows and columns are seen
        for edge in (lo_i, hi_i):
            if 0 <= edge < 16:
                assert grad[edge, max(lo_j, 0) : hi_j + 1].max() > 0.0
                inside_edges += 1
        for edge in (lo_j, hi_j):
            if 0 <= edge < 16:
                assert grad[max(lo_i, 0) : hi_i + 1, edge].max() > 0.0
    assert inside_edges == 16  # every patch row has one unclipped edge on a 16 x 16 image
    # negative control: with batch norm the batch statistics reach every pixel
    i, j = 0, 0
    outside = ~(
        (rows <= stride * i - offset + size - 1)[:, None]
        & (rows <= stride * j - offset + size - 1)[None, :]
    )
    assert fields[True][i, j][outside].max() > 1e-6
