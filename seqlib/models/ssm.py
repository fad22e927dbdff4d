"""State space models: diagonal S4 (S4D) and Mamba's selective SSM.

Both run, for every channel, a linear recurrence with a hidden state ``x`` of ``N`` numbers::

    x_t = Abar_t * x_{t-1} + Bbar_t u_t        y_t = C_t . x_t + D u_t        (diagonal A: elementwise products)

**S4D** (Gu et al. 2022, "On the parameterization and initialization of diagonal state space models").
``A`` is a fixed complex diagonal per channel (S4D-Lin init ``A_n = -1/2 + i pi n``), discretised with the
zero-order hold over a learned step ``dt``: ``Abar = exp(dt A)``, ``Bbar = (exp(dt A) - 1) / A * B``. Because
nothing depends on the input, the output is a convolution with a kernel computed once per length ``L``::

    y = K * u + D u        K_l = 2 Re( sum_n C_n Bbar_n Abar_n^l )       (a Vandermonde product, l = 0..L-1)

*Real part trick*: for a real input to give a real output, the ``N = d_state`` diagonal entries of ``A`` (and those
of ``B`` and ``C``) come in complex-conjugate pairs; the two states of a pair then stay conjugate, so the ``N``
states are stored as ``N // 2`` complex ones, one per pair, and the output sums each pair as ``2 Re(.)`` of one term
(``N`` real numbers of state per channel, as a real system of size ``N``). ``discretize()`` returns
``dtA, Abar, Bbar, C, D``, the public view of what every path computes with. ``forward_fast`` builds ``K`` and
convolves with the FFT (zero-padded to ``2L``, so the circular convolution is causal); ``forward_reference`` runs the
recurrence in complex arithmetic. ``causal=False`` adds a second kernel run backwards over strictly later
tokens (``y_t += sum_{s>t} K'_{s-t-1} u_s``); padded inputs are zeroed so they contribute nothing.
As in S4D's block the output is ``GLU(W GELU(y))``. Streaming state: the complex ``x`` of every channel,
``state_size = d_model * d_state`` real numbers (a complex number counts as two).

**Mamba** (Gu & Dao 2023). ``in_proj`` gives ``(x, z)`` of width ``expand * d_model``; ``x`` goes through a
causal depthwise conv (width ``d_conv``) and SiLU; then ``dt_t = softplus(W_dt (W_x x_t)) > 0``, ``B_t``,
``C_t`` depend on the token (the *selection*), ``A = -exp(A_log)`` (S4D-Real init ``A_n = -n``), and::

    h_t = exp(dt_t A) * h_{t-1} + dt_t B_t u_t        y_t = C_t . h_t + D u_t        out = W_out (y * SiLU(z))

A time-varying recurrence has no convolution kernel. ``selective_scan_ref`` loops over time (as mamba's
``selective_scan_ref``); ``selective_scan_chunked`` (fast path) splits time into chunks and solves the
recurrence inside every chunk at once with a work-efficient parallel (Blelloch) scan, then again over the chunk
ends, then adds each chunk's incoming state times its decay since the chunk's start, ``exp(cumsum(dt A))``.
Every factor it multiplies is a decay ``exp(dt A) <= 1`` or a product of them, so nothing overflows whatever the
length or the decay strength. The scan is an ``autograd.Function`` whose backward is the same scan run backwards
in time, so training keeps O(1) copies of the (B, Di, T, N) state instead of one per round; past
``SCAN_BLOCK_ELEMENTS`` numbers, time is cut into blocks recomputed in the backward pass, so training holds the
states of one block at a time (memory linear in T with a small constant, as Mamba's fused kernel).
Streaming state: the last ``d_conv - 1`` conv inputs and ``h``: ``expand * d_model * (d_state + d_conv - 1)``.
``causal=False`` adds a second selective SSM (own conv, projections, ``A``, ``D``; shared ``in_proj``,
``out_proj`` and gate, as in Vision Mamba) run over each sequence reversed: only its real tokens are
reversed, so padding stays at the end and never reaches a real position.

Scans and FFTs run in float32 (or float64) even under bf16 autocast.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .base import Mixer, check_right_padding, check_seq_len, zero_padding


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)  # float32, or float64 for float64 inputs


def check_right_padded(mask: torch.Tensor) -> torch.Tensor:
    """Lengths (B,) of a right-padded ``mask`` (B, T); raises if a padded position precedes a real one."""
    check_right_padding(mask)  # nothing to do when forward() has checked this mask already
    return mask.sum(1)


def reverse_padded(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Reverse the real tokens of each sequence in ``x`` (B, T, ...), keep the right padding where it is."""
    if mask is None:
        return x.flip(1)
    lengths = check_right_padded(mask)[:, None]  # (B, 1)
    t = torch.arange(x.shape[1], device=x.device)  # (T,)
    idx = torch.where(t < lengths, lengths - 1 - t, t)  # (B, T)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


