"""Batches for the three kinds of task: language modeling, classification, sequence to sequence.

* ``lm_batches``: random contiguous windows of a token stream (nanoGPT's ``get_batch``):
  ``x = ids[i : i+T]``, ``y = ids[i+1 : i+T+1]``, both (B, T).
* ``lm_eval_batches``: the whole split walked in order without overlap, so every token of ``ids[1:]``
  is a target exactly once (the perplexity of the split); the last batch may be shorter.
* ``truncate``: a token list cut to ``max_len``: its first tokens (``"head"``), or its first quarter and its
  last three quarters (``"head_tail"``: a review's verdict is often at its end; Sun et al. 2019 found this cut
  the best for IMDB).
* ``classification_batches``: token lists padded on the right to the longest in the batch (at most
  ``max_len``, longer ones keep their first ``max_len`` tokens): ``tokens`` (B, T) long, ``mask`` (B, T)
  bool with True = real token, ``labels`` (B,).
* ``seq2seq_batches``: pairs sorted by length and cut into batches (little padding), the order of the
  batches shuffled: ``src`` (B, S), ``src_mask`` (B, S), ``tgt_in`` = ``<bos> y`` (B, T) padded with
  ``pad_id``, ``tgt_out`` = ``y <eos>`` (B, T) padded with -100 (ignored by cross-entropy).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

IGNORE_INDEX = -100


def _check_stream(ids: torch.Tensor, seq_len: int) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype != torch.long:
        got = f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"ids must be a 1-D LongTensor of token ids, got {got}")
    if seq_len < 1 or ids.numel() < seq_len + 1:
        raise ValueError(f"need seq_len >= 1 and at least seq_len + 1 = {seq_len + 1} tokens, got {ids.numel()}")


def lm_batches(
    ids: torch.Tensor,
    batch_size: int,
    seq_len: int,
    seed: int = 0,
    generator: torch.Generator | None = None,
    num_batches: int | None = None,
    device: torch.device | str | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` random windows, (B, T) each; endless unless ``num_batches`` is given."""
    _check_stream(ids, seq_len)
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    offsets = torch.arange(seq_len)  # (T,)
    count = 0
    while num_batches is None or count < num_batches:
        start = torch.randint(ids.numel() - seq_len, (batch_size, 1), generator=g)  # (B, 1)
        idx = start + offsets  # (B, T)
        yield ids[idx].to(device), ids[idx + 1].to(device)
        count += 1


