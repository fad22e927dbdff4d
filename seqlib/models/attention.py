"""Multi-head self-attention (Vaswani et al., 2017), with rotary positions and a KV cache.

For each head h, with queries, keys and values projected from the input ``x`` (B, T, D)::

    q_i, k_j, v_j = W_q x_i, W_k x_j, W_v x_j                  # (d_head,) each, d_head = D / n_heads
    q_i, k_j      = R(i) q_i, R(j) k_j                          # RoPE (Su et al., 2021), when rope=True
    s_ij          = q_i . k_j / sqrt(d_head)                   # scores, (T, T) per head
    a_ij          = softmax_j(s_ij  over the allowed j)        # causal: j <= i; padding: mask[j]
    y_i           = W_o concat_h(sum_j a_ij v_j)

RoPE rotates each pair of channels (c, c + d_head/2) by the angle ``pos * base^(-2c/d_head)``, so
``R(i) q . R(j) k`` depends on ``i - j`` only: relative positions without a position table.
With ``rope=False`` the mixer is permutation-equivariant and positions must come from the embedding.

``forward_fast`` calls ``F.scaled_dot_product_attention`` (FlashAttention / memory-efficient kernels on a GPU,
which never materialise the (T, T) scores; a padding mask is passed as a boolean (B, 1, T, T) mask);
``forward_reference`` is :func:`attention`, written out.
Decoding keeps a KV cache: ``2 * T * D`` numbers per sequence after T tokens, and each step costs O(T * D).
A query with no allowed key (a fully padded row) gets a zero output instead of the NaN of softmax over nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import IMPLS, Mixer, check_seq_len, check_sequence


def apply_rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate ``x`` (..., T, d) by its ``positions`` (T,): channel pairs (c, c + d/2) turn by ``pos * base^(-2c/d)``."""
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {d}")
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32  # angles in (at least) float32
    inv_freq = base ** (-torch.arange(0, d, 2, device=x.device, dtype=ct) / d)  # (d/2,)
    angles = positions.to(device=x.device, dtype=ct)[:, None] * inv_freq  # (T, d/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x.to(ct).chunk(2, dim=-1)  # (..., T, d/2) each
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


def attention_mask(
    t_q: int, t_k: int, causal: bool = False, key_mask: torch.Tensor | None = None, device=None
) -> torch.Tensor:
    """Boolean (B or 1, 1, t_q, t_k) mask, True = the query may attend to the key.

    The ``t_q`` queries are the LAST ``t_q`` of the ``t_k`` positions (so one decoding step over a cache is
    causal too); ``key_mask`` (B, t_k) marks real keys.
    """
    allowed = torch.ones(t_q, t_k, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed.tril(diagonal=t_k - t_q)
    allowed = allowed[None, None]  # (1, 1, t_q, t_k)
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :].to(allowed.device)  # (B, 1, t_q, t_k)
    return allowed


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    key_mask: torch.Tensor | None = None,
    allowed: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention written out. q (B, H, Tq, dh), k, v (B, H, Tk, dh).

    ``allowed`` (broadcastable to (B, H, Tq, Tk), bool) restricts it further (e.g. a band). Returns the output
    (B, H, Tq, dh) and the weights (B, H, Tq, Tk); a query with no allowed key gets zero weights and output.
    """
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, Tq, Tk)
    ok = attention_mask(q.shape[-2], k.shape[-2], causal, key_mask, q.device)
    if allowed is not None:
        ok = ok & allowed
    has_key = ok.any(dim=-1, keepdim=True)  # (B|1, 1, Tq, 1)
    scores = scores.masked_fill(~ok, float("-inf")).masked_fill(~has_key, 0.0)
    weights = scores.softmax(dim=-1) * has_key
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    return weights @ v, weights


def sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None, dropout_p: float = 0.0
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` with a boolean mask; rows with no allowed key give 0, not NaN."""
    if allowed is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    has_key = allowed.any(dim=-1, keepdim=True)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed | ~has_key, dropout_p=dropout_p)
    return y * has_key


