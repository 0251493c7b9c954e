"""Transformer priors over codes (:mod:`jaxgen.recipes.code_prior`), on a stand-in two-level
code first stage (a coarse 2 x 2 and a fine 4 x 4 grid of quantised image means):

* the loss is the sum over levels of ``-log p(k_l | c, k_<l)`` read off the networks;
* samples: per-example draws that do not depend on the batch, codes inside each level's
  codebook, and classifier-free guidance at ``s = 1`` equal to the conditional prior;
* text that the tokenizer cannot encode, or longer than the context, is refused by name.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import autoregressive as ar
from jaxgen.config import ConfigError, DataConfig, ExperimentConfig
from jaxgen.data import captions
from jaxgen.recipes.code_prior import CodePriorConfig, CodePriorRecipe
from jaxgen.recipes.first_stage import FirstStageConfig


class _TwoLevelCodes:
    """Codes of 8 x 8 images in [-1, 1]: the 4 x 4 and 2 x 2 block means, each quantised to
    ``K`` levels (K = 3 top, 5 bottom); decoding puts the bottom level back."""

    family = "vqvae2"
    code_shapes = ((2, 2), (4, 4))
    code_vocab_sizes = (3, 5)

    def init_params(self, key):
        return {"unused": jnp.zeros(())}

    def encode_codes(self, params, images):
        def level(size, k):
            b = images.shape[0]
            m = images.reshape(b, size, 8 // size, size, 8 // size).mean(axis=(2, 4))
            return jnp.clip(jnp.round((m + 1) / 2 * (k - 1)), 0, k - 1).astype(jnp.int32)

        return level(2, 3), level(4, 5)

    def decode_codes(self, params, codes):
        bottom = codes[1].astype(jnp.float32) / 4 * 2 - 1
        return jnp.repeat(jnp.repeat(bottom, 2, axis=1), 2, axis=2)[..., None]


def _recipe(condition="caption", **model):
    config = ExperimentConfig(
        family="code_prior",
        name="code_prior_test",
        model=CodePriorConfig(
            first_stage=FirstStageConfig(workdir="/stand-in"),
            condition=condition,
            dim=16,
            num_layers=1,
            num_heads=2,
            mlp_ratio=2,
            **model,
        ),
        data=DataConfig(name="digits", batch_size=4),
    )
    recipe = CodePriorRecipe(config, data_shape=(8, 8, 1), num_levels=17, num_classes=10)
    stage = _TwoLevelCodes()
    recipe.attach_first_stage(stage, stage.init_params(None))
    return recipe


@pytest.fixture(scope="module")
def caption_prior():
    recipe = _recipe()
    return recipe, recipe.init_params(jax.random.key(0))


def _images(n=4, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, 8, 8, 1), minval=-1, maxval=1)


def test_loss_is_the_sum_of_level_nlls_read_off_the_networks(caption_prior):
    recipe, params = caption_prior
    recipe = _recipe(p_uncond=0.0, dropout=0.0)  # the condition is the caption
    images, labels = _images(), jnp.array([7, 1, 0, 3])
    key = jax.random.key(5)
    loss = jax.jit(recipe.loss)
    total, terms = loss(params, {"image": images, "label": labels}, key)
    top, bottom = _TwoLevelCodes().encode_codes(None, images)
    # the caption the loss drew for each example is one of that label's templates
    table = captions.caption_table(length=recipe.num_prefix)
    template_key, _ = jax.random.split(jax.random.fold_in(key, 0xC0DE))
    caption = captions.label_captions(labels, template_key, length=recipe.num_prefix)
    assert all(any(np.array_equal(caption[i], t) for t in table[int(labels[i])]) for i in range(4))
    # level 1 by hand: the bottom prior's log-softmax over its codebook at the bottom positions
    v_text = captions.TOKENIZER.vocab_size
    seq = jnp.concatenate(
        [caption, top.reshape(4, -1) + v_text, bottom.reshape(4, -1) + v_text + 3], 1
    )
    logits = jax.jit(
        lambda p, s: recipe.modules.bind(p, "prior_1")(ar.shift_right(s, bos=recipe.bos))
    )(params, seq)
    start = recipe.num_prefix + 4
    logp = jax.nn.log_softmax(logits[:, start:, v_text + 3 : v_text + 8], axis=-1)
    want = -jnp.take_along_axis(logp, bottom.reshape(4, 16, 1), axis=-1).sum(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(terms["nll_level1"]), np.asarray(want), rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(total), np.asarray(terms["nll_level0"] + terms["nll_level1"]), rtol=1e-6
    )
    # negative control: other labels give another conditional likelihood
    other, _ = loss(params, {"image": images, "label": (labels + 1) % 10}, key)
    assert not np.allclose(np.asarray(other), np.asarray(total))


def test_samples_are_per_example_and_inside_each_codebook(caption_prior):
    recipe, params = caption_prior
    key = jax.random.key(3)
    draw = jax.jit(recipe.sample, static_argnums=2)
    out = draw(params, key, 6, first_index=10)
    alone = draw(params, key, 1, first_index=12)
    np.testing.assert_array_equal(np.asarray(out.samples[2:3]), np.asarray(alone.samples))
    prefix = recipe.num_prefix
    assert int(out.nfe) == (prefix + 4) + (prefix + 4 + 16) + 1
    values = np.unique(np.asarray(out.samples))
    assert set(np.round((values + 1) / 2 * 4).astype(int)) <= set(range(5))


def test_guidance_scale_one_is_the_conditional_prior_and_other_scales_differ(caption_prior):
    recipe, params = caption_prior
    key = jax.random.key(4)
    plain = jax.jit(lambda p: recipe.sample(p, key, 4, guidance_scale=1.0).samples)(params)
    traced = jax.jit(lambda p, s: recipe.sample(p, key, 4, guidance_scale=s).samples)
    np.testing.assert_array_equal(np.asarray(traced(params, 1.0)), np.asarray(plain))
    assert not np.array_equal(np.asarray(traced(params, 6.0)), np.asarray(plain))


def test_text_and_label_conditions(caption_prior):
    recipe, params = caption_prior
    key = jax.random.key(9)
    by_text = jax.jit(lambda p: recipe.sample(p, key, 3, text="A handwritten seven").samples)
    by_label = jax.jit(
        lambda p: recipe.sample(p, key, 3, condition={"label": jnp.full((3,), 7)}).samples
    )
    np.testing.assert_array_equal(np.asarray(by_text(params)), np.asarray(by_label(params)))
    with pytest.raises(ConfigError, match="'ü'"):
        recipe.sample(params, key, 2, text="a handwritten ü")
    with pytest.raises(ConfigError, match="context"):
        recipe.sample(params, key, 2, text="a" * (recipe.num_prefix + 1))
    with pytest.raises(ConfigError, match="caption-conditioned"):
        _recipe(condition="label").encode_text("seven")
    with pytest.raises(ConfigError, match="model.caption_length=4"):
        _recipe(caption_length=4)


def test_label_condition_null_token():
    recipe = _recipe(condition="label")
    assert recipe.num_prefix == 1 and recipe.condition_vocab == 11
    np.testing.assert_array_equal(np.asarray(recipe.null_condition(2)), [[10], [10]])
    config = dataclasses.replace(recipe.config, data=DataConfig(name="ring"))
    with pytest.raises(ConfigError, match="needs labelled data"):
        CodePriorRecipe(config, data_shape=(8, 8, 1), num_levels=17, num_classes=None)


def test_dropout_acts_only_in_training_and_keeps_the_causal_mask():
    from flax import nnx

    from jaxgen.nets.transformer import CausalTransformer

    net = CausalTransformer(12, max_len=6, dim=8, num_heads=2, num_layers=2, dropout=0.3,
                            rngs=nnx.Rngs(0))  # fmt: skip
    tokens = jnp.array([[12, 3, 5, 1, 7, 2]])
    plain = net(tokens)
    np.testing.assert_array_equal(np.asarray(net(tokens, dropout_key=None)), np.asarray(plain))
    dropped = net(tokens, dropout_key=jax.random.key(1))
    assert not np.allclose(np.asarray(dropped), np.asarray(plain))
    # inverted dropout: an entry is 0 with probability p, else x / (1 - p), so E = x
    from jaxgen.nets.transformer import _dropout

    kept = np.asarray(_dropout(jnp.ones((200_000,)), 0.3, jax.random.key(3)))
    values = np.unique(kept)
    assert values.size == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.7)
    assert abs((kept == 0).mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / kept.size)  # 5 sigma
    assert abs(kept.mean() - 1.0) < 5 * np.sqrt(0.3 / 0.7 / kept.size)
    embeddings = net.embed_tokens(tokens)

    def logits_sum(e):  # (T,): the summed logits at each position, with dropout
        return net.from_embeddings(e, dropout_key=jax.random.key(2))[0].sum(axis=-1)

    jac = np.asarray(jax.jit(jax.jacrev(logits_sum))(embeddings))[:, 0]  # (T, T, D)
    for i in range(6):
        assert np.all(jac[i, i + 1 :] == 0.0) and np.any(jac[i, : i + 1] != 0.0), i
