"""Tokenizers: characters, WikiText words, and subword BPE.

All three share one small interface::

    ids = tok.encode("some text")     # list[int]
    text = tok.decode(ids)            # str
    tok.vocab_size                    # int: ids are in [0, vocab_size)
    tok.pad_id                        # int, or None where sequences are never padded (language modeling)

* ``CharTokenizer(text)``: one id per distinct character, sorted (nanoGPT's shakespeare_char).
* ``WordTokenizer(lines)``: whitespace tokens plus ``<eos>`` at the end of every line, ids in order of
  first appearance (pytorch/examples ``word_language_model/data.py``). On WikiText-2 train: 33,278 words.
* ``train_bpe(texts, vocab_size)``: byte-level BPE (GPT-2 style, so any text round-trips exactly and
  ``<unk>`` never occurs) trained with the ``tokenizers`` library; special tokens ``<pad>`` = 0,
  ``<unk>`` = 1, ``<bos>`` = 2, ``<eos>`` = 3. Training is deterministic and the result is cached on disk
  (``$SEQLIB_CACHE/bpe``, default ``~/.cache/seqlib/bpe``) under a hash of the texts and the settings,
  so the second call loads it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .corpora import cache_dir

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")


class CharTokenizer:
    """One id per character of ``text``, in sorted order. Characters not in ``text`` raise ``ValueError``."""

    pad_id = None

    def __init__(self, text: str):
        if not text:
            raise ValueError("CharTokenizer needs a non-empty text to build its vocabulary from")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(
                f"character {e.args[0]!r} is not in the vocabulary ({self.vocab_size} characters)"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class WordTokenizer:
    """Whitespace words plus ``<eos>`` per line, ids in order of first appearance.

    ``encode(text)`` maps each whitespace token of ``text`` to its id (``<unk>`` for unknown words when the
    vocabulary has ``<unk>``, as WikiText does, else ``ValueError``); ``encode_lines(lines)`` appends
    ``<eos>`` after every line and returns one LongTensor, the layout pytorch/examples trains on.
    """

    pad_id = None
    eos = "<eos>"

    def __init__(self, lines: Iterable[str]):
        self.stoi: dict[str, int] = {}
        for line in lines:
            for w in line.split():
                self.stoi.setdefault(w, len(self.stoi))
            self.stoi.setdefault(self.eos, len(self.stoi))
        if not self.stoi:
            raise ValueError("WordTokenizer needs at least one line to build its vocabulary from")
        self.itos = list(self.stoi)
        self.eos_id = self.stoi[self.eos]
        self.unk_id = self.stoi.get("<unk>")

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def _id(self, w: str) -> int:
        i = self.stoi.get(w, self.unk_id)
        if i is None:
            raise ValueError(f"word {w!r} is not in the vocabulary and the vocabulary has no <unk>")
        return i

    def encode(self, text: str, add_eos: bool = False) -> list[int]:
        ids = [self._id(w) for w in text.split()]
        return ids + [self.eos_id] if add_eos else ids

    def encode_lines(self, lines: Iterable[str]) -> torch.Tensor:
        """All lines as one 1-D LongTensor, ``<eos>`` after each line."""
        ids: list[int] = []
        for line in lines:
            ids.extend(self._id(w) for w in line.split())
            ids.append(self.eos_id)
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.itos[int(i)] for i in ids)

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size})"


class BPETokenizer:
    """A trained byte-level BPE ``tokenizers.Tokenizer`` behind the common interface."""

    def __init__(self, tokenizer: Tokenizer, loaded_from_cache: bool = False, path: Path | None = None):
        self.tokenizer = tokenizer
        self.loaded_from_cache = loaded_from_cache  # True when read from the disk cache instead of trained
        self.path = path
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = (tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        return self._wrap(self.tokenizer.encode(text).ids, add_bos, add_eos)

    def encode_batch(self, texts: Sequence[str], add_bos: bool = False, add_eos: bool = False) -> list[list[int]]:
        """Encode many texts at once (in parallel, in Rust; without offsets where the library can)."""
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)  # tokenizers >= 0.20
        return [self._wrap(e.ids, add_bos, add_eos) for e in encode(list(texts))]

    def _wrap(self, ids: list[int], add_bos: bool, add_eos: bool) -> list[int]:
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def decode_batch(self, batch: Iterable[Iterable[int]], skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(ids, skip_special_tokens) for ids in batch]

    def save(self, path: str | os.PathLike) -> None:
        self.tokenizer.save(str(path))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> BPETokenizer:
        return cls(Tokenizer.from_file(str(path)), loaded_from_cache=True, path=Path(path))

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


def train_bpe(
    texts: Sequence[str], vocab_size: int, *, name: str = "corpus", min_frequency: int = 2, cache: bool = True
) -> BPETokenizer:
    """Train (or load from the disk cache) a byte-level BPE tokenizer on ``texts``.

    ``vocab_size`` counts the 4 special tokens and the 256 byte symbols; ``name`` (e.g. ``"imdb-train"``) only
    makes the cache file name readable: the cache key is a sha256 of the texts and of every setting.
    """
    if isinstance(texts, str):
        raise TypeError("train_bpe expects a sequence of texts, got one str")
    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + 256} (4 special tokens + 256 bytes)")
    if len(texts) == 0:
        raise ValueError("train_bpe needs at least one text")
    settings = {"v": 1, "vocab_size": vocab_size, "min_frequency": min_frequency, "specials": SPECIAL_TOKENS}
    key = hashlib.sha256(json.dumps(settings).encode())
    for t in texts:
        key.update(t.encode("utf-8"))
        key.update(b"\x00")
    path = cache_dir() / "bpe" / f"{name}-v{vocab_size}-{key.hexdigest()[:20]}.json"
    if cache and path.is_file():
        return BPETokenizer.from_file(path)

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tokenizer.save(str(tmp))
        os.replace(tmp, path)  # atomic: parallel processes never read a half-written file
    return BPETokenizer(tokenizer, loaded_from_cache=False, path=path if cache else None)
