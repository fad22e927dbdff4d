"""Forward FLOPs per token of one mixer layer, counted analytically, as a function of length ``n`` and width ``d``.

Conventions: a multiply-add is 2 FLOPs; matrix products, convolutions, FFTs and the per-state updates of
a scan are counted; activations, softmax, normalisation, RoPE and biases are left out (they are O(d) per
token, small beside the O(d^2) projections). The counts follow what each *fast path* executes, masked
entries of a blocked computation included, so they can be divided by measured times. A training step
(forward + backward) costs about three forward passes (``TRAIN_FACTOR``). Defaults match the mixers'.

===================== ================================================================= ==================
mixer                 forward FLOPs per token per layer                                 dominant term
===================== ================================================================= ==================
lstm                  ``2*4*(d*h + h*h) + 2*h*d``  (4 gates, then the output projection) O(d^2)
                      h = d; bidirectional: twice, with h = d // 2 per direction
gru                   ``2*3*(d*h + h*h) + 2*h*d``                                         O(d^2)
cnn                   ``2*k*d*2d + 2*d*d`` (gated conv to 2d channels, projection)       O(k d^2)
transformer           ``8*d^2 + 4*d*keys``; keys = n (bidirectional), (n+1)/2 (causal:   O(d^2 + n d)
                      the average query sees half the keys; flash kernels skip the rest)
conv_transformer      transformer + ``2*k*d`` (depthwise conv; a full one: ``2*k*d^2``)       O(d^2 + n d)
                      + ``2*d^2`` (output projection)
recurrent_transformer ``8*d^2 + 4*d*(m + L) + 16*m*d^2/L + 4*m*d``: attention inside a     O(d^2 + L d)
                      segment of L tokens plus m memory slots (its mask keeps SDPA from skipping
                      the future half, so all m + L keys count); per segment, the memory's
                      keys/values (4 m d^2), the slots' read (4 m L d) and GRU write (12 m d^2)
linear_attention      ``8*d^2 + 4*C*d + 4*d*d_h + 2*d``: projections, the masked C x C       O(d^2 + C d)
                      block inside each chunk of C=min(chunk, n), the state update and read;
                      bidirectional (global sums, no chunks): ``8*d^2 + 4*d*d_h + 2*d``
s4                    ``4*d^2 + d*(15*log2(2n) + 4*N + 8)``: GLU output projection; per       O(d^2 + d log n)
                      channel three real FFTs of length 2n (2.5 m log2 m each), the kernel
                      (N/2 complex modes; a second kernel when bidirectional), the product
mamba                 ``2*d*2E + 2*d_conv*E + 2*E*(R + 2N) + 2*R*E + 7*E*N + 2*E*d``,      O(d^2 + d N)
                      E = expand*d, R = ceil(d/16): in_proj, conv, x_proj, dt_proj,
                      selective scan (7 FLOPs per state entry), out_proj; bidirectional: a
                      second conv, x_proj, dt_proj and scan
rwkv                  ``8*d^2 + 4*C*d + 20*d``: four projections; the chunked WKV is a      O(d^2 + C d)
                      C x C decay matrix product per channel for numerator and denominator
longformer            ``8*d^2 + 4*d*K``, K = 2*min(w, n) keys per query (causal) or        O(d^2 + w d)
                      3*min(w, n) (bidirectional): the blocked fast path scores each block of
                      min(w, n) queries against two (three) whole key blocks, masked
===================== ================================================================= ==================

The feed-forward block that follows every mixer adds ``mlp_flops(d) = 2*2*d*(4d) = 16 d^2`` per token
whatever the mixer: the O(n d^2) that the outline's complexity table leaves out.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["TRAIN_FACTOR", "mixer_flops", "mlp_flops", "count_flops", "crossover_length"]

#: forward + backward ~ 3 forward passes (the backward computes gradients for inputs and for weights)
TRAIN_FACTOR = 3


def _attention(n: int, d: int, causal: bool, keys: float | None = None) -> float:
    keys = ((n + 1) / 2 if causal else n) if keys is None else keys
    return 8 * d * d + 4 * d * keys  # Q, K, V, O projections; scores Q K^T and the weighted sum of V


#: the options each formula reads (``n_heads`` is accepted wherever the mixer has heads; only linear attention's count
#: depends on it)
_OPTIONS: dict[str, set[str]] = {
    "lstm": {"hidden_size"},
    "gru": {"hidden_size"},
    "cnn": {"kernel_size"},
    "transformer": {"n_heads"},
    "conv_transformer": {"n_heads", "kernel_size", "depthwise"},
    "recurrent_transformer": {"n_heads", "segment_len", "memory_size"},
    "linear_attention": {"n_heads", "chunk_size"},
    "s4": {"d_state"},
    "mamba": {"d_state", "expand", "d_conv"},
    "rwkv": {"chunk_size"},
    "longformer": {"n_heads", "window"},
}


def mixer_flops(arch: str, n: int, d: int, *, causal: bool = True, **options) -> float:
    """Forward FLOPs per token of one ``arch`` mixer layer at sequence length ``n`` and width ``d``.

    Options (mixer defaults when omitted): ``hidden_size`` (lstm, gru), ``kernel_size`` (cnn 3,
    conv_transformer 3), ``depthwise`` True (conv_transformer), ``segment_len`` 64 and ``memory_size`` 8
    (recurrent_transformer), ``chunk_size`` 64 (linear_attention, rwkv), ``n_heads`` 4, ``d_state`` (s4 64,
    mamba 16), ``expand`` 2, ``d_conv`` 4, ``window`` 64 (longformer). An option the formula of ``arch`` does
    not take is an error, not silently ignored.
    """
    if not (isinstance(n, int) and n >= 1 and isinstance(d, int) and d >= 1):
        raise ValueError(f"n and d must be positive ints, got n={n!r}, d={d!r}")
    if arch not in _OPTIONS:
        raise ValueError(f"no FLOP formula for {arch!r}; known: {', '.join(_OPTIONS)}")
    unknown = sorted(set(options) - _OPTIONS[arch])
    if unknown:
        raise ValueError(f"mixer_flops({arch!r}) takes the options {sorted(_OPTIONS[arch])}, not {unknown}")
    o = options
    if arch in ("lstm", "gru"):
        h = o.get("hidden_size") or (d if causal else max(1, d // 2))  # the mixer's default: d // 2 per direction
        gates = 4 if arch == "lstm" else 3
        dirs = 1 if causal else 2
        return dirs * 2 * gates * (d * h + h * h) + 2 * dirs * h * d
    if arch == "cnn":
        k = o.get("kernel_size", 3)
        return 2 * k * d * 2 * d + 2 * d * d
    if arch == "transformer":
        return _attention(n, d, causal)
    if arch == "conv_transformer":
        per_output = 1 if o.get("depthwise", True) else d  # inputs each output channel reads, per tap
        return _attention(n, d, causal) + 2 * o.get("kernel_size", 3) * d * per_output + 2 * d * d
    if arch == "recurrent_transformer":
        L, m = min(o.get("segment_len", 64), n), o.get("memory_size", 8)
        keys = m + L  # the memory slots and the whole segment: a boolean mask, computed block by block in full
        return _attention(n, d, causal, keys) + 16 * m * d * d / L + 4 * m * d
    if arch == "linear_attention":
        C, dh = min(o.get("chunk_size", 64), n), d // o.get("n_heads", 4)
        if not causal:  # the global sums: no chunks
            return 8 * d * d + 4 * d * dh + 2 * d
        return 8 * d * d + 4 * C * d + 4 * d * dh + 2 * d
    if arch == "s4":
        N = o.get("d_state", 64)
        dirs = 1 if causal else 2  # bidirectional: a second kernel, for the backward direction
        return 4 * d * d + d * (15 * math.log2(2 * n) + 4 * N * dirs + 8)
    if arch == "mamba":
        E, N, K = o.get("expand", 2) * d, o.get("d_state", 16), o.get("d_conv", 4)
        R = math.ceil(d / 16)
        inner = 2 * K * E + 2 * E * (R + 2 * N) + 2 * R * E + 7 * E * N  # conv, x_proj, dt_proj, scan
        return 2 * d * 2 * E + (1 if causal else 2) * inner + 2 * E * d  # bidirectional: a second inner path
    if arch == "rwkv":
        C = min(o.get("chunk_size", 64), n)
        return (1 if causal else 2) * (8 * d * d + 4 * C * d + 20 * d)
    if arch == "longformer":
        w = o.get("window", 64)
        return _attention(n, d, causal, keys=(2 if causal else 3) * min(w, n))  # the blocks, masked keys included
    raise AssertionError(f"{arch!r} is in _OPTIONS but has no formula")


def mlp_flops(d: int, mlp_mult: int = 4) -> float:
    """Forward FLOPs per token of the feed-forward block (two linear layers d -> mult*d -> d)."""
    return 2 * 2 * d * mlp_mult * d


def crossover_length(d: int, arch_a: str = "transformer", arch_b: str = "lstm", *, n_max: int = 1 << 20, **kw) -> int:
    """The smallest length n (by bisection) at which ``arch_a`` costs more FLOPs per token than ``arch_b``.

    Returns ``n_max`` when ``arch_a`` stays cheaper up to ``n_max``.
    """
    lo, hi = 1, n_max
    if mixer_flops(arch_a, hi, d, **kw) <= mixer_flops(arch_b, hi, d, **kw):
        return n_max
    while lo < hi:
        mid = (lo + hi) // 2
        if mixer_flops(arch_a, mid, d, **kw) > mixer_flops(arch_b, mid, d, **kw):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """The CPU kernel of ``F.scaled_dot_product_attention``, counted as PyTorch counts its GPU kernels: every
    (query, key) pair of Q K^T and of the weighted sum of V, masked or causal pairs included."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(module: nn.Module, *args, **kwargs) -> int:
    """FLOPs of ``module(*args, **kwargs)`` as PyTorch's ``FlopCounterMode`` counts them: matmuls, convolutions
    and ``scaled_dot_product_attention`` (its CPU kernel too, counted like the GPU ones: all query-key pairs,
    the causal half that flash kernels skip included). It misses fused kernels it has no formula for
    (``nn.LSTM``'s), FFTs and elementwise work: ``tests/test_flops.py`` checks ``mixer_flops`` against it
    term by term."""
    from torch.utils.flop_counter import FlopCounterMode

    cpu_sdpa = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=cpu_sdpa) as counter:
        module(*args, **kwargs)
    return int(counter.get_total_flops())
