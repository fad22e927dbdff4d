"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs").

Softmax attention weighs value ``v_i`` by ``exp(q_t . k_i)``. Linear attention replaces the exponential
by a dot product of feature maps, ``sim(q, k) = phi(q) . phi(k)`` with ``phi(x) = elu(x) + 1 > 0``, so the
sums over keys factor out of the query::

    y_t = sum_i phi(q_t).phi(k_i) v_i / sum_i phi(q_t).phi(k_i)  =  phi(q_t)^T S / (phi(q_t)^T z)
    S = sum_i phi(k_i) v_i^T   (d_head, d_head)          z = sum_i phi(k_i)   (d_head,)

(``eps`` is added to the denominator.) With a causal mask the sums run over ``i <= t``, which is an RNN
with a matrix-valued state::

    S_t = S_{t-1} + phi(k_t) v_t^T        z_t = z_{t-1} + phi(k_t)        y_t = phi(q_t)^T S_t / (phi(q_t)^T z_t + eps)

Three ways to compute the same thing (checked equal in the tests):

* ``linear_attention_quadratic``: the (T, T) matrix ``phi(Q) phi(K)^T``, lower-triangular mask, normalised by
  its row sums: O(T^2 d), the form that shows it is attention without the softmax.
* ``linear_attention_recurrent`` (``forward_reference``): the recurrence above, one step per token, O(T d^2).
* ``linear_attention_chunked`` (``forward_fast``): split time into chunks of ``chunk_size``; inside a chunk use
  the masked quadratic form, across chunks add ``phi(q_t)^T S`` where ``S`` (the sum over all earlier chunks)
  comes from a cumulative sum of per-chunk sums ``phi(K_c)^T V_c``. O(T C d + T d^2) and all matrix products.

``causal=False`` uses the global sums (O(T d^2)); padded keys (``mask`` False) are removed from ``S`` and ``z``.
Streaming keeps ``(S, z)`` per head: ``state_size = n_heads * (d_head^2 + d_head)``, whatever the length.
The feature maps and sums run in float32 (or float64) even under bf16 autocast.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Mixer, check_seq_len


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """``phi(x) = elu(x) + 1``: positive and smooth (Katharopoulos et al. 2020)."""
    return F.elu(x) + 1.0


#: ``relu`` can give an all-zero row; ``eps`` keeps the division finite then
FEATURE_MAPS = {"elu": elu_feature_map, "relu": F.relu}


