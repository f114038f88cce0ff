"""Text as tokens: one array in memory, cut into contiguous train, validation and test blocks,
served as (input, next-token) windows. Tokens are bytes (`vocabulary: bytes`, the default:
256 of them, no tokenizer) or the corpus's distinct characters (`vocabulary: chars`).

A training epoch is `windows_per_epoch` windows, each batch's starts drawn uniformly from the
training block with the run's seeded generator, as nanoGPT's get_batch draws them
(`torch.randint(len(data) - context, (batch_size,))`): so an epoch has a fixed number of steps
whatever the corpus size, and a seed gives the same batches. Evaluation reads fixed,
non-overlapping windows of a held-out block in order (every token of it predicted once, bar
the tail shorter than a window).

Two datasets read it: `text` (a user's file, or a folder of .txt files, `path:`) and
`fortunes` (Debian's fortunes package, a real English corpus that installs from the package
registry; its licence and size are in docs/language-models.md).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from optbench.components.data.spec import DataSpec
from optbench.core.errors import ConfigError

VOCABULARY = 256  # byte-level: every byte value is a token
# The corpus cut into contiguous blocks, in this order: train, validation, test (fractions).
SPLIT = (0.9, 0.05, 0.05)
FORTUNES_FOLDER = Path("/usr/share/games/fortunes")
FORTUNES_INSTALL = "apt-get install fortunes"


class TokenWindows(torch.utils.data.Dataset):
    """A block of byte tokens seen as windows of `context` inputs and their next tokens.

    `fetch(index)` gives the non-overlapping windows number `index` (window i starts at token
    i * context): evaluation's fixed windows and planning's trial batch. Training draws its
    windows at random starts instead (`loader`). `len` is the number of windows an epoch
    serves: `windows` (training), or every whole window of the block (evaluation)."""

    augment = None  # training batches are never augmented
    layout = None

    def __init__(
        self,
        tokens: torch.Tensor,
        context: int,
        windows: int | None = None,
        digest: str = "",
        alphabet: str | None = None,
    ) -> None:
        self.tokens = tokens  # 1-D uint8 (int32 for more than 256 characters)
        self.alphabet = alphabet  # the characters tokens number (chars); None: bytes
        self.bytes_per_token = 1.0  # of the evaluated targets (token_windows sets it)
        self.context = context
        self.whole = (len(tokens) - 1) // context  # non-overlapping windows the block holds
        self.windows = self.whole if windows is None else windows
        self.content_digest = digest or None  # tensor_cache.tensor_digest reads it
        self.validation: TokenWindows | None = None  # the validation block (training set only)

    def __len__(self) -> int:
        return self.windows

    @property
    def targets(self) -> torch.Tensor:  # the device batches are made on (ShuffledBatches' rule)
        return self.tokens

    def to(self, device: torch.device) -> TokenWindows:
        moved = TokenWindows(
            self.tokens.to(device), self.context, self.windows, alphabet=self.alphabet
        )
        moved.content_digest, moved.validation = self.content_digest, self.validation
        moved.bytes_per_token = self.bytes_per_token
        return moved

    def at(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The windows starting at `starts` (1-D int64): inputs and next tokens, int64 (B, T)."""
        offsets = torch.arange(self.context + 1, device=self.tokens.device)
        chunk = self.tokens[starts.to(self.tokens.device).unsqueeze(1) + offsets].long()
        return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()

    def fetch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.at(index * self.context)

    def first(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fetch(torch.arange(min(size, self.whole)))

    def batches(
        self, batch_size: int, end: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The fixed, non-overlapping windows in order (evaluation), the first `end` of them."""
        end = self.whole if end is None else min(end, self.whole)
        for start in range(0, end, batch_size):
            yield self.fetch(torch.arange(start, min(start + batch_size, end)))

    def loader(self, batch_size: int, generator: torch.Generator, *_: Any) -> RandomWindows:
        """Random windows per batch; planning refuses data.shuffle and data.drop_last here."""
        return RandomWindows(self, batch_size, generator)

    def spec(self, test: TokenWindows) -> DataSpec:
        return DataSpec(
            (self.context,),
            VOCABULARY if self.alphabet is None else len(self.alphabet),
            self.windows,
            target_shape=(self.context,),
            integer_inputs=True,
            bytes_per_token=test.bytes_per_token,
        )

    def encode(self, text: str) -> torch.Tensor:
        """`text` as this corpus's token ids (int64); a character it lacks is refused."""
        if self.alphabet is None:
            return torch.tensor(list(text.encode()), dtype=torch.long)
        index = {c: i for i, c in enumerate(self.alphabet)}
        missing = sorted({c for c in text if c not in index})
        if missing:
            raise ConfigError("prompt", f"has characters the corpus lacks: {''.join(missing)!r}")
        return torch.tensor([index[c] for c in text], dtype=torch.long)

    def decode(self, ids: list[int]) -> str:
        if self.alphabet is None:
            return bytes(ids).decode("utf-8", errors="replace")
        return "".join(self.alphabet[i] for i in ids)


class RandomWindows:
    """An epoch of training batches: ceil(windows / batch_size) batches (the last one smaller
    when they do not divide), each of windows at starts drawn by
    `torch.randint(len(tokens) - context, (size,), generator=generator)`, nanoGPT's get_batch."""

    def __init__(self, dataset: TokenWindows, batch_size: int, generator: torch.Generator) -> None:
        self.dataset, self.batch_size, self.generator = dataset, batch_size, generator

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        data, left = self.dataset, len(self.dataset)
        while left > 0:
            size = min(self.batch_size, left)
            starts = torch.randint(
                len(data.tokens) - data.context, (size,), generator=self.generator
            )
            left -= size
            yield data.at(starts)


def _readable(data: bytes, where: str, field: str) -> bytes:
    """`data` when it is text (UTF-8 without NUL bytes); a binary file is refused."""
    if b"\0" in data:
        raise ConfigError(field, f"{where} is a binary file (it holds NUL bytes), not text")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            field, f"{where} is not UTF-8 text (byte {exc.start} cannot be decoded)"
        ) from None
    return data


def _text_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.txt") if p.is_file())


def read_text(path: str | Path, field: str = "data.path") -> bytes:
    """A file's bytes, or a folder's .txt files (sorted by path, searched recursively) joined,
    each ending with a newline; empty, binary or missing input refused naming `field`."""
    where = Path(path)
    if where.is_dir():
        files = _text_files(where)
        if not files:
            raise ConfigError(field, f"{path} is a folder with no .txt files")
        parts = [_readable(f.read_bytes(), str(f), field) for f in files]
        data = b"".join(p if p.endswith(b"\n") else p + b"\n" for p in parts if p)
    elif where.is_file():
        data = _readable(where.read_bytes(), str(path), field)
    else:
        raise ConfigError(field, f"{path} does not exist (a text file or a folder of .txt files)")
    if not data:
        raise ConfigError(field, f"{path} is empty")
    return data


def fortunes_files(folder: Path | None = None) -> list[Path]:
    """The fortune files of Debian's fortunes and fortunes-min packages: every plain file but
    the strfile indexes (.dat), without the .u8 links to them, sorted by name."""
    folder = FORTUNES_FOLDER if folder is None else folder
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.is_symlink() and p.suffix != ".dat"
    )


