"""Recurrent mixers: LSTM and GRU, as a cell written from its equations and as cuDNN ``nn.LSTM``/``nn.GRU``.

An RNN reads the sequence one token at a time and carries a fixed-size state. The LSTM cell
(Hochreiter & Schmidhuber 1997, PyTorch's gate order i, f, g, o)::

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)         candidate cell
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)

The GRU cell (Cho et al. 2014, PyTorch's convention: the reset gate multiplies ``W_hn h + b_hn``)::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)      reset gate
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)      update gate
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

The mixer output is ``y_t = W_out h_t + b_out`` (an output projection back to ``d_model``).

* ``causal=True``: one forward direction with ``hidden_size`` units (default ``d_model``). It streams:
  the state is ``(h, c)`` for the LSTM (``2 * hidden_size`` numbers per sequence) and ``h`` for the
  GRU (``hidden_size``), whatever the sequence length.
* ``causal=False``: bidirectional. A forward and a backward direction with ``hidden_size`` units each
  (default ``d_model // 2``), concatenated and projected back to ``d_model``. With a padding mask the
  backward direction starts at each sequence's last real token (``pack_padded_sequence`` in the fast
  path; the reference freezes the state on padded steps), so padding never changes a real output.

Both implementations use the same parameters (``self.rnn.weight_ih_l0`` etc., ``..._reverse`` for the
backward direction). ``forward_fast`` calls cuDNN on a GPU; ``forward_reference`` loops over time with
``lstm_cell``/``gru_cell``. Outputs at padded positions are ``W_out 0 + b_out`` in both.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .base import Mixer, check_right_padding, check_seq_len, zero_padding


def lstm_cell(x_t, h, c, weight_ih, weight_hh, bias_ih, bias_hh):
    """One LSTM step. x_t (B, D), h and c (B, H), weight_ih (4H, D), weight_hh (4H, H) -> new (h, c)."""
    gates = F.linear(x_t, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=-1)  # each (B, H)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g
    h = o * torch.tanh(c)
    return h, c


def gru_cell(x_t, h, weight_ih, weight_hh, bias_ih, bias_hh):
    """One GRU step. x_t (B, D), h (B, H), weight_ih (3H, D), weight_hh (3H, H) -> new h."""
    x_r, x_z, x_n = F.linear(x_t, weight_ih, bias_ih).chunk(3, dim=-1)  # each (B, H)
    h_r, h_z, h_n = F.linear(h, weight_hh, bias_hh).chunk(3, dim=-1)  # each (B, H)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def mask_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Lengths (B,) on the CPU of a right-padded mask (B, T); raises if a real token follows padding."""
    check_right_padding(mask)  # nothing to do when forward() has checked this mask already
    return mask.sum(dim=1).cpu()


def _recurrence_outside_autocast(device_type: str) -> bool:
    """Whether ``nn.LSTM``/``nn.GRU`` should leave autocast and run in float32 on ``device_type`` now: autocast is
    on and is not float16 on a GPU (the one case where its RNN kernel and the trainer's loss scaling go together)."""
    if not torch.is_autocast_enabled(device_type):
        return False
    return not (device_type == "cuda" and torch.get_autocast_dtype("cuda") == torch.float16)


def run_recurrence(rnn: nn.RNNBase, x):
    """``rnn(x)`` (a tensor or a PackedSequence), outside autocast where ``_recurrence_outside_autocast`` says so:
    in the weights' dtype (see ``_RecurrentMixer._run_rnn``)."""
    if _recurrence_outside_autocast(x.data.device.type):
        with torch.autocast(x.data.device.type, enabled=False):
            return rnn(x.to(rnn.weight_ih_l0.dtype))
    return rnn(x)


