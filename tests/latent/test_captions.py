"""The digit captions and the character tokenizer (``jaxgen.data.captions``).

* Every caption (10 labels x every template) round-trips through encode / decode, is
  distinct from the other templates of its label, and fits ``MAX_CAPTION_LENGTH``; text is
  lower-cased; the all-pad sequence decodes to the empty (null) caption.
* Clear errors: characters the tokenizer cannot encode (named), text longer than the
  context (its length and the limit), non-str input, ``length < 1``, labels outside 0..9.
* ``label_captions``: ``key=None`` gives template 0; a key gives each template with equal
  frequency (chi-square on 3500 draws; negative control: a biased draw is rejected), per
  example (the first 16 of a batch of 3500 are a batch of 16) and under ``jit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import chisquare

from jaxgen.data.captions import (
    ALPHABET,
    CAPTION_TEMPLATES,
    DIGIT_NAMES,
    MAX_CAPTION_LENGTH,
    TOKENIZER,
    CharTokenizer,
    caption_table,
    digit_caption,
    label_captions,
)

LENGTH = 32
K = len(CAPTION_TEMPLATES)


def test_alphabet_and_templates():
    assert TOKENIZER.pad_id == 0
    assert TOKENIZER.vocab_size == 1 + len(ALPHABET) == 44
    assert len(set(ALPHABET)) == len(ALPHABET)
    assert set("abcdefghijklmnopqrstuvwxyz0123456789 .,'-!?") == set(ALPHABET)
    assert 6 <= K <= 8 and CAPTION_TEMPLATES[0] == "a handwritten {name}"
    assert DIGIT_NAMES[0] == "zero" and DIGIT_NAMES[9] == "nine"
    assert digit_caption(7) == "a handwritten seven"
    assert digit_caption(3, template=4) == "the number 3"


def test_every_caption_round_trips():
    table = caption_table(length=LENGTH)
    assert table.shape == (10, K, LENGTH) and table.dtype == np.int32
    for label in range(10):
        for k in range(K):
            text = digit_caption(label, template=k)
            tokens = TOKENIZER.encode(text, length=LENGTH)
            assert tokens.shape == (LENGTH,) and tokens.dtype == np.int32
            assert TOKENIZER.decode(tokens) == text
            np.testing.assert_array_equal(table[label, k], tokens)
            assert np.all(tokens[len(text) :] == TOKENIZER.pad_id)
            assert np.all(tokens[: len(text)] > 0)
        # The templates of one label are distinct token sequences.
        assert len({row.tobytes() for row in table[label]}) == K
    assert max(len(digit_caption(d, template=k)) for d in range(10) for k in range(K)) == (
        MAX_CAPTION_LENGTH
    )
    caption_table(length=MAX_CAPTION_LENGTH)  # the smallest context that holds them all
    with pytest.raises(ValueError, match="longer than the model's context"):
        caption_table(length=MAX_CAPTION_LENGTH - 1)


def test_lower_case_batches_and_the_null_caption():
    upper = TOKENIZER.encode("A Handwritten SEVEN!", length=24)
    np.testing.assert_array_equal(upper, TOKENIZER.encode("a handwritten seven!", length=24))
    batch = TOKENIZER.encode_batch(["one", "", "it's 2-3, ok?"], length=16)
    assert batch.shape == (3, 16)
    assert TOKENIZER.decode(batch[2]) == "it's 2-3, ok?"
    assert np.all(batch[1] == TOKENIZER.pad_id) and TOKENIZER.decode(batch[1]) == ""
    # decode stops at the first pad (ids after it are ignored).
    assert TOKENIZER.decode(np.array([1, 2, 0, 3])) == "ab"
    assert TOKENIZER.encode("seven", length=5).tolist() == [19, 5, 22, 5, 14]


@pytest.mark.parametrize("bad", ["über", "café", "two\nthree", "a_b"])
def test_unencodable_characters_are_named(bad):
    char = next(c for c in bad.lower() if c not in ALPHABET)
    with pytest.raises(ValueError, match="cannot encode") as err:
        TOKENIZER.encode(bad, length=LENGTH)
    message = str(err.value)
    assert repr(char) in message and repr(ALPHABET) in message
    assert "\n" not in message  # one line, even for a newline in the text


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="has 12 characters, longer than the model's context of 8"):
        TOKENIZER.encode("a picture 12", length=8)
    TOKENIZER.encode("12345678", length=8)  # exactly the context: fine
    with pytest.raises(ValueError, match="must be str"):
        TOKENIZER.encode(7, length=8)
    with pytest.raises(ValueError, match="length must be an integer >= 1"):
        TOKENIZER.encode("a", length=0)
    with pytest.raises(ValueError, match="sequence of str"):
        TOKENIZER.encode_batch("seven", length=8)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        TOKENIZER.decode(np.array([1, 44]))
    with pytest.raises(ValueError, match=r"0\.\.9"):
        digit_caption(10)
    with pytest.raises(ValueError, match="template"):
        digit_caption(1, template=K)
    with pytest.raises(ValueError, match=r"must lie in 0\.\.9, got \[-1, 12\]"):
        label_captions(jnp.array([3, 12, -1]), None, length=LENGTH)
    with pytest.raises(ValueError, match="shape"):
        label_captions(jnp.array([[3]]), None, length=LENGTH)
    with pytest.raises(ValueError, match="repeats"):
        CharTokenizer("aa")


def _templates(tokens: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The template index of each caption row (matched against the table)."""
    table = caption_table(length=LENGTH)
    match = np.all(table[labels] == tokens[:, None, :], axis=-1)  # (B, K)
    assert np.all(match.sum(axis=1) == 1)
    return np.argmax(match, axis=1)


def test_label_captions_template_frequencies():
    num = 3500
    labels = jnp.arange(num) % 10
    key = jax.random.key(0)
    tokens = np.asarray(label_captions(labels, key, length=LENGTH))
    templates = _templates(tokens, np.asarray(labels))
    counts = np.bincount(templates, minlength=K)
    p_value = chisquare(counts).pvalue
    print(f"template counts {counts.tolist()}, chi-square p = {p_value:.3f}")
    assert p_value > 1e-3
    # Negative control: the same test rejects an off-by-one draw (never the last template).
    wrong = np.asarray(jax.random.randint(key, (num,), 0, K - 1))
    assert chisquare(np.bincount(wrong, minlength=K)).pvalue < 1e-3
    # Per-example keys: the first 16 examples do not depend on the batch size.
    small = np.asarray(label_captions(labels[:16], key, length=LENGTH))
    np.testing.assert_array_equal(small, tokens[:16])
    # key None: template 0 for every label (traced labels too).
    plain = np.asarray(jax.jit(lambda lab: label_captions(lab, None, length=LENGTH))(labels[:10]))
    np.testing.assert_array_equal(plain, caption_table(length=LENGTH)[:, 0])
    assert [TOKENIZER.decode(row) for row in plain[:2]] == [
        "a handwritten zero",
        "a handwritten one",
    ]