def read_fortunes(folder: Path | None = None) -> bytes:
    """The fortunes corpus: its files' bytes joined in name order; a missing package is refused
    with how to install it."""
    folder = FORTUNES_FOLDER if folder is None else folder
    files = fortunes_files(folder) if folder.is_dir() else []
    if not files:
        raise ConfigError(
            "data.dataset",
            f"fortunes needs Debian's fortunes package (no fortune files in {folder}): "
            f"{FORTUNES_INSTALL}",
        )
    return b"".join(f.read_bytes() for f in files)


def check_context(context: int, windows_per_epoch: int | None) -> None:
    if context < 1:
        raise ConfigError("data.context", f"must be at least 1 token, got {context}")
    if windows_per_epoch is not None and windows_per_epoch < 1:
        raise ConfigError(
            "data.windows_per_epoch", f"must be at least 1 window, got {windows_per_epoch}"
        )


def split_blocks(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train, validation and test blocks: contiguous, in this order, SPLIT of the tokens."""
    train_end = int(len(tokens) * SPLIT[0])
    valid_end = train_end + int(len(tokens) * SPLIT[1])
    return tokens[:train_end], tokens[train_end:valid_end], tokens[valid_end:]


def characters(data: bytes) -> tuple[torch.Tensor, str, torch.Tensor]:
    """UTF-8 text as character ids: (ids, the alphabet they number, sorted by code point,
    and each id's length in bytes)."""
    codes = np.frombuffer(data.decode("utf-8").encode("utf-32-le"), dtype=np.uint32)
    alphabet = np.unique(codes)
    ids = np.searchsorted(alphabet, codes)
    dtype = np.uint8 if len(alphabet) <= 256 else np.int32
    text = "".join(map(chr, alphabet.tolist()))
    lengths = torch.tensor([len(c.encode()) for c in text], dtype=torch.float64)
    return torch.from_numpy(ids.astype(dtype)), text, lengths


def token_windows(
    data: bytes,
    context: int,
    windows_per_epoch: int | None,
    where: str,
    vocabulary: str = "bytes",
) -> tuple[TokenWindows, TokenWindows]:
    """(train, test) windows of a corpus; the validation block rides on train.validation.
    Unset, windows_per_epoch is as many windows as fill the training block once."""
    check_context(context, windows_per_epoch)
    if vocabulary not in ("bytes", "chars"):
        raise ConfigError("data.vocabulary", f"must be bytes or chars, got {vocabulary!r}")
    alphabet, lengths, unit = None, None, "bytes"
    if vocabulary == "chars":
        tokens, alphabet, lengths = characters(data)
        unit = "characters"
    else:
        tokens = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    train, validation, test = split_blocks(tokens)
    shortest = min(len(train), len(validation), len(test)) - 1
    if context > shortest:
        raise ConfigError(
            "data.context",
            f"{context} tokens is longer than {where} allows: cut into train, validation and "
            f"test blocks ({', '.join(f'{f:g}' for f in SPLIT)} of its {len(tokens)} {unit}), its "
            f"shortest block holds {max(shortest, 0)} (input, next-token) pairs",
        )
    digest = hashlib.sha256(data).hexdigest()[:16]
    windows = windows_per_epoch or len(train) // context
    digest = digest if vocabulary == "bytes" else f"{digest}-{vocabulary}"
    held = TokenWindows(train, context, windows, digest, alphabet)
    held.validation = TokenWindows(validation, context, digest=digest, alphabet=alphabet)
    evaluated = TokenWindows(test, context, digest=digest, alphabet=alphabet)
    if lengths is not None:  # bytes per evaluated target: bits per byte of the text
        targets = test[1 : evaluated.whole * context + 1].long()
        evaluated.bytes_per_token = float(lengths[targets].mean())
    return held, evaluated


Vocabulary = Literal["bytes", "chars"]


def text_options(
    path: str,
    context: int = 64,
    windows_per_epoch: int | None = None,
    vocabulary: Vocabulary = "bytes",
) -> None:
    """The `text` dataset's own keys (data.path, data.context, data.windows_per_epoch,
    data.vocabulary)."""


def fortunes_options(
    context: int = 64, windows_per_epoch: int | None = None, vocabulary: Vocabulary = "bytes"
) -> None:
    """The `fortunes` dataset's own keys (data.context, data.windows_per_epoch,
    data.vocabulary)."""


@functools.lru_cache(maxsize=4)
def _text_bytes(path: str, size: int, mtime_ns: int) -> bytes:
    return read_text(path)


def _no_reading(reading: Any, name: str) -> None:
    """Token data has no columns, splits or layouts to read by: the imported-data keys are
    refused."""
    for key, value in (vars(reading) if reading is not None else {}).items():
        if value is not None:
            raise ConfigError(f"data.{key}", f"{name} is text read as bytes; {key} does not apply")


def load_text(
    root: str,
    download: bool,
    path: str,
    context: int = 64,
    windows_per_epoch: int | None = None,
    vocabulary: str = "bytes",
    reading: Any = None,
) -> tuple[TokenWindows, TokenWindows]:
    _no_reading(reading, "text")
    where = Path(path)
    if where.is_file():  # read again when the file changes (its size or time)
        stat = where.stat()
        data = _text_bytes(str(where), stat.st_size, stat.st_mtime_ns)
    else:
        data = read_text(where)
    return token_windows(data, context, windows_per_epoch, str(path), vocabulary)


def load_fortunes(
    root: str,
    download: bool,
    context: int = 64,
    windows_per_epoch: int | None = None,
    vocabulary: str = "bytes",
    reading: Any = None,
) -> tuple[TokenWindows, TokenWindows]:
    _no_reading(reading, "fortunes")
    corpus = read_fortunes()
    return token_windows(corpus, context, windows_per_epoch, "the fortunes corpus", vocabulary)
