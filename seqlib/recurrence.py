"""The recurrent form of a mixer next to its parallel form: run one by stepping, time one against the other.

Every causal mixer that streams has two ways to produce the same outputs: ``mixer(x)`` over the whole sequence
(the parallel, chunked or convolutional form that trains) and ``init_state`` / ``step`` one token at a time
(the recurrent form that decodes). ``step_through`` runs the second over a whole sequence, so the two can be
compared; ``fast_vs_step`` times both at several lengths, on any device.

>>> y_par = mixer(x)                    # (B, T, D)
>>> y_rec = step_through(mixer, x)      # (B, T, D), token by token
>>> torch.testing.assert_close(y_rec, y_par)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch
from torch import nn

from .bench import time_fn
from .device import as_device

__all__ = ["step_through", "fast_vs_step"]


def step_through(mixer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Outputs (B, T, D) of ``mixer.step`` applied to each token of ``x`` (B, T, D) in turn, from ``init_state``."""
    if x.dim() != 3:
        raise ValueError(f"x must be (batch, time, d_model), got shape {tuple(x.shape)}")
    state = mixer.init_state(x.shape[0], device=x.device, dtype=x.dtype)
    ys = []
    for t in range(x.shape[1]):
        y_t, state = mixer.step(x[:, t], state)  # (B, D)
        ys.append(y_t)
    return torch.stack(ys, dim=1)


def fast_vs_step(
    make_mixer: Callable[[], nn.Module],
    lengths: Sequence[int],
    *,
    batch_size: int = 1,
    device=None,
    warmup: int = 1,
    repeats: int = 3,
    step_repeats: int = 1,
    labels: dict | None = None,
) -> pd.DataFrame:
    """Inference time of the parallel forward and of the step loop, under ``no_grad``, one row per length.

    Columns: ``seq_len``, the ``labels``, ``fast_ms``, ``step_ms`` (medians of ``time_fn``) and ``ratio``
    (``step_ms / fast_ms``: how many times faster the parallel form is). The step loop is slow by design, so it
    gets ``step_repeats`` timed calls after one warm-up call.
    """
    device = as_device(device)
    mixer = make_mixer().to(device).eval()
    rows = []
    gen = torch.Generator(device="cpu").manual_seed(0)
    for n in lengths:
        x = torch.randn(batch_size, int(n), mixer.d_model, generator=gen).to(device)  # (B, T, D)
        with torch.no_grad():
            fast = time_fn(lambda x=x: mixer(x), warmup=warmup, repeats=repeats, device=device)
            step = time_fn(lambda x=x: step_through(mixer, x), warmup=1, repeats=step_repeats, device=device)
        rows.append(
            {
                "seq_len": int(n),
                **(labels or {}),
                "fast_ms": fast["median_ms"],
                "step_ms": step["median_ms"],
                "ratio": step["median_ms"] / fast["median_ms"],
            }
        )
    return pd.DataFrame(rows)
