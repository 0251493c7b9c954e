"""Super-resolution in the DDPM, score-SDE and flow-matching recipes (issue 17).

* the U-Net sees the condition: an image-conditional network widens only ``conv_in`` and
  adds the level embedding, and refuses missing / misshapen condition inputs by name;
* training inputs are the batch area-downsampled, augmented at ``U[0, max]`` levels and
  enlarged; with ``max_augmentation = 0`` they are ``upsample(downsample(x))`` exactly;
* sampling at augmentation level 0 gives the unaugmented condition bit for bit, the same
  samples as a condition given as low-resolution rows or as full images, and a sample
  depends only on the seed and its index;
* batched classifier-free guidance sees each condition twice (the ``[x, x]`` stack);
* bad input is refused by name: a level outside the trained range, a condition of the wrong
  shape, a factor that does not divide the image, ``augmentation_level`` for a model that
  is not super-resolving.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgen.config import ConfigError, DataConfig, EvalConfig, ExperimentConfig
from jaxgen.core.resize import downsample_mean, upsample
from jaxgen.data.digits import load_digits
from jaxgen.nets import UNet, UNetConfig
from jaxgen.recipes.ddpm import DDPMConfig, DDPMRecipe
from jaxgen.recipes.flow_matching import FlowMatchingRecipe
from jaxgen.recipes.flow_matching_config import FlowMatchingConfig
from jaxgen.recipes.score_sde import ScoreSDEConfig, ScoreSDERecipe
from jaxgen.recipes.super_resolution import SuperResolutionConfig, inputs_for_batch

UNET = dict(
    channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(), num_groups=4
)
SR = SuperResolutionConfig(factor=2, max_augmentation=0.5, augmentation_level=0.1)


def _images(n: int = 8) -> jax.Array:
    return jnp.asarray(load_digits("test")[0][:n])


def _ddpm(sr: SuperResolutionConfig = SR, classes: int = 0, **model) -> DDPMRecipe:
    model = dict(num_timesteps=20, sampler="ddim", sample_steps=3, **model)
    unet = UNetConfig(dropout=0.0, num_classes=classes, **UNET)
    config = ExperimentConfig(
        family="ddpm",
        name="sr",
        model=DDPMConfig(unet=unet, super_resolution=sr, **model),
        data=DataConfig(name="digits"),
        eval=EvalConfig(batch_size=8),
    )
    return DDPMRecipe(config, data_shape=(8, 8, 1), num_levels=17, num_classes=10)


@pytest.fixture(scope="module")
def ddpm():
    recipe = _ddpm()
    return recipe, recipe.init_params(jax.random.key(0))


def test_image_conditional_unet_widens_only_the_input_and_checks_its_inputs():
    plain = nnx.state(UNet(UNetConfig(**UNET), image_shape=(8, 8, 1), rngs=nnx.Rngs(0)))
    cond = UNet(
        UNetConfig(condition_channels=1, augmentation_embedding=True, init_scale=1.0, **UNET),
        image_shape=(8, 8, 1),
        rngs=nnx.Rngs(0),
    )
    plain_paths = {p for p, _ in jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(plain))}
    cond_tree = nnx.to_pure_dict(nnx.state(cond))
    cond_paths = {p for p, _ in jax.tree_util.tree_leaves_with_path(cond_tree)}
    extra = {jax.tree_util.keystr(p) for p in cond_paths - plain_paths}
    assert extra and all("augmentation_embed" in e for e in extra)
    assert cond_tree["conv_in"]["kernel"].shape == (3, 3, 2, 8)
    x, t = jnp.zeros((2, 8, 8, 1)), jnp.array([1, 2])
    with pytest.raises(ValueError, match="image-conditional .* image_condition of shape"):
        cond(x, t, augmentation_level=jnp.zeros(2))
    with pytest.raises(ValueError, match=r"image_condition must have shape \(2, 8, 8, 1\)"):
        cond(x, t, image_condition=jnp.zeros((2, 4, 4, 1)), augmentation_level=jnp.zeros(2))
    with pytest.raises(ValueError, match="augmentation_level of shape"):
        cond(x, t, image_condition=x)
    # The condition reaches the output (one compiled call).
    call = jax.jit(lambda c, s: cond(x, t, image_condition=c, augmentation_level=s))
    a, b, c = (call(x, jnp.zeros(2)), call(x + 1.0, jnp.zeros(2)), call(x, jnp.full((2,), 0.5)))
    assert not np.allclose(a, b) and not np.allclose(a, c)


def test_training_inputs_are_the_downsampled_batch():
    recipe = _ddpm(SuperResolutionConfig(factor=2, upsample="bilinear"))
    x = _images()
    inputs = recipe.image_conditioning.training_inputs(x, jax.random.key(1))
    want = upsample(downsample_mean(x, 2), 2, "bilinear")
    np.testing.assert_array_equal(inputs["image_condition"], want)
    np.testing.assert_array_equal(inputs["augmentation_level"], np.zeros(8))
    levels = _ddpm().image_conditioning.training_inputs(x, jax.random.key(1))["augmentation_level"]
    assert (
        0 <= float(levels.min()) and float(levels.max()) <= 0.5 and len(set(levels.tolist())) == 8
    )


def test_level_zero_is_the_unaugmented_condition_and_rows_equal_images(ddpm):
    recipe, _ = ddpm
    x = _images()
    y = downsample_mean(x, 2)
    conditioning = recipe.image_conditioning
    inputs = conditioning.sampling_inputs({"image": x}, 8, jax.random.key(3), level=0.0)
    np.testing.assert_array_equal(inputs["image_condition"], upsample(y, 2))
    low = conditioning.sampling_inputs({"low_resolution": y}, 8, jax.random.key(3), level=0.3)
    full = conditioning.sampling_inputs({"image": x}, 8, jax.random.key(3), level=0.3)
    np.testing.assert_array_equal(low["image_condition"], full["image_condition"])
    assert not np.array_equal(low["image_condition"], inputs["image_condition"])


def test_samples_depend_only_on_the_seed_and_index(ddpm):
    recipe, params = ddpm
    x = _images()
    draw = jax.jit(
        lambda c, i: (
            recipe.sample(
                params, jax.random.key(5), c.shape[0], first_index=i, condition={"image": c}
            ).samples
        )
    )
    whole = draw(x, 0)
    np.testing.assert_allclose(draw(x[4:], 4), whole[4:], atol=1e-5)
    assert not np.allclose(draw(x[4:], 0), whole[4:], atol=1e-3)  # other keys, other noise


def test_batched_guidance_sees_each_condition_twice():
    inputs = {"image_condition": jnp.arange(6.0).reshape(3, 2), "augmentation_level": jnp.ones(3)}
    stacked = inputs_for_batch(inputs, 6)
    np.testing.assert_array_equal(stacked["image_condition"][3:], inputs["image_condition"])
    with pytest.raises(ValueError, match="does not stack copies"):
        inputs_for_batch(inputs, 4)
    recipe = _ddpm(classes=10)
    params = recipe.init_params(jax.random.key(0))
    x = _images(4)
    out = recipe.sample(
        params,
        jax.random.key(1),
        4,
        condition={"image": x, "label": jnp.arange(4)},
        guidance_scale=2.0,
    )
    assert out.samples.shape == (4, 8, 8, 1) and bool(jnp.isfinite(out.samples).all())


@pytest.mark.parametrize("family", ["score_sde", "flow_matching"])
def test_score_sde_and_flow_matching_take_the_condition(family):
    unet = UNetConfig(dropout=0.0, init_scale=1.0, **UNET)  # (not zero: the condition shows)
    if family == "score_sde":
        model = ScoreSDEConfig(unet=unet, sampler="unipc", sample_steps=3, super_resolution=SR)
        cls = ScoreSDERecipe
    else:
        model = FlowMatchingConfig(unet=unet, sampler="heun", sample_steps=2, super_resolution=SR)
        cls = FlowMatchingRecipe
    config = ExperimentConfig(family=family, name="sr", model=model)
    recipe = cls(config, data_shape=(8, 8, 1), num_levels=17, num_classes=10)
    params = recipe.init_params(jax.random.key(0))
    x = _images(4)
    loss, _ = recipe.loss(params, {"image": x, "label": jnp.zeros(4, jnp.int32)}, jax.random.key(1))
    assert loss.shape == (4,) and bool(jnp.isfinite(loss).all())
    # one compile for both draws (op by op, the multistep sampler's many small ops each compile)
    draw = jax.jit(lambda c: recipe.sample(params, jax.random.key(2), 4, condition={"image": c}))
    a, b = draw(x).samples, draw(-x).samples
    assert a.shape == (4, 8, 8, 1) and not np.allclose(a, b)
    with pytest.raises(ConfigError, match=r"augmentation_level=0.9 is outside .* \[0, 0.5\]"):
        recipe.sample(params, jax.random.key(2), 4, condition={"image": x}, augmentation_level=0.9)


def test_bad_input_is_refused_by_name(ddpm):
    recipe, params = ddpm
    x = _images(4)
    with pytest.raises(ConfigError, match=r"condition\['low_resolution'\] must have shape"):
        recipe.sample(params, jax.random.key(0), 4, condition={"low_resolution": x})
    with pytest.raises(ConfigError, match="samples given a low-resolution image"):
        recipe.sample(params, jax.random.key(0), 4)
    with pytest.raises(ConfigError, match="factor=3 does not divide the image size"):
        _ddpm(SuperResolutionConfig(factor=3))
    with pytest.raises(ConfigError, match="outside the trained range"):
        SuperResolutionConfig(factor=2, max_augmentation=0.2, augmentation_level=0.3)
    with pytest.raises(ConfigError, match=r"max_augmentation must be in \[0, 1\]"):
        SuperResolutionConfig(factor=2, max_augmentation=1.5)
    plain = _ddpm(SuperResolutionConfig())
    with pytest.raises(ConfigError, match="augmentation_level applies to super-resolution"):
        plain.sample(
            plain.init_params(jax.random.key(0)), jax.random.key(0), 2, augmentation_level=0.1
        )
