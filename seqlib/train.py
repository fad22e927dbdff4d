"""One training loop for every task of the book: language models, classifiers, translation, synthetic tasks.

The loop knows nothing about the task. The caller gives

* ``batches``: either a function ``get_batch(generator) -> batch`` (random sampling; the trainer owns the
  CPU ``torch.Generator``, seeds it from ``config.seed`` and checkpoints it) or an iterable of batches
  (a list, a DataLoader; re-iterated at the end of an epoch when it can be, else training stops there);
* ``loss_fn(model, batch) -> (loss, n_tokens)`` or ``(loss, n_tokens, metrics)``: ``loss`` is the mean loss
  of the batch, ``n_tokens`` the tokens it processed (throughput, and the weight of the batch in ``val_loss``),
  ``metrics`` a dict ``name -> (sum, count)`` summed exactly over the evaluation batches into ``val_<name>``;
  a ``"loss"`` metric, when present, replaces the token-weighted ``val_loss`` (classification: per example).

Ready-made losses: ``lm_loss`` (tokens -> logits, targets -100 ignored), ``classify_loss``,
``seq2seq_loss`` and ``regression_loss``. The three cross-entropy losses check their targets before the model's
forward, with one wait for the GPU per batch (as the models' token check), since on a GPU an id out of range would
be a device-side assert rather than an error: integer ids (other integer dtypes than int64 are converted to it; a
float target is a ``TypeError``), in ``[0, V)`` where ``V`` is the size of the logits' last dimension (or -100, not
scored, for token targets), and at least one scored target per batch. The check is skipped while
``torch.compile`` traces the loss.

Optimisation (as in nanoGPT): AdamW with weight decay on matrices only (``p.dim() >= 2``: linear and
embedding weights; not biases or norm gains), gradient clipping, linear warmup then cosine decay:

    lr(step) = lr * (step + 1) / (warmup + 1)                                  while step < warmup
    lr(step) = min_lr + (lr - min_lr) * (1 + cos(pi * d)) / 2,  d = (p - p_w) / (1 - p_w)   afterwards

where ``p`` in [0, 1] is the fraction of the budget used, ``max(step / max_steps, seconds / max_seconds)``,
and ``p_w`` its value when warmup ended. With a budget in seconds the schedule thus follows the clock, and a
run ends with ``lr = min_lr`` on any GPU. Seconds count training only (batches, forward, backward, update);
evaluation and checkpointing are excluded, so evaluating more often does not shorten training.
On a GPU the clock is read without waiting for the GPU at every step (that would slow training down); the
wait at each history row is added to it, so a budget overshoots by at most the work queued since that row.
A warmup of ``max_steps`` steps or more would end the run before the peak learning rate: it is cut to
``max_steps // 2`` (with a warning where ``warmup_steps`` asked for that many steps). A smoke profile's few warmup
steps with ``max_steps`` overridden to 1 or 2 (a quick test) is such a case, hence a cut rather than an error.

Divergence is looked for at each history row, where the loss is read anyway: a training loss or mean gradient
norm that is not finite raises ``FloatingPointError``, or with ``on_divergence="stop"`` (every experiment of the
book) ends the run with the weights of the last finite row, ``stopped_by`` "diverged" and a warning, so that
one diverged model of a sweep costs its own result and not the sweep's.

Checkpoints (``config.checkpoint_path``, every ``checkpoint_every`` steps and at the end) hold the model,
optimizer, grad scaler, step, clock, RNG states (torch, CUDA, Python, NumPy, the batch generator) and the
history; a run started again with the same config resumes from it. On a CPU a resumed run ends with exactly
the weights of an uninterrupted one (for an iterable the trainer skips the batches already used, which
reproduces them when the iterable is deterministic). Checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .device import as_device, autocast_dtype, device_name, peak_flops

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "train",
    "set_seed",
    "learning_rate",
    "peak_flops",
    "lm_loss",
    "classify_loss",
    "seq2seq_loss",
    "regression_loss",
    "gpt2_mfu_benchmark",
    "resolve_amp",
    "available_device",
    "IGNORE_INDEX",
]

AMP_MODES = ("auto", "bf16", "fp16", "fp32")
# Config fields a resumed run must share with the checkpoint (they change the trajectory).
_LOG_KEYS = ("step", "time", "lr", "train_loss", "tokens_per_s", "grad_norm")
_TRAJECTORY_FIELDS = ("lr", "min_lr", "warmup_steps", "weight_decay", "betas", "grad_clip", "amp", "seed")


@dataclass
class TrainConfig:
    max_steps: int | None = None  # budget in optimizer steps ...
    max_seconds: float | None = None  # ... and/or in seconds of training; the first reached ends the run
    lr: float = 3e-4  # peak learning rate, reached at the end of warmup
    min_lr: float | None = None  # end of the cosine; None: lr / 10 (nanoGPT, Chinchilla)
    warmup_steps: int | float | None = None  # int: steps; float in (0, 1): fraction of max_steps; None: 5% of
    # max_steps (at least 1), or 100 steps with a budget in seconds only; never max_steps or more: a warmup that
    # long is cut to max_steps // 2 (``warmup``), so that the run reaches its peak learning rate
    weight_decay: float = 0.1  # AdamW decoupled decay, on weights with dim >= 2 only
    betas: tuple[float, float] = (0.9, 0.95)  # beta2 = 0.95 rather than 0.999: steadier for transformers (GPT-3)
    grad_clip: float | None = 1.0  # max global gradient norm; None: no clipping
    eval_every: int | None = None  # evaluate every N steps and at the end; None: only at the end
    eval_batches: int = 20  # batches per evaluation (the same batches every time)
    log_every: int = 10  # a history row every N steps; each row waits for the GPU once
    amp: str = "auto"  # auto: bf16 autocast where the GPU has bf16, fp16 + GradScaler on older GPUs, fp32 on CPU
    compile: bool = False  # torch.compile the model (first steps are slow while it compiles)
    # one untimed forward and backward on the first batch of each run() (a resumed run too: a new process pays
    # again), outside the budget's clock and the tokens/s: on a GPU the first step also pays one-off costs (library
    # handles, kernels loaded on first use, compilation) that would eat a budget of a few seconds unevenly across
    # architectures. No update is made and the random state is restored, so the trajectory is unchanged. None: on
    # CUDA only. Its time, summed over a run and its resumptions: startup_seconds
    startup_step: bool | None = None
    checkpoint_path: str | None = None  # where to save and resume from
    checkpoint_every: int | None = None  # steps between checkpoints; None: only at the end
    resume: bool = True  # resume from checkpoint_path when it exists
    seed: int = 0  # seeds torch, CUDA, Python, NumPy and the batch generator at the start of a fresh run
    progress: bool = True  # tqdm progress bar
    # a training loss or gradient norm that stops being a number (fp32 / bf16): "raise" a FloatingPointError, or
    # "stop" the run there, with the weights of its last finite log row (``stopped_by`` "diverged"), so that a
    # sweep over architectures keeps its other runs; under fp16 the gradient scaler skips such steps instead
    on_divergence: str = "raise"

    def __post_init__(self):
        if self.max_steps is None and self.max_seconds is None:
            raise ValueError("TrainConfig needs a budget: max_steps (optimizer steps) and/or max_seconds")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps <= 0):
            raise ValueError(f"max_steps must be a positive int, got {self.max_steps!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr!r}")
        w = self.warmup_steps
        if isinstance(w, float) and not (0 < w < 1 and self.max_steps is not None):
            raise ValueError(
                f"a float warmup_steps is a fraction of max_steps: needs 0 < it < 1 and max_steps, got {w}"
            )
        if w is not None and not isinstance(w, float) and (not isinstance(w, int) or w < 0):
            raise ValueError(f"warmup_steps must be an int >= 0, a fraction in (0, 1) or None, got {w!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = tuple(self.betas)
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if self.on_divergence not in ("raise", "stop"):
            raise ValueError(f"on_divergence must be 'raise' or 'stop', got {self.on_divergence!r}")
        for name in ("eval_every", "checkpoint_every"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise ValueError(f"{name} must be a positive int or None, got {v!r}")
        for name in ("eval_batches", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.checkpoint_every is not None and self.checkpoint_path is None:
            raise ValueError("checkpoint_every needs checkpoint_path")
        if isinstance(w, int) and self.max_steps is not None and w >= self.max_steps:
            warnings.warn(
                f"warmup_steps={w} >= max_steps={self.max_steps}: the learning rate would never reach its peak; "
                f"warming up for {self.warmup} step{'' if self.warmup == 1 else 's'} (max_steps // 2) instead",
                stacklevel=3,
            )

    @property
    def warmup(self) -> int:
        """Warmup length in steps: ``warmup_steps`` resolved, and cut to ``max_steps // 2`` where it would be
        ``max_steps`` or more (the learning rate would never reach its peak)."""
        if self.warmup_steps is None:
            w = max(1, round(0.05 * self.max_steps)) if self.max_steps is not None else 100
        elif isinstance(self.warmup_steps, float):
            w = max(1, round(self.warmup_steps * self.max_steps))
        else:
            w = self.warmup_steps
        if self.max_steps is not None and w >= self.max_steps:
            return self.max_steps // 2
        return w


def resolve_amp(amp: str, device: torch.device | str | None = None) -> torch.dtype | None:
    """The autocast dtype of ``amp`` (one of ``AMP_MODES``) on ``device``; None: no autocast (fp32).

    "auto": bf16 on GPUs with bf16 tensor cores, fp16 on older GPUs, fp32 elsewhere (``autocast_dtype``);
    "fp16" needs a CUDA GPU (its gradient scaler is CUDA's); "bf16" a device that has bf16."""
    if not isinstance(amp, str) or amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {', '.join(repr(m) for m in AMP_MODES)}, got {amp!r}")
    device = as_device(device)
    cuda = device.type == "cuda"
    if amp == "auto":
        return autocast_dtype(device)
    if amp == "fp16" and not cuda:
        raise ValueError("amp='fp16' needs a CUDA GPU; use 'auto', 'bf16' or 'fp32'")
    if amp == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{device_name(device)} has no bf16; use amp='fp16' or 'auto'")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def available_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` as a ``torch.device`` (None: the GPU when there is one, else the CPU), or a ``ValueError``
    that says why it cannot be used here (not a device name; no CUDA; no such GPU; no MPS)."""
    if device is None or isinstance(device, torch.device):
        device = as_device(device)
    else:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device {device!r} is not a device: use 'cpu', 'cuda', 'cuda:1', 'mps' or None") from e
    choose = "pass device='cpu', or device=None, which picks the GPU when there is one and the CPU otherwise"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this PyTorch is built without CUDA (a CPU-only build)"
                if torch.version.cuda is None
                else "no GPU is visible (check the driver, nvidia-smi and CUDA_VISIBLE_DEVICES)"
            )
            raise ValueError(f"device {str(device)!r} asks for a GPU, but no CUDA device is available: {why}; {choose}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"device {str(device)!r}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
                f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device 'mps' asks for Apple's GPU, which is not available here; {choose}")
    return device


def learning_rate(config: TrainConfig, step: int, progress: float, warmup_end: float | None) -> float:
    """The learning rate of update ``step`` (0-based) at budget fraction ``progress`` (see the module docstring)."""
    min_lr = config.lr / 10 if config.min_lr is None else config.min_lr
    if step < config.warmup:
        return config.lr * (step + 1) / (config.warmup + 1)
    p_w = progress if warmup_end is None else warmup_end
    d = 1.0 if p_w >= 1 else min(max((progress - p_w) / (1 - p_w), 0.0), 1.0)
    return min_lr + (config.lr - min_lr) * 0.5 * (1 + math.cos(math.pi * d))


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- ready-made losses
def _unpack(batch, n: int, names: str, loss: str):
    if not isinstance(batch, (tuple, list)) or len(batch) != n:
        got = f"a {type(batch).__name__} of length {len(batch)}" if isinstance(batch, (tuple, list)) else type(batch)
        raise ValueError(f"{loss} expects batches {names}, got {got}")
    return batch


IGNORE_INDEX = -100  # a token target that is not scored (F.cross_entropy's default ignore_index)


def _check_targets(y, loss: str, what: str, ignore: bool) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """Class-id targets, checked before the model's forward: ``(y as int64, (lo, hi))``, ``lo`` and ``hi`` the
    smallest and largest scored id, for ``_check_range`` to compare with the logits' size after the forward.

    One wait for the GPU (the ids' range and the number of scored targets in one ``.tolist()``), as the models'
    ``check_tokens``; ``(lo, hi)`` is None while ``torch.compile`` traces (no check there). ``ignore``: -100 marks
    a target that is not scored, and a batch needs at least one scored target."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{loss}: {what} must be a tensor of class ids, got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(
            f"{loss}: {what} must hold integer class ids (torch.long, as F.cross_entropy needs), got dtype {y.dtype}; "
            "convert them with .long() (after rounding, if they are whole numbers stored as floats)"
        )
    if y.dtype != torch.int64:  # int32, int16, int8, uint8: F.cross_entropy needs int64; the ids convert exactly
        y = y.long()
    if y.numel() == 0:
        raise ValueError(f"{loss}: the batch has no {what} (shape {tuple(y.shape)})")
    if torch.compiler.is_compiling():
        return y, None
    if not ignore:
        lo, hi = torch.stack(torch.aminmax(y)).tolist()  # one wait for the GPU
        return y, (lo, hi)
    scored = y != IGNORE_INDEX
    lo, hi = torch.aminmax(torch.where(scored, y, 0))  # 0 is always a valid id: the range of the scored ids
    lo, hi, n = torch.stack([lo, hi, scored.sum()]).tolist()  # one wait for the GPU, not three
    if n == 0:
        raise ValueError(
            f"{loss}: every one of the batch's {y.numel()} {what} is {IGNORE_INDEX} (not scored), so its loss is "
            "undefined (nan): check how the batch is built (padding, masking); a batch needs a scored target"
        )
    return y, (lo, hi)


def _check_range(bounds: tuple[int, int] | None, n_classes: int, loss: str, what: str, ignore: bool) -> None:
    """After the forward: the ids of ``_check_targets`` must be in [0, n_classes) (no wait for the GPU)."""
    if bounds is None:
        return
    lo, hi = bounds
    if lo < 0 or hi >= n_classes:
        valid = f"class ids in [0, {n_classes})" + (f" or {IGNORE_INDEX} (not scored)" if ignore else "")
        hint = ""
        if not ignore and lo == IGNORE_INDEX:
            hint = f" ({loss} scores every example: leave out the examples without a label rather than marking them)"
        raise ValueError(
            f"{loss}: {what} hold ids in [{lo}, {hi}], but the model gives {n_classes} logits per position, so they "
            f"must be {valid}{hint}; check the labels and the model's output size (vocabulary or number of classes)"
        )


def _token_ce(logits: torch.Tensor, y: torch.Tensor, bounds, loss: str, what: str, label_smoothing: float = 0.0):
    if logits.dim() != 3 or logits.shape[:2] != y.shape:
        raise ValueError(
            f"{loss}: logits must be (B, T, V) and {what} (B, T); got {tuple(logits.shape)} and {tuple(y.shape)}"
        )
    _check_range(bounds, logits.shape[-1], loss, what, ignore=True)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"{loss}: label_smoothing must be in [0, 1), got {label_smoothing!r}")
    smoothing = label_smoothing if torch.is_grad_enabled() else 0.0  # evaluation: the plain cross entropy
    ce = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=IGNORE_INDEX, label_smoothing=smoothing
    )
    keep = y != IGNORE_INDEX  # (B, T)
    n = keep.sum()
    metrics = {}
    if not torch.is_grad_enabled():  # evaluation: token accuracy on the scored targets
        metrics["accuracy"] = (((logits.argmax(-1) == y) & keep).sum(), n)
    return ce, n, metrics