def _check_heads(d_model: int, n_heads: int, rope: bool) -> None:
    if not isinstance(n_heads, int) or n_heads <= 0 or d_model % n_heads:
        raise ValueError(f"n_heads must be a positive int dividing d_model={d_model}, got {n_heads!r}")
    if rope and (d_model // n_heads) % 2:
        raise ValueError(f"rope=True needs an even head dimension, got d_model/n_heads = {d_model // n_heads}")


class AttentionMixer(Mixer):
    """Multi-head self-attention ("transformer"). Options: ``n_heads``, ``rope``, ``rope_base``, ``dropout``
    (on the attention weights, training only). Streams with a KV cache."""

    state_type, state_keys = dict, ("k", "v", "pos")

    def __init__(
        self,
        d_model: int,
        causal: bool = True,
        impl: str = "fast",
        layer_idx: int = 0,
        n_heads: int = 4,
        rope: bool = True,
        rope_base: float = 10000.0,
        dropout: float = 0.0,
    ):
        super().__init__(d_model, causal, impl)
        _check_heads(d_model, n_heads, rope)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if rope_base <= 0:
            raise ValueError(f"rope_base must be positive, got {rope_base!r}")
        self.layer_idx = layer_idx
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.rope, self.rope_base, self.dropout = rope, float(rope_base), float(dropout)
        self.qkv = nn.Linear(d_model, 3 * d_model)  # W_q, W_k, W_v fused
        self.out = nn.Linear(d_model, d_model)  # W_o

    # ------------------------------------------------------------- shared pieces
    def project(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x (B, T, D), positions (T,) -> q, k, v (B, H, T, d_head), RoPE applied to q and k."""
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        if self.rope:
            q, k = apply_rope(q, positions, self.rope_base), apply_rope(k, positions, self.rope_base)
        return q, k, v

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """Heads (B, H, T, d_head) -> output projection (B, T, D)."""
        B, _, T, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, self.d_model))

    def allowed(self, t: int, mask: torch.Tensor | None, device) -> torch.Tensor:
        """Which keys each query sees, (B or 1, 1, T, T); subclasses restrict it (e.g. to a band)."""
        return attention_mask(t, t, self.causal, mask, device)

    def _positions(self, t: int, device) -> torch.Tensor:
        return torch.arange(t, device=device)

    # ----------------------------------------------------------------- parallel
    def forward_fast(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.project(x, self._positions(x.shape[1], x.device))  # (B, H, T, dh)
        p = self.dropout if self.training else 0.0
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, dropout_p=p)
        else:
            y = sdpa(q, k, v, self.allowed(x.shape[1], mask, x.device), p)
        return self.merge(y)

    def forward_reference(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.project(x, self._positions(x.shape[1], x.device))
        p = self.dropout if self.training else 0.0
        y, _ = attention(q, k, v, allowed=self.allowed(x.shape[1], mask, x.device), dropout_p=p)
        return self.merge(y)

    def attention_map(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention weights (B, H, T, T), for plots (no dropout)."""
        self.check_input(x, mask)
        q, k, _ = self.project(x, self._positions(x.shape[1], x.device))
        _, w = attention(q, k, torch.zeros_like(k[..., :1]), allowed=self.allowed(x.shape[1], mask, x.device))
        return w

    # ---------------------------------------------------------------- streaming
    def init_state(self, batch_size: int, device=None, dtype: torch.dtype | None = None) -> dict:
        """An empty KV cache: keys and values (B, H, 0, d_head) and the position of the next token."""
        device, dtype = self._begin_state(batch_size, device, dtype)
        empty = torch.zeros(batch_size, self.n_heads, 0, self.d_head, device=device, dtype=dtype)
        return {"k": empty, "v": empty.clone(), "pos": 0}

    def _trim_cache(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return k, v  # full attention keeps every key; the sliding window keeps the last `window`

    def _append(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Project one token at position ``state['pos']`` and append its key/value to the cache (``state`` checked)."""
        pos = state["pos"]
        q, k, v = self.project(x_t[:, None], torch.tensor([pos], device=x_t.device))  # (B, H, 1, dh)
        k = torch.cat([state["k"], k.to(state["k"].dtype)], dim=2)  # (B, H, n+1, dh)
        v = torch.cat([state["v"], v.to(state["v"].dtype)], dim=2)
        return q.to(k.dtype), k, v, pos

    def _attend_one(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One query (B, H, 1, dh) over every cached key: no mask needed."""
        if self.impl == "fast":
            return F.scaled_dot_product_attention(q, k, v)
        return attention(q, k, v)[0]

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        self.check_step_input(x_t, state)
        q, k, v, pos = self._append(x_t, state)
        k, v = self._trim_cache(k, v)
        y = self.merge(self._attend_one(q, k, v))[:, 0]  # (B, D)
        return y, {"k": k, "v": v, "pos": pos + 1}

    def state_size(self, seq_len: int) -> int:
        return 2 * check_seq_len(seq_len) * self.d_model  # K and V, every head, every past token

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_heads={self.n_heads}, rope={self.rope}"


class CrossAttention(nn.Module):
    """Decoder queries (B, Tq, D) attend to encoder ``memory`` (B, Tk, D); ``memory_mask`` (B, Tk), True = real.

    No positions here: source and target positions do not line up (each side encodes its own).
    ``impl="reference"`` uses the written-out :func:`attention`.
    """

    def __init__(self, d_model: int, n_heads: int = 4, impl: str = "fast"):
        super().__init__()
        _check_heads(d_model, n_heads, rope=False)
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.d_model, self.n_heads, self.d_head, self.impl = d_model, n_heads, d_model // n_heads, impl
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def _project(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None):
        dtype = self.q.weight.dtype
        check_sequence(x, self.d_model, dtype=dtype)
        check_sequence(memory, self.d_model, memory_mask, dtype)
        if memory.shape[0] != x.shape[0]:
            raise ValueError(f"memory batch {memory.shape[0]} differs from the queries' batch {x.shape[0]}")
        B, Tq, _ = x.shape
        q = self.q(x).view(B, Tq, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, Tq, dh)
        k, v = self.kv(memory).view(B, memory.shape[1], 2, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        allowed = None if memory_mask is None else attention_mask(Tq, memory.shape[1], False, memory_mask, x.device)
        return q, k, v, allowed

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None):
        q, k, v, allowed = self._project(x, memory, memory_mask)
        y = sdpa(q, k, v, allowed) if self.impl == "fast" else attention(q, k, v, allowed=allowed)[0]
        B, _, Tq, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(B, Tq, self.d_model))  # (B, Tq, D)

    def attention_map(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None):
        """The alignment weights (B, H, Tq, Tk), for plots."""
        q, k, v, allowed = self._project(x, memory, memory_mask)
        return attention(q, k, v, allowed=allowed)[1]


__all__ = ["AttentionMixer", "CrossAttention", "apply_rope", "attention", "attention_mask", "sdpa"]
