"""RWKV-4 (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era"): time mixing and channel mixing.

**Time mix** (the mixer). *Token shift* mixes each token with the previous one (``x_{-1} = 0``) using learned
per-channel weights, then projects::

    k_t = W_k (mu_k x_t + (1 - mu_k) x_{t-1})     (same for v with mu_v, r with mu_r)      r_t = sigmoid(W_r ...)

The WKV operator is attention with a per-channel exponential decay ``w = exp(time_decay) > 0`` instead of
query-key scores, and a *bonus* ``u`` for the current token (all products per channel)::

    wkv_t = (sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t) / (sum_{i<t} e^{-(t-1-i) w + k_i} + e^{u + k_t})
    out_t = W_o (r_t * wkv_t)

As an RNN, numerator ``a`` and denominator ``b`` decay by ``e^{-w}`` per step. The exponentials overflow for large
keys, so (as the official CUDA kernel) the state is stored as ``(a, b, p)`` meaning ``e^p (a, b)``, with ``p``
the running maximum exponent: ``wkv_step`` / ``wkv_reference``.

``wkv_chunked`` (fast path) splits time into chunks of ``C``. Inside a chunk, the sum over earlier tokens of the
same chunk is a product with the decay matrix ``W[t, i] = e^{-(t-1-i) w}`` (``i < t``, else 0), shared by the
batch: one batched matmul per channel. Keys are shifted by their per-chunk maximum ``m`` first, so
``e^{k_i - m} <= 1``. Across chunks a short loop (one step per chunk, not per token) carries ``(a, b, p)``
exactly like the reference. Each output combines the carried state, the chunk and the current token after
subtracting the largest of their three exponents, so nothing overflows. The shift ``m`` is not a term of every row:
when the keys inside one chunk span more than about 40 (float32), a row whose own terms all lie that far below ``m``
would lose them to underflow (0/0, or a wrong finite value). Such a row is recognised by its denominator (below
``sqrt(tiny)``; a row whose largest term is the carried state or the current token has one of at least 1), and the
chunks holding one are recomputed token by token from their entering state, so the result equals the reference for
any keys. The shifts ``m``, ``p`` are constants for autograd (the result does not depend on them).

``causal=False``: a second time mix with its own parameters reads each sequence backwards (only the real tokens
are reversed, so padding never reaches a real position); the two outputs are summed.
Streaming state: ``(x_{t-1}, a, b, p)``, ``state_size = 4 * d_model``.

**Channel mix** (``RWKVChannelMix``, RWKV's feed-forward): token shift, then
``sigmoid(W_r x_r) * W_v relu(W_k x_k)^2``.

Initialisation follows RWKV-4's first layer (``time_decay`` from -5 to 3 across channels, ``u = log 0.3`` with a
zigzag, ``mu = i / D``, and ``(i / D)^0.5`` for the time mix's receptance); the schedule over depth needs the
number of layers, which the mixer contract does not pass, so ``layer_idx`` is accepted and unused.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Mixer, check_seq_len
from .ssm import reverse_padded

_NEG = -1e38  # "minus infinity" for the running exponent, as in the official kernel


def wkv_step(w, u, k_t, v_t, state):
    """One token. w, u (D,); k_t, v_t (B, D); state (a, b, p) each (B, D) -> wkv_t (B, D), new state."""
    a, b, p = state
    q = torch.maximum(p, u + k_t)  # output: old state and the current token with its bonus
    e1, e2 = torch.exp(p - q), torch.exp(u + k_t - q)
    y = (e1 * a + e2 * v_t) / (e1 * b + e2)
    q = torch.maximum(p - w, k_t)  # state: decay by e^{-w}, add e^{k_t}
    e1, e2 = torch.exp(p - w - q), torch.exp(k_t - q)
    return y, (e1 * a + e2 * v_t, e1 * b + e2, q)


def _wkv_steps(w, u, k, v, state):
    """``wkv_step`` over every token of k, v (B, T, D) from ``state`` -> wkv (B, T, D)."""
    ys = []
    for t in range(k.shape[1]):
        y, state = wkv_step(w, u, k[:, t], v[:, t], state)
        ys.append(y)
    return torch.stack(ys, dim=1)


def wkv_reference(w, u, k, v):
    """The recurrence over time. w, u (D,); k, v (B, T, D) -> wkv (B, T, D)."""
    B, T, D = k.shape
    return _wkv_steps(w, u, k, v, (k.new_zeros(B, D), k.new_zeros(B, D), k.new_full((B, D), _NEG)))


def wkv_chunked(w, u, k, v, chunk_size: int = 64):
    """Same as ``wkv_reference``, parallel inside chunks of ``chunk_size`` tokens."""
    B, T, D = k.shape
    C, n = chunk_size, -(-T // chunk_size)
    pad = n * C - T  # padded keys are -inf: weight e^{-inf} = 0
    k = F.pad(k, (0, 0, 0, pad), value=float("-inf")).reshape(B, n, C, D)
    v = F.pad(v, (0, 0, 0, pad)).reshape(B, n, C, D)

    pos = torch.arange(C, device=k.device)
    rel = (pos[:, None] - 1 - pos[None, :]).to(w.dtype)  # (C, C)  t - 1 - i
    earlier = (pos[None, :] < pos[:, None])[..., None]  # (C, C, 1)  i < t
    W = torch.exp((-rel[..., None] * w).masked_fill(~earlier, float("-inf")))  # (C, C, D) decay matrix

    m = k.detach().amax(dim=2, keepdim=True)  # (B, n, 1, D) per-chunk max key
    ek = torch.exp(k - m)  # (B, n, C, D) <= 1
    ekv = ek * v
    num_in = torch.einsum("tid,bnid->bntd", W, ekv)  # sum_{i<t in chunk}, scaled by e^{-m}
    den_in = torch.einsum("tid,bnid->bntd", W, ek)
    # each chunk's own contribution to the state at its end, e^{m_end} (a_chunk, b_chunk), m_end its largest exponent
    k_end = k - (C - 1 - pos)[:, None].to(w.dtype) * w  # (B, n, C, D)  k_i - (C-1-i) w
    m_end = k_end.detach().amax(dim=2)  # (B, n, D)
    e_end = torch.exp(k_end - m_end[:, :, None])
    a_chunk, b_chunk = (e_end * v).sum(2), e_end.sum(2)

    a, b, p = k.new_zeros(B, D), k.new_zeros(B, D), k.new_full((B, D), float("-inf"))
    entering = []  # the state entering each chunk, (a, b, p) meaning e^p (a, b)
    for c in range(n):  # one step per chunk: decay the state over C tokens, add the chunk's own
        entering.append((a, b, p))
        p_dec, m_c = p - C * w, m_end[:, c]
        q = torch.maximum(p_dec, m_c).detach()
        e1, e2 = torch.exp(p_dec - q), torch.exp(m_c - q)
        a, b, p = e1 * a + e2 * a_chunk[:, c], e1 * b + e2 * b_chunk[:, c], q
    a_in, b_in, p_in = (torch.stack(s, 1)[:, :, None] for s in zip(*entering, strict=True))  # (B, n, 1, D)

    carry = p_in - pos[:, None].to(w.dtype) * w  # (B, n, C, D) exponent of the carried state at token t
    now = u + k  # exponent of the current token
    q = torch.maximum(torch.maximum(carry, m), now).detach()
    e_carry, e_in, e_now = torch.exp(carry - q), torch.exp(m - q), torch.exp(now - q)
    num = e_carry * a_in + e_in * num_in + e_now * v
    den = e_carry * b_in + e_in * den_in + e_now
    # The shift m is the chunk's largest key, not a term of every row: a row whose terms all lie far below it loses
    # them to underflow. The carried state's and the current token's exponents are terms of their row, so a row whose
    # largest term is one of them has den >= 1; den below sqrt(tiny) flags a row that may have lost its precision.
    real = (torch.arange(n * C, device=k.device) < T).view(1, n, C, 1)
    lost = ((den < torch.finfo(den.dtype).tiny ** 0.5) & real).any(dim=(2, 3))  # (B, n)
    den = torch.where(real, den, 1.0)  # padding (cut below) may decay to 0: never 0/0, not even in the backward pass
    if lost.any():  # rare (keys spanning more than about 40 in one chunk): redo those chunks token by token
        den = torch.where(lost[:, :, None, None], 1.0, den)  # likewise for the rows replaced below
        y = num / den
        bi, ci = lost.nonzero(as_tuple=True)
        state = (a_in[bi, ci, 0], b_in[bi, ci, 0], p_in[bi, ci, 0].clamp_min(_NEG))
        y = torch.index_put(y, (bi, ci), _wkv_steps(w, u, k[bi, ci], v[bi, ci], state))
    else:
        y = num / den
    return y.reshape(B, n * C, D)[:, :T]  # cut the padding


def _token_shift_init(d_model: int, power: float) -> torch.Tensor:
    return (torch.arange(d_model, dtype=torch.float) / d_model) ** power  # RWKV-4: mu_i = (i / D)^power


class _TimeMix(nn.Module):
    """Token shift, k/v/r projections and the WKV operator for one direction: (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int):
        super().__init__()
        ratio = torch.arange(d_model, dtype=torch.float) / max(d_model - 1, 1)
        self.time_decay = nn.Parameter(-5 + 8 * ratio**0.7)  # w = exp(time_decay), from e^-5 to e^3
        zigzag = ((torch.arange(d_model) + 1) % 3 - 1).float() * 0.5
        self.time_first = nn.Parameter(math.log(0.3) + zigzag)  # the bonus u
        self.mu_k = nn.Parameter(_token_shift_init(d_model, 1.0))
        self.mu_v = nn.Parameter(_token_shift_init(d_model, 1.0))
        self.mu_r = nn.Parameter(_token_shift_init(d_model, 0.5))
        self.key, self.value, self.receptance, self.output = (nn.Linear(d_model, d_model, bias=False) for _ in "kvro")

    def _kvr(self, x: torch.Tensor, prev: torch.Tensor) -> tuple[torch.Tensor, ...]:
        k = self.key(x * self.mu_k + prev * (1 - self.mu_k))
        v = self.value(x * self.mu_v + prev * (1 - self.mu_v))
        r = torch.sigmoid(self.receptance(x * self.mu_r + prev * (1 - self.mu_r)))
        real = torch.promote_types(k.dtype, torch.float32)
        return k.to(real), v.to(real), r.to(real)

    def _wu(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.exp(self.time_decay.to(dtype)), self.time_first.to(dtype)

    def forward(self, x: torch.Tensor, wkv) -> torch.Tensor:
        k, v, r = self._kvr(x, F.pad(x, (0, 0, 1, -1)))  # previous token, zeros before the first
        with torch.autocast(x.device.type, enabled=False):
            y = r * wkv(*self._wu(k.dtype), k, v)  # (B, T, D)
        return self.output(y.to(x.dtype))

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        prev, *abp = state
        k, v, r = self._kvr(x_t, prev.to(x_t.dtype))
        with torch.autocast(x_t.device.type, enabled=False):
            y, abp = wkv_step(*self._wu(k.dtype), k, v, tuple(abp))
        return self.output((r * y).to(x_t.dtype)), (x_t, *abp)


class RWKVMixer(Mixer):
    """RWKV-4 time mixing (registry name ``"rwkv"``).

    Options: ``chunk_size=64`` (fast path). Streaming state: a tuple ``(x_prev, a, b, p)``, each (B, D).
    """

    state_type, state_len = tuple, 4

    def __init__(self, d_model: int, causal: bool = True, impl: str = "fast", layer_idx: int = 0, chunk_size: int = 64):
        super().__init__(d_model, causal, impl)
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        self.layer_idx, self.chunk_size = layer_idx, chunk_size
        self.fwd = _TimeMix(d_model)
        self.bwd = None if causal else _TimeMix(d_model)  # reads each sequence backwards

    def _mix(self, x: torch.Tensor, mask: torch.Tensor | None, wkv) -> torch.Tensor:
        y = self.fwd(x, wkv)
        if not self.causal:
            y = y + reverse_padded(self.bwd(reverse_padded(x, mask), wkv), mask)
        return y

    def forward_fast(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._mix(x, mask, partial(wkv_chunked, chunk_size=self.chunk_size))

    def forward_reference(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._mix(x, mask, wkv_reference)

    def init_state(self, batch_size: int, device: Any = None, dtype: torch.dtype | None = None) -> Any:
        device, dtype = self._begin_state(batch_size, device, dtype)
        real = torch.promote_types(dtype, torch.float32)
        shape = (batch_size, self.d_model)
        prev = torch.zeros(shape, device=device, dtype=dtype)  # x_{-1} = 0
        a, b = torch.zeros(shape, device=device, dtype=real), torch.zeros(shape, device=device, dtype=real)
        return prev, a, b, torch.full(shape, _NEG, device=device, dtype=real)

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        self.check_step_input(x_t, state)
        return self.fwd.step(x_t, state)

    def state_size(self, seq_len: int) -> int:
        check_seq_len(seq_len)
        return 4 * self.d_model  # previous token, numerator, denominator, exponent

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, chunk_size={self.chunk_size}"


class RWKVChannelMix(nn.Module):
    """RWKV-4 channel mixing (its feed-forward): ``sigmoid(W_r x_r) * W_v relu(W_k x_k)^2`` with token shift.

    ``forward(x)`` (B, T, D) -> (B, T, D); ``step(x_t, prev_x)`` -> ``(y_t, x_t)`` (``prev_x`` zeros at the start).
    """

    def __init__(self, d_model: int, hidden_mult: int = 4):
        super().__init__()
        for name, value in (("d_model", d_model), ("hidden_mult", hidden_mult)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.d_model = d_model
        self.mu_k = nn.Parameter(_token_shift_init(d_model, 1.0))
        self.mu_r = nn.Parameter(_token_shift_init(d_model, 1.0))
        self.key = nn.Linear(d_model, hidden_mult * d_model, bias=False)
        self.value = nn.Linear(hidden_mult * d_model, d_model, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)

    def _mix(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        k = torch.relu(self.key(x * self.mu_k + prev * (1 - self.mu_k))) ** 2
        return torch.sigmoid(self.receptance(x * self.mu_r + prev * (1 - self.mu_r))) * self.value(k)

    def _check(self, x: torch.Tensor, rank: int, what: str) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != rank or x.shape[-1] != self.d_model:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"RWKVChannelMix expects {what} with last dimension {self.d_model}; got {shape}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x, 3, "(batch, time, d_model)")
        return self._mix(x, F.pad(x, (0, 0, 1, -1)))

    def step(self, x_t: torch.Tensor, prev_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(x_t, 2, "(batch, d_model)")
        self._check(prev_x, 2, "prev_x (batch, d_model)")
        if prev_x.shape != x_t.shape:  # a state of another batch would broadcast silently
            raise ValueError(f"prev_x must have the shape of x_t {tuple(x_t.shape)}; got {tuple(prev_x.shape)}")
        return self._mix(x_t, prev_x), x_t