def lm_loss(model: nn.Module, batch):
    """Next-token cross entropy. Batch ``(x, y)``: tokens (B, T) and targets (B, T), -100 = not scored.

    The targets are checked before the forward (see the module docstring): integer ids in [0, V) or -100, at least
    one scored."""
    x, y = _unpack(batch, 2, "(tokens, targets)", "lm_loss")
    y, bounds = _check_targets(y, "lm_loss", "targets", ignore=True)
    return _token_ce(model(x), y, bounds, "lm_loss", "targets")  # model(x): (B, T, V)


def seq2seq_loss(model: nn.Module, batch, label_smoothing: float = 0.0):
    """Batch ``(src, src_mask, tgt_in, tgt_out)``; ``model(src, tgt_in, src_mask=src_mask)`` -> (B, T, V).

    ``tgt_out`` (B, T): target ids, -100 = not scored (padding); checked before the forward as ``lm_loss``'s.
    ``label_smoothing``: the training target puts that much of its probability evenly over the vocabulary
    (Szegedy et al. 2016; 0.1 in Vaswani et al. 2017), e.g. ``functools.partial(seq2seq_loss, label_smoothing=0.1)``.
    Evaluation (no gradients) always reports the plain cross entropy, so validation losses stay comparable.
    """
    src, src_mask, tgt_in, tgt_out = _unpack(batch, 4, "(src, src_mask, tgt_in, tgt_out)", "seq2seq_loss")
    tgt_out, bounds = _check_targets(tgt_out, "seq2seq_loss", "tgt_out", ignore=True)
    logits = model(src, tgt_in, src_mask=src_mask)
    return _token_ce(logits, tgt_out, bounds, "seq2seq_loss", "tgt_out", label_smoothing)


