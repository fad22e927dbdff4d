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

Bad input gets a clear error, the same for every mixer: ``forward`` checks ``x`` and the mask with
``check_sequence`` (rank, dtype, emptiness, a right-padded bool mask), ``step`` checks ``x_t`` and the state with
``check_step_input``, ``init_state`` its ``batch_size`` and ``state_size`` its ``seq_len``.
"""

from __future__ import annotations

import numbers
import weakref
from typing import Any

import torch
from torch import nn

IMPLS = ("fast", "reference")


class StreamingNotSupported(RuntimeError):
    """Raised by ``step``/``init_state`` on a mixer that cannot decode token by token."""


#: the one message for a padding mask that is not right-padded, whichever mixer or model receives it
RIGHT_PADDED_MESSAGE = (
    "mask must be right-padded: in each row True (real tokens) first, then only False (padding on the right); "
    "got a False before a True (left padding or a hole); move the padding to the end of each sequence"
)

# The last GPU mask found right-padded, as (weak reference, version counter then): the blocks of a model receive
# the same mask tensor, so the first one checks it (one host-device sync) and the others find it here. An in-place
# change of the mask (or of a view of it) bumps its version, so a changed mask is checked again; writes that bypass
# the counter (through ``.data`` or the storage) are not seen. An inference tensor has no counter and is known by
# identity. CPU masks are checked every time: there a check costs no sync, and numpy views write unseen.
_last_right_padded: tuple[weakref.ref, int | None] | None = None


def _cacheable(mask: torch.Tensor) -> bool:
    """Whether a check of ``mask`` is remembered: on a GPU, not on the CPU (see ``_last_right_padded``)."""
    return mask.device.type != "cpu"


def _version(t: torch.Tensor) -> int | None:
    return None if t.is_inference() else t._version  # inference tensors have no version counter


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1; raises ``ValueError`` for anything else (bools included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_batch_size(batch_size: Any) -> int:
    """The ``batch_size`` of ``init_state``: an int >= 1."""
    return check_positive_int("batch_size", batch_size)


def check_seq_len(seq_len: Any) -> int:
    """The ``seq_len`` of ``state_size``: an int >= 0 (tokens seen so far)."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, numbers.Integral) or seq_len < 0:
        raise ValueError(f"seq_len must be a non-negative int (tokens decoded so far), got {seq_len!r}")
    return int(seq_len)


def check_right_padding(mask: torch.Tensor, *, nonempty: bool = False) -> None:
    """Raise ``ValueError`` unless every row of the bool ``mask`` (B, T) is real tokens first, then padding only.

    ``nonempty=True`` also requires at least one real token per row. At most one host-device sync; nothing is
    checked while ``torch.compile`` traces (as ``check_tokens``), and a mask already found right-padded (the same
    tensor, unchanged) is not checked again.
    """
    global _last_right_padded
    if torch.compiler.is_compiling() or mask.numel() == 0:
        return
    cache = _cacheable(mask)
    known = _last_right_padded
    if cache and not nonempty and known is not None and known[0]() is mask and known[1] == _version(mask):
        return
    lengths = mask.sum(dim=1, keepdim=True)  # (B, 1)
    prefix = torch.arange(mask.shape[1], device=mask.device) < lengths  # (B, T): the right-padded mask of lengths
    if nonempty:
        right, filled = torch.stack([(mask == prefix).all(), (lengths > 0).all()]).tolist()  # one wait, not two
    else:
        right, filled = bool((mask == prefix).all()), True
    if not right:
        raise ValueError(RIGHT_PADDED_MESSAGE)
    if not filled:
        raise ValueError("every sequence needs at least one real token: a row of the mask is all False")
    if cache:  # an inference tensor has no version counter: it is known by identity alone
        _last_right_padded = (weakref.ref(mask), _version(mask))


def check_same_dtype(x: torch.Tensor, dtype: torch.dtype | None, what: str = "input") -> None:
    """Outside autocast a floating-point input must have the parameters' ``dtype`` (None: no check).

    Under ``torch.autocast`` (for ``x``'s device type) bf16/fp16 activations on float32 weights are legitimate.
    """
    if dtype is None or x.dtype == dtype or torch.compiler.is_compiling() or torch.is_autocast_enabled(x.device.type):
        return
    raise TypeError(
        f"{what} has dtype {x.dtype} but the parameters are {dtype}: call model.to({x.dtype}) or cast the input "
        f"(x.to({dtype})); mixed dtypes are only for torch.autocast"
    )


