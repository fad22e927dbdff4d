"""One call per chapter: a corpus, tokenized and ready to batch.

* ``load_char_lm("tiny_shakespeare") -> (train_ids, val_ids, CharTokenizer)``: 1-D LongTensors; the
  vocabulary is every character of the text (65), as nanoGPT's shakespeare_char.
* ``load_word_lm("wikitext2") -> (train_ids, val_ids, test_ids, WordTokenizer)``: ``<eos>`` after every
  line, vocabulary of the training split (33,278), as pytorch/examples ``word_language_model``.
* ``load_classification("imdb" | "sst2", vocab_size, max_len, truncation) -> (train, held_out, BPETokenizer)``:
  ``ClassificationSplit`` objects; ``held_out`` is SST-2's validation set (its test set has no labels) or
  IMDB's test set. BPE is trained on the training texts; IMDB's ``<br />`` tags become spaces. A text longer
  than ``max_len`` tokens keeps its first quarter and its last three quarters (``truncation="head_tail"``,
  the default) or its first ``max_len`` tokens (``"head"``): ``seqlib.data.batching.truncate``.
  ``max_examples`` (quick runs): that many texts of each split, drawn at random (seed 0) before the tokenizer is
  trained, so that a smoke run does not encode IMDB's 50,000 reviews.
* ``load_translation("multi30k", vocab_size) -> (train, val, test, src_tokenizer, tgt_tokenizer)``:
  ``TranslationSplit`` objects, English -> German by default. One BPE per language, each trained on its
  side of the training split: the encoder and decoder have their own embedding tables anyway, and a
  vocabulary per language spends all ``vocab_size`` entries on that language. Both tokenizers share the
  special ids (``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2, ``<eos>`` 3). The raw sentences are kept for BLEU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .batching import classification_batches, seq2seq_batches, truncate
from .corpora import load_corpus
from .tokenizers import BPETokenizer, CharTokenizer, WordTokenizer, train_bpe


@dataclass
class ClassificationSplit:
    """Tokenized texts (already cut to ``max_len``) and their labels."""

    tokens: list[list[int]]
    labels: torch.Tensor  # (N,) long
    pad_id: int
    max_len: int

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, n: int, seed: int = 0) -> ClassificationSplit:
        """``n`` examples drawn at random (all of them when ``n >= len(self)``)."""
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return ClassificationSplit([self.tokens[i] for i in idx.tolist()], self.labels[idx], self.pad_id, self.max_len)

    def batches(self, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False, device=None):
        """``classification_batches`` over this split: (tokens (B, T), mask (B, T), labels (B,))."""
        return classification_batches(
            self.tokens, self.labels, batch_size, self.max_len, self.pad_id, shuffle, seed, drop_last, device
        )


@dataclass
class TranslationSplit:
    """Tokenized sentence pairs and the raw sentences (references for BLEU)."""

    src: list[list[int]]
    tgt: list[list[int]]
    src_texts: list[str] = field(repr=False)
    tgt_texts: list[str] = field(repr=False)
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3

    def __len__(self) -> int:
        return len(self.src)

    def batches(self, batch_size: int, shuffle: bool = True, seed: int = 0, return_indices: bool = False, device=None):
        """``seq2seq_batches`` over this split: (src, src_mask, tgt_in, tgt_out[, indices])."""
        return seq2seq_batches(
            self.src,
            self.tgt,
            batch_size,
            self.pad_id,
            self.bos_id,
            self.eos_id,
            shuffle,
            seed,
            return_indices=return_indices,
            device=device,
        )


def column(dataset, name: str) -> list:
    """A dataset column as a Python list (fast: one Arrow conversion, not one per row)."""
    return dataset[name][:]


def _supported(name: str, names: tuple[str, ...], what: str) -> None:
    if name not in names:
        raise ValueError(f"{what} is available for {', '.join(names)}, not {name!r}")


def load_char_lm(name: str = "tiny_shakespeare") -> tuple[torch.Tensor, torch.Tensor, CharTokenizer]:
    """Tiny Shakespeare as character ids: ``(train_ids, val_ids, tokenizer)``.

    ``train_ids`` and ``val_ids`` are 1-D LongTensors of the text's two splits (``load_corpus``: the first 90% of
    the text and the rest); the ``CharTokenizer``'s vocabulary is every character of the text (65, as nanoGPT's
    shakespeare_char). Only ``"tiny_shakespeare"`` is available (else ``ValueError``).
    """
    _supported(name, ("tiny_shakespeare",), "character language modeling")
    corpus = load_corpus(name)
    train, val = corpus["train"][0]["text"], corpus["validation"][0]["text"]
    tok = CharTokenizer(train + val)
    return torch.tensor(tok.encode(train)), torch.tensor(tok.encode(val)), tok


def load_word_lm(name: str = "wikitext2") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, WordTokenizer]:
    """WikiText-2 as word ids: ``(train_ids, val_ids, test_ids, tokenizer)``.

    Each split is one 1-D LongTensor of its lines' words, ``<eos>`` after every line; the ``WordTokenizer``'s
    vocabulary is that of the training split (33,278 words, as pytorch/examples ``word_language_model``; a word of
    the other splits missing from it is ``<unk>``, which WikiText-2 uses itself). Only
    ``"wikitext2"`` is available (else ``ValueError``).
    """
    _supported(name, ("wikitext2",), "word language modeling")
    corpus = load_corpus(name)
    tok = WordTokenizer(column(corpus["train"], "text"))
    train, val, test = (tok.encode_lines(column(corpus[s], "text")) for s in ("train", "validation", "test"))
    return train, val, test, tok


def _clean(name: str, texts: list[str]) -> list[str]:
    if name == "imdb":
        return [t.replace("<br />", " ") for t in texts]
    return [t.strip() for t in texts]


def load_classification(
    name: str,
    vocab_size: int = 8000,
    max_len: int = 256,
    truncation: str = "head_tail",
    max_examples: int | None = None,
) -> tuple[ClassificationSplit, ClassificationSplit, BPETokenizer]:
    """A sentiment corpus, BPE-tokenized: ``(train, held_out, tokenizer)``.

    ``name``: ``"sst2"`` (``held_out`` is its validation split: its test split has no labels) or ``"imdb"``
    (``held_out`` is its test split; ``<br />`` tags become spaces). The ``BPETokenizer`` (``vocab_size`` entries,
    cached on disk) is trained on the training texts only. Each ``ClassificationSplit`` holds the texts' ids cut to
    ``max_len`` tokens (``truncation``: ``"head_tail"`` keeps the first quarter and the last three quarters,
    ``"head"`` the first ``max_len``) and their labels (0 negative, 1 positive). ``max_examples``: that many texts
    of each split, drawn at random (seed 0) before the tokenizer is trained. Bad arguments are a ``ValueError``
    before any data is read.
    """
    _supported(name, ("imdb", "sst2"), "text classification")
    truncate([], max_len, truncation)  # a bad max_len or truncation fails before the corpus is read
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise ValueError(f"max_examples must be a positive int or None, got {max_examples!r}")
    text_col = "sentence" if name == "sst2" else "text"

    def texts_and_labels(split: str) -> tuple[list[str], list[int]]:
        rows = load_corpus(name, split)
        texts, labels = _clean(name, column(rows, text_col)), column(rows, "label")
        if max_examples:  # a random draw (seed 0), before the tokenizer is trained
            idx = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))[:max_examples].tolist()
            texts, labels = [texts[i] for i in idx], [labels[i] for i in idx]
        return texts, labels

    train_texts, train_labels = texts_and_labels("train")
    eval_texts, eval_labels = texts_and_labels("validation" if name == "sst2" else "test")
    tok = train_bpe(train_texts, vocab_size, name=f"{name}-train{max_examples or ''}")

    def split(texts: list[str], labels: list[int]) -> ClassificationSplit:
        tokens = [truncate(ids, max_len, truncation) for ids in tok.encode_batch(texts)]
        return ClassificationSplit(tokens, torch.tensor(labels, dtype=torch.long), tok.pad_id, max_len)

    return split(train_texts, train_labels), split(eval_texts, eval_labels), tok


def load_translation(
    name: str = "multi30k", vocab_size: int = 8000, src_lang: str = "en", tgt_lang: str = "de"
) -> tuple[TranslationSplit, TranslationSplit, TranslationSplit, BPETokenizer, BPETokenizer]:
    """Multi30k sentence pairs, BPE-tokenized: ``(train, val, test, src_tokenizer, tgt_tokenizer)``.

    The splits are ``TranslationSplit`` objects (ids of each side, the raw sentences for BLEU, and the target
    tokenizer's ``<pad>``/``<bos>``/``<eos>`` ids); the test split is test2016 (Flickr). ``src_lang`` and
    ``tgt_lang``: ``"en"`` and ``"de"`` in either order. One ``BPETokenizer`` per language (``vocab_size`` entries
    each, cached on disk), trained on its side of the training split; both share the special ids. Only
    ``"multi30k"`` is available (else ``ValueError``).
    """
    _supported(name, ("multi30k",), "translation")
    if {src_lang, tgt_lang} != {"en", "de"}:
        raise ValueError(f"multi30k has the languages 'en' and 'de', got src_lang={src_lang!r}, tgt_lang={tgt_lang!r}")
    corpus = load_corpus(name)
    src_tok = train_bpe(column(corpus["train"], src_lang), vocab_size, name=f"{name}-train-{src_lang}")
    tgt_tok = train_bpe(column(corpus["train"], tgt_lang), vocab_size, name=f"{name}-train-{tgt_lang}")
    splits = []
    for s in ("train", "validation", "test"):
        src_texts, tgt_texts = column(corpus[s], src_lang), column(corpus[s], tgt_lang)
        splits.append(
            TranslationSplit(
                src_tok.encode_batch(src_texts),
                tgt_tok.encode_batch(tgt_texts),
                src_texts,
                tgt_texts,
                tgt_tok.pad_id,
                tgt_tok.bos_id,
                tgt_tok.eos_id,
            )
        )
    return (*splits, src_tok, tgt_tok)