def classify_loss(model: nn.Module, batch):
    """Batch ``(tokens, mask, labels)``; ``model(tokens, mask)`` -> logits (B, C). Tokens = real tokens.

    ``labels`` (B,): class ids in [0, C), checked before the forward (every example is scored: no -100 here)."""
    tokens, mask, labels = _unpack(batch, 3, "(tokens, mask, labels)", "classify_loss")
    labels, bounds = _check_targets(labels, "classify_loss", "labels", ignore=False)
    logits = model(tokens, mask)  # (B, C)
    if logits.dim() != 2 or logits.shape[0] != labels.shape[0] or labels.dim() != 1:
        raise ValueError(
            f"classify_loss: logits must be (B, C) and labels (B,); got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    _check_range(bounds, logits.shape[-1], "classify_loss", "labels", ignore=False)
    loss = F.cross_entropy(logits, labels)
    b = labels.shape[0]
    n_tokens = mask.sum() if mask is not None else tokens.numel()
    if torch.is_grad_enabled():
        return loss, n_tokens
    return loss, n_tokens, {"loss": (loss.detach() * b, b), "accuracy": ((logits.argmax(-1) == labels).sum(), b)}


def regression_loss(model: nn.Module, batch):
    """Mean squared error. Batch ``(x, y)``: ``model(x)`` -> (B,) or (B, 1), targets (B,)."""
    x, y = _unpack(batch, 2, "(inputs, targets)", "regression_loss")
    pred = model(x)
    if pred.dim() == 2 and pred.shape[1] == 1:
        pred = pred.squeeze(1)
    if pred.shape != y.shape:
        raise ValueError(f"regression_loss: prediction {tuple(pred.shape)} and targets {tuple(y.shape)} differ")
    loss = F.mse_loss(pred.float(), y.float())
    b = y.shape[0]
    n_tokens = x.shape[0] * x.shape[1] if x.dim() >= 2 else b
    return (loss, n_tokens) if torch.is_grad_enabled() else (loss, n_tokens, {"loss": (loss.detach() * b, b)})


# ----------------------------------------------------------------------------- batches
class _Exhausted(Exception):
    pass


class _Source:
    """Batches from a function of a generator, or from an iterable (re-iterated per epoch when possible)."""

    def __init__(self, batches, generator: torch.Generator, what: str):
        self.fn = batches if callable(batches) and not hasattr(batches, "__iter__") else None
        if self.fn is None and not hasattr(batches, "__iter__"):
            raise TypeError(
                f"{what} must be a function get_batch(generator) -> batch or an iterable of batches, "
                f"got {type(batches).__name__}"
            )
        self.iterable, self.generator, self.it = batches, generator, None

    def next(self):
        if self.fn is not None:
            return self.fn(self.generator)
        for attempt in range(2):
            if self.it is None:
                self.it = iter(self.iterable)
            try:
                return next(self.it)
            except StopIteration:
                if self.it is self.iterable or attempt == 1:  # a one-shot iterator, or an empty iterable
                    raise _Exhausted from None
                self.it = None  # new epoch
        raise _Exhausted


def _to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


# ----------------------------------------------------------------------------- RNG states as plain types
def _rng_state(device: torch.device) -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global NumPy RNG is what we save)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))  # noqa: NPY002


