"""Hybrids: local convolution + global attention, and a Transformer with a recurrent memory.

``ConvTransformerMixer`` ("conv_transformer") adds a short convolution to self-attention::

    y = W_out (conv(x) + attention(x))          # conv: kernel k, left-padded (causal) or centred ("same")

the convolution sees the k nearest tokens exactly, the attention every token. Streaming keeps a buffer of
the last k - 1 inputs plus the KV cache.

``RecurrentMemoryMixer`` ("recurrent_transformer") reads the sequence in segments of ``segment_len`` tokens
and carries ``memory_size`` memory slots from one segment to the next (in the spirit of the Recurrent Memory
Transformer, Bulatov et al. 2022, with a GRU writing the memory)::

    M_0      = a learned (m, D) memory, broadcast to the batch           (the state lives in the call, not the module)
    segment s: every token attends to [M_s ; the tokens of segment s]    (causally within the segment; causal=False:
               all tokens of the segment; memory slots are always visible; RoPE uses positions within the segment)
    r_j      = softmax_t(R_j . k_t / sqrt(d_head)) v_t                   (slot j reads the segment: a learned query R_j
               per slot and head over the segment's keys and values; padding excluded)
    M_{s+1}  = GRUCell(r_j, M_s[j]) for each slot j                      (always m slots: bounded memory)

Stop-gradient, as in Transformer-XL: the update reads ``sg(k), sg(v), sg(M_s)``, so no gradient crosses a segment
boundary into earlier tokens or earlier memories (the output of segment 2 has zero gradient w.r.t. the input of
segments 0 and 1), while the GRU and the read queries still learn from the segment that uses what they wrote.
(Detaching M_{s+1} itself would leave them without any gradient.) The memory returned by a call is fully detached.
Token t sees earlier segments only through the memory and earlier tokens of its own segment only; with
``causal=False`` attention within a segment is bidirectional and the memory still flows forward only.
A segment that is entirely padding leaves the memory unchanged, so padding never reaches the memory.

Streaming keeps the memory and the current segment's KV cache, and writes the memory when a segment is full:
``m * D + 2 * (t mod segment_len) * D`` numbers per sequence, bounded whatever the length.

The outline's two classes, ``ConvTransformer`` and ``TransformerWithRecurrence``, are at the bottom, fixed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionMixer, attention, attention_mask, sdpa
from .base import Mixer, check_seq_len, zero_padding


class ConvTransformerMixer(Mixer):
    """Convolution + self-attention, summed and projected. Options: ``n_heads``, ``kernel_size``, ``depthwise``
    (one filter per channel, else a full D -> D convolution), ``rope``, ``rope_base``."""

    state_type, state_keys = dict, ("conv", "attn")

    def __init__(
        self,
        d_model: int,
        causal: bool = True,
        impl: str = "fast",
        layer_idx: int = 0,
        n_heads: int = 4,
        kernel_size: int = 3,
        depthwise: bool = True,
        rope: bool = True,
        rope_base: float = 10000.0,
    ):
        super().__init__(d_model, causal, impl)
        if not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
        self.layer_idx, self.kernel_size, self.depthwise = layer_idx, kernel_size, depthwise
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model if depthwise else 1)  # padded by hand
        self.attn = AttentionMixer(d_model, causal, impl, layer_idx, n_heads=n_heads, rope=rope, rope_base=rope_base)
        self.out = nn.Linear(d_model, d_model)

    def _pads(self) -> tuple[int, int]:
        k = self.kernel_size
        return (k - 1, 0) if self.causal else ((k - 1) // 2, k // 2)  # causal: the past only; else centred

    def conv_fast(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = zero_padding(x, mask).transpose(1, 2)  # (B, D, T); pads are zeroed so they cannot leak in
        return self.conv(F.pad(x, self._pads())).transpose(1, 2)  # (B, T, D)

    def conv_reference(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """y_t = b + sum_i W[:, :, i] x_{t + i - left}, one tap at a time."""
        left, right = self._pads()
        x = zero_padding(x, mask)
        xp = F.pad(x, (0, 0, left, right))  # (B, T + k - 1, D)
        T, W = x.shape[1], self.conv.weight  # W: (D, D or 1, k)
        y = self.conv.bias.expand_as(x)
        for i in range(self.kernel_size):
            tap = xp[:, i : i + T]  # (B, T, D)
            y = y + (tap * W[:, 0, i] if self.depthwise else tap @ W[:, :, i].T)
        return y

    def forward_fast(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.conv_fast(x, mask) + self.attn.forward_fast(x, mask))

    def forward_reference(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.conv_reference(x, mask) + self.attn.forward_reference(x, mask))

    def attention_map(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.attn.attention_map(x, mask)

    def init_state(self, batch_size: int, device=None, dtype: torch.dtype | None = None) -> dict:
        """The last k - 1 inputs (zeros before the start) and the attention's KV cache."""
        device, dtype = self._begin_state(batch_size, device, dtype)
        buf = torch.zeros(batch_size, self.kernel_size - 1, self.d_model, device=device, dtype=dtype)
        return {"conv": buf, "attn": self.attn.init_state(batch_size, device, dtype)}

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        self.check_step_input(x_t, state)
        window = torch.cat([state["conv"], x_t[:, None].to(state["conv"].dtype)], dim=1)  # (B, k, D)
        c = self.conv(window.transpose(1, 2))[..., 0]  # (B, D): one output of the causal convolution
        a, attn_state = self.attn.step(x_t, state["attn"])
        conv = window[:, 1:].clone()  # (B, k - 1, D), a copy: a view would keep all k rows alive
        return self.out(c + a), {"conv": conv, "attn": attn_state}

    def state_size(self, seq_len: int) -> int:
        return (self.kernel_size - 1) * self.d_model + self.attn.state_size(check_seq_len(seq_len))


