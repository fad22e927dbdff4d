"""Translating with a trained encoder-decoder, and scoring translations with sacrebleu.

* ``translate(run, src_texts, beam_size=1)``: source sentences -> detokenized target sentences. Greedy decoding
  (``beam_size=1``) runs in batches (sources sorted by length, so little padding); beam search runs one
  sentence at a time (``seqlib.models.beam_search``), which is why chapter 9 runs it on a subset.
* ``bleu_chrf(hyps, refs)``: corpus BLEU (Papineni et al., 2002) and chrF (Popovic, 2015) computed by sacrebleu
  (Post, 2018) on detokenized text, so that the scores do not depend on our BPE vocabulary.
* ``translation_data(profile=None)``: the Multi30k splits and BPE tokenizers that ``run_translation`` trains and
  scores on under a profile's settings (the same objects, loaded once per process).

``run`` is the ``Run`` returned by ``seqlib.experiments.run_translation``: ``run.model`` is an
``EncoderDecoder``, ``run.extra`` holds ``src_tokenizer`` and ``tgt_tokenizer`` (the BPE of each language).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import sacrebleu
import torch

from . import profiles
from .data import load_translation, pad_right
from .models import beam_search, greedy_decode

__all__ = ["bleu_chrf", "cut_at_eos", "translate", "translation_data"]


@functools.lru_cache(maxsize=2)
def _load_cached(vocab_size: int, src_lang: str, tgt_lang: str):
    """``load_translation`` once per process and setting: every model of a chapter trains on the same data
    (the splits are never modified: ``run_translation`` builds its own cut training split)."""
    return load_translation("multi30k", vocab_size=vocab_size, src_lang=src_lang, tgt_lang=tgt_lang)


def translation_data(profile: str | None = None):
    """``(train, validation, test, src_tokenizer, tgt_tokenizer)``: the data ``run_translation`` uses under
    ``profile``'s settings (default: the active profile), i.e. ``seqlib.data.load_translation("multi30k", ...)``
    with the vocabulary size and languages of the ``translate_multi30k`` profile.

    Loaded once per process and setting and shared with ``run_translation``: these are the very objects it trains
    and scores on, so treat them as read-only.
    """
    data = profiles.get("translate_multi30k", profile)["data"]
    return _load_cached(data["vocab_size"], data["src_lang"], data["tgt_lang"])


def cut_at_eos(ids: Sequence[int], eos_id: int) -> list[int]:
    """The tokens before the first ``eos_id`` (all of them when there is none)."""
    ids = list(ids)
    return ids[: ids.index(eos_id)] if eos_id in ids else ids


def translate(
    run,
    src_texts: Sequence[str],
    *,
    beam_size: int = 1,
    max_len: int | None = None,
    batch_size: int = 128,
    length_penalty: float = 0.6,
) -> list[str]:
    """Translate ``src_texts`` with ``run.model``; returns one detokenized sentence per source, in order.

    ``max_len``: most target tokens generated (default: the profile's ``decode.max_len``, else 64).
    ``beam_size=1`` is greedy decoding; larger values run beam search with the GNMT length penalty.
    """
    if isinstance(src_texts, str):
        raise TypeError("src_texts must be a list of sentences, not one string")
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
    src_tok, tgt_tok = run.extra["src_tokenizer"], run.extra["tgt_tokenizer"]
    if max_len is None:
        max_len = run.config.get("decode", {}).get("max_len", 64)
    model = run.model.eval()
    device = next(model.parameters()).device
    src_ids = [ids or [src_tok.unk_id] for ids in src_tok.encode_batch(list(src_texts))]  # an empty source: <unk>
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))  # similar lengths together: less padding
    out: list[list[int]] = [[] for _ in src_ids]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        src = pad_right([src_ids[i] for i in chunk], src_tok.pad_id).to(device)  # (B, S)
        lengths = torch.tensor([len(src_ids[i]) for i in chunk], device=device)
        src_mask = torch.arange(src.shape[1], device=device) < lengths[:, None]  # (B, S), True = real token
        with torch.no_grad():
            if beam_size == 1:
                ys = greedy_decode(model, src, src_mask, bos_id=tgt_tok.bos_id, eos_id=tgt_tok.eos_id, max_len=max_len)
                hyps = [cut_at_eos(y, tgt_tok.eos_id) for y in ys.tolist()]
            else:
                hyps = beam_search(
                    model,
                    src,
                    src_mask,
                    bos_id=tgt_tok.bos_id,
                    eos_id=tgt_tok.eos_id,
                    beam_size=beam_size,
                    max_len=max_len,
                    length_penalty=length_penalty,
                )
        for i, h in zip(chunk, hyps, strict=True):
            out[i] = h
    return [tgt_tok.decode(h).strip() for h in out]


def bleu_chrf(hyps: Sequence[str], refs: Sequence[str]) -> dict:
    """Corpus BLEU and chrF (0-100) of detokenized ``hyps`` against one reference each, with sacrebleu's
    default settings (BLEU: 13a tokenization, exponential smoothing; chrF: character 6-grams, beta 2).

    Returns ``{"bleu", "chrf", "bleu_bp" (brevity penalty), "bleu_signature", "chrf_signature"}``.
    """
    if isinstance(hyps, str) or isinstance(refs, str):
        raise TypeError("hyps and refs must be lists of sentences, not strings")
    hyps, refs = list(hyps), list(refs)
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError("no sentences to score")
    bleu, chrf = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF()
    b, c = bleu.corpus_score(hyps, [refs]), chrf.corpus_score(hyps, [refs])
    return {
        "bleu": float(b.score),
        "chrf": float(c.score),
        "bleu_bp": float(b.bp),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }
