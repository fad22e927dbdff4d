"""seqlib.translation: scoring with sacrebleu and decoding with a (tiny, untrained) encoder-decoder."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sacrebleu
import torch

from seqlib.data import TranslationSplit, train_bpe
from seqlib.models import beam_search, build_model, greedy_decode
from seqlib.translation import bleu_chrf, cut_at_eos, translate, translation_data

EN = ["a man rides a horse", "two dogs play in the snow", "a woman is reading a book", "children run on a beach"]
DE = [
    "ein mann reitet ein pferd",
    "zwei hunde spielen im schnee",
    "eine frau liest ein buch",
    "kinder laufen am strand",
]


def test_bleu_chrf_identical_is_100():
    s = bleu_chrf(DE, DE)
    assert s["bleu"] == pytest.approx(100.0)
    assert s["chrf"] == pytest.approx(100.0)
    assert s["bleu_bp"] == pytest.approx(1.0)
    assert "13a" in s["bleu_signature"]


def test_bleu_chrf_orders_quality():
    worse = ["ein mann reitet ein", "zwei hunde spielen im", "eine frau liest ein", "kinder laufen am"]
    unrelated = ["xyz qrs", "abc", "uvw", "lmn opq"]
    good, bad, none = bleu_chrf(worse, DE), bleu_chrf(unrelated, DE), bleu_chrf(DE, DE)
    assert none["bleu"] > good["bleu"] > bad["bleu"] >= 0
    assert none["chrf"] > good["chrf"] > bad["chrf"]
    assert good["bleu_bp"] < 1.0  # short hypotheses pay the brevity penalty


def test_bleu_chrf_bad_input():
    with pytest.raises(ValueError, match="hypotheses"):
        bleu_chrf(DE[:2], DE)
    with pytest.raises(TypeError):
        bleu_chrf("ein mann", "ein mann")
    with pytest.raises(ValueError, match="no sentences"):
        bleu_chrf([], [])


def test_cut_at_eos():
    assert cut_at_eos([5, 6, 3, 7, 3], 3) == [5, 6]
    assert cut_at_eos([5, 6], 3) == [5, 6]


@pytest.fixture(scope="module")
def tiny_run():
    src_tok = train_bpe(EN * 5, 300, name="test-en", cache=False)
    tgt_tok = train_bpe(DE * 5, 300, name="test-de", cache=False)
    torch.manual_seed(0)
    model = build_model(
        "transformer",
        "seq2seq",
        vocab_size=src_tok.vocab_size,
        tgt_vocab_size=tgt_tok.vocab_size,
        d_model=32,
        n_layers=1,
    ).eval()
    extra = {"src_tokenizer": src_tok, "tgt_tokenizer": tgt_tok}
    return SimpleNamespace(model=model, extra=extra, config={"decode": {"max_len": 8}})


def test_translate_returns_strings_in_order(tiny_run):
    out = translate(tiny_run, EN, batch_size=3)
    assert isinstance(out, list) and len(out) == len(EN)
    assert all(isinstance(s, str) for s in out)
    # batched (sorted by length, padded) equals one sentence at a time: the padding mask works
    assert out == [translate(tiny_run, [s])[0] for s in EN]
    beams = translate(tiny_run, EN[:2], beam_size=2)
    assert len(beams) == 2 and all(isinstance(s, str) for s in beams)


def test_translate_bad_input(tiny_run):
    with pytest.raises(TypeError):
        translate(tiny_run, "a man rides a horse")
    with pytest.raises(ValueError, match="beam_size"):
        translate(tiny_run, EN, beam_size=0)


def test_beam_of_one_is_greedy(tiny_run):
    src_tok, tgt_tok = tiny_run.extra["src_tokenizer"], tiny_run.extra["tgt_tokenizer"]
    model = tiny_run.model
    for sentence in EN:
        src = torch.tensor([src_tok.encode(sentence)])
        mask = torch.ones_like(src, dtype=torch.bool)
        ids = dict(bos_id=tgt_tok.bos_id, eos_id=tgt_tok.eos_id, max_len=8)
        greedy = cut_at_eos(greedy_decode(model, src, mask, **ids)[0].tolist(), tgt_tok.eos_id)
        assert beam_search(model, src, mask, beam_size=1, **ids)[0] == greedy


def test_translation_data_is_what_run_translation_uses(monkeypatch):
    """The profile's vocabulary size and languages, loaded once; run_translation reads its data through it."""
    from seqlib import experiments, profiles
    from seqlib import translation as tr

    calls = []

    def fake_load_translation(name, vocab_size, src_lang, tgt_lang):
        calls.append((name, vocab_size, src_lang, tgt_lang))
        return ([], [], [], object(), object())

    tr._load_cached.cache_clear()
    monkeypatch.setattr(tr, "load_translation", fake_load_translation)
    try:
        expected = []
        for profile in ("smoke", "full"):
            data = profiles.get("translate_multi30k", profile)["data"]
            got = translation_data(profile)
            assert len(got) == 5 and translation_data(profile) is got  # loaded once per setting
            assert tr._load_cached(data["vocab_size"], data["src_lang"], data["tgt_lang"]) is got
            expected.append(("multi30k", data["vocab_size"], data["src_lang"], data["tgt_lang"]))
        assert calls == expected
        monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
        assert translation_data() is translation_data("smoke")  # default: the active profile

        def asked_for(profile=None):
            raise LookupError(f"translation_data({profile!r})")

        monkeypatch.setattr(tr, "translation_data", asked_for)
        with pytest.raises(LookupError, match="'full'"):
            experiments.run_translation("transformer", profile="full", progress=False)
    finally:
        tr._load_cached.cache_clear()


