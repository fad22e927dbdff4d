"""Tests of seqlib.data: corpora (local mirror, checksums, hub fallback), tokenizers, batching, loaders.

Tests that read the corpora need SEQLIB_DATA (CI sets it to ../shared/data); without it they are skipped.
Nothing here touches the network: the hub loaders are replaced with fakes.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import datasets
import pytest
import torch

from seqlib.data import (
    CORPORA,
    CharTokenizer,
    ChecksumError,
    WordTokenizer,
    classification_batches,
    corpora,
    lm_batches,
    lm_eval_batches,
    load_char_lm,
    load_classification,
    load_corpus,
    load_translation,
    load_word_lm,
    seq2seq_batches,
    train_bpe,
)

DATA = os.environ.get("SEQLIB_DATA", "").strip()
DATA = str(Path(DATA).resolve()) if DATA else ""  # absolute, so tests that change directory still find it
SPLITS3 = ("train", "validation", "test")
needs_data = pytest.mark.skipif(not DATA, reason="set SEQLIB_DATA to a folder with the layout of shared/data")


@pytest.fixture
def local(monkeypatch, tmp_path):
    """Read from the mirror; BPE cache in a fresh folder."""
    monkeypatch.setenv("SEQLIB_DATA", DATA)
    monkeypatch.setenv("SEQLIB_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """SEQLIB_DATA unset and every way to the internet failing."""

    def offline(*args, **kwargs):
        raise ConnectionError("no route to huggingface.co")

    monkeypatch.delenv("SEQLIB_DATA", raising=False)
    monkeypatch.setenv("SEQLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(corpora, "_hub_load_dataset", offline)
    monkeypatch.setattr(corpora, "_http_get", offline)
    corpora._load_hub.cache_clear()
    yield
    corpora._load_hub.cache_clear()


@pytest.fixture(scope="module")
def imdb():
    if not DATA:
        pytest.skip("set SEQLIB_DATA to a folder with the layout of shared/data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQLIB_DATA", DATA)
        return load_corpus("imdb")


# ----------------------------------------------------------------------------- corpora


def test_unknown_corpus_and_split():
    with pytest.raises(ValueError, match="valid names: tiny_shakespeare, wikitext2, sst2, imdb, multi30k"):
        load_corpus("ptb")
    with pytest.raises(ValueError, match="valid splits: train, test"):
        load_corpus("imdb", split="validation")


@needs_data
def test_tiny_shakespeare(local):
    c = load_corpus("tiny_shakespeare")
    assert list(c) == ["train", "validation"] and c["train"].column_names == ["text"]
    train, val = c["train"][0]["text"], c["validation"][0]["text"]
    assert (len(train), len(val)) == (1_003_854, 111_540)  # int(0.9 * 1,115,394) and the rest
    assert train.startswith("First Citizen:") and len(set(train + val)) == 65


@needs_data
def test_wikitext2(local):
    c = load_corpus("wikitext2")
    assert list(c) == ["train", "validation", "test"] and c["test"].column_names == ["text"]
    assert [c[s].num_rows for s in c] == [36_718, 3_760, 4_358]
    assert c["train"][1]["text"] == " = Valkyria Chronicles III = "


@needs_data
def test_sst2(local):
    c = load_corpus("sst2")
    assert list(c) == ["train", "validation", "test"]
    assert all(c[s].column_names == ["sentence", "label"] for s in c)
    assert [c[s].num_rows for s in c] == [67_349, 872, 1_821]
    assert sum(c["train"]["label"][:]) == 37_569 and sum(c["validation"]["label"][:]) == 444
    assert set(c["test"]["label"][:]) == {-1}
    assert c["train"][0]["sentence"] == "hide new secretions from the parental units "
    assert load_corpus("sst2", "validation") is load_corpus("sst2", "validation")  # cached in the process


def test_imdb(imdb):
    assert list(imdb) == ["train", "test"] and imdb["train"].column_names == ["text", "label"]
    assert [imdb[s].num_rows for s in imdb] == [25_000, 25_000]
    assert sum(imdb["train"]["label"][:]) == 12_500 and sum(imdb["test"]["label"][:]) == 12_500
    assert imdb["train"].features["label"].names == ["neg", "pos"]


@needs_data
def test_multi30k(local):
    c = load_corpus("multi30k")
    assert list(c) == ["train", "validation", "test"] and c["train"].column_names == ["en", "de"]
    assert [c[s].num_rows for s in c] == [29_000, 1_014, 1_000]
    assert c["train"][0]["en"].startswith("Two young, White males")


@needs_data
def test_relative_data_path(monkeypatch):
    monkeypatch.chdir(Path(DATA).parent)
    monkeypatch.setenv("SEQLIB_DATA", Path(DATA).name)
    assert load_corpus("multi30k", "validation").num_rows == 1_014


def _mirror(tmp_path: Path, rel: str, content: bytes | None = None) -> Path:
    """A mirror with SHA256SUMS and one file: a copy of ours, or ``content`` gzipped."""
    root = tmp_path / "mirror"
    (root / rel).parent.mkdir(parents=True)
    shutil.copy(Path(DATA) / "SHA256SUMS", root / "SHA256SUMS")
    if content is None:
        shutil.copy(Path(DATA) / rel, root / rel)
    else:
        (root / rel).write_bytes(gzip.compress(content))
    return root


@needs_data
def test_checksum_checked(monkeypatch, tmp_path):
    root = _mirror(tmp_path / "good", "sst2/dev.tsv.gz")
    monkeypatch.setenv("SEQLIB_DATA", str(root))
    assert load_corpus("sst2", "validation").num_rows == 872
    root = _mirror(tmp_path / "bad", "sst2/dev.tsv.gz", b"sentence\tlabel\nit 's a fine movie \t1\n")
    monkeypatch.setenv("SEQLIB_DATA", str(root))
    with pytest.raises(ChecksumError, match="corrupted or was modified.*Copy the file again.*unset SEQLIB_DATA"):
        load_corpus("sst2", "validation")


@needs_data
def test_missing_files(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQLIB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="is not a folder.*layout of shared/data"):
        load_corpus("sst2", "train")
    root = _mirror(tmp_path, "sst2/dev.tsv.gz")
    monkeypatch.setenv("SEQLIB_DATA", str(root))
    with pytest.raises(FileNotFoundError, match="sst2/train.tsv.gz is missing.*layout of shared/data"):
        load_corpus("sst2", "train")
    (root / "SHA256SUMS").unlink()
    with pytest.raises(FileNotFoundError, match="SHA256SUMS is missing"):
        load_corpus("sst2", "validation")


@pytest.mark.parametrize("name", ["sst2", "tiny_shakespeare"])
def test_no_data_and_no_hub(no_network, name):
    with pytest.raises(RuntimeError, match="set SEQLIB_DATA to a folder.*connect to the internet") as info:
        load_corpus(name)
    assert "no route to huggingface.co" in str(info.value)
    assert isinstance(info.value, corpora.DataUnavailableError)  # the command line shows it as one line


def test_hub_columns_match_local(no_network, monkeypatch):
    """Fake hub datasets with the hub's extra columns and splits come out with the local layout."""
    text = "First Citizen:\n" * 100
    fakes = {
        "stanfordnlp/sst2": {s: {"idx": [0], "sentence": ["a fine movie "], "label": [1]} for s in SPLITS3},
        "stanfordnlp/imdb": {s: {"text": ["good"], "label": [1]} for s in ("train", "test", "unsupervised")},
        "Salesforce/wikitext": {s: {"text": ["", " = Title = \n"]} for s in SPLITS3},
        "bentrevett/multi30k": {s: {"en": ["A dog."], "de": ["Ein Hund."]} for s in SPLITS3},
        "karpathy/tiny_shakespeare": {"train": {"text": [text[:1350]]}, "validation": {"text": [text[1350:]]}},
    }

    def hub(path, config=None):
        return datasets.DatasetDict({s: datasets.Dataset.from_dict(d) for s, d in fakes[path].items()})

    monkeypatch.setattr(corpora, "_hub_load_dataset", hub)
    expected = {
        "sst2": ["sentence", "label"],
        "imdb": ["text", "label"],
        "wikitext2": ["text"],
        "multi30k": ["en", "de"],
    }
    for name in CORPORA:
        if name == "tiny_shakespeare":
            with pytest.warns(UserWarning, match="differs from char-rnn's input.txt"):
                c = load_corpus(name)
        else:
            c = load_corpus(name)
        assert list(c) == list(corpora.SPLITS[name])
        assert all(c[s].column_names == expected.get(name, ["text"]) for s in c)
    assert load_corpus("wikitext2", "train")["text"][:] == ["", " = Title = "]
    assert load_corpus("tiny_shakespeare", "train")[0]["text"] == text[:1350]