@contextlib.contextmanager
def _isolated_rng(device: torch.device):
    """Evaluation must not move the training RNG streams (so eval frequency cannot change training)."""
    py, npy = random.getstate(), np.random.get_state()  # noqa: NPY002
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices):
        yield
    random.setstate(py)
    np.random.set_state(npy)  # noqa: NPY002


# ----------------------------------------------------------------------------- results
@dataclass
class TrainResult:
    history: pd.DataFrame  # one row per log step: step, time, lr, train_loss, tokens_per_s, [grad_norm], val_*
    metrics: dict[str, float]  # last train_loss and the final evaluation
    steps: int
    train_seconds: float  # training only (the budget's clock); a diverged run: up to the step it keeps
    wall_seconds: float  # this call, evaluation included
    tokens: int
    tokens_per_s: float
    n_params: int
    mfu: float | None  # model FLOPs utilisation; None without flops_per_token or a known peak
    stopped_by: str  # "max_steps", "max_seconds", "data exhausted" or "diverged" (TrainConfig.on_divergence)
    device: str
    config: dict = field(default_factory=dict)
    diverged_at_step: int | None = None  # "diverged": the log step that saw it; ``steps`` is the model's last good one
    startup_seconds: float = 0.0  # the untimed first forward and backward(s) (TrainConfig.startup_step); 0: none

    @property
    def perplexity(self) -> float:
        """exp(val_loss) (or of train_loss when there was no evaluation)."""
        return math.exp(self.metrics.get("val_loss", self.metrics["train_loss"]))

    def summary(self) -> dict[str, Any]:
        """A flat dict for ``seqlib.results.record``."""
        return {
            **self.metrics,
            "steps": self.steps,
            "train_seconds": self.train_seconds,
            "tokens": self.tokens,
            "tokens_per_s": self.tokens_per_s,
            "n_params": self.n_params,
            "mfu": self.mfu,
            "stopped_by": self.stopped_by,
            "startup_seconds": self.startup_seconds,
            **({"diverged_at_step": self.diverged_at_step} if self.diverged_at_step is not None else {}),
        }