def test_chrf_weights_recall_of_the_reference():
    short = ["ein mann", "zwei hunde", "eine frau", "kinder"]  # precise but incomplete
    s = bleu_chrf(short, DE)
    assert s["chrf"] == pytest.approx(sacrebleu.corpus_chrf(short, [DE]).score)
    # chrF's beta = 2 weights recall twice as much as precision: an incomplete hypothesis scores below its mirror
    assert s["chrf"] < bleu_chrf(DE, short)["chrf"] - 5


def test_translate_returns_the_detokenized_greedy_output(tiny_run):
    src_tok, tgt_tok = tiny_run.extra["src_tokenizer"], tiny_run.extra["tgt_tokenizer"]
    out = translate(tiny_run, EN, batch_size=3)
    for sentence, got in zip(EN, out, strict=True):
        src = torch.tensor([src_tok.encode(sentence)])
        ids = greedy_decode(
            tiny_run.model,
            src,
            torch.ones_like(src, dtype=torch.bool),
            bos_id=tgt_tok.bos_id,
            eos_id=tgt_tok.eos_id,
            max_len=8,
        )[0].tolist()
        assert got == tgt_tok.decode(cut_at_eos(ids, tgt_tok.eos_id)).strip()


EN6 = [*EN, "a boy eats an apple", "the girl sings a song"]
DE6 = [*DE, "ein junge isst einen apfel", "das mädchen singt ein lied"]


def test_run_translation_scores_the_test_split(monkeypatch):
    from seqlib import experiments
    from seqlib import translation as tr

    src_tok = train_bpe(EN6 * 5, 300, name="p10-en", cache=False)
    tgt_tok = train_bpe(DE6 * 5, 300, name="p10-de", cache=False)

    def split(idx):
        ids = dict(pad_id=tgt_tok.pad_id, bos_id=tgt_tok.bos_id, eos_id=tgt_tok.eos_id)
        return TranslationSplit(
            [src_tok.encode(EN6[i]) for i in idx],
            [tgt_tok.encode(DE6[i]) for i in idx],
            [EN6[i] for i in idx],
            [DE6[i] for i in idx],
            **ids,
        )

    train, val, test = split([0, 1, 2, 3]), split([4, 0]), split([5, 1, 2])
    monkeypatch.setattr(tr, "translation_data", lambda profile=None: (train, val, test, src_tok, tgt_tok))
    monkeypatch.setattr(experiments, "train", lambda *a, **k: SimpleNamespace(metrics={}))
    perfect = dict(zip(EN6, DE6, strict=True))
    monkeypatch.setattr(tr, "translate", lambda run, srcs, **kw: [perfect[s] for s in srcs])  # a perfect translator
    wrong = {**perfect, EN6[5]: "ganz falsch", EN6[4]: "ein junge isst einen apfel"}
    run = experiments.run_translation("transformer", profile="smoke", progress=False)
    assert run.extra["sources"] == test.src_texts and run.extra["references"] == test.tgt_texts
    assert run.result.metrics["test_sentences"] == 3 and run.result.metrics["test_bleu"] == pytest.approx(100.0)
    # the score follows the test references: a wrong translation of a test sentence costs BLEU
    monkeypatch.setattr(tr, "translate", lambda run, srcs, **kw: [wrong[s] for s in srcs])
    assert experiments.run_translation("transformer", profile="smoke", progress=False).result.metrics["test_bleu"] < 100


def test_translate_maps_each_output_back_to_its_source(tiny_run, monkeypatch):
    """A decoder that writes each source's length: outputs come back in the sources' order, an empty source as
    one <unk> token."""
    from seqlib import translation as tr

    src_tok, tgt_tok = tiny_run.extra["src_tokenizer"], tiny_run.extra["tgt_tokenizer"]

    def write_length(model, src, src_mask, *, bos_id, eos_id, max_len):
        n = src_mask.sum(1, keepdim=True) + 10  # (B, 1); ids from 10: no special tokens
        return torch.cat([n, n, torch.full_like(n, eos_id)], 1)

    monkeypatch.setattr(tr, "greedy_decode", write_length)
    sources = ["a man", "", "two dogs play in the snow", "a woman is reading a book on a beach", "children run"]
    lengths = [max(1, len(src_tok.encode(s))) for s in sources]
    assert len(set(lengths)) >= 4
    out = translate(tiny_run, sources, batch_size=2)
    assert out == [tgt_tok.decode([n + 10, n + 10]).strip() for n in lengths]


def test_beam_search_gets_the_length_penalty(tiny_run, monkeypatch):
    from seqlib import translation as tr

    seen = []

    def fake_beam_search(model, src, src_mask, **kw):
        seen.append(kw["length_penalty"])
        return [[] for _ in range(src.shape[0])]

    monkeypatch.setattr(tr, "beam_search", fake_beam_search)
    translate(tiny_run, EN[:2], beam_size=3)
    translate(tiny_run, EN[:2], beam_size=3, length_penalty=1.0)
    assert seen == [0.6, 1.0]  # GNMT's 0.6 unless asked otherwise


def test_bleu_brevity_penalty_is_sacrebleus():
    short = ["ein mann reitet", "zwei hunde", "eine frau liest ein buch", "kinder laufen"]
    s = bleu_chrf(short, DE)
    assert s["bleu_bp"] == pytest.approx(sacrebleu.corpus_bleu(short, [DE]).bp)
    assert s["bleu"] == pytest.approx(sacrebleu.corpus_bleu(short, [DE]).score)