def lm_eval_batches(
    ids: torch.Tensor, batch_size: int, seq_len: int, device: torch.device | str | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` windows that tile ``ids`` in order without overlap; the last one may be shorter."""
    _check_stream(ids, seq_len)
    n_full = (ids.numel() - 1) // seq_len
    windows_x = ids[: n_full * seq_len].view(n_full, seq_len)  # (N, T)
    windows_y = ids[1 : n_full * seq_len + 1].view(n_full, seq_len)
    for i in range(0, n_full, batch_size):
        yield windows_x[i : i + batch_size].to(device), windows_y[i : i + batch_size].to(device)
    rest = ids.numel() - 1 - n_full * seq_len
    if rest > 0:
        s = n_full * seq_len
        yield ids[s : s + rest].view(1, rest).to(device), ids[s + 1 : s + rest + 1].view(1, rest).to(device)


def _order(n: int, shuffle: bool, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)


#: how ``truncate`` cuts a sequence longer than ``max_len``
TRUNCATIONS = ("head", "head_tail")


def truncate(ids: Sequence[int], max_len: int, how: str = "head_tail") -> list[int]:
    """``ids`` cut to at most ``max_len`` tokens: the first ``max_len`` (``how="head"``), or the first
    ``max_len // 4`` and the last ``max_len - max_len // 4`` (``"head_tail"``). Shorter sequences are kept whole."""
    if how not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {how!r}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    ids = list(ids)
    if len(ids) <= max_len or how == "head":
        return ids[:max_len]
    head = max_len // 4
    return ids[:head] + ids[len(ids) - (max_len - head) :]


def pad_right(seqs: Sequence[Sequence[int]], pad_value: int, max_len: int | None = None) -> torch.Tensor:
    """(B, T) LongTensor: each sequence (cut to ``max_len``) followed by ``pad_value``."""
    lengths = [len(s) if max_len is None else min(len(s), max_len) for s in seqs]
    out = torch.full((len(seqs), max(lengths)), pad_value, dtype=torch.long)
    for i, (s, n) in enumerate(zip(seqs, lengths, strict=True)):
        out[i, :n] = torch.as_tensor(s[:n], dtype=torch.long)
    return out


def classification_batches(
    token_lists: Sequence[Sequence[int]],
    labels: Sequence[int] | torch.Tensor,
    batch_size: int,
    max_len: int,
    pad_id: int,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    device: torch.device | str | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(tokens (B, T) long, mask (B, T) bool, labels (B,) long)``, padded on the right, T <= max_len.

    One pass over the data; pass a different ``seed`` each epoch for a different order.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(token_lists) != len(labels):
        raise ValueError(f"{len(token_lists)} token lists but {len(labels)} labels")
    if max_len < 1 or batch_size < 1:
        raise ValueError(f"max_len and batch_size must be >= 1, got {max_len}, {batch_size}")
    empty = [i for i, s in enumerate(token_lists) if len(s) == 0]
    if empty:
        raise ValueError(f"{len(empty)} empty token lists (first at index {empty[0]}): a sequence needs one token")
    order = _order(len(token_lists), shuffle, seed).tolist()
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        if drop_last and len(chunk) < batch_size:
            return
        tokens = pad_right([token_lists[j] for j in chunk], pad_id, max_len)  # (B, T)
        lengths = torch.tensor([min(len(token_lists[j]), max_len) for j in chunk])  # (B,)
        mask = torch.arange(tokens.shape[1]) < lengths[:, None]  # (B, T), True = real token
        yield tokens.to(device), mask.to(device), labels[chunk].to(device)


def seq2seq_batches(
    src_lists: Sequence[Sequence[int]],
    tgt_lists: Sequence[Sequence[int]],
    batch_size: int,
    pad_id: int,
    bos_id: int,
    eos_id: int,
    shuffle: bool = True,
    seed: int = 0,
    max_len: int | None = None,
    return_indices: bool = False,
    device: torch.device | str | None = None,
):
    """Yield ``(src, src_mask, tgt_in, tgt_out)`` (plus the (B,) example indices with ``return_indices``).

    Pairs are sorted by (source length, target length) and cut into batches of ``batch_size``; ``shuffle``
    shuffles the order of the batches (never their contents), ``shuffle=False`` yields them shortest first.
    ``max_len`` cuts sources and targets (before ``<bos>``/``<eos>`` are added). ``src`` is used as given:
    add ``<bos>``/``<eos>`` to it when encoding if the model wants them.
    """
    if len(src_lists) != len(tgt_lists):
        raise ValueError(f"{len(src_lists)} sources but {len(tgt_lists)} targets")
    empty = [i for i, s in enumerate(src_lists) if len(s) == 0]
    if empty:
        raise ValueError(f"{len(empty)} empty sources (first at index {empty[0]}): a source needs one token")
    cut = (lambda s: s) if max_len is None else (lambda s: s[:max_len])
    by_length = sorted(range(len(src_lists)), key=lambda i: (len(src_lists[i]), len(tgt_lists[i])))
    batches = [by_length[i : i + batch_size] for i in range(0, len(by_length), batch_size)]
    for b in _order(len(batches), shuffle, seed).tolist():
        chunk = batches[b]
        src = pad_right([cut(src_lists[i]) for i in chunk], pad_id)  # (B, S)
        src_len = torch.tensor([len(cut(src_lists[i])) for i in chunk])
        src_mask = torch.arange(src.shape[1]) < src_len[:, None]  # (B, S)
        tgt_in = pad_right([[bos_id, *cut(tgt_lists[i])] for i in chunk], pad_id)  # (B, T)
        tgt_out = pad_right([[*cut(tgt_lists[i]), eos_id] for i in chunk], IGNORE_INDEX)  # (B, T)
        out = (src.to(device), src_mask.to(device), tgt_in.to(device), tgt_out.to(device))
        yield (*out, torch.tensor(chunk).to(device)) if return_indices else out