# ----------------------------------------------------------------------------- the loop
class _Diverged(Exception):
    """Raised by ``Trainer._log`` under ``on_divergence="stop"``: caught by the loop, which ends the run."""


class Trainer:
    """Trains ``model`` on ``batches`` under ``config``; ``run()`` returns a ``TrainResult``.

    ``eval_batches`` (same forms as ``batches``; a function is called with a generator re-seeded for every
    evaluation, an iterable is re-iterated from its start) gives ``val_loss`` and the loss's metrics;
    ``evaluate(model) -> dict`` adds any other metric (BLEU, samples' scores) at the same steps.
    ``flops_per_token``: training FLOPs per token (about 6 x parameters, plus attention) for MFU.
    ``device``: where to train (None: the GPU when there is one, else the CPU); a device this machine lacks (e.g.
    "cuda" on a CPU-only PyTorch) is a ``ValueError`` that says so (``available_device``).
    """

    def __init__(
        self,
        model: nn.Module,
        batches,
        config: TrainConfig,
        *,
        loss_fn: Callable = lm_loss,
        eval_batches=None,
        evaluate: Callable[[nn.Module], dict] | None = None,
        flops_per_token: float | None = None,
        device: torch.device | str | None = None,
    ):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config, self.loss_fn, self.evaluate, self.flops_per_token = config, loss_fn, evaluate, flops_per_token
        self.device = available_device(device)
        self.model = model.to(self.device)
        self.amp_dtype = self._resolve_amp(config.amp)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.optimizer = self._make_optimizer()
        self.forward_model = torch.compile(model) if config.compile else model
        self.generator = torch.Generator().manual_seed(config.seed)
        self.source = _Source(batches, self.generator, "batches")
        if eval_batches is not None and not callable(eval_batches) and iter(eval_batches) is eval_batches:
            raise TypeError(
                "eval_batches must be re-iterable (a list, a DataLoader) or a function of a generator; "
                "a one-shot iterator would be used up by the first evaluation"
            )
        self.eval_batches = eval_batches
        self.step, self.train_seconds, self.tokens, self.warmup_end, self.last_eval_step = 0, 0.0, 0, None, -1
        self.startup_seconds = 0.0
        self.lr = float("nan")  # of the last update
        self.batches_consumed, self.rows = 0, []
        self.good = None  # on_divergence="stop": (step, tokens, train_seconds, weights) at the last finite log row
        self.diverged_at_step = None
        self._reset_interval()

    # -- setup
    def _resolve_amp(self, amp: str) -> torch.dtype | None:
        return resolve_amp(amp, self.device)

    def _make_optimizer(self) -> torch.optim.AdamW:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": self.config.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        fused = self.device.type == "cuda"
        return torch.optim.AdamW(groups, lr=self.config.lr, betas=self.config.betas, fused=fused or None)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _reset_interval(self) -> None:
        self.acc = {
            "loss": torch.zeros((), device=self.device),
            "grad_norm": torch.zeros((), device=self.device),
            "tokens": 0,
            "steps": 0,
            "seconds": 0.0,
        }

    # -- one step
    def progress(self) -> float:
        c = self.config
        p = [self.step / c.max_steps] if c.max_steps else []
        p += [self.train_seconds / c.max_seconds] if c.max_seconds else []
        return min(max(p), 1.0)

    def _train_step(self, batch) -> None:
        c, opt = self.config, self.optimizer
        if self.step == c.warmup:
            self.warmup_end = self.progress()
        self.lr = learning_rate(c, self.step, self.progress(), self.warmup_end)
        for g in opt.param_groups:
            g["lr"] = self.lr
        with self._autocast():
            out = self.loss_fn(self.forward_model, batch)
        loss, n_tokens = out[0], out[1]
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ValueError("loss_fn must return (loss, n_tokens[, metrics]) with loss a scalar tensor")
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        if c.grad_clip is not None:
            if self.scaler:
                self.scaler.unscale_(opt)
            self.acc["grad_norm"] += nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip).float()
        if self.scaler:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        self.acc["loss"] += loss.detach().float()
        self.acc["tokens"] = self.acc["tokens"] + n_tokens
        self.acc["steps"] += 1

    # -- evaluation
    @torch.no_grad()
    def evaluate_now(self) -> dict[str, float]:
        """Validation metrics now: ``val_loss`` and ``val_<metric>`` from ``eval_batches``, plus ``evaluate``."""
        metrics: dict[str, float] = {}
        self.model.eval()
        try:
            with _isolated_rng(self.device):
                if self.eval_batches is not None:
                    metrics.update(self._eval_loss())
                if self.evaluate is not None:
                    metrics.update({k: _plain(v) for k, v in self.evaluate(self.model).items()})
        finally:
            self.model.train()
        return metrics

    def _eval_batches(self):
        n = self.config.eval_batches
        if callable(self.eval_batches) and not hasattr(self.eval_batches, "__iter__"):
            gen = torch.Generator().manual_seed(self.config.seed + 1_000_003)  # the same batches every time
            return (self.eval_batches(gen) for _ in range(n))
        return itertools.islice(iter(self.eval_batches), n)  # the first n batches of one pass

    def _eval_loss(self) -> dict[str, float]:
        loss_sum, weight, sums = 0.0, 0, {}
        for batch in self._eval_batches():
            with self._autocast():
                out = self.loss_fn(self.forward_model, _to_device(batch, self.device))
            n = out[1]
            loss_sum, weight = loss_sum + out[0].float() * n, weight + n
            for k, (s, cnt) in (out[2] if len(out) > 2 else {}).items():
                s0, c0 = sums.get(k, (0, 0))
                sums[k] = (s0 + s, c0 + cnt)
        if not isinstance(weight, torch.Tensor) and weight == 0:
            raise ValueError("eval_batches produced no batches")
        res = {"val_loss": _plain(loss_sum / weight)}
        res.update({f"val_{k}": _plain(s / c) for k, (s, c) in sums.items()})
        return res

    # -- logging and checkpoints
    def _log(self, with_eval: bool, bar) -> None:
        t = time.perf_counter()
        a = self.acc
        loss = a["loss"].item() / a["steps"]  # waits for the GPU: that time is training time
        tokens = int(a["tokens"])
        waited = time.perf_counter() - t
        a["seconds"] += waited
        self.train_seconds += waited
        grad_norm = a["grad_norm"].item() / a["steps"] if self.config.grad_clip is not None else None
        stop = self.config.on_divergence == "stop"
        problem = None
        if self.scaler is None:  # (fp16: the gradient scaler skips non-finite steps and lowers its scale)
            if not math.isfinite(loss):
                problem = f"training loss is {loss}"
            elif grad_norm is not None and not math.isfinite(grad_norm):  # an update with it: non-finite weights
                problem = f"gradient norm is {grad_norm}"
            elif grad_norm is None and stop and not _all_finite(self.model.parameters()):  # no norm to look at
                problem = "the weights are not finite"
        elif (scale := self.scaler.get_scale()) < 1.0:  # halved at every skipped step: it never does this otherwise
            problem = (
                f"the float16 loss scale fell to {scale:.3g}: step after step overflowed float16 and was skipped "
                "(amp='fp32' trains without float16)"
            )
        if problem:
            if stop and self.good is not None:
                raise _Diverged(problem)
            raise FloatingPointError(f"{problem} at step {self.step}: lower lr, or check the data")
        self.tokens += tokens
        row = {
            "step": self.step,
            "time": self.train_seconds,
            "lr": self.lr,
            "train_loss": loss,
            "tokens_per_s": tokens / max(a["seconds"], 1e-9),
        }
        if grad_norm is not None:
            row["grad_norm"] = grad_norm
        if with_eval:
            row.update(self.evaluate_now())
            self.last_eval_step = self.step
        self.rows.append(row)
        self._reset_interval()
        if stop:  # every update of the interval was finite: these weights are the run's fallback
            weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.good = (self.step, self.tokens, self.train_seconds, weights)
        if self.config.max_steps:
            bar.update(self.step - bar.n)
        else:
            bar.update(min(int(self.train_seconds), bar.total) - bar.n)
        bar.set_postfix(
            loss=f"{loss:.3f}",
            tok_s=f"{row['tokens_per_s']:.3g}",
            **({"val": f"{row['val_loss']:.3f}"} if "val_loss" in row else {}),
        )

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> Path:
        """Write everything needed to resume (atomically: a crash while saving keeps the previous file)."""
        path = Path(path or self.config.checkpoint_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        acc = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in self.acc.items()}
        state = {
            "format": 1,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "step": self.step,
            "train_seconds": self.train_seconds,
            "startup_seconds": self.startup_seconds,
            "tokens": self.tokens,
            "warmup_end": self.warmup_end,
            "lr": self.lr,
            "last_eval_step": self.last_eval_step,
            "batches_consumed": self.batches_consumed,
            "interval": acc,
            "rng": _rng_state(self.device),
            "generator": self.generator.get_state(),
            "history": self.rows,
            "config": dataclasses.asdict(self.config),
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by ``save_checkpoint`` (the model must have the same architecture)."""
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if ck.get("format") != 1:
            raise ValueError(f"{path} is not a seqlib.train checkpoint")
        saved, now = ck["config"], dataclasses.asdict(self.config)
        diff = [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in _TRAJECTORY_FIELDS if saved.get(k) != now[k]]
        if diff:
            raise ValueError(
                f"checkpoint {path} was trained with a different config ({'; '.join(diff)}); "
                "delete it, or pass resume=False to start again"
            )
        if (saved["max_steps"], saved["max_seconds"]) != (self.config.max_steps, self.config.max_seconds):
            warnings.warn(
                "resuming with a different budget: the learning-rate schedule changes from here on", stacklevel=2
            )
        self.model.load_state_dict(ck["model"])
        # the checkpoint may come from another device: fused AdamW (CUDA) wants its step counters on the
        # parameters' device, and load_state_dict places them by the *saved* groups' "fused" flag, so set it first
        fused = self.device.type == "cuda" or None
        opt_state = dict(ck["optimizer"])
        opt_state["param_groups"] = [{**g, "fused": fused} for g in opt_state["param_groups"]]
        self.optimizer.load_state_dict(opt_state)
        if self.scaler is not None and ck["scaler"] is not None:
            self.scaler.load_state_dict(ck["scaler"])
        for k in ("step", "train_seconds", "tokens", "warmup_end", "lr", "last_eval_step", "batches_consumed"):
            setattr(self, k, ck[k])
        self.startup_seconds = ck.get("startup_seconds", 0.0)
        self.rows = list(ck["history"])
        self.acc = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in ck["interval"].items()}
        _set_rng_state(ck["rng"])
        self.generator.set_state(ck["generator"])
        if self.source.fn is None:  # an iterable: skip the batches already used
            for _ in range(self.batches_consumed):
                self.source.next()

    # -- the run
    def run(self) -> TrainResult:
        c = self.config
        wall0 = time.perf_counter()
        if c.checkpoint_path and c.resume and Path(c.checkpoint_path).exists():
            self.load_checkpoint(c.checkpoint_path)
        elif self.step == 0:
            set_seed(c.seed)
            self.generator.manual_seed(c.seed)
        self.model.train()
        total = c.max_steps if c.max_steps else math.ceil(c.max_seconds)
        bar = tqdm(
            total=total,
            initial=min(self.step if c.max_steps else int(self.train_seconds), total),
            unit="step" if c.max_steps else "s",
            disable=not c.progress,
            dynamic_ncols=True,
        )
        try:
            stopped_by = self._loop(bar)
        finally:
            bar.close()
        return self._result(stopped_by, time.perf_counter() - wall0)

    def _budget_spent(self) -> str | None:
        """Which budget is used up, if any: "max_steps", "max_seconds" or None."""
        c = self.config
        if c.max_steps is not None and self.step >= c.max_steps:
            return "max_steps"
        if c.max_seconds is not None and self.train_seconds >= c.max_seconds:
            return "max_seconds"
        return None

    def _startup(self, batch) -> None:
        """``TrainConfig.startup_step``: forward and backward on ``batch``, untimed by the budget, no update, the
        random state restored; its seconds (synchronized) are added to ``startup_seconds``."""
        t0 = time.perf_counter()
        kind = self.device.type
        index = self.device.index if self.device.index is not None else getattr(torch, kind).current_device()
        devices = [index] if kind in ("cuda", "mps", "xpu") else []  # the CPU generator is always restored
        with torch.random.fork_rng(devices=devices, device_type=kind if devices else "cuda"):
            with self._autocast():
                loss = self.loss_fn(self.forward_model, batch)[0]
            loss.backward()
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.startup_seconds += time.perf_counter() - t0

    def _loop(self, bar) -> str:
        c, last_ckpt = self.config, self.step
        pending = None  # the first batch, already drawn for the startup step
        startup = c.startup_step if c.startup_step is not None else self.device.type == "cuda"
        if startup and not self._budget_spent():  # a resumed run that has steps left warms up again
            try:
                pending = _to_device(self.source.next(), self.device)
            except _Exhausted:
                pending = None  # no batch at all: the loop below says so
            else:
                self.batches_consumed += 1
                self._startup(pending)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        while True:
            stopped_by = self._budget_spent()
            if stopped_by:
                break
            t0 = time.perf_counter()
            if pending is not None:
                batch, pending = pending, None
            else:
                try:
                    batch = _to_device(self.source.next(), self.device)
                except _Exhausted:
                    stopped_by = "data exhausted"
                    break
                self.batches_consumed += 1
            self._train_step(batch)
            self.step += 1
            dt = time.perf_counter() - t0
            self.train_seconds += dt
            self.acc["seconds"] += dt
            evaluating = c.eval_every is not None and self.step % c.eval_every == 0 and self._has_eval()
            if (self.step % c.log_every == 0 or evaluating) and not self._logged(evaluating, bar):
                stopped_by = "diverged"
                break
            if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                self.save_checkpoint()
                last_ckpt = self.step
        if self.step == 0:
            raise ValueError("no training step was made: the batches are empty")
        # the end: a last row for the steps since the last one, and a last evaluation
        final_eval = self._has_eval() and self.last_eval_step != self.step
        if self.acc["steps"] > 0 and not self._logged(final_eval, bar):
            stopped_by = "diverged"
        if self._has_eval() and self.last_eval_step != self.step:
            # the last row is at this step already (or the run was set back to it): evaluate into it
            self.rows[-1].update(self.evaluate_now())
            self.last_eval_step = self.step
        # a diverged run's optimizer state is not finite: its checkpoint would diverge again on resuming
        if c.checkpoint_path and stopped_by != "diverged":
            if last_ckpt != self.step or not Path(c.checkpoint_path).exists():
                self.save_checkpoint()
        return stopped_by

    def _logged(self, with_eval: bool, bar) -> bool:
        """``_log``; False where it found the run diverged (``on_divergence="stop"``), which is then set back to
        its last finite row."""
        try:
            self._log(with_eval, bar)
        except _Diverged:
            self._restore_good()
            return False
        return True

    def _restore_good(self) -> None:
        """Back to the last finite log row: its weights, step, tokens and seconds; the diverged interval is dropped
        (so the run's tokens/s and MFU are those of the steps it keeps)."""
        step, tokens, seconds, weights = self.good
        self.model.load_state_dict(weights)
        self.diverged_at_step, self.step, self.tokens, self.train_seconds = self.step, step, tokens, seconds
        self._reset_interval()
        warnings.warn(
            f"training diverged by step {self.diverged_at_step}: the run stops with the weights of step {step}, "
            "its last finite log row (lower lr, or check the data)",
            RuntimeWarning,
            stacklevel=5,
        )

    def _has_eval(self) -> bool:
        return self.eval_batches is not None or self.evaluate is not None

    def _result(self, stopped_by: str, wall: float) -> TrainResult:
        history = pd.DataFrame(self.rows)
        metrics = {"train_loss": float(history["train_loss"].iloc[-1])}
        last_eval = [r for r in self.rows if r["step"] == self.last_eval_step]
        if last_eval:
            metrics.update({k: v for k, v in last_eval[-1].items() if k not in _LOG_KEYS})
        tps = self.tokens / max(self.train_seconds, 1e-9)
        peak = peak_flops(self.device, self.amp_dtype)
        mfu = self.flops_per_token * tps / peak if self.flops_per_token and peak else None
        n_params = sum(p.numel() for p in self.model.parameters())
        return TrainResult(
            history,
            metrics,
            self.step,
            self.train_seconds,
            wall,
            self.tokens,
            tps,
            n_params,
            mfu,
            stopped_by,
            device_name(self.device),
            dataclasses.asdict(self.config),
            self.diverged_at_step,
            self.startup_seconds,
        )


def _all_finite(tensors) -> bool:
    """Whether every floating-point tensor is free of inf and nan (one GPU sync)."""
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def _plain(v):
    """A Python number from a tensor / NumPy scalar (one GPU sync)."""
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def train(
    model: nn.Module,
    batches,
    config: TrainConfig,
    *,
    loss_fn: Callable = lm_loss,
    eval_batches=None,
    evaluate: Callable[[nn.Module], dict] | None = None,
    flops_per_token: float | None = None,
    device: torch.device | str | None = None,
) -> TrainResult:
    """``Trainer(...).run()``: train ``model`` and return its ``TrainResult`` (see ``Trainer``)."""
    return Trainer(
        model,
        batches,
        config,
        loss_fn=loss_fn,
        eval_batches=eval_batches,
        evaluate=evaluate,
        flops_per_token=flops_per_token,
        device=device,
    ).run()


def gpt2_mfu_benchmark(
    profile: str | None = None, steps: int | None = None, compile: bool | None = None
) -> dict[str, Any]:
    """Training throughput and model FLOPs utilisation of a GPT-2-small-sized Transformer LM.

    Full profile on a GPU: 12 layers, d=768, 12 heads, T=1024, batch 32, vocabulary 50304, bf16 autocast, SDPA,
    ``torch.compile`` and fused AdamW, on random tokens (the data does not change the arithmetic).
    FLOPs per token are 6·N + 12·L·T·d (PaLM, appendix B: the weights plus the attention scores);
    tokens/s is the median over the logged intervals after the first third of the run (compilation excluded).
    Elsewhere a tiny configuration checks the code path and MFU is None.

    ``steps``: optimizer steps of the run, honoured in every profile; None: 40 in the full profile on a GPU, 6 for
    the tiny configuration.

    ``compile``: None compiles in the full profile only. Where ``torch.compile`` fails (it needs Triton and a C
    compiler at run time), the run is made again without it, with a warning, and the result says so.
    """
    from .models import build_model, count_params
    from .profiles import current_profile

    device = as_device(None)
    full = (profile or current_profile()) == "full" and device.type == "cuda"
    compile = full if compile is None else compile
    if steps is None:
        steps = 40 if full else 6
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int or None, got {steps!r}")
    # batch 32 x 1,024 tokens: big enough that each step's matrix products, not kernel launches, set the pace; by an
    # estimate (34 bytes per token, layer and width in bf16 with flash attention, plus the logits) 20-30 GB, within
    # an 80 GB H100
    L, d, H, T, V, B = (12, 768, 12, 1024, 50304, 32) if full else (2, 64, 4, 64, 512, 4)

    def batch(gen: torch.Generator):
        x = torch.randint(0, V, (B, T + 1), generator=gen)
        return x[:, :-1], x[:, 1:]

    def run(compiled: bool):
        model = build_model("transformer", "lm", vocab_size=V, d_model=d, n_layers=L, n_heads=H)
        config = TrainConfig(
            max_steps=steps,
            # the learning rate's warm-up (a tenth of the run) changes no step's arithmetic, only its values
            warmup_steps=0.1,
            compile=compiled,
            log_every=5 if full else 1,
            progress=False,
        )
        return model, train(
            model, batch, config, flops_per_token=6 * count_params(model) + 12 * L * T * d, device=device
        )

    compile_error = None
    try:
        model, result = run(compile)
    except Exception as e:  # noqa: BLE001 - whatever torch.compile raised, the uncompiled model measures the rest
        if not compile:
            raise
        compile_error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    if compile_error is not None:
        # outside the except block: its traceback would keep the failed run's model, optimizer state and
        # activations alive (several GB on a GPU) while the fallback runs
        warnings.warn(f"torch.compile failed ({compile_error}); measuring without it", stacklevel=2)
        compile = False
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        model, result = run(False)
    n_params = count_params(model)
    flops_per_token = 6 * n_params + 12 * L * T * d
    h = result.history
    tok_s = float(h["tokens_per_s"].iloc[len(h) // 3 :].median())
    peak = peak_flops(device, autocast_dtype(device))
    return {
        "device": device_name(device),
        "config": f"{L} layers, d={d}, {H} heads, T={T}, batch {B}, vocab {V}, compile={compile}",
        "compile_error": compile_error,
        "parameters": n_params,
        "flops_per_token": flops_per_token,
        "tokens_per_s": round(tok_s),
        "peak_flops": peak,
        "mfu": None if peak is None else round(flops_per_token * tok_s / peak, 4),
    }