class RecurrentMemoryMixer(AttentionMixer):
    """Segment-level recurrence with a bounded memory (see the module docstring for the exact semantics).

    Options: ``n_heads``, ``segment_len``, ``memory_size``, ``rope``, ``rope_base``. ``forward_with_memory``
    takes and returns the memory explicitly (for carrying it across calls).
    """

    state_keys = ("memory", "k", "v", "pos")

    def __init__(
        self,
        d_model: int,
        causal: bool = True,
        impl: str = "fast",
        layer_idx: int = 0,
        n_heads: int = 4,
        segment_len: int = 64,
        memory_size: int = 8,
        rope: bool = True,
        rope_base: float = 10000.0,
    ):
        super().__init__(d_model, causal, impl, layer_idx, n_heads=n_heads, rope=rope, rope_base=rope_base)
        for name, value in (("segment_len", segment_len), ("memory_size", memory_size)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.segment_len, self.memory_size = segment_len, memory_size
        self.memory_init = nn.Parameter(0.02 * torch.randn(memory_size, d_model))  # M_0
        self.read_query = nn.Parameter(torch.randn(n_heads, memory_size, self.d_head))  # R: a query per slot, head
        self.update = nn.GRUCell(d_model, d_model)  # writes each slot

    def initial_memory(self, batch_size: int) -> torch.Tensor:
        return self.memory_init.expand(batch_size, -1, -1)  # (B, m, D)

    def project_memory(self, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory slots (B, m, D) -> keys, values (B, H, m, d_head) with the tokens' W_k, W_v (no RoPE)."""
        B, m, D = mem.shape
        kv = F.linear(mem, self.qkv.weight[D:], self.qkv.bias[D:])  # (B, m, 2D)
        k, v = kv.view(B, m, 2, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        return k, v

    def _attend_segment(self, q, k, v, mem, key_mask, fast: bool):
        """Tokens q, k, v (B, H, L, dh) attend to [memory ; tokens] -> (B, H, L, dh) and weights (or None)."""
        km, vm = self.project_memory(mem)  # (B, H, m, dh)
        keys, values = torch.cat([km.to(k.dtype), k], dim=2), torch.cat([vm.to(v.dtype), v], dim=2)
        tok = attention_mask(q.shape[2], k.shape[2], self.causal, key_mask, q.device)  # (B|1, 1, L, L)
        allowed = torch.cat([tok.new_ones(*tok.shape[:3], self.memory_size), tok], dim=-1)  # memory always visible
        if fast:
            return F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed), None
        return attention(q, keys, values, allowed=allowed)

    def _write(self, k, v, mem, key_mask, fast: bool) -> torch.Tensor:
        """M' = GRUCell(read, M) per slot; the read is R attending over the segment's (detached) keys/values."""
        B, m, D = mem.shape
        k, v, prev = k.detach(), v.detach(), mem.detach()  # stop-gradient: nothing flows into earlier segments
        R = self.read_query.to(k.dtype).expand(B, -1, -1, -1)  # (B, H, m, dh)
        if fast:
            allowed = None if key_mask is None else attention_mask(m, k.shape[2], False, key_mask, k.device)
            read = sdpa(R, k, v, allowed)  # (B, H, m, dh)
        else:
            read = attention(R, k, v, key_mask=key_mask)[0]
        read = read.transpose(1, 2).reshape(B * m, D)
        new = self.update(read, prev.reshape(B * m, D)).view(B, m, D)
        if key_mask is not None:  # an all-padding segment leaves the memory as it was
            new = torch.where(key_mask.any(dim=1)[:, None, None], new, prev)
        return new

    def _run(self, x, mask, memory, segment_len: int, fast: bool):
        B, T, _ = x.shape
        if T == 0:
            raise ValueError("RecurrentMemoryMixer needs at least one token")
        mem = self._check_memory(memory, B)
        L = segment_len
        q, k, v = self.project(x, torch.arange(T, device=x.device) % L)  # (B, H, T, dh), RoPE within segments
        ys, ws = [], []
        for s in range(0, T, L):  # T / L iterations: the memory makes segments sequential
            sl = slice(s, min(s + L, T))
            km = None if mask is None else mask[:, sl]
            y, w = self._attend_segment(q[:, :, sl], k[:, :, sl], v[:, :, sl], mem, km, fast)
            mem = self._write(k[:, :, sl], v[:, :, sl], mem, km, fast)
            ys.append(y)
            ws.append(w)
        return self.merge(torch.cat(ys, dim=2)), mem.detach(), ws

    def _check_memory(self, memory: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        if memory is None:
            return self.initial_memory(batch_size)
        expected = (batch_size, self.memory_size, self.d_model)
        if not isinstance(memory, torch.Tensor) or tuple(memory.shape) != expected:
            got = tuple(memory.shape) if isinstance(memory, torch.Tensor) else type(memory).__name__
            raise ValueError(f"memory must have shape (batch, memory_size, d_model) = {expected}, got {got}")
        return memory

    def forward_with_memory(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        segment_len: int | None = None,
    ):
        """(x (B, T, D), memory (B, m, D) or None = learned M_0) -> (y (B, T, D), new memory (B, m, D), detached)."""
        self.check_input(x, mask)
        L = self.segment_len if segment_len is None else segment_len
        if not isinstance(L, int) or L <= 0:
            raise ValueError(f"segment_len must be a positive int, got {L!r}")
        y, mem, _ = self._run(x, mask, memory, L, fast=self.impl == "fast")
        return y, mem

    def forward_fast(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, mask, None, self.segment_len, fast=True)[0]

    def forward_reference(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, mask, None, self.segment_len, fast=False)[0]

    def attention_map(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Weights (B, H, T, m + T): columns [:m] on the current segment's memory slots, [m:] on the tokens."""
        self.check_input(x, mask)
        B, T, _ = x.shape
        m, L = self.memory_size, self.segment_len
        ws = self._run(x, mask, None, L, fast=False)[2]
        out = x.new_zeros(B, self.n_heads, T, m + T)
        for i, w in enumerate(ws):
            s, n = i * L, w.shape[2]
            out[:, :, s : s + n, :m] = w[..., :m]
            out[:, :, s : s + n, m + s : m + s + n] = w[..., m:]
        return out

    def init_state(self, batch_size: int, device=None, dtype: torch.dtype | None = None) -> dict:
        """M_0, an empty KV cache for the current segment, and the position within the segment."""
        device, dtype = self._begin_state(batch_size, device, dtype)
        empty = torch.zeros(batch_size, self.n_heads, 0, self.d_head, device=device, dtype=dtype)
        # a (B, m, D) copy: the expanded M_0 is a view of the parameter, one (m, D) storage for the whole batch
        mem = self.initial_memory(batch_size).to(device=device, dtype=dtype).clone()
        return {"memory": mem, "k": empty, "v": empty.clone(), "pos": 0}

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        self.check_step_input(x_t, state)
        q, k, v, pos = self._append(x_t, state)  # RoPE at the position within the segment
        fast = self.impl == "fast"
        y, _ = self._attend_segment(q, k, v, state["memory"], None, fast)  # (B, H, 1, dh)
        mem, pos = state["memory"], pos + 1
        if pos == self.segment_len:  # the segment is complete: write the memory, start an empty cache
            mem = self._write(k, v, mem, None, fast).detach()
            empty = k.new_zeros(k.shape[0], k.shape[1], 0, k.shape[3])  # new: k[:, :, :0] keeps k's storage alive
            k, v, pos = empty, empty.clone(), 0
        return self.merge(y)[:, 0], {"memory": mem, "k": k, "v": v, "pos": pos}

    def state_size(self, seq_len: int) -> int:
        """``memory_size * D + 2 * (seq_len mod segment_len) * D``: the memory and the current segment's K and V
        (after a segment's last token the memory is written and the cache emptied: the memory alone)."""
        return self.memory_size * self.d_model + 2 * (check_seq_len(seq_len) % self.segment_len) * self.d_model

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, segment_len={self.segment_len}, memory_size={self.memory_size}"


class ConvTransformer(nn.Module):
    """The outline's "local convolution + global attention" layer, fixed: ``x + ConvTransformerMixer(LayerNorm(x))``.

    Fixes to the outline's version:

    * no residual connection and no normalisation: it returned ``conv(x) + attention(x)``, which is not a layer
      one can stack; here it is a pre-norm residual layer;
    * always bidirectional (no mask): it cannot be a language-model layer; ``causal=True`` gives a left-padded
      convolution and causal attention;
    * its attention had no notion of position (``nn.MultiheadAttention`` alone); here it uses RoPE;
    * no padding mask: ``forward(x, mask)`` keeps padded positions from leaking into real ones.

    The convolution is a full ``D -> D`` one as in the outline (``kernel_size`` as in the outline, default 3).
    """

    def __init__(self, d_model: int, num_heads: int, kernel_size: int = 3, causal: bool = False):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.mixer = ConvTransformerMixer(
            d_model, causal=causal, n_heads=num_heads, kernel_size=kernel_size, depthwise=False
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.mixer(self.norm(x), mask)  # (B, T, D)


class TransformerWithRecurrence(nn.Module):
    """The outline's "Transformer with recurrent memory", fixed: ``forward(x, memory=None) -> (out, new_memory)``.

    Bugs of the outline's version, and what this one does instead:

    * it reassigned ``x = cat([memory, x])`` before slicing ``out[:, -x.size(1):]``, so it returned the memory
      positions too: here ``out`` has exactly the positions of ``x``;
    * its memory (the whole GRU output) grew with every call and ignored ``memory_size``: here the memory is
      ``memory_size`` slots, always;
    * it was never detached, so training backpropagated through all history: here the returned memory is detached
      and no gradient crosses a segment boundary;
    * it was stored on the module, so a call with a different batch size crashed and samples of different batches
      leaked into each other: here the memory is passed in and returned (``None`` = the learned initial memory);
    * no residual or normalisation (fixed: ``x + mixer(LayerNorm(x))``), no positions (RoPE within segments).

    ``segment_len=None``: each call is one segment (the outline's behaviour); an int splits ``x`` into segments
    of that length, with the memory written after each. ``causal`` (default False, like the outline) masks
    attention within a segment; the memory flows forward only in either case. Semantics: ``RecurrentMemoryMixer``.
    """

    def __init__(
        self, d_model: int, num_heads: int, memory_size: int, segment_len: int | None = None, causal: bool = False
    ):
        super().__init__()
        if segment_len is not None and (not isinstance(segment_len, int) or segment_len <= 0):
            raise ValueError(f"segment_len must be None or a positive int, got {segment_len!r}")
        self.segment_len = segment_len
        self.norm = nn.LayerNorm(d_model)
        self.mixer = RecurrentMemoryMixer(
            d_model, causal=causal, n_heads=num_heads, memory_size=memory_size, segment_len=segment_len or 64
        )

    def initial_memory(self, batch_size: int) -> torch.Tensor:
        return self.mixer.initial_memory(batch_size).detach()

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        self.mixer.check_input(x, mask)
        L = self.segment_len if self.segment_len is not None else max(x.shape[1], 1)
        y, new_memory = self.mixer.forward_with_memory(self.norm(x), memory, mask, segment_len=L)
        return x + y, new_memory  # (B, T, D), (B, memory_size, D)


__all__ = ["ConvTransformer", "ConvTransformerMixer", "RecurrentMemoryMixer", "TransformerWithRecurrence"]