def linear_attention_quadratic(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = True,
    mask: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Masked (T, T) form. ``q, k`` (B, H, T, dk) are already feature-mapped, ``v`` (B, H, T, dv); ``mask`` (B, T)."""
    A = q @ k.transpose(-1, -2)  # (B, H, T, T)  phi(q_t) . phi(k_i)
    if causal:
        A = A.tril()
    if mask is not None:
        A = A * mask[:, None, None, :].to(A.dtype)  # padded keys get weight 0
    return (A @ v) / (A.sum(-1, keepdim=True) + eps)


def linear_attention_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = True,
    mask: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """The RNN form, one token at a time (same arguments as ``linear_attention_quadratic``)."""
    B, H, T, dk = q.shape
    S = q.new_zeros(B, H, dk, v.shape[-1])  # sum of phi(k_i) v_i^T
    z = q.new_zeros(B, H, dk)  # sum of phi(k_i)
    ys = []
    for t in range(T):
        m = 1.0 if mask is None else mask[:, t, None, None].to(q.dtype)  # (B, 1, 1)
        S = S + (m * k[:, :, t])[..., None] * v[:, :, t, None, :]
        z = z + m * k[:, :, t]
        if causal:
            ys.append(_readout(q[:, :, t], S, z, eps))
    if not causal:  # every query reads the sums over the whole (unpadded) sequence
        ys = [_readout(q[:, :, t], S, z, eps) for t in range(T)]
    return torch.stack(ys, dim=2)  # (B, H, T, dv)


def _readout(q_t: torch.Tensor, S: torch.Tensor, z: torch.Tensor, eps: float) -> torch.Tensor:
    """``phi(q_t)^T S / (phi(q_t)^T z + eps)``: q_t (B, H, dk), S (B, H, dk, dv), z (B, H, dk) -> (B, H, dv)."""
    num = (q_t[..., None] * S).sum(-2)
    den = (q_t * z).sum(-1, keepdim=True)
    return num / (den + eps)


def linear_attention_chunked(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int = 64, eps: float = 1e-6
) -> torch.Tensor:
    """Causal linear attention, chunk by chunk in parallel (same arguments as ``linear_attention_quadratic``)."""
    B, H, T, dk = q.shape
    C = chunk_size
    n = -(-T // C)  # number of chunks
    pad = n * C - T  # zeros at the end: they come after every real token, so they change nothing
    q, k, v = (F.pad(t, (0, 0, 0, pad)).reshape(B, H, n, C, t.shape[-1]) for t in (q, k, v))  # (B, H, n, C, d)

    kv = k.transpose(-1, -2) @ v  # (B, H, n, dk, dv)  each chunk's sum of phi(k_i) v_i^T
    ksum = k.sum(-2)  # (B, H, n, dk)
    S = F.pad(kv.cumsum(2)[:, :, :-1], (0, 0, 0, 0, 1, 0))  # sum over all *earlier* chunks (exclusive cumsum)
    z = F.pad(ksum.cumsum(2)[:, :, :-1], (0, 0, 1, 0))  # (B, H, n, dk)

    A = (q @ k.transpose(-1, -2)).tril()  # (B, H, n, C, C)  intra-chunk scores, causal
    num = q @ S + A @ v  # (B, H, n, C, dv)  earlier chunks + this chunk
    den = (q @ z.unsqueeze(-1)).squeeze(-1) + A.sum(-1)  # (B, H, n, C)
    y = num / (den.unsqueeze(-1) + eps)
    return y.reshape(B, H, n * C, -1)[:, :, :T]


class LinearAttentionMixer(Mixer):
    """Multi-head linear attention (registry name ``"linear_attention"``).

    Options: ``n_heads=4``, ``feature_map="elu"`` (``elu(x)+1``; or ``"relu"``), ``chunk_size=64`` (fast path),
    ``eps=1e-6`` (added to the denominator). ``layer_idx`` is accepted and unused.
    Streaming state: a tuple ``(S, z)`` with S (B, H, d_head, d_head) and z (B, H, d_head).
    """

    state_type, state_len = tuple, 2

    def __init__(
        self,
        d_model: int,
        causal: bool = True,
        impl: str = "fast",
        layer_idx: int = 0,
        n_heads: int = 4,
        feature_map: str = "elu",
        chunk_size: int = 64,
        eps: float = 1e-6,
    ):
        super().__init__(d_model, causal, impl)
        for name, value in (("n_heads", n_heads), ("chunk_size", chunk_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if feature_map not in FEATURE_MAPS:
            raise ValueError(f"feature_map must be one of {sorted(FEATURE_MAPS)}, got {feature_map!r}")
        if not isinstance(eps, (int, float)) or eps <= 0:
            raise ValueError(f"eps must be a positive number, got {eps!r}")
        self.layer_idx = layer_idx
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.feature_map = feature_map
        self.chunk_size, self.eps = chunk_size, float(eps)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (..., D) -> phi(q), phi(k), v, each (..., H, d_head) in float32 at least."""
        q, k, v = self.qkv(x).unflatten(-1, (3, self.n_heads, self.d_head)).unbind(-3)
        dtype = torch.promote_types(q.dtype, torch.float32)
        phi = FEATURE_MAPS[self.feature_map]
        return phi(q.to(dtype)), phi(k.to(dtype)), v.to(dtype)

    def _mix(self, x: torch.Tensor, mask: torch.Tensor | None, fast: bool) -> torch.Tensor:
        q, k, v = (t.transpose(1, 2) for t in self._features(x))  # (B, H, T, d_head)
        if self.causal:
            mask = None  # right padding comes after every real token: nothing to remove
        with torch.autocast(x.device.type, enabled=False):
            if not fast:
                y = linear_attention_recurrent(q, k, v, self.causal, mask, self.eps)
            elif self.causal:
                y = linear_attention_chunked(q, k, v, self.chunk_size, self.eps)
            else:
                if mask is not None:  # padded keys and values leave the global sums
                    m = mask[:, None, :, None].to(k.dtype)
                    k, v = k * m, v * m
                S = k.transpose(-1, -2) @ v  # (B, H, dk, dv)
                z = k.sum(-2, keepdim=True).transpose(-1, -2)  # (B, H, dk, 1)
                y = (q @ S) / (q @ z + self.eps)  # (B, H, T, dv)
        y = y.transpose(1, 2).reshape(x.shape).to(x.dtype)  # (B, T, D)
        return self.out(y)

    def forward_fast(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._mix(x, mask, fast=True)

    def forward_reference(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._mix(x, mask, fast=False)

    # ---------------------------------------------------------------- streaming
    def init_state(self, batch_size: int, device: Any = None, dtype: torch.dtype | None = None) -> Any:
        device, dtype = self._begin_state(batch_size, device, dtype)
        dtype = torch.promote_types(dtype, torch.float32)
        H, d = self.n_heads, self.d_head
        return torch.zeros(batch_size, H, d, d, device=device, dtype=dtype), torch.zeros(
            batch_size, H, d, device=device, dtype=dtype
        )

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        self.check_step_input(x_t, state)
        S, z = state
        q, k, v = self._features(x_t)  # (B, H, d_head)
        with torch.autocast(x_t.device.type, enabled=False):
            S = S + k[..., None] * v[..., None, :]
            z = z + k
            y = _readout(q, S, z, self.eps)  # (B, H, d_head)
        return self.out(y.reshape(x_t.shape).to(x_t.dtype)), (S, z)

    def state_size(self, seq_len: int) -> int:
        check_seq_len(seq_len)
        return self.n_heads * (self.d_head * self.d_head + self.d_head)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, n_heads={self.n_heads}, feature_map={self.feature_map!r}, "
            f"chunk_size={self.chunk_size}"
        )