class _RecurrentMixer(Mixer):
    """Shared machinery; subclasses set ``rnn_class``, ``state_tensors`` and ``_cell``."""

    rnn_class: type[nn.RNNBase]
    state_tensors: int  # 2 for the LSTM (h, c), 1 for the GRU (h)

    def __init__(
        self, d_model: int, causal: bool = True, impl: str = "fast", layer_idx: int = 0, hidden_size: int | None = None
    ):
        super().__init__(d_model, causal, impl)
        if hidden_size is None:
            hidden_size = d_model if causal else max(1, d_model // 2)
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"hidden_size must be a positive int or None, got {hidden_size!r}")
        self.layer_idx = layer_idx
        self.hidden_size = hidden_size
        self.num_directions = 1 if causal else 2
        self.rnn = self.rnn_class(d_model, hidden_size, num_layers=1, batch_first=True, bidirectional=not causal)
        self.out_proj = nn.Linear(self.num_directions * hidden_size, d_model)

    def _cell(self, x_t: torch.Tensor, state: tuple, params: list) -> tuple:
        raise NotImplementedError

    def _params(self, suffix: str = "") -> list:
        """[weight_ih, weight_hh, bias_ih, bias_hh] of one direction ('' forward, '_reverse' backward)."""
        return [getattr(self.rnn, f"{name}_l0{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def _run_rnn(self, x):
        """The library kernel (cuDNN on a GPU, oneDNN on a CPU) over a tensor or a PackedSequence.

        Under autocast the recurrence runs in the weights' dtype (float32; TF32 matrix products on recent GPUs),
        except under float16 autocast on a GPU (a T4, where the trainer scales the loss). Autocast would otherwise
        pick a kernel the other parts of the model do not use: on a GPU, PyTorch's autocast rule for cuDNN RNNs casts
        to float16 whatever dtype autocast was asked for (and without loss scaling small float16 gradients underflow);
        on a CPU, oneDNN builds no bf16 LSTM/GRU kernel without AVX-512 BF16 ("could not create a primitive
        descriptor").
        """
        return run_recurrence(self.rnn, x)

    # ----------------------------------------------------------------- parallel
    def forward_fast(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        if mask is None:
            out, _ = self._run_rnn(x)  # (B, T, dirs * H)
        else:
            if self.causal:  # right padding: the real outputs never see the padding
                out, _ = self._run_rnn(x)
            else:  # packing makes the backward direction start at each sequence's last real token
                lengths = mask_lengths(mask)
                packed = pack_padded_sequence(x, lengths.clamp(min=1), batch_first=True, enforce_sorted=False)
                out, _ = self._run_rnn(packed)
                out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
            out = zero_padding(out, mask)
        return self.out_proj(out)  # (B, T, D)

    def _scan(self, x: torch.Tensor, mask: torch.Tensor | None, reverse: bool) -> torch.Tensor:
        """Run one direction over time with the cell; returns every h_t, (B, T, H)."""
        B, T, _ = x.shape
        params = self._params("_reverse" if reverse else "")
        state = tuple(x.new_zeros(B, self.hidden_size) for _ in range(self.state_tensors))
        hs = [None] * T
        for t in reversed(range(T)) if reverse else range(T):
            new = self._cell(x[:, t], state, params)
            if mask is not None:  # padded step: keep the state as it was
                m = mask[:, t, None]  # (B, 1)
                new = tuple(torch.where(m, n, s) for n, s in zip(new, state, strict=True))
            state = new
            hs[t] = state[0]
        return torch.stack(hs, dim=1)  # (B, T, H)

    def forward_reference(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self._scan(x, mask, reverse=False)  # (B, T, H)
        if not self.causal:
            out = torch.cat([out, self._scan(x, mask, reverse=True)], dim=-1)  # (B, T, 2H)
        return self.out_proj(zero_padding(out, mask))  # (B, T, D)

    # ---------------------------------------------------------------- streaming
    def _init_state(self, batch_size: int, device: Any, dtype: torch.dtype | None) -> tuple:
        device, dtype = self._begin_state(batch_size, device, dtype)
        return tuple(
            torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype) for _ in range(self.state_tensors)
        )

    def _step(self, x_t: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        for s in state:
            if not isinstance(s, torch.Tensor) or s.shape != (x_t.shape[0], self.hidden_size):
                got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise ValueError(
                    f"state tensors must have shape (batch, hidden_size) = ({x_t.shape[0]}, {self.hidden_size}); "
                    f"got {got}; start from init_state()"
                )
        state = self._cell(x_t, state, self._params())
        return self.out_proj(state[0]), state  # (B, D)

    def state_size(self, seq_len: int) -> int:
        """``state_tensors * hidden_size``, independent of ``seq_len``."""
        check_seq_len(seq_len)
        return self.state_tensors * self.hidden_size

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, hidden_size={self.hidden_size}"


class LSTMMixer(_RecurrentMixer):
    """LSTM mixer (registry name ``"lstm"``). Options: ``hidden_size`` (per direction; None: see module doc).

    Streaming state: a tuple ``(h, c)``, each (B, hidden_size).
    """

    rnn_class = nn.LSTM
    state_tensors = 2
    state_type, state_len = tuple, 2

    def _cell(self, x_t, state, params):
        return lstm_cell(x_t, state[0], state[1], *params)

    def init_state(self, batch_size: int, device: Any = None, dtype: torch.dtype | None = None):
        return self._init_state(batch_size, device, dtype)

    def step(self, x_t: torch.Tensor, state):
        self.check_step_input(x_t, state)
        if len(state) != 2:
            raise ValueError("LSTM state must be a tuple (h, c) as returned by init_state()")
        return self._step(x_t, state)


class GRUMixer(_RecurrentMixer):
    """GRU mixer (registry name ``"gru"``). Options: ``hidden_size`` (per direction; None: see module doc).

    Streaming state: the tensor ``h`` (B, hidden_size).
    """

    rnn_class = nn.GRU
    state_tensors = 1
    state_type = torch.Tensor

    def _cell(self, x_t, state, params):
        return (gru_cell(x_t, state[0], *params),)

    def init_state(self, batch_size: int, device: Any = None, dtype: torch.dtype | None = None):
        return self._init_state(batch_size, device, dtype)[0]

    def step(self, x_t: torch.Tensor, state):
        self.check_step_input(x_t, state)
        y_t, (h,) = self._step(x_t, (state,))
        return y_t, h