# ----------------------------------------------------------------------------- tokenizers


def test_char_tokenizer():
    tok = CharTokenizer("hello world")
    assert tok.vocab_size == 8 and tok.decode(tok.encode("low hold")) == "low hold"
    assert tok.encode(" d") == [0, 1]  # sorted characters
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        tok.encode("zebra")


def test_word_tokenizer():
    tok = WordTokenizer(["the cat sat", "", "the <unk> ran"])
    assert tok.itos == ["the", "cat", "sat", "<eos>", "<unk>", "ran"]
    assert tok.encode_lines(["the cat", ""]).tolist() == [0, 1, 3, 3]
    assert tok.encode("the dog") == [0, 4]  # unknown word -> <unk>
    assert tok.decode(tok.encode("  sat  the\tcat ")) == "sat the cat"
    with pytest.raises(ValueError, match="no <unk>"):
        WordTokenizer(["a b"]).encode("c")


TEXTS = [f"line {i}: the quick brown fox jumps over {i % 7} lazy dogs, naïve café ü" for i in range(300)]


def test_bpe_round_trip_and_specials(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQLIB_CACHE", str(tmp_path))
    tok = train_bpe(TEXTS, 400)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert 260 < tok.vocab_size <= 400
    for text in [TEXTS[5], "  unseen Wörter, 東京 and emoji 🙂!\n", ""]:
        assert tok.decode(tok.encode(text)) == text  # byte-level: exact, never <unk>
        assert tok.unk_id not in tok.encode(text)
    ids = tok.encode(TEXTS[0], add_bos=True, add_eos=True)
    assert ids[0] == 2 and ids[-1] == 3 and tok.decode(ids) == TEXTS[0]
    assert tok.encode_batch(TEXTS[:3]) == [tok.encode(t) for t in TEXTS[:3]]
    assert len(tok.encode(TEXTS[0])) < len(TEXTS[0].encode()) / 2  # merges were learned
    with pytest.raises(ValueError, match="at least 260"):
        train_bpe(TEXTS, 100)


def test_bpe_deterministic_and_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQLIB_CACHE", str(tmp_path / "a"))
    first = train_bpe(TEXTS, 400, name="toy")
    assert not first.loaded_from_cache and first.path.parent == tmp_path / "a" / "bpe" and first.path.is_file()
    again = train_bpe(TEXTS, 400, name="toy")
    assert again.loaded_from_cache and again.path == first.path
    assert again.tokenizer.to_str() == first.tokenizer.to_str()
    monkeypatch.setenv("SEQLIB_CACHE", str(tmp_path / "b"))
    fresh = train_bpe(TEXTS, 400, name="toy")
    assert not fresh.loaded_from_cache and fresh.tokenizer.to_str() == first.tokenizer.to_str()  # deterministic
    other = train_bpe(TEXTS, 300, name="toy")
    assert other.path != fresh.path and other.vocab_size <= 300
    changed = train_bpe(TEXTS[:-1], 400, name="toy")
    assert changed.path != fresh.path  # the key covers the texts too
    rarer = train_bpe(TEXTS, 400, name="toy", min_frequency=20)
    assert not rarer.loaded_from_cache and rarer.path != fresh.path  # and every setting
    assert rarer.vocab_size < fresh.vocab_size  # fewer pairs are frequent enough to merge


# ----------------------------------------------------------------------------- batching


def test_lm_batches():
    ids = torch.arange(100)
    batches = list(lm_batches(ids, batch_size=4, seq_len=8, seed=1, num_batches=5))
    assert len(batches) == 5
    for x, y in batches:
        assert x.shape == y.shape == (4, 8) and x.dtype == torch.long
        assert torch.equal(x - x[:, :1], torch.arange(8).expand(4, 8))  # contiguous windows
        assert torch.equal(y, x + 1) and int(y.max()) <= 99
    again = list(lm_batches(ids, 4, 8, seed=1, num_batches=5))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    other = next(lm_batches(ids, 4, 8, seed=2))
    assert not torch.equal(other[0], batches[0][0])
    starts = torch.cat([x[:, 0] for x, _ in lm_batches(ids, 64, 8, seed=3, num_batches=20)])
    assert set(starts.tolist()) == set(range(100 - 8))  # every window is drawn, the first and the last included
    with pytest.raises(ValueError, match="1-D LongTensor"):
        next(lm_batches(ids.float(), 4, 8))
    with pytest.raises(ValueError, match="at least seq_len"):
        next(lm_batches(ids[:8], 4, 8))


@pytest.mark.parametrize("n", [101, 97, 18, 9])  # 18: one token left over after two windows, its target scored
def test_lm_eval_batches_cover_every_token_once(n):
    ids = torch.arange(n) * 3
    batches = list(lm_eval_batches(ids, batch_size=4, seq_len=8))
    ys = torch.cat([y.flatten() for _, y in batches])
    assert torch.equal(ys, ids[1:])
    assert all(torch.equal(y[:, :-1], x[:, 1:]) and x.shape[1] <= 8 for x, y in batches)
    assert all(x.shape[0] <= 4 for x, _ in batches)


def test_truncate_keeps_head_or_head_and_tail():
    from seqlib.data import truncate

    ids = list(range(20))
    assert truncate(ids, 8, "head") == list(range(8))
    assert truncate(ids, 8) == [0, 1] + list(range(14, 20))  # a quarter from the start, the rest from the end
    assert truncate(ids, 8, "head_tail") == truncate(ids, 8)
    assert truncate(ids, 3) == [17, 18, 19]  # max_len // 4 == 0: the tail alone
    assert truncate(ids[:5], 8) == ids[:5] and truncate(ids[:8], 8) == ids[:8]  # short ones stay whole
    for bad in [dict(max_len=8, how="tail"), dict(max_len=0, how="head")]:
        with pytest.raises(ValueError, match="truncation|max_len"):
            truncate(ids, **bad)


def test_classification_batches():
    seqs = [[7] * n for n in [3, 1, 5, 12, 2, 8, 4]]
    labels = [len(s) for s in seqs]
    seen = []
    for tokens, mask, y in classification_batches(seqs, labels, 3, max_len=6, pad_id=0, seed=4):
        assert tokens.shape == mask.shape and tokens.shape[0] == y.shape[0] <= 3 and mask.dtype == torch.bool
        lengths = y.clamp(max=6)
        assert tokens.shape[1] == int(lengths.max())  # padded to the longest in the batch, cut at max_len
        assert torch.equal(mask.sum(1), lengths) and torch.equal(mask, tokens == 7)  # right padding
        assert not mask[:, 0].logical_not().any()
        seen += y.tolist()
    assert sorted(seen) == sorted(labels)
    order = [y.tolist() for *_, y in classification_batches(seqs, labels, 3, 6, 0, seed=4)]
    assert sum(order, []) == seen  # seeded
    plain = [y.tolist() for *_, y in classification_batches(seqs, labels, 3, 6, 0, shuffle=False)]
    assert sum(plain, []) == labels
    assert len(list(classification_batches(seqs, labels, 3, 6, 0, drop_last=True))) == 2
    with pytest.raises(ValueError, match="empty token lists"):
        next(classification_batches([[1], []], [0, 1], 2, 6, 0))
    with pytest.raises(ValueError, match="2 token lists but 1 labels"):
        next(classification_batches([[1], [2]], [0], 2, 6, 0))


def test_seq2seq_batches():
    gen = torch.Generator().manual_seed(0)
    src = [list(range(10, 10 + int(n))) for n in torch.randint(1, 12, (23,), generator=gen)]
    tgt = [list(range(20, 20 + int(n))) for n in torch.randint(0, 9, (23,), generator=gen)]
    batches = list(seq2seq_batches(src, tgt, 5, pad_id=0, bos_id=2, eos_id=3, seed=1, return_indices=True))
    assert len(batches) == 5 and sorted(torch.cat([b[4] for b in batches]).tolist()) == list(range(23))
    by_length = sorted(range(23), key=lambda i: (len(src[i]), len(tgt[i])))
    buckets = [by_length[i : i + 5] for i in range(0, 23, 5)]
    assert sorted(b[4].tolist() for b in batches) == sorted(buckets)  # batches are runs of the length order
    assert [b[4].tolist() for b in batches] != buckets  # in shuffled order
    for s, s_mask, t_in, t_out, idx in batches:
        lens = [len(src[i]) for i in idx.tolist()]
        assert torch.equal(s_mask.sum(1), torch.tensor(lens)) and torch.equal(s_mask, s != 0)
        assert (t_in[:, 0] == 2).all() and t_in.shape == t_out.shape
        for row, i in enumerate(idx.tolist()):
            n = len(tgt[i])
            assert t_in[row, 1 : n + 1].tolist() == tgt[i] and (t_in[row, n + 1 :] == 0).all()
            assert t_out[row, :n].tolist() == tgt[i] and t_out[row, n] == 3 and (t_out[row, n + 1 :] == -100).all()
    plain = [b[4].tolist() for b in seq2seq_batches(src, tgt, 5, 0, 2, 3, shuffle=False, return_indices=True)]
    assert plain == buckets  # shortest first
    cut = next(seq2seq_batches(src, tgt, 23, 0, 2, 3, max_len=4))
    assert cut[0].shape[1] <= 4 and cut[2].shape[1] <= 5


# ----------------------------------------------------------------------------- loaders


@needs_data
def test_load_char_lm(local):
    train, val, tok = load_char_lm("tiny_shakespeare")
    assert tok.vocab_size == 65 and train.dtype == torch.long and (train.numel(), val.numel()) == (1_003_854, 111_540)
    assert tok.decode(train[:14].tolist()) == "First Citizen:"
    with pytest.raises(ValueError, match="available for tiny_shakespeare"):
        load_char_lm("imdb")


@needs_data
def test_load_word_lm(local):
    train, val, test, tok = load_word_lm("wikitext2")
    assert tok.vocab_size == 33_278
    assert (train.numel(), val.numel(), test.numel()) == (2_088_628, 217_646, 245_569)
    assert int((train == tok.eos_id).sum()) == 36_718 and int(train.max()) == tok.vocab_size - 1
    assert tok.decode(train[:5].tolist()) == "<eos> = Valkyria Chronicles III"


@needs_data
def test_load_classification_sst2(local):
    train, val, tok = load_classification("sst2", vocab_size=1000, max_len=16)
    assert (len(train), len(val), tok.vocab_size) == (67_349, 872, 1000)
    assert max(len(t) for t in train.tokens) == 16 and int(val.labels.sum()) == 444
    assert tok.decode(val.tokens[0]).startswith("it 's a charming and often affecting journey")
    tokens, mask, labels = next(val.batches(8, shuffle=False))
    assert tokens.shape == (8, 16) and torch.equal(labels, val.labels[:8]) and mask[:, 0].all()
    from seqlib.data.loaders import _clean, column

    texts = _clean("sst2", column(load_corpus("sst2", "train"), "sentence"))
    long = next(i for i, t in enumerate(texts) if len(tok.encode(t)) > 40)
    whole = tok.encode(texts[long])
    assert train.tokens[long] == whole[:4] + whole[-12:]  # head and tail: 16 // 4 from the start
    with pytest.raises(ValueError, match="truncation"):
        load_classification("sst2", vocab_size=1000, max_len=16, truncation="tail")
    # a random draw of each split (the same one every time), before the tokenizer is trained
    small_train, small_val, _ = load_classification("sst2", vocab_size=300, max_len=16, max_examples=50)
    again, _, _ = load_classification("sst2", vocab_size=300, max_len=16, max_examples=50)
    assert (len(small_train), len(small_val)) == (50, 50) and small_train.tokens == again.tokens
    assert torch.equal(small_train.labels, again.labels) and 0 < int(small_train.labels.sum()) < 50
    with pytest.raises(ValueError, match="max_examples"):
        load_classification("sst2", vocab_size=300, max_len=16, max_examples=0)


def test_imdb_cleaning(imdb):
    from seqlib.data.loaders import _clean

    raw = imdb["train"][:20]["text"]
    assert any("<br />" in t for t in raw) and not any("<br />" in t for t in _clean("imdb", raw))


@needs_data
def test_load_translation(local):
    train, val, test, src_tok, tgt_tok = load_translation("multi30k", vocab_size=1000)
    assert (len(train), len(val), len(test)) == (29_000, 1_014, 1_000)
    assert src_tok.decode(test.src[0]) == test.src_texts[0] and tgt_tok.decode(test.tgt[0]) == test.tgt_texts[0]
    assert tgt_tok.decode(test.tgt[0]).startswith("Ein Mann mit einem orangefarbenen Hut")
    src, src_mask, tgt_in, tgt_out, idx = next(val.batches(16, return_indices=True))
    i = int(idx[0])
    n = len(val.tgt[i])
    assert tgt_tok.decode(tgt_out[0, :n].tolist()) == val.tgt_texts[i] and tgt_out[0, n] == tgt_tok.eos_id
    with pytest.raises(ValueError, match="'en' and 'de'"):
        load_translation(src_lang="fr")


def test_the_package_docstring_names_every_synthetic_task_and_the_loaders_are_documented():
    import seqlib.data as data
    from seqlib.data import loaders

    assert all(f"``{name}``" in data.__doc__ for name in data.SYNTHETIC_TASKS)
    assert all(hasattr(data, name) for name in data.SYNTHETIC_TASKS)
    for fn in (loaders.load_char_lm, loaders.load_word_lm, loaders.load_classification, loaders.load_translation):
        assert fn.__doc__ and len(fn.__doc__.strip()) > 80, fn.__name__


def test_classification_subset_keeps_each_text_with_its_label():
    from seqlib.data import ClassificationSplit

    split = ClassificationSplit([[i, i] for i in range(40)], torch.arange(40), pad_id=0, max_len=8)
    sub = split.subset(10, seed=3)
    assert len(sub) == 10 and (sub.pad_id, sub.max_len) == (0, 8)
    assert [t[0] for t in sub.tokens] == sub.labels.tolist()  # every text still has its own label
    assert sub.labels.tolist() != list(range(10))  # a random draw, not the first ten
    assert sub.tokens == split.subset(10, seed=3).tokens  # seeded
    assert split.subset(40) is split


@needs_data
def test_load_translation_trains_each_tokenizer_on_its_own_language(local):
    _, _, test, src_tok, tgt_tok = load_translation("multi30k", vocab_size=1000)

    def n_tokens(tok, texts):
        return sum(len(ids) for ids in tok.encode_batch(texts))

    # a BPE learned on a language segments it into fewer pieces than one learned on the other language
    assert n_tokens(tgt_tok, test.tgt_texts) < n_tokens(src_tok, test.tgt_texts)
    assert n_tokens(src_tok, test.src_texts) < n_tokens(tgt_tok, test.src_texts)
    assert test.tgt == tgt_tok.encode_batch(test.tgt_texts) and test.src == src_tok.encode_batch(test.src_texts)


@needs_data
def test_load_classification_trains_bpe_on_the_training_texts_only(local, monkeypatch):
    from seqlib.data import loaders, truncate

    seen, real = [], loaders.train_bpe
    monkeypatch.setattr(loaders, "train_bpe", lambda texts, *a, **k: seen.append(list(texts)) or real(texts, *a, **k))
    train, held_out, tok = load_classification("sst2", vocab_size=300, max_len=16, max_examples=50)
    assert len(seen) == 1 and len(seen[0]) == len(train) == 50  # no held-out text leaks into the vocabulary
    assert [truncate(ids, 16) for ids in tok.encode_batch(seen[0])] == train.tokens  # exactly the training texts
    head, _, _ = load_classification("sst2", vocab_size=300, max_len=16, max_examples=50, truncation="head")
    assert head.tokens == [truncate(ids, 16, "head") for ids in tok.encode_batch(seen[0])] != train.tokens


@needs_data
def test_a_file_not_listed_in_sha256sums_is_refused(monkeypatch, tmp_path):
    root = _mirror(tmp_path, "sst2/dev.tsv.gz")
    sums = root / "SHA256SUMS"
    sums.write_text("".join(line for line in sums.read_text().splitlines(True) if "sst2/dev.tsv.gz" not in line))
    monkeypatch.setenv("SEQLIB_DATA", str(root))
    with pytest.raises(ChecksumError, match="sst2/dev.tsv.gz is not listed"):
        load_corpus("sst2", "validation")