def check_sequence(
    x: torch.Tensor, d_model: int, mask: torch.Tensor | None = None, dtype: torch.dtype | None = None
) -> None:
    """Validate a mixer input ``x`` (B, T, D) and an optional padding ``mask`` (B, T).

    ``x`` must be floating point with ``B >= 1`` and ``T >= 1``, and (given ``dtype``, outside autocast) of the
    parameters' dtype; ``mask`` a bool (B, T) tensor, True = real token, right-padded.
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
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"empty input of shape {tuple(x.shape)}: a mixer needs at least one sequence (batch >= 1) "
            "and at least one token (time >= 1)"
        )
    check_same_dtype(x, dtype)
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = f"dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise TypeError(
                f"mask must be a torch.bool tensor of shape (batch, time), True = real token; got {got} "
                "(for a 0/1 tensor: mask.bool())"
            )
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected (batch, time) = {tuple(x.shape[:2])}")
        check_right_padding(mask)


def _state_tensors(state: Any):
    """The tensors of a (nested) streaming state: a tensor, or tuples, lists and dicts of them."""
    if isinstance(state, torch.Tensor):
        yield state
    elif isinstance(state, (tuple, list)):
        for s in state:
            yield from _state_tensors(s)
    elif isinstance(state, dict):
        for s in state.values():
            yield from _state_tensors(s)


_NO_STATE = object()


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
    def check_input(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """``check_sequence`` for this mixer: its ``d_model`` and its parameters' dtype."""
        check_sequence(x, self.d_model, mask, self._param_dtype())

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        self.check_input(x, mask)
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

    def check_step_input(self, x_t: torch.Tensor, state: Any = _NO_STATE) -> None:
        """Validate one decoding step: a causal mixer that streams, ``x_t`` (B, D) floating point in the parameters'
        dtype (outside autocast) and, when given, a ``state`` from ``init_state``/``step`` for the same batch."""
        self._check_can_step()
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[-1] != self.d_model:
            shape = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
            raise ValueError(f"step expects one token per sequence, shape (batch, {self.d_model}); got {shape}")
        if not x_t.is_floating_point():
            raise TypeError(
                f"step expects a floating-point x_t (embeddings), got dtype {x_t.dtype}; token ids go through "
                "the step of a model built with build_model(), not a bare mixer"
            )
        if x_t.shape[0] == 0:
            raise ValueError(f"step needs at least one sequence (batch >= 1), got shape {tuple(x_t.shape)}")
        check_same_dtype(x_t, self._param_dtype(), "x_t")
        if state is not _NO_STATE:
            self.check_state(state, x_t.shape[0])

    #: what ``init_state`` returns, checked by ``check_state``: its type (None: not checked), the keys of a dict
    #: state and the length of a tuple state
    state_type: type | None = None
    state_keys: tuple[str, ...] = ()
    state_len: int | None = None

    def check_state(self, state: Any, batch_size: int) -> None:
        """``state`` must be what ``init_state``/``step`` returned, for ``batch_size`` sequences."""
        name = type(self).__name__
        if state is None:
            raise ValueError(
                f"{name}.step got state=None: pass the state returned by init_state() or the previous step()"
            )
        if self.state_type is not None and not isinstance(state, self.state_type):
            raise ValueError(
                f"{name} state must be a {self.state_type.__name__} as returned by init_state() or the previous "
                f"step(), got {type(state).__name__}"
            )
        missing = [k for k in self.state_keys if k not in state] if isinstance(state, dict) else []
        if missing or (isinstance(state, tuple) and self.state_len not in (None, len(state))):
            got = f"a dict with keys {sorted(state)}" if isinstance(state, dict) else f"a tuple of {len(state)}"
            raise ValueError(
                f"{name} state is not one from init_state() or step(): got {got}; pass the state returned by "
                "init_state() or the previous step()"
            )
        t = next(_state_tensors(state), None)  # one tensor says it: a state is built for one batch size throughout
        if t is not None:
            if t.dim() == 0 or t.shape[0] != batch_size:
                raise ValueError(
                    f"state is for batch size {t.shape[0] if t.dim() else '?'} (a state tensor has shape "
                    f"{tuple(t.shape)}), got x_t with batch {batch_size}; start from init_state({batch_size})"
                )

    def _begin_state(self, batch_size: int, device: Any, dtype: torch.dtype | None) -> tuple[Any, torch.dtype]:
        """What every ``init_state`` starts with: a mixer that streams, ``batch_size >= 1``, device and dtype."""
        self._check_can_step()
        check_batch_size(batch_size)
        return self._device_dtype(device, dtype)

    def state_size(self, seq_len: int) -> int:
        """Numbers held per sequence while decoding after ``seq_len`` tokens (KV cache, hidden state, buffer)."""
        raise NotImplementedError

    def _param_like(self) -> torch.Tensor | None:
        """A parameter of this mixer (its device and dtype), None for a mixer without parameters; found without
        ``parameters()``'s generator machinery, since ``step`` asks for it at every token."""
        stack = [self]
        while stack:
            module = stack.pop()
            for p in module._parameters.values():
                if p is not None:
                    return p
            stack.extend(reversed(module._modules.values()))
        return None

    def _param_dtype(self) -> torch.dtype | None:
        p = self._param_like()
        return None if p is None else p.dtype

    def _device_dtype(self, device: Any, dtype: torch.dtype | None) -> tuple[Any, torch.dtype]:
        p = self._param_like()
        if p is None and (device is None or dtype is None):
            raise ValueError(f"{type(self).__name__} has no parameters to take them from: pass device and dtype")
        return (device if device is not None else p.device), (dtype if dtype is not None else p.dtype)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, causal={self.causal}, impl={self.impl!r}"


def zero_padding(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded positions of ``x`` (B, T, D); identity when ``mask`` is None."""
    if mask is None:
        return x
    return x * mask.unsqueeze(-1).to(x.dtype)
