"""Peak memory of one training step of a whole model, the same way on a GPU and on a CPU.

The trainer reports time and throughput; memory is measured separately, after training, on one step of the
profile's batch shape: forward (under the trainer's autocast), loss, backward. ``seqlib.bench.peak_memory``
reads ``torch.cuda.max_memory_allocated`` on a GPU and the profiler's allocation trace on a CPU; the figure
is the peak above what was allocated before the step (weights and optimizer state not included).

>>> batch = random_lm_batch(vocab_size=65, batch_size=8, seq_len=64)
>>> train_step_memory(model, lm_loss, batch)          # bytes, or None where it cannot be measured (MPS)
"""

from __future__ import annotations

import torch
from torch import nn

from .bench import peak_memory
from .device import as_device, autocast_dtype

__all__ = ["train_step_memory", "random_lm_batch", "random_classify_batch"]


def random_lm_batch(vocab_size: int, batch_size: int, seq_len: int, seed: int = 0):
    """(tokens, targets), both (B, T) int64: memory does not depend on the values, only on the shapes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(vocab_size, (batch_size, seq_len + 1), generator=g)
    return x[:, :-1], x[:, 1:]


def random_classify_batch(vocab_size: int, batch_size: int, max_len: int, num_classes: int = 2, seed: int = 0):
    """(tokens (B, T), mask (B, T) all True, labels (B,)): the longest batch a classifier sees."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, vocab_size, (batch_size, max_len), generator=g)  # ids 0-3: special tokens
    return (
        tokens,
        torch.ones(batch_size, max_len, dtype=torch.bool),
        torch.randint(num_classes, (batch_size,), generator=g),
    )


def train_step_memory(model: nn.Module, loss_fn, batch, device=None) -> int | None:
    """Peak bytes above the start of one forward + backward of ``model`` on ``batch`` (gradients then cleared)."""
    device = as_device(device) if device is not None else next(model.parameters()).device
    batch = tuple(b.to(device) for b in batch)
    dtype = autocast_dtype(device)
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)

    def step():
        ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else torch.autocast("cpu", enabled=False)
        with ctx:
            loss = loss_fn(model, batch)[0]
        loss.backward()

    try:
        return peak_memory(step, device=device)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
