"""Time and peak memory against sequence length, on any device, and the exponent of the growth.

* ``time_fn(fn)``: median (and quartiles) of the wall time of ``fn()`` after warm-up calls. On a GPU the
  time is taken with CUDA events around each call and the GPU is synchronised before reading it;
  on a CPU with ``time.perf_counter``.
* ``peak_memory(fn)``: the peak, during ``fn()``, of the tensor memory allocated *above what was allocated
  when it started* (activations, temporaries, outputs and gradients created by the call; parameters and
  inputs allocated before are excluded). GPU: ``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats``. CPU: the torch profiler's allocation events (``profile_memory=True``)
  summed in time order, which sees torch's CPU tensors only (not Python objects).
* ``sweep(make_fn, lengths)``: one row per length; stops cleanly at the first out-of-memory error
  (recorded as ``status="oom"``) or when one call takes longer than ``max_seconds`` (``"too slow"``).
* ``fit_exponent(lengths, values)``: the slope ``k`` of ``value ~ c * length^k`` by least squares in
  log-log space, using only the longest half of the lengths: at short lengths a GPU's time is dominated by
  fixed launch overheads (a flat line), which would drag the slope towards 0.

Mixer helpers (any module with the mixer contract: ``forward(x)``, ``init_state``, ``step``):
``bench_mixer(make_mixer, lengths, mode=...)`` with mode ``"train"`` (forward + backward),
``"prefill"`` (forward under ``no_grad``) or ``"decode"`` (one ``step`` after a prefix of n tokens; also
records the bytes of the decoding state).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .device import as_device

__all__ = [
    "time_fn",
    "peak_memory",
    "sweep",
    "fit_exponent",
    "fit_power_law",
    "linear_time_verdict",
    "LINEAR_EXPONENT_MAX",
    "TooSlow",
    "tensor_bytes",
    "bench_mixer",
    "train_step_fn",
    "prefill_fn",
    "decode_fn",
]


class TooSlow(RuntimeError):
    """Raised (by a ``make_fn`` or the sweep) when one measurement would exceed the time limit."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], Any], *, warmup: int = 3, repeats: int = 10, device=None) -> dict[str, float]:
    """Time ``fn()``: ``median_ms``, ``q25_ms``, ``q75_ms``, ``iqr_ms``, ``min_ms``, ``mean_ms``, ``repeats``."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    device = as_device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))  # ms
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    q25, med, q75 = np.percentile(times, [25, 50, 75])
    return {
        "median_ms": float(med),
        "q25_ms": float(q25),
        "q75_ms": float(q75),
        "iqr_ms": float(q75 - q25),
        "min_ms": float(min(times)),
        "mean_ms": float(np.mean(times)),
        "repeats": repeats,
    }


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C-level log lines that the profiler prints on start and stop."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory(fn: Callable[[], Any], device=None) -> int | None:
    """Peak bytes of tensor memory allocated by ``fn()`` above the start (see the module docstring).

    None on devices where it cannot be measured (MPS).
    """
    device = as_device(device)
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    if device.type != "cpu":
        return None
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()  # negative for a free
        peak = max(peak, live)
    return int(peak)


#: how an allocation failure reads when it is not a torch.OutOfMemoryError: the CPU allocator, and cuBLAS, cuDNN,
#: cuFFT or a raw CUDA call running out of device memory inside a kernel library
_OOM_MESSAGES = (
    "can't allocate memory",
    "CUDA error: out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUFFT_ALLOC_FAILED",
)


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(e, RuntimeError) and any(m in str(e) for m in _OOM_MESSAGES)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def sweep(
    make_fn: Callable[[int], Any],
    lengths: Sequence[int],
    *,
    mode: str = "call",
    device=None,
    warmup: int = 3,
    repeats: int = 10,
    max_seconds: float | None = None,
    memory: bool = True,
    labels: dict | None = None,
) -> pd.DataFrame:
    """Time (and memory) of ``make_fn(n)()`` for each length ``n``, shortest first.

    ``make_fn(n)`` builds the inputs for length ``n`` (not timed) and returns ``fn`` or ``(fn, extra)``,
    ``extra`` a dict of columns to add to that row. Columns: ``seq_len``, ``mode``, the ``labels``,
    ``status`` ("ok", "oom", "too slow"), ``median_ms`` ... (``time_fn``), ``peak_mem_bytes``, extras.
    The sweep stops after the first length that runs out of memory or whose call takes more than
    ``max_seconds`` (longer lengths would too); fewer repeats are made where a call is slow.
    """
    device = as_device(device)
    lengths = sorted(int(n) for n in lengths)
    rows = []
    for n in lengths:
        row: dict[str, Any] = {"seq_len": n, "mode": mode, **(labels or {}), "status": "ok"}
        try:
            made = make_fn(n)
            fn, extra = made if isinstance(made, tuple) else (made, {})
            row.update(extra)
            probe = _timed_call(fn, device)
            if max_seconds is not None and probe > max_seconds:
                probe = _timed_call(fn, device)  # the first call may include one-off costs (autotuning)
                if probe > max_seconds:
                    raise TooSlow(f"one call took {probe:.1f} s > max_seconds={max_seconds}")
            reps = repeats if max_seconds is None else max(1, min(repeats, int(max_seconds / max(probe, 1e-9))))
            row.update(time_fn(fn, warmup=max(0, min(warmup - 1, reps)), repeats=reps, device=device))
            if memory:
                row["peak_mem_bytes"] = peak_memory(fn, device)
        except TooSlow:
            row["status"] = "too slow"
        except Exception as e:
            if not _is_oom(e):
                raise
            row["status"] = "oom"
        fn = made = None  # drop references to this length's tensors before the next one
        _free(device)
        rows.append(row)
        if row["status"] != "ok":
            break
    return pd.DataFrame(rows)


def _timed_call(fn, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def fit_power_law(lengths, values, *, tail: float = 0.5) -> tuple[float, float]:
    """``(k, c)`` with ``value ~ c * length^k``, least squares in log-log on the longest ``tail`` of the points.

    Points with a missing, non-finite or non-positive value (OOM, too slow) are dropped first;
    at least two points are always used.
    """
    x = np.asarray(lengths, dtype=float)
    y = np.asarray(pd.to_numeric(pd.Series(list(values)), errors="coerce"), dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"lengths and values differ in size: {x.shape} vs {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[ok], y[ok]
    if len(x) < 2 or len(np.unique(x)) < 2:
        raise ValueError(f"need at least two distinct lengths with positive values to fit an exponent, got {len(x)}")
    if not 0 < tail <= 1:
        raise ValueError(f"tail must be in (0, 1], got {tail}")
    order = np.argsort(x)
    keep = order[-max(2, math.ceil(tail * len(x))) :]
    k, log_c = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return float(k), float(math.exp(log_c))


def fit_exponent(lengths, values, *, tail: float = 0.5) -> float:
    """The exponent ``k`` of ``value ~ length^k`` (see ``fit_power_law``): 1 linear, 2 quadratic."""
    return fit_power_law(lengths, values, tail=tail)[0]


#: the largest fitted time exponent still read as linear growth in n (noise and fixed costs included)
LINEAR_EXPONENT_MAX = 1.3


def linear_time_verdict(
    exponents: Mapping[str, float],
    archs: Sequence[str],
    reference: str = "transformer",
    linear_max: float = LINEAR_EXPONENT_MAX,
) -> str:
    """Whether one sweep's fitted time exponents (``fit_exponent``, by architecture) show ``archs`` growing
    linearly in the length. "confirmed": each is at most ``linear_max`` while the same sweep's ``reference``
    (softmax attention, quadratic) is above it, so the sweep can tell the two apart; "inconclusive (softmax
    attention looks linear too)": the reference is not above it; "not confirmed by this run": one of ``archs``
    grows faster; "not measured": an exponent is missing."""
    values = [exponents.get(a) for a in [*archs, reference]]
    if not archs or any(v is None or not math.isfinite(v) for v in values):
        return "not measured"
    if any(exponents[a] > linear_max for a in archs):
        return "not confirmed by this run"
    if exponents[reference] <= linear_max:
        return "inconclusive (softmax attention looks linear too)"
    return "confirmed"


# ----------------------------------------------------------------------------- mixers
def tensor_bytes(obj) -> int:
    """Bytes held by the tensors in ``obj`` (nested tuples, lists, dicts, dataclasses); shared storage once."""
    seen, total, stack = set(), 0, [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, torch.Tensor):
            key = (o.untyped_storage().data_ptr(), o.device)
            if key not in seen:
                seen.add(key)
                total += o.untyped_storage().nbytes()
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif dataclasses.is_dataclass(o) and not isinstance(o, type):
            stack.extend(getattr(o, f.name) for f in dataclasses.fields(o))
    return total


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def train_step_fn(mixer: nn.Module, x: torch.Tensor, amp: torch.dtype | None = None) -> Callable[[], None]:
    """Forward and backward of ``mixer`` on ``x`` (B, T, D). The gradients are freed at the end of every call, so
    each call allocates them afresh and they count in its peak memory (freed at the start instead, the previous
    call's gradients would sit in the baseline that ``peak_memory`` subtracts, and cancel out)."""
    x = x.detach().requires_grad_(True)

    def fn():
        try:
            with _autocast(x.device, amp):
                y = mixer(x)  # (B, T, D)
            y.float().square().mean().backward()
        finally:
            mixer.zero_grad(set_to_none=True)
            x.grad = None

    return fn


def prefill_fn(mixer: nn.Module, x: torch.Tensor, amp: torch.dtype | None = None) -> Callable[[], torch.Tensor]:
    """Inference over the whole prompt: forward under ``no_grad``."""

    def fn():
        with torch.no_grad(), _autocast(x.device, amp):
            return mixer(x)

    return fn


def decode_fn(
    mixer: nn.Module,
    prefix: int,
    batch_size: int,
    *,
    device=None,
    dtype=torch.float32,
    amp: torch.dtype | None = None,
    max_seconds: float | None = None,
):
    """One decoding ``step`` after ``prefix`` tokens: returns ``(fn, extra)``.

    The state is built by stepping through ``prefix`` random tokens (raises ``TooSlow`` when that takes more
    than ``max_seconds``); ``fn`` then steps one token from that same state each call. ``extra`` holds
    ``state_bytes_per_seq`` (measured on the state's tensors) and, where the mixer reports it,
    ``state_numbers_per_seq`` (``mixer.state_size(prefix)``).
    """
    device = as_device(device)
    d = mixer.d_model
    gen = torch.Generator(device="cpu").manual_seed(0)
    t0 = time.perf_counter()
    with torch.no_grad(), _autocast(device, amp):
        state = mixer.init_state(batch_size, device=device, dtype=dtype)
        for i in range(prefix):
            x_t = torch.randn(batch_size, d, generator=gen).to(device=device, dtype=dtype)  # (B, D)
            _, state = mixer.step(x_t, state)
            if max_seconds is not None and i % 64 == 63 and time.perf_counter() - t0 > max_seconds:
                raise TooSlow(f"building the state of {prefix} tokens took more than {max_seconds} s")
    x_t = torch.randn(batch_size, d, generator=gen).to(device=device, dtype=dtype)
    extra = {"state_bytes_per_seq": tensor_bytes(state) / batch_size}
    try:
        extra["state_numbers_per_seq"] = int(mixer.state_size(prefix))
    except NotImplementedError:
        pass

    def fn():
        with torch.no_grad(), _autocast(device, amp):
            return mixer.step(x_t, state)[0]

    return fn, extra


MODES = ("train", "prefill", "decode")


def _amp_dtype(amp: str | torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """``bench_mixer``'s ``amp`` as an autocast dtype (None: no autocast); strings as ``TrainConfig.amp``."""
    from .train import resolve_amp

    if amp is None or isinstance(amp, str):
        return None if amp is None else resolve_amp(amp, device)
    if amp == torch.float32:
        return None
    if amp in (torch.bfloat16, torch.float16):
        return amp
    raise ValueError(
        f"amp must be 'auto', 'bf16', 'fp16', 'fp32', torch.bfloat16, torch.float16, torch.float32 or None, got {amp!r}"
    )


def bench_mixer(
    make_mixer: Callable[[], nn.Module],
    lengths: Sequence[int],
    *,
    mode: str,
    batch_size: int = 1,
    device=None,
    dtype: torch.dtype = torch.float32,
    amp: str | torch.dtype | None = "auto",
    warmup: int = 3,
    repeats: int = 10,
    max_seconds: float | None = None,
    labels: dict | None = None,
) -> pd.DataFrame:
    """``sweep`` a mixer over sequence lengths in one of ``MODES``; adds ``tokens_per_s``.

    ``make_mixer()`` returns a fresh module (moved to ``device`` and ``dtype`` here): a mixer class, or a function
    such as ``lambda: MIXERS["lstm"](d_model=64)``, not a mixer already built. ``amp``: as ``TrainConfig.amp``,
    "auto" (the device's autocast dtype: bf16 on recent GPUs, fp16 on older ones, none on CPU), "bf16", "fp16"
    (CUDA only) or "fp32"; or a dtype (``torch.bfloat16``, ``torch.float16``; ``torch.float32``); None: no autocast.
    ``lengths``: positive sequence lengths (``decode``: prefixes, 0 allowed).
    For ``decode`` the length is the prefix already in the state and ``tokens_per_s`` counts one token
    per sequence per step.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(make_mixer, nn.Module) or not callable(make_mixer):
        got = f"a {type(make_mixer).__name__} " + ("already built" if isinstance(make_mixer, nn.Module) else "")
        raise TypeError(
            f"make_mixer must be a callable returning a fresh mixer, e.g. `lambda: MIXERS['lstm'](d_model=64)` or a "
            f"mixer class, which bench_mixer calls to build the mixer on its device and dtype; got {got.strip()}"
        )
    shortest = 0 if mode == "decode" else 1
    lengths = list(lengths)
    bad = [n for n in lengths if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < shortest]
    if not lengths or bad:
        raise ValueError(
            f"lengths must be one or more whole numbers >= {shortest} (mode {mode!r}), got {lengths!r}"
            + (f": {bad!r} are not" if bad else "")
        )
    from .train import available_device

    device = available_device(device)
    amp_dtype = _amp_dtype(amp, device)
    mixer = make_mixer()
    if not isinstance(mixer, nn.Module):
        raise TypeError(f"make_mixer() must return a mixer (an nn.Module), got {type(mixer).__name__}")
    mixer = mixer.to(device=device, dtype=dtype)
    mixer.train(mode == "train")

    def make_fn(n: int):
        if mode == "decode":
            return decode_fn(mixer, n, batch_size, device=device, dtype=dtype, amp=amp_dtype, max_seconds=max_seconds)
        x = torch.randn(batch_size, n, mixer.d_model, device=device, dtype=dtype)  # (B, T, D)
        return (train_step_fn if mode == "train" else prefill_fn)(mixer, x, amp_dtype)

    df = sweep(
        make_fn,
        lengths,
        mode=mode,
        device=device,
        warmup=warmup,
        repeats=repeats,
        max_seconds=max_seconds,
        labels=labels,
    )
    if "median_ms" in df:
        per_call = batch_size if mode == "decode" else batch_size * df["seq_len"]
        df["tokens_per_s"] = per_call / (df["median_ms"] / 1e3)
    return df