# ------------------------------------------------------------------------------------------------ S4D
def s4d_kernel(dtA: torch.Tensor, CB: torch.Tensor, L: int) -> torch.Tensor:
    """``K_l = 2 Re(sum_n CB_n exp(dtA_n l))``: dtA (H, N2) and CB (..., H, N2) complex -> K (..., H, L) real."""
    vandermonde = torch.exp(dtA[..., None] * torch.arange(L, device=dtA.device))  # (H, N2, L)
    return 2 * torch.einsum("...hn,hnl->...hl", CB, vandermonde).real


def fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution ``y_t = sum_{s<=t} k_{t-s} u_s`` of u (B, H, L) with k (H, L or 2L), via a length-2L FFT.

    A kernel of length 2L is circular: entries ``L..2L-1`` act on later tokens (``k_{2L-j}`` on ``u_{t+j}``).
    """
    L = u.shape[-1]
    y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)
    return y[..., :L]


class DiscreteSSM(NamedTuple):
    """An S4D layer's discretised parameters (``S4DMixer.discretize``): per channel h and conjugate pair n."""

    dtA: torch.Tensor  # (H, N2) complex: the step times A
    Abar: torch.Tensor  # (H, N2) complex: exp(dtA), the zero-order hold
    Bbar: torch.Tensor  # (H, N2) complex: (exp(dtA) - 1) / A * B
    C: torch.Tensor  # (n_dir, H, N2) complex
    D: torch.Tensor  # (H,) real: the skip connection


