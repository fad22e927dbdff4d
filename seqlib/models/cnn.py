"""Convolutions over time: a causal dilated CNN mixer (WaveNet/TCN style) and Kim's (2014) CNN classifier.

``CNNMixer`` is one gated, dilated 1-D convolution layer followed by an output projection::

    u_t = b + sum_{j=0}^{k-1} W_j x_{t + j*d - left}        W_j: (2D, D) the j-th kernel tap, u_t: (2D,)
    a_t, g_t = split(u_t)                                     (D,) each
    y_t = W_out (a_t * sigmoid(g_t)) + b_out                  GLU activation, then a (D, D) projection

with kernel size ``k``, dilation ``d`` and ``left = (k-1)*d`` for ``causal=True`` (y_t sees x_{t-(k-1)d..t})
or ``left = (k-1)*d // 2`` for ``causal=False`` (a centred, "same"-length window). Inputs outside the
sequence are zeros. With ``dilation=None`` the dilation is ``2 ** (layer_idx % dilation_cycle)``, so a
stack built with ``layer_idx = 0..L-1`` doubles its reach every layer:

    receptive_field(k, [d_1, ..., d_L]) = 1 + sum_l (k - 1) * d_l      (k=3, d=1,2,4,...: 2^(L+1) - 1)

``forward_fast`` is one ``F.conv1d`` (cuDNN on a GPU); ``forward_reference`` writes the same
convolution as a sum over kernel taps of shifted inputs times weight slices. With a padding mask the
padded inputs are zeroed first, so they look exactly like the zeros beyond the end of the sequence.

Streaming keeps the last ``(k-1)*d`` inputs in a rolling buffer: ``state_size = (k-1)*d*D`` numbers per
sequence, whatever the sequence length (a convolution only needs its receptive field).

``KimCNN`` (and ``CNNModel``, the outline's class with its output size fixed) embeds tokens, runs parallel
convolutions of several widths, takes a mask-aware max over time and classifies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import RIGHT_PADDED_MESSAGE, Mixer, check_seq_len, zero_padding


def receptive_field(kernel_size: int, dilations: Iterable[int]) -> int:
    """Number of inputs one output of a stack of convolutions sees: ``1 + sum((kernel_size - 1) * d)``."""
    if not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
    dilations = list(dilations)
    if any(not isinstance(d, int) or d < 1 for d in dilations):
        raise ValueError(f"dilations must be positive ints, got {dilations!r}")
    return 1 + sum((kernel_size - 1) * d for d in dilations)


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class CNNMixer(Mixer):
    """Gated dilated convolution mixer (registry name ``"cnn"``).

    Options: ``kernel_size=3``; ``dilation=None`` (``2 ** (layer_idx % dilation_cycle)``); ``dilation_cycle=8``.
    Streaming state: a tensor (B, (kernel_size-1)*dilation, D) holding the last inputs.
    """

    state_type = torch.Tensor

    def __init__(
        self,
        d_model: int,
        causal: bool = True,
        impl: str = "fast",
        layer_idx: int = 0,
        kernel_size: int = 3,
        dilation: int | None = None,
        dilation_cycle: int = 8,
    ):
        super().__init__(d_model, causal, impl)
        if not isinstance(layer_idx, int) or layer_idx < 0:
            raise ValueError(f"layer_idx must be a non-negative int, got {layer_idx!r}")
        self.layer_idx = layer_idx
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        self.dilation_cycle = _positive_int("dilation_cycle", dilation_cycle)
        if dilation is None:
            dilation = 2 ** (layer_idx % dilation_cycle)
        self.dilation = _positive_int("dilation", dilation)
        span = (self.kernel_size - 1) * self.dilation  # inputs seen besides the current one
        self.pad_left = span if causal else span // 2
        self.pad_right = span - self.pad_left
        self.conv = nn.Conv1d(d_model, 2 * d_model, self.kernel_size, dilation=self.dilation)  # weight (2D, D, k)
        self.out_proj = nn.Linear(d_model, d_model)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.kernel_size, [self.dilation])

    def _glu_out(self, u: torch.Tensor) -> torch.Tensor:
        a, g = u.chunk(2, dim=-1)  # (..., D) each
        return self.out_proj(a * torch.sigmoid(g))

    # ----------------------------------------------------------------- parallel
    def forward_fast(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = zero_padding(x, mask).transpose(1, 2)  # (B, D, T)
        x = F.pad(x, (self.pad_left, self.pad_right))  # (B, D, T + span)
        u = self.conv(x).transpose(1, 2)  # (B, T, 2D)
        return self._glu_out(u)  # (B, T, D)

    def forward_reference(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        T = x.shape[1]
        x = zero_padding(x, mask)
        xp = F.pad(x, (0, 0, self.pad_left, self.pad_right))  # (B, T + span, D), zeros outside the sequence
        u = self.conv.bias  # (2D,)
        for j in range(self.kernel_size):
            shifted = xp[:, j * self.dilation : j * self.dilation + T]  # (B, T, D): x_{t + j*d - left}
            u = u + shifted @ self.conv.weight[:, :, j].T  # (B, T, 2D)
        return self._glu_out(u)  # (B, T, D)

    # ---------------------------------------------------------------- streaming
    def init_state(self, batch_size: int, device: Any = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        device, dtype = self._begin_state(batch_size, device, dtype)
        span = (self.kernel_size - 1) * self.dilation
        return torch.zeros(batch_size, span, self.d_model, device=device, dtype=dtype)  # (B, span, D)

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_step_input(x_t, state)
        span = (self.kernel_size - 1) * self.dilation
        if state.shape != (x_t.shape[0], span, self.d_model):
            got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
            raise ValueError(f"state must have shape ({x_t.shape[0]}, {span}, {self.d_model}); got {got}")
        window = torch.cat([state, x_t[:, None].to(state.dtype)], dim=1)  # (B, span + 1, D), oldest first
        taps = window[:, :: self.dilation]  # (B, k, D): x_{t-(k-1)d}, ..., x_{t-d}, x_t
        u = self.conv.bias + torch.einsum("bkd,edk->be", taps, self.conv.weight)  # (B, 2D)
        return self._glu_out(u), window[:, 1:].clone()  # a copy: a view would keep all span + 1 rows alive

    def state_size(self, seq_len: int) -> int:
        """``(kernel_size - 1) * dilation * d_model``, independent of ``seq_len``."""
        check_seq_len(seq_len)
        return (self.kernel_size - 1) * self.dilation * self.d_model

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}, dilation={self.dilation}"


class KimCNN(nn.Module):
    """Kim (2014) sentence classifier: embed, parallel convolutions, ReLU, max over time, dropout, linear.

    ``forward(tokens, mask=None)``: tokens (B, T) int64 in ``[0, vocab_size)``, mask (B, T) bool
    (True = real token; padding on the right) -> logits (B, num_classes). Each convolution of width k
    uses zero padding ``k // 2`` on both sides (as in the outline). Mask-aware pooling: padded embeddings
    are zeroed (a window that reaches past the end sees zeros, exactly as for the unpadded sequence) and
    conv outputs that would not exist for the unpadded sequence are set to -inf before the max, so the
    logits do not depend on the padding. Every sequence needs at least one real token.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        num_filters: int,
        kernel_sizes: Sequence[int],
        num_classes: int = 2,
        dropout: float = 0.5,
        padding_idx: int | None = 0,
    ):
        super().__init__()
        self.vocab_size = _positive_int("vocab_size", vocab_size)
        _positive_int("embed_dim", embed_dim)
        _positive_int("num_filters", num_filters)
        kernel_sizes = list(kernel_sizes)
        if not kernel_sizes:
            raise ValueError("kernel_sizes must hold at least one kernel width")
        for k in kernel_sizes:
            _positive_int("every kernel size", k)
        _positive_int("num_classes", num_classes)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if padding_idx is not None and not 0 <= padding_idx < vocab_size:
            raise ValueError(f"padding_idx must be None or in [0, {vocab_size}), got {padding_idx!r}")
        self.kernel_sizes = kernel_sizes
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.convs = nn.ModuleList([nn.Conv1d(embed_dim, num_filters, k, padding=k // 2) for k in kernel_sizes])
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_filters * len(kernel_sizes), num_classes)

    def _check_tokens(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype != torch.int64:
            if isinstance(tokens, torch.Tensor):
                got = f"a {tokens.dtype} tensor of shape {tuple(tokens.shape)}"
            else:
                got = type(tokens).__name__
            raise ValueError(f"tokens must be an int64 (torch.long) tensor of shape (batch, time), got {got}")
        if tokens.shape[0] == 0 or tokens.shape[1] == 0:
            raise ValueError(f"tokens must hold at least one sequence and one time step, got {tuple(tokens.shape)}")
        lo, hi = torch.stack(torch.aminmax(tokens)).tolist()
        if lo < 0 or hi >= self.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got values in [{lo}, {hi}]")
        if mask is not None:
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != tokens.shape:
                raise ValueError(f"mask must be a bool tensor of shape {tuple(tokens.shape)}, True = real token")
            if not bool(mask[:, 0].all()):
                raise ValueError("every sequence needs at least one real token (a mask row starts with False)")
            positions = torch.arange(mask.shape[1], device=mask.device)
            if not torch.equal(positions[None, :] < mask.sum(dim=1, keepdim=True), mask):
                raise ValueError(RIGHT_PADDED_MESSAGE)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        self._check_tokens(tokens, mask)
        B, T = tokens.shape
        x = zero_padding(self.embed(tokens), mask).transpose(1, 2)  # (B, E, T)
        lengths = mask.sum(dim=1) if mask is not None else torch.full((B,), T, device=tokens.device)  # (B,)
        pooled = []
        for k, conv in zip(self.kernel_sizes, self.convs, strict=True):
            c = F.relu(conv(x))  # (B, F, T + 2*(k//2) - k + 1)
            n_valid = lengths + 2 * (k // 2) - k + 1  # outputs the unpadded sequence would have, (B,)
            valid = torch.arange(c.shape[2], device=c.device)[None, :] < n_valid[:, None]  # (B, T')
            c = c.masked_fill(~valid[:, None, :], float("-inf"))
            pooled.append(c.amax(dim=2))  # (B, F)
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))  # (B, num_classes)


class CNNModel(KimCNN):
    """The outline's ``CNNModel(vocab_size, embed_dim, num_filters, kernel_sizes)``, fixed.

    The outline's version ends in ``nn.Linear(num_filters * len(kernel_sizes), vocab_size)``, but it
    max-pools over time, so it makes one prediction per sequence: it is a classifier and its output size
    must be the number of classes. This version takes ``num_classes`` (default 2), and adds what the
    outline's lacks: dropout before the classifier (as in Kim 2014), a padding mask that keeps padded
    positions out of the convolutions and the max, and input validation. Same constructor order.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        num_filters: int,
        kernel_sizes: Sequence[int],
        num_classes: int = 2,
        dropout: float = 0.5,
        padding_idx: int | None = 0,
    ):
        super().__init__(vocab_size, embed_dim, num_filters, kernel_sizes, num_classes, dropout, padding_idx)
