"""Captions of the built-in digits and a character tokenizer that ships with jaxgen.

A DALL-E-style prior (Ramesh et al. 2021, sec. 2.2) models one sequence ``[text tokens;
image codes]``. On the digits the text is a short caption made from the label ("a
handwritten seven"), tokenised here, with no download and no vocabulary file, so
text-to-image runs offline.

**Tokenizer** (:class:`CharTokenizer`, :data:`TOKENIZER`). The text is lower-cased, then
each character ``c`` becomes ``1 + ALPHABET.index(c)``; the id ``0`` is the pad, so the
vocabulary has ``V = 1 + len(ALPHABET)`` ids (44). A caption is right-padded to a fixed
``length`` (the model's text context): ``encode("a two", length=8) = [a, ' ', t, w, o, 0,
0, 0]``. The all-pad sequence is the empty caption, the "null" condition of
classifier-free guidance. :meth:`CharTokenizer.decode` reads up to the first pad, so
``decode(encode(s)) == s.lower()`` for every encodable ``s``.

**Captions.** :data:`CAPTION_TEMPLATES` hold ``{name}`` (the word, "seven") or ``{digit}``
("7"); :func:`digit_caption` fills one, :func:`caption_table` tokenises all ``10 x K`` of
them, and :func:`label_captions` gives the tokens of a batch of labels, with template 0
("a handwritten {name}") or, given a key, a uniformly random template per example (a little
caption variety for training; example ``b``'s template is drawn from its own key
``fold_in(key, b)``, :func:`jaxgen.core.example_keys`).

References:
  Ramesh, Pavlov, Goh, Gray, Voss, Radford, Chen, Sutskever. Zero-Shot Text-to-Image
  Generation. ICML 2021.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.sampling import as_example_keys
from jaxgen.core.validation import check_positive_int, is_concrete

__all__ = [
    "ALPHABET",
    "CAPTION_TEMPLATES",
    "DIGIT_NAMES",
    "MAX_CAPTION_LENGTH",
    "TOKENIZER",
    "CharTokenizer",
    "caption_table",
    "digit_caption",
    "label_captions",
]

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 .,'-!?"
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CAPTION_TEMPLATES = (
    "a handwritten {name}",
    "the digit {name}",
    "a picture of the number {name}",
    "{name}",
    "the number {digit}",
    "{name}, written by hand.",
    "a {digit}, handwritten",
)


class CharTokenizer:
    """Characters of :data:`ALPHABET` (after lower-casing) to ids ``1..len(ALPHABET)``,
    ``0`` the pad; fixed-length, right-padded sequences (module docstring)."""

    pad_id: int = 0

    def __init__(self, alphabet: str = ALPHABET):
        if len(set(alphabet)) != len(alphabet) or not alphabet:
            raise ValueError(f"the alphabet must be non-empty without repeats, got {alphabet!r}")
        self.alphabet = alphabet
        self.vocab_size = 1 + len(alphabet)
        self._ids = {c: i + 1 for i, c in enumerate(alphabet)}

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, alphabet={self.alphabet!r})"

    def encode(self, text: str, *, length: int) -> np.ndarray:
        """``(length,)`` int32 ids of ``text.lower()``, right-padded with ``pad_id``.

        Raises ValueError for a non-str, a ``length < 1``, characters outside the alphabet
        (named) or text longer than ``length`` characters.
        """
        length = check_positive_int(length, "length")
        if not isinstance(text, str):
            raise ValueError(f"captions must be str, got {type(text).__name__} {text!r}")
        lowered = text.lower()
        unknown = sorted({c for c in lowered if c not in self._ids})
        if unknown:
            names = ", ".join(repr(c) for c in unknown)
            raise ValueError(
                f"text {text!r} has characters the tokenizer cannot encode: {names}; the "
                f"alphabet is {self.alphabet!r} (input is lower-cased first)"
            )
        if len(lowered) > length:
            raise ValueError(
                f"text {text!r} has {len(lowered)} characters, longer than the model's context "
                f"of {length} characters"
            )
        out = np.full((length,), self.pad_id, np.int32)
        out[: len(lowered)] = [self._ids[c] for c in lowered]
        return out

    def encode_batch(self, texts: Sequence[str], *, length: int) -> np.ndarray:
        """``(B, length)`` int32: :meth:`encode` of each text."""
        if isinstance(texts, str):
            raise ValueError(f"encode_batch expects a sequence of str, got the str {texts!r}")
        return np.stack([self.encode(t, length=length) for t in texts]).reshape(-1, length)

    def decode(self, tokens) -> str:
        """The text of ids ``(T,)`` up to the first pad (ids outside the vocabulary raise)."""
        ids = np.asarray(tokens).reshape(-1)
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"decode expects integer ids, got dtype {ids.dtype}")
        chars = []
        for i in ids.tolist():
            if i == self.pad_id:
                break
            if not 1 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary 0..{self.vocab_size - 1}")
            chars.append(self.alphabet[i - 1])
        return "".join(chars)


TOKENIZER = CharTokenizer()
MAX_CAPTION_LENGTH = max(
    len(t.format(name=n, digit=d)) for t in CAPTION_TEMPLATES for d, n in enumerate(DIGIT_NAMES)
)
"""The longest caption (29 characters): the smallest ``length`` that holds every caption."""


def _check_label(label) -> int:
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label <= 9:
        raise ValueError(f"digit labels must be integers in 0..9, got {label!r}")
    return int(label)


def digit_caption(label: int, *, template: int = 0) -> str:
    """The caption ``CAPTION_TEMPLATES[template]`` of digit ``label`` ("a handwritten seven")."""
    label = _check_label(label)
    count = len(CAPTION_TEMPLATES)
    if isinstance(template, bool) or not isinstance(template, (int, np.integer)):
        raise ValueError(f"template must be an integer in 0..{count - 1}, got {template!r}")
    if not 0 <= template < count:
        raise ValueError(f"template must be an integer in 0..{count - 1}, got {template!r}")
    return CAPTION_TEMPLATES[template].format(name=DIGIT_NAMES[label], digit=label)


@functools.lru_cache(maxsize=8)
def _table(length: int) -> np.ndarray:
    rows = [
        [
            TOKENIZER.encode(digit_caption(d, template=k), length=length)
            for k in range(len(CAPTION_TEMPLATES))
        ]
        for d in range(10)
    ]
    table = np.asarray(rows, np.int32)
    table.setflags(write=False)
    return table


def caption_table(*, length: int) -> np.ndarray:
    """``(10, K, length)`` int32: the tokens of every label's caption under every template
    (``K = len(CAPTION_TEMPLATES)``); ValueError when a caption is longer than ``length``."""
    return _table(check_positive_int(length, "length")).copy()


def label_captions(labels: jax.Array, key: jax.Array | None, *, length: int) -> jax.Array:
    """``(B, length)`` int32 caption tokens of digit ``labels`` (B,).

    ``key=None``: template 0 for every example. A key (one key, or ``(B,)`` per-example
    keys): example ``b`` takes template ``k_b ~ Uniform{0..K-1}`` drawn from its own key
    ``fold_in(key, b)`` (:func:`jaxgen.core.as_example_keys`), independently of the others.
    Jittable; ``labels`` may be traced (then labels outside ``0..9`` are clipped, not
    checked); concrete labels outside ``0..9`` raise ValueError.
    """
    length = check_positive_int(length, "length")
    _table(length)  # ValueError now if a caption does not fit
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"labels must be integer digit labels of shape (B,), got {labels.dtype} {labels.shape}"
        )
    if is_concrete(labels) and labels.size:
        values = np.asarray(labels)
        if values.min() < 0 or values.max() > 9:
            bad = sorted(set(values[(values < 0) | (values > 9)].tolist()))
            raise ValueError(f"digit labels must lie in 0..9, got {bad}")
    return _lookup(labels, key, length=length)


@functools.partial(jax.jit, static_argnames="length")
def _lookup(labels: jax.Array, key: jax.Array | None, *, length: int) -> jax.Array:
    """Table rows of ``labels`` (clipped to 0..9): template 0, or ``randint(k_b)``."""
    table = jnp.asarray(_table(length))
    labels = jnp.clip(labels, 0, 9)
    if key is None:
        return table[labels, 0]
    keys = as_example_keys(key, labels.shape[0])
    count = len(CAPTION_TEMPLATES)
    templates = jax.vmap(lambda k: jax.random.randint(k, (), 0, count))(keys)
    return table[labels, templates]