class S4DMixer(Mixer):
    """Diagonal state space layer, S4D-Lin (registry name ``"s4"``).

    Options: ``d_state=64`` (real numbers per channel: ``d_state // 2`` complex states), ``dt_min=1e-3``,
    ``dt_max=1e-1`` (range of the log-uniform initial step). ``layer_idx`` is accepted and unused.
    Streaming state: a complex tensor (B, d_model, d_state // 2).
    """

    state_type = torch.Tensor

    def __init__(
        self,
        d_model: int,
        causal: bool = True,
        impl: str = "fast",
        layer_idx: int = 0,
        d_state: int = 64,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ):
        super().__init__(d_model, causal, impl)
        if _positive_int("d_state", d_state) % 2:
            raise ValueError(f"d_state must be even (d_state // 2 complex conjugate pairs), got {d_state}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min!r}, dt_max={dt_max!r}")
        self.layer_idx, self.d_state = layer_idx, d_state
        H, N2 = d_model, d_state // 2
        log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)  # (H,)
        self.log_A_real = nn.Parameter(torch.full((H, N2), math.log(0.5)))  # Re A = -exp(.) = -1/2
        self.A_imag = nn.Parameter(math.pi * torch.arange(N2, dtype=torch.float).repeat(H, 1))  # Im A = pi n
        self.B = nn.Parameter(torch.stack([torch.ones(H, N2), torch.zeros(H, N2)], -1))  # (H, N2, 2): 1 + 0i
        n_dir = 1 if causal else 2  # bidirectional: a second C reads the backward state
        self.C = nn.Parameter(torch.randn(n_dir, H, N2, 2) * 0.5**0.5)  # complex normal, unit variance
        self.D = nn.Parameter(torch.randn(H))
        self.out = nn.Linear(H, 2 * H)  # GLU halves it back to H

    def discretize(self, dtype: torch.dtype = torch.float32) -> DiscreteSSM:
        """The layer's discretised parameters (``dtA, Abar, Bbar, C, D``) in ``dtype``'s compute precision.

        ``dtA``, ``Abar = exp(dtA)`` and ``Bbar`` are (H, N2) complex, one entry per conjugate pair of states
        (N2 = d_state // 2); ``C`` is (n_dir, H, N2) complex (``C[1]`` reads the backward state when
        ``causal=False``); ``D`` is (H,) real. With them, a channel's recurrence is
        ``x_t = Abar x_{t-1} + Bbar u_t``, ``y_t = 2 Re(sum_n C_n x_t,n) + D u_t``, and its convolution kernel
        ``s4d_kernel(dtA, C * Bbar, L)``. Autograd flows back to the parameters.
        """
        real = _compute_dtype(dtype)
        log_dt, log_A_real, A_imag, B, C = (
            p.to(real) for p in (self.log_dt, self.log_A_real, self.A_imag, self.B, self.C)
        )
        A = torch.complex(-torch.exp(log_A_real), A_imag)  # (H, N2)
        dtA = A * torch.exp(log_dt)[:, None]
        Abar = torch.exp(dtA)  # zero-order hold
        Bbar = (Abar - 1) / A * torch.view_as_complex(B.contiguous())
        return DiscreteSSM(dtA, Abar, Bbar, torch.view_as_complex(C.contiguous()), self.D.to(real))

    def _output(self, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return F.glu(self.out(F.gelu(y.to(dtype))), dim=-1)

    def forward_fast(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        L = x.shape[1]
        with torch.autocast(x.device.type, enabled=False):
            dtA, _, Bbar, C, D = self.discretize(x.dtype)
            u = zero_padding(x, None if self.causal else mask).transpose(1, 2).to(D.dtype)  # (B, H, L)
            K = s4d_kernel(dtA, C * Bbar, L)  # (n_dir, H, L)
            k = K[0] if self.causal else F.pad(K[0], (0, L)) + F.pad(K[1].flip(-1), (L, 0))  # (H, L) or (H, 2L)
            y = fft_conv(u, k) + D[:, None] * u  # (B, H, L)
        return self._output(y.transpose(1, 2), x.dtype)

    def forward_reference(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            _, Abar, Bbar, C, D = self.discretize(x.dtype)
            u = zero_padding(x, None if self.causal else mask).to(D.dtype)  # (B, L, H)
            s = torch.zeros(*u.shape[::2], Abar.shape[-1], dtype=Abar.dtype, device=x.device)  # (B, H, N2)
            ys = []
            for t in range(u.shape[1]):
                s = Abar * s + Bbar * u[:, t, :, None]
                ys.append(2 * (C[0] * s).sum(-1).real + D * u[:, t])
            y = torch.stack(ys, 1)  # (B, L, H)
            if not self.causal:  # backward state g_t = sum_{s>t} Abar^(s-t-1) Bbar u_s
                g, ys = torch.zeros_like(s), []
                for t in reversed(range(u.shape[1])):
                    ys.append(2 * (C[1] * g).sum(-1).real)
                    g = Abar * g + Bbar * u[:, t, :, None]
                y = y + torch.stack(ys[::-1], 1)
        return self._output(y, x.dtype)

    def init_state(self, batch_size: int, device: Any = None, dtype: torch.dtype | None = None) -> Any:
        device, dtype = self._begin_state(batch_size, device, dtype)
        cdtype = torch.complex128 if _compute_dtype(dtype) == torch.float64 else torch.complex64
        return torch.zeros(batch_size, self.d_model, self.d_state // 2, device=device, dtype=cdtype)

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        self.check_step_input(x_t, state)
        with torch.autocast(x_t.device.type, enabled=False):
            _, Abar, Bbar, C, D = self.discretize(x_t.dtype)
            u = x_t.to(D.dtype)  # (B, H)
            s = Abar * state + Bbar * u[..., None]  # (B, H, N2)
            y = 2 * (C[0] * s).sum(-1).real + D * u
        return self._output(y, x_t.dtype), s

    def state_size(self, seq_len: int) -> int:
        check_seq_len(seq_len)
        return self.d_model * self.d_state  # d_state // 2 complex numbers = d_state real numbers per channel

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, d_state={self.d_state}"


# ---------------------------------------------------------------------------------------------- Mamba
def selective_scan_ref(u, delta, A, B, C, D):
    """The selective scan, one step per token. u, delta (B, Di, T); A (Di, N); B, C (B, N, T); D (Di,) -> (B, Di, T)."""
    deltaA = torch.exp(torch.einsum("bdt,dn->bdtn", delta, A))  # (B, Di, T, N) decays in (0, 1]
    deltaB_u = torch.einsum("bdt,bnt,bdt->bdtn", delta, B, u)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])  # (B, Di, N)
    ys = []
    for t in range(u.shape[2]):
        h = deltaA[:, :, t] * h + deltaB_u[:, :, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    return torch.stack(ys, dim=2) + D[:, None] * u


def _scan_(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """In place along dim -2, whose length is a power of 2: ``b_t <- a_t b_{t-1} + b_t`` (``b_{-1} = 0``).

    Blelloch's work-efficient scan with the composition ``(a, b) then (a', b') = (a a', a' b + b')``. The up-sweep
    leaves in the last element of every block of ``2s`` steps the composition of that block; the down-sweep gives
    the middle element of every block the complete prefix ending just before it. ``a`` is overwritten.
    """
    T, s = b.shape[-2], 1
    while s < T:  # up-sweep: O(T) work in log2(T) rounds
        av, bv = (t.unflatten(-2, (T // (2 * s), 2 * s)) for t in (a, b))  # (..., blocks, 2s, N) views
        bv[..., 2 * s - 1, :] += av[..., 2 * s - 1, :] * bv[..., s - 1, :]
        av[..., 2 * s - 1, :] *= av[..., s - 1, :]
        s *= 2
    s = T // 4
    while s >= 1:  # down-sweep
        av, bv = (t.unflatten(-2, (T // (2 * s), 2 * s)) for t in (a, b))
        bv[..., 1:, s - 1, :] += av[..., 1:, s - 1, :] * bv[..., :-1, 2 * s - 1, :]
        s //= 2
    return b


class _LinearScan(torch.autograd.Function):
    """``h = linear_scan(a, b)`` with a hand-written backward: the gradient runs the same recurrence backwards,
    ``g_t = dL/dh_t + a_{t+1} g_{t+1}``, then ``dL/db_t = g_t`` and ``dL/da_t = g_t h_{t-1}``. Only ``a`` and ``h``
    are kept for the backward pass (autograd through the rounds would keep every intermediate)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = _scan_(a.clone(), b.clone())
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, h = ctx.saved_tensors
        a_next = F.pad(a[..., 1:, :], (0, 0, 0, 1))  # a_{t+1}
        g = _scan_(a_next.flip(-2), grad_h.flip(-2)).flip(-2)  # flip copies: the in-place scan is safe
        return g * F.pad(h[..., :-1, :], (0, 0, 1, 0)), g


def linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve ``h_t = a_t h_{t-1} + b_t`` (``h_{-1} = 0``) along dim -2 of ``a, b`` (..., T, N), in parallel."""
    T = a.shape[-2]
    pad = (1 << (T - 1).bit_length()) - T  # up to a power of 2 with steps (a=1, b=0) at the end
    if pad:
        a, b = F.pad(a, (0, 0, 0, pad), value=1.0), F.pad(b, (0, 0, 0, pad))
    return _LinearScan.apply(a, b)[..., :T, :]


#: Elements of one (batch, inner width, time, state) tensor above which the scan runs in blocks of time, each
#: recomputed in the backward pass when training (2**26 float32 numbers = 256 MiB).
SCAN_BLOCK_ELEMENTS = 2**26


def _scan_block(u, delta, A, B, C, h0, chunk_size: int):
    """The chunked scan over one block of time, from the state ``h0`` (B, Di, N): ``(C . h`` (B, Di, T), last h)."""
    T = u.shape[-1]
    n = -(-T // chunk_size)
    pad = n * chunk_size - T  # padded steps (delta = 0, u = 0: a = 1, b = 0) come last and keep the state
    u, delta, B, C = (F.pad(t, (0, pad)) for t in (u, delta, B, C))
    log_a = delta[..., None] * A[:, None, :]  # (B, Di, T', N) log-decays dt*A <= 0
    b = (delta * u)[..., None] * B.transpose(1, 2)[:, None]  # (B, Di, T', N)
    if h0 is not None:  # h_0 = a_0 h0 + b_0: fold the incoming state into the first step
        b = torch.cat([b[..., :1, :] + torch.exp(log_a[..., :1, :]) * h0[..., None, :], b[..., 1:, :]], dim=-2)
    log_a, b = (t.unflatten(2, (n, chunk_size)) for t in (log_a, b))  # (B, Di, n, chunk, N)
    h = linear_scan(torch.exp(log_a), b)  # within each chunk, starting from h = 0
    decay = torch.exp(log_a.cumsum(-2))  # (B, Di, n, chunk, N) decay from the chunk's start, <= 1
    h_end = linear_scan(decay[..., -1, :], h[..., -1, :])  # (B, Di, n, N) true state at each chunk's end
    h_in = F.pad(h_end[..., :-1, :], (0, 0, 1, 0))  # state entering each chunk
    h = torch.addcmul(h, decay, h_in[..., None, :]).flatten(2, 3)  # (B, Di, T', N)
    return torch.einsum("bdtn,bnt->bdt", h[..., :T, :], C[..., :T]), h_end[..., -1, :]


def selective_scan_chunked(u, delta, A, B, C, D, chunk_size: int = 64, block_len: int | None = None):
    """Same as ``selective_scan_ref``, parallel over time: a scan inside every chunk, then one over the chunks.

    When the (B, Di, T, N) states would exceed ``SCAN_BLOCK_ELEMENTS`` numbers, time is cut into blocks of
    ``block_len`` steps (default: as long as that allows, a multiple of ``chunk_size``), each started from the
    previous block's last state, so that the states of one block exist at a time. When a gradient is needed each
    block is recomputed in the backward pass (``torch.utils.checkpoint``) instead of kept, as Mamba's fused kernel
    recomputes the states instead of storing them.
    """
    Bsz, Di, T = u.shape
    N = A.shape[1]
    if block_len is None:
        fit = SCAN_BLOCK_ELEMENTS // max(1, Bsz * Di * N)
        block_len = T if T <= fit else max(chunk_size, fit // chunk_size * chunk_size)
    elif not isinstance(block_len, int) or block_len <= 0:
        raise ValueError(f"block_len must be a positive int, got {block_len!r}")
    if block_len >= T:
        y, _ = _scan_block(u, delta, A, B, C, None, chunk_size)
    else:
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C))
        ys, h = [], None
        for s in range(0, T, block_len):
            u_s, delta_s, B_s, C_s = (t[..., s : s + block_len] for t in (u, delta, B, C))
            if grad:
                y_s, h = checkpoint(_scan_block, u_s, delta_s, A, B_s, C_s, h, chunk_size, use_reentrant=False)
            else:
                y_s, h = _scan_block(u_s, delta_s, A, B_s, C_s, h, chunk_size)
            ys.append(y_s)
        y = torch.cat(ys, dim=-1)
    return y + D[:, None] * u


class _SelectiveSSM(nn.Module):
    """Mamba's inner path for one direction: causal depthwise conv + SiLU, selective scan with D skip."""

    def __init__(self, d_inner: int, d_state: int, d_conv: int, dt_rank: int):
        super().__init__()
        self.d_state, self.dt_rank = d_state, dt_rank
        self.conv = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner)
        # Mamba's init: dt = softplus(bias) log-uniform in [1e-3, 1e-1] (floor 1e-4), small low-rank weights
        nn.init.uniform_(self.dt_proj.weight, -(dt_rank**-0.5), dt_rank**-0.5)
        dt = torch.exp(torch.rand(d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))

    def _select(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """u (..., Di) -> dt (..., Di), B, C (..., N), A (Di, N), D (Di,) in the compute dtype."""
        real = _compute_dtype(u.dtype)
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt).to(real))
        return dt, B.to(real), C.to(real), -torch.exp(self.A_log.to(real)), self.D.to(real)

    def forward(self, x: torch.Tensor, scan) -> torch.Tensor:
        T = x.shape[1]
        u = F.silu(self.conv(x.transpose(1, 2))[..., :T]).transpose(1, 2)  # (B, T, Di) causal conv
        dt, B, C, A, D = self._select(u)
        with torch.autocast(x.device.type, enabled=False):
            y = scan(u.transpose(1, 2).to(D.dtype), dt.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D)
        return y.transpose(1, 2)  # (B, T, Di)

    def step(self, x_t: torch.Tensor, conv_buf: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x_t (B, Di); conv_buf (B, Di, d_conv - 1) previous inputs; h (B, Di, N)."""
        window = torch.cat([conv_buf, x_t[..., None].to(conv_buf.dtype)], dim=-1)  # (B, Di, d_conv)
        u = F.silu((window * self.conv.weight[:, 0]).sum(-1) + self.conv.bias)  # (B, Di)
        dt, B, C, A, D = self._select(u)
        with torch.autocast(x_t.device.type, enabled=False):
            u = u.to(D.dtype)
            h = torch.exp(dt[..., None] * A) * h + (dt * u)[..., None] * B[:, None, :]
            y = (h * C[:, None, :]).sum(-1) + D * u
        return y, window[..., 1:].clone(), h  # a copy: a view would keep all d_conv inputs alive


class MambaMixer(Mixer):
    """Mamba block without its norm and residual (registry name ``"mamba"``).

    Options: ``d_state=16``, ``expand=2`` (inner width ``expand * d_model``), ``d_conv=4``, ``dt_rank=None``
    (``ceil(d_model / 16)``), ``chunk_size=64`` (fast scan). ``layer_idx`` is accepted and unused.
    Streaming state: a tuple ``(conv_buf (B, Di, d_conv - 1), h (B, Di, d_state))``.
    """

    state_type, state_len = tuple, 2

    def __init__(
        self,
        d_model: int,
        causal: bool = True,
        impl: str = "fast",
        layer_idx: int = 0,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        dt_rank: int | None = None,
        chunk_size: int = 64,
    ):
        super().__init__(d_model, causal, impl)
        for name, value in (("d_state", d_state), ("expand", expand), ("d_conv", d_conv), ("chunk_size", chunk_size)):
            _positive_int(name, value)
        dt_rank = math.ceil(d_model / 16) if dt_rank is None else _positive_int("dt_rank", dt_rank)
        self.layer_idx, self.d_state, self.d_conv, self.chunk_size = layer_idx, d_state, d_conv, chunk_size
        self.d_inner = expand * d_model
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.fwd = _SelectiveSSM(self.d_inner, d_state, d_conv, dt_rank)
        self.bwd = None if causal else _SelectiveSSM(self.d_inner, d_state, d_conv, dt_rank)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def _mix(self, x: torch.Tensor, mask: torch.Tensor | None, scan) -> torch.Tensor:
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # (B, T, Di) each
        y = self.fwd(xs, scan)
        if not self.causal:  # the reversed real tokens of each sequence, then back in order
            y = y + reverse_padded(self.bwd(reverse_padded(xs, mask), scan), mask)
        return self.out_proj((y * F.silu(z.to(y.dtype))).to(x.dtype))

    def forward_fast(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._mix(x, mask, partial(selective_scan_chunked, chunk_size=self.chunk_size))

    def forward_reference(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._mix(x, mask, selective_scan_ref)

    def init_state(self, batch_size: int, device: Any = None, dtype: torch.dtype | None = None) -> Any:
        device, dtype = self._begin_state(batch_size, device, dtype)
        conv_buf = torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device, dtype=dtype)
        h = torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=_compute_dtype(dtype))
        return conv_buf, h

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        self.check_step_input(x_t, state)
        xs, z = self.in_proj(x_t).chunk(2, dim=-1)  # (B, Di) each
        y, conv_buf, h = self.fwd.step(xs, *state)
        return self.out_proj((y * F.silu(z.to(y.dtype))).to(x_t.dtype)), (conv_buf, h)

    def state_size(self, seq_len: int) -> int:
        check_seq_len(seq_len)
        return self.d_inner * (self.d_state + self.d_conv - 1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, d_inner={self.d_inner}, d_state={self.d_state}, d_conv={self.d_conv}"
