"""The mixer contract shared by every architecture in the book.

A *mixer* maps a sequence to a sequence of the same shape: ``(B, T, D) -> (B, T, D)``.
Everything else (embeddings, the MLP between mixers, norms, task heads) is shared,
so any mixer fits any task head.

Every mixer has two implementations of the same computation:

* ``forward_fast``: what trains (cuDNN, SDPA, FFT convolution, chunked scans, ...).
* ``forward_reference``: the didactic version written from the equations.

``impl="fast"`` (default) or ``impl="reference"`` picks the one ``forward`` uses, and the
tests check the two agree, outputs and gradients. A causal mixer that streams also has
``init_state`` / ``step``, and stepping through a sequence equals the parallel forward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

IMPLS = ("fast", "reference")


class StreamingNotSupported(RuntimeError):
    """Raised by ``step``/``init_state`` on a mixer that cannot decode token by token."""


def check_sequence(x: torch.Tensor, d_model: int, mask: torch.Tensor | None = None) -> None:
    """Validate a mixer input ``x`` (B, T, D) and an optional padding ``mask`` (B, T).

    Raises ``ValueError``/``TypeError`` with a message that says what was expected.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of shape (batch, time, {d_model}), got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(
            f"expected input of shape (batch, time, {d_model}), got a tensor of rank {x.dim()} "
            f"with shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"expected a floating-point input (embeddings), got dtype {x.dtype}; "
            "token ids go through a model built with build_model(), not a bare mixer"
        )
    if x.shape[-1] != d_model:
        raise ValueError(f"expected last dimension d_model={d_model}, got shape {tuple(x.shape)}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError("mask must be a torch.bool tensor of shape (batch, time), True = real token")
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected (batch, time) = {tuple(x.shape[:2])}")


class Mixer(nn.Module):
    """Base class: validates input, dispatches to the fast or reference implementation.

    Subclasses implement ``forward_fast`` and ``forward_reference`` (both ``(x, mask) -> y``),
    and, when they stream, ``init_state``, ``step`` and ``state_size``.
    """

    supports_step: bool = True
    #: whether the mixer has a bidirectional form (``causal=False``)
    supports_bidirectional: bool = True

    def __init__(self, d_model: int, causal: bool = True, impl: str = "fast"):
        super().__init__()
        if not isinstance(d_model, int) or d_model <= 0:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        if not causal and not self.supports_bidirectional:
            raise ValueError(f"{type(self).__name__} has no bidirectional form; use causal=True")
        self.d_model = d_model
        self.causal = causal
        self.impl = impl

    # ----------------------------------------------------------------- parallel
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        check_sequence(x, self.d_model, mask)
        if self.impl == "reference":
            return self.forward_reference(x, mask)
        return self.forward_fast(x, mask)

    def forward_fast(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def forward_reference(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    # ---------------------------------------------------------------- streaming
    def _check_can_step(self) -> None:
        if not self.supports_step:
            raise StreamingNotSupported(f"{type(self).__name__} cannot decode token by token (supports_step=False)")
        if not self.causal:
            raise StreamingNotSupported(
                f"{type(self).__name__} was built with causal=False; only a causal mixer can step"
            )

    def init_state(self, batch_size: int, device: Any = None, dtype: torch.dtype | None = None) -> Any:
        """The state before the first token; ``device``/``dtype`` default to the parameters'."""
        self._check_can_step()
        raise NotImplementedError

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One token: ``x_t`` (B, D) -> ``y_t`` (B, D) and the new state."""
        self._check_can_step()
        raise NotImplementedError

    def check_step_input(self, x_t: torch.Tensor) -> None:
        self._check_can_step()
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[-1] != self.d_model:
            shape = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
            raise ValueError(f"step expects one token per sequence, shape (batch, {self.d_model}); got {shape}")

    def state_size(self, seq_len: int) -> int:
        """Numbers held per sequence while decoding after ``seq_len`` tokens (KV cache, hidden state, buffer)."""
        raise NotImplementedError

    def _param_like(self) -> torch.Tensor:
        return next(self.parameters())

    def _device_dtype(self, device: Any, dtype: torch.dtype | None) -> tuple[Any, torch.dtype]:
        p = self._param_like()
        return (device if device is not None else p.device), (dtype if dtype is not None else p.dtype)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, causal={self.causal}, impl={self.impl!r}"


def zero_padding(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded positions of ``x`` (B, T, D); identity when ``mask`` is None."""
    if mask is None:
        return x
    return x * mask.unsqueeze(-1).to(x.dtype)
