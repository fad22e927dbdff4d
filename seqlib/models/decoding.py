"""Greedy and beam-search decoding for the encoder-decoder head.

Both re-run the decoder on the whole prefix at each step: target sentences in the book are short
(Multi30k: under 40 subwords), so clarity wins over a cache here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .blocks import EncoderDecoder


@torch.no_grad()
def greedy_decode(model: EncoderDecoder, src, src_mask, *, bos_id: int, eos_id: int, max_len: int = 64):
    """The most likely token at each step. Returns (B, <= max_len) ids without the BOS, EOS-padded."""
    memory = model.encode(src, src_mask)
    ys = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        nxt = model.decode(memory, ys, src_mask)[:, -1].argmax(-1)  # (B,)
        nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        done |= nxt == eos_id
        if bool(done.all()):
            break
    return ys[:, 1:]


@torch.no_grad()
def beam_search(
    model: EncoderDecoder,
    src,
    src_mask,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int = 4,
    max_len: int = 64,
    length_penalty: float = 0.6,
):
    """Beam search with the GNMT length penalty ((5 + |y|) / 6) ** alpha (Wu et al., 2016).

    Returns a list (one per source sentence) of token-id lists without BOS/EOS.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    out = []
    for b in range(src.shape[0]):
        s = src[b : b + 1]
        m = None if src_mask is None else src_mask[b : b + 1]
        memory = model.encode(s, m)  # (1, S, D)
        beams = [([bos_id], 0.0)]
        finished: list[tuple[list[int], float]] = []
        for _ in range(max_len):
            ys = torch.tensor([y for y, _ in beams], device=src.device)  # (K, t)
            mem = memory.expand(len(beams), -1, -1)
            mm = None if m is None else m.expand(len(beams), -1)
            logp = F.log_softmax(model.decode(mem, ys, mm)[:, -1].float(), dim=-1)  # (K, V)
            scores = torch.tensor([sc for _, sc in beams], device=src.device)[:, None] + logp
            top = torch.topk(scores.flatten(), min(beam_size, scores.numel()))  # a vocabulary smaller than the beam
            beams = []
            for score, idx in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                k, tok = divmod(idx, logp.shape[1])
                y = ys[k].tolist() + [tok]
                if tok == eos_id:
                    finished.append((y, score / (((5 + len(y) - 1) / 6) ** length_penalty)))
                else:
                    beams.append((y, score))
            if not beams or len(finished) >= beam_size:
                break
        if not finished:
            finished = [(y, sc / (((5 + len(y) - 1) / 6) ** length_penalty)) for y, sc in beams]
        best = max(finished, key=lambda t: t[1])[0]
        out.append([t for t in best[1:] if t != eos_id])
    return out
