"""A built-in byte-level text corpus: Python standard-library source, read from this install.

No download: the corpus is every ``*.py`` file under the stdlib packages
:data:`CORPUS_PACKAGES` of the running interpreter (``sysconfig.get_paths()["stdlib"]``),
found recursively and sorted by their POSIX path relative to the stdlib directory
(e.g. ``"json/decoder.py"``), about 100 files and 1.8 MB on CPython 3.11.

* Tokens are the file bytes (UTF-8 source), vocabulary ``V = 256`` (:data:`VOCAB_SIZE`);
  models add the start token ``bos = 256`` (:data:`BOS`), as in
  :mod:`jaxgen.autoregressive.losses`.
* Split by file, deterministically and independently of which other files exist: a file is
  ``test`` iff ``crc32(relative path) % 10 == 0`` (about 10% of the files), else ``train``;
  ``all`` is both. Adding or removing a file in another Python version moves no other file.
* :func:`load_text` concatenates a split's files in sorted order and cuts the byte stream
  into non-overlapping windows of ``seq_len`` tokens, dropping the incomplete last one.

The exact bytes vary between Python versions (files are edited, added and removed), so
figures on this corpus are comparable only on the same Python version (recorded by
:func:`corpus_info`).
"""

from __future__ import annotations

import functools
import pathlib
import sys
import sysconfig
import zlib

import numpy as np

from jaxgen.data.checks import UnknownSplitError

__all__ = [
    "BOS",
    "CORPUS_PACKAGES",
    "SPLITS",
    "VOCAB_SIZE",
    "corpus_files",
    "corpus_info",
    "decode",
    "encode",
    "is_test_file",
    "load_bytes",
    "load_text",
]

CORPUS_PACKAGES = ("asyncio", "email", "http", "json", "logging", "urllib", "xml")
SPLITS = ("train", "test", "all")
VOCAB_SIZE = 256
BOS = VOCAB_SIZE
TEST_MODULUS = 10


def _stdlib() -> pathlib.Path:
    return pathlib.Path(sysconfig.get_paths()["stdlib"])


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise UnknownSplitError(f"unknown text split {split!r}; expected one of {SPLITS}.")


def is_test_file(relative_path: str) -> bool:
    """The split rule: ``crc32(path) % 10 == 0`` for the POSIX path relative to the stdlib."""
    return zlib.crc32(relative_path.encode("utf-8")) % TEST_MODULUS == 0


@functools.lru_cache(maxsize=1)
def _all_files() -> tuple[str, ...]:
    root = _stdlib()
    files = []
    for package in CORPUS_PACKAGES:
        files.extend(p.relative_to(root).as_posix() for p in (root / package).rglob("*.py"))
    if not files:
        raise FileNotFoundError(
            f"no Python sources found under {root} for packages {CORPUS_PACKAGES}; this "
            "interpreter's standard library ships without .py files."
        )
    return tuple(sorted(files))


def corpus_files(split: str = "train") -> list[str]:
    """Relative paths (sorted) of the files in ``split``."""
    _check_split(split)
    files = _all_files()
    if split == "all":
        return list(files)
    want_test = split == "test"
    return [f for f in files if is_test_file(f) == want_test]


@functools.lru_cache(maxsize=len(SPLITS))
def _read(split: str) -> bytes:
    root = _stdlib()
    return b"".join((root / f).read_bytes() for f in corpus_files(split))


def load_bytes(split: str = "train") -> bytes:
    """The concatenated bytes of ``split``'s files, in sorted path order."""
    _check_split(split)
    return _read(split)


def load_text(split: str = "train", *, seq_len: int) -> np.ndarray:
    """Non-overlapping windows ``(N, seq_len)`` int32 of byte tokens in ``0..255``,
    ``N = len(load_bytes(split)) // seq_len`` (the incomplete tail is dropped)."""
    _check_split(split)
    if int(seq_len) != seq_len or seq_len < 1:
        raise ValueError(f"seq_len must be an integer >= 1, got {seq_len!r}.")
    data = np.frombuffer(load_bytes(split), np.uint8)
    num = data.size // seq_len
    return data[: num * seq_len].reshape(num, seq_len).astype(np.int32)


def encode(text: str) -> np.ndarray:
    """UTF-8 bytes of ``text`` as int32 tokens (T,)."""
    if not isinstance(text, str):
        raise ValueError(f"encode expects a str, got {type(text).__name__}.")
    return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)


def decode(tokens) -> str:
    """Byte tokens (T,) in ``0..255`` -> str (UTF-8; invalid byte sequences, which a sampled
    sequence may contain, become U+FFFD)."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            f"decode expects integer tokens of shape (T,), got {tokens.dtype} {tokens.shape}."
        )
    if tokens.size and (tokens.min() < 0 or tokens.max() >= VOCAB_SIZE):
        raise ValueError(
            f"byte tokens must lie in 0..{VOCAB_SIZE - 1}, got values in "
            f"{tokens.min()}..{tokens.max()} (strip the start token {BOS} first)."
        )
    return tokens.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


def corpus_info() -> dict[str, object]:
    """Provenance: Python version, stdlib path, and file / byte counts per split."""
    info: dict[str, object] = {"python": sys.version.split()[0], "stdlib": str(_stdlib())}
    for split in SPLITS:
        info[f"{split}_files"] = len(corpus_files(split))
        info[f"{split}_bytes"] = len(load_bytes(split))
    return info
