"""The built-in byte-level text corpus (``jaxgen.data.text``): properties, not byte counts
(the stdlib sources change between Python versions).

* Vocabulary: every token is a byte, 0..255, int32; windows are the consecutive,
  non-overlapping chunks of the split's byte stream.
* Determinism: file lists are sorted and reloading (caches cleared) gives the same arrays.
* Split: train and test are disjoint, cover all files, both non-empty; a file's split depends
  on its own path only (removing other files moves nothing), unlike a split by list index.
* ``decode(encode(s)) == s`` for any str, and the corpus decodes as UTF-8.
Every check has a negative control that fails it.
"""

from __future__ import annotations

import numpy as np
import pytest

from jaxgen.data import text


def test_windows_are_consecutive_byte_chunks():
    seq_len = 100
    windows = text.load_text("test", seq_len=seq_len)
    stream = np.frombuffer(text.load_bytes("test"), np.uint8)
    assert windows.dtype == np.int32 and windows.ndim == 2 and windows.shape[1] == seq_len
    assert windows.shape[0] == stream.size // seq_len > 100
    assert windows.min() >= 0 and windows.max() < text.VOCAB_SIZE == 256
    np.testing.assert_array_equal(windows.ravel(), stream[: windows.size])
    # Negative control: windows with a stride of seq_len - 1 (overlapping) are not the chunks.
    overlapping = np.stack([stream[i * 99 : i * 99 + 100] for i in range(windows.shape[0])])
    assert np.any(overlapping != windows)


def test_loading_is_deterministic():
    files = text.corpus_files("all")
    assert files == sorted(files) and len(files) == len(set(files))
    assert all(f.split("/")[0] in text.CORPUS_PACKAGES and f.endswith(".py") for f in files)
    first = text.load_text("train", seq_len=64)
    text._all_files.cache_clear()
    text._read.cache_clear()
    again = text.load_text("train", seq_len=64)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, text.load_text("test", seq_len=64)[: len(first)])


def test_split_is_disjoint_complete_and_local_to_each_file():
    train, test, every = (set(text.corpus_files(s)) for s in text.SPLITS)
    assert train and test and not train & test and train | test == every
    assert 0.02 < len(test) / len(every) < 0.3, (len(test), len(every))
    # Dropping every other file leaves each remaining file in its split ...
    kept = sorted(every)[::2]
    assert {f for f in kept if text.is_test_file(f)} == test & set(kept)
    # ... whereas a split by position in the sorted list (every 10th) reshuffles.
    by_index = {f for i, f in enumerate(sorted(every)) if i % 10 == 0}
    by_index_kept = {f for i, f in enumerate(kept) if i % 10 == 0}
    assert by_index_kept != by_index & set(kept)


def test_encode_decode_round_trip():
    sample = 'def f(x):\n    return "héllo ∑ 🙂" * 2\n'
    tokens = text.encode(sample)
    assert tokens.dtype == np.int32 and len(tokens) == len(sample.encode("utf-8")) > len(sample)
    assert text.decode(tokens) == sample
    corpus = text.load_bytes("test")
    assert text.decode(np.frombuffer(corpus, np.uint8).astype(np.int32)) == corpus.decode("utf-8")
    # Negative control: a multi-byte character cut in half does not round-trip (it becomes
    # U+FFFD), and decoding does not raise on it.
    half = tokens[: sample.index("é") + 1]  # ASCII before it: char index == byte index
    cut = text.decode(half)
    assert cut.endswith("\ufffd") and text.encode(cut).tolist() != half.tolist()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown text split 'valid'"):
        text.load_text("valid", seq_len=8)
    with pytest.raises(ValueError, match="seq_len"):
        text.load_text("train", seq_len=0)
    with pytest.raises(ValueError, match="0..255"):
        text.decode(np.array([65, text.BOS]))
    with pytest.raises(ValueError, match=r"\(T,\)"):
        text.decode(np.zeros((2, 3), np.int32))
