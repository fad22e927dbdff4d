"""Sliding-window (local) attention, as in Longformer (Beltagy et al., 2020) and Mistral.

Each query attends only to keys near it, so time and memory are O(T * w) instead of O(T^2)::

    causal=True:   query i sees keys  i - w < j <= i        (the w most recent tokens, itself included)
    causal=False:  query i sees keys  |i - j| <= w          (w neighbours on each side, 2w + 1 keys)

with ``w = window``; everything else is the multi-head attention of ``attention.py`` (same projections, RoPE).
Stacking L layers gives a receptive field of about L * w tokens.

Fast path (blocked, never a T x T matrix): pad T up to a multiple of the block size ``b = min(w, T)``, cut the
sequence into n = T/b blocks, and let each query block attend to the keys of its neighbouring blocks::

    q blocks: (B, H, n, b, dh)    keys: [previous, current] blocks (causal) or [previous, current, next]
    scores:   (B, H, n, b, 2b or 3b)  -> mask the keys outside the window -> softmax -> @ values

The neighbour blocks are an ``unfold`` of the zero-padded keys, and each group of blocks is one batch entry of
``F.scaled_dot_product_attention``. Reference path: full attention with a (T, T) band mask (same parameters).
Decoding keeps only the last ``w`` keys and values (the newest token's included): ``2 * min(T, w) * D`` numbers
per sequence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .attention import AttentionMixer, sdpa
from .base import check_seq_len


def band_mask(t: int, window: int, causal: bool, device=None) -> torch.Tensor:
    """(T, T) bool: True where query i may see key j (see the module docstring)."""
    i = torch.arange(t, device=device)[:, None]
    j = torch.arange(t, device=device)[None, :]
    if causal:
        return (i - j >= 0) & (i - j < window)
    return (i - j).abs() <= window


def sliding_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    causal: bool = True,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Blocked banded attention in O(T * window) time and memory. q, k, v (B, H, T, dh) -> (B, H, T, dh)."""
    B, H, T, dh = q.shape
    b = min(window, T)  # block size: one block when the whole sequence fits in the window
    n = -(-T // b)  # number of blocks
    pad = n * b - T
    nk = 2 if causal else 3  # key blocks per query block
    after = 0 if causal else b  # a zero block after the last one, for its "next" neighbour
    K = nk * b  # keys per query block

    def key_blocks(t: torch.Tensor) -> torch.Tensor:  # (B, H, T, dh) -> (B*n, H, K, dh)
        t = F.pad(t, (0, 0, b, pad + after))  # a zero block in front: block 0's "previous"
        t = t.unfold(2, K, b)  # (B, H, n, dh, K): a view, block i starts at padded position i*b
        return t.permute(0, 2, 1, 4, 3).reshape(B * n, H, K, dh)

    qb = F.pad(q, (0, 0, 0, pad)).reshape(B, H, n, b, dh).transpose(1, 2).reshape(B * n, H, b, dh)

    # absolute positions of the queries (n, b, 1) and of the keys each block sees (n, 1, K)
    qi = torch.arange(n * b, device=q.device).view(n, b, 1)
    kj = (torch.arange(n, device=q.device) * b - b).view(n, 1, 1) + torch.arange(K, device=q.device).view(1, 1, K)
    diff = qi - kj
    ok = ((diff >= 0) & (diff < window)) if causal else (diff.abs() <= window)
    ok = (ok & (kj >= 0) & (kj < T))[None]  # (1, n, b, K): padding keys never count
    if key_mask is not None:
        km = F.pad(key_mask, (b, pad + after), value=False).unfold(1, K, b)  # (B, n, K)
        ok = ok & km[:, :, None, :]
    ok = ok.expand(B, n, b, K).reshape(B * n, 1, b, K)

    y = sdpa(qb, key_blocks(k), key_blocks(v), ok)  # (B*n, H, b, dh)
    return y.reshape(B, n, H, b, dh).transpose(1, 2).reshape(B, H, n * b, dh)[:, :, :T]


class SlidingWindowMixer(AttentionMixer):
    """Sliding-window attention ("longformer"). Options: ``n_heads``, ``window``, ``rope``, ``rope_base``.

    ``causal=True``: the ``window`` most recent tokens (itself included); ``causal=False``: ``|i - j| <= window``.
    """

    def __init__(
        self,
        d_model: int,
        causal: bool = True,
        impl: str = "fast",
        layer_idx: int = 0,
        n_heads: int = 4,
        window: int = 64,
        rope: bool = True,
        rope_base: float = 10000.0,
    ):
        super().__init__(d_model, causal, impl, layer_idx, n_heads=n_heads, rope=rope, rope_base=rope_base)
        if not isinstance(window, int) or window <= 0:
            raise ValueError(f"window must be a positive int, got {window!r}")
        self.window = window

    def allowed(self, t: int, mask: torch.Tensor | None, device) -> torch.Tensor:
        """The band (1, 1, T, T), and the padding mask (B, 1, T, T) when given: used by the reference."""
        allowed = band_mask(t, self.window, self.causal, device)[None, None]
        return allowed if mask is None else allowed & mask[:, None, None, :]

    def forward_fast(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.project(x, self._positions(x.shape[1], x.device))  # (B, H, T, dh)
        return self.merge(sliding_window_attention(q, k, v, self.window, self.causal, mask))

    # forward_reference and attention_map: inherited, full attention restricted by `allowed` (the band)

    def _append(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Drop the oldest cached keys/values beyond the last ``window - 1``, then append the new token's.

        The new token is one of the ``window`` keys its query sees, so the cache that comes out holds exactly
        ``min(n, window)`` tokens: one ``torch.cat`` per step, and no view that keeps a longer tensor alive.
        """
        drop = state["k"].shape[2] - (self.window - 1)  # state checked by step()
        if drop > 0:
            state = {**state, "k": state["k"][:, :, drop:], "v": state["v"][:, :, drop:]}  # (B, H, w - 1, dh)
        return super()._append(x_t, state)

    def state_size(self, seq_len: int) -> int:
        return 2 * min(check_seq_len(seq_len), self.window) * self.d_model

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, window={self.window}"


__all__ = ["SlidingWindowMixer", "band_mask", "sliding_window_attention"]
