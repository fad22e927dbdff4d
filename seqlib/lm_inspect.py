"""Looking inside a language model: attention maps, and streaming decoding against the full forward.

* ``attention_maps(model, tokens)``: the attention weights of every attention layer of a ``LanguageModel``
  (or a ``Backbone``), computed on the input each layer actually sees (after the layers below it and its
  norm): ``{layer index: (B, H, T, T)}``.
* ``step_logits(model, tokens)``: the logits of feeding ``tokens`` one at a time through ``model.step``
  (KV cache, recurrent state, convolution buffer), (B, T, V): compare with ``model(tokens)``.
* ``decode_vs_recompute(model, prefixes)``: the time to produce the next token's logits after a prefix of
  n tokens, with the streaming state (one ``step``) and without it (a forward over all n + 1 tokens).
* ``plot_attention_heads(weights, labels)``: one heatmap per head.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from .bench import time_fn
from .device import as_device, autocast_dtype

__all__ = ["attention_maps", "step_logits", "decode_vs_recompute", "plot_attention_heads"]


def _backbone(model: nn.Module):
    backbone = getattr(model, "backbone", model)
    if not hasattr(backbone, "blocks") or not hasattr(backbone, "embedding"):
        raise TypeError(f"expected a seqlib LanguageModel or Backbone, got {type(model).__name__}")
    return backbone


@torch.no_grad()
def attention_maps(model: nn.Module, tokens: torch.Tensor) -> dict[int, torch.Tensor]:
    """``{layer: weights (B, H, T, T)}`` for every layer whose mixer has ``attention_map``; rows sum to 1."""
    backbone = _backbone(model)
    was_training = backbone.training
    backbone.eval()
    try:
        x = backbone.embedding(tokens)  # (B, T, D)
        maps = {}
        for i, block in enumerate(backbone.blocks):
            if hasattr(block.mixer, "attention_map"):
                maps[i] = block.mixer.attention_map(block.norm1(x)).cpu()
            x = block(x)
    finally:
        backbone.train(was_training)
    if not maps:
        raise ValueError("the model has no attention layer")
    return maps


@torch.no_grad()
def step_logits(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) of decoding ``tokens`` (B, T) token by token through ``model.init_state``/``step``."""
    state = model.init_state(tokens.shape[0], tokens.device)
    out = []
    for t in range(tokens.shape[1]):
        logits, state = model.step(tokens[:, t], state)
        out.append(logits)
    return torch.stack(out, dim=1)


def _autocast(device: torch.device, amp):
    dtype = autocast_dtype(device) if amp == "auto" else amp
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def decode_vs_recompute(
    model: nn.Module,
    prefixes: Sequence[int],
    *,
    batch_size: int = 1,
    amp="auto",
    warmup: int = 2,
    repeats: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-token time after each prefix length: ``cached_ms`` (one ``step`` from the state of the prefix) and
    ``recompute_ms`` (a forward over the prefix and the new token), and their ratio ``speedup``."""
    device = as_device(next(model.parameters()).device)
    vocab = _backbone(model).vocab_size
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    rows = []
    try:
        for n in prefixes:
            tokens = torch.randint(0, vocab, (batch_size, n + 1), generator=gen).to(device)  # (B, n + 1)
            with torch.no_grad(), _autocast(device, amp):
                state = model.init_state(batch_size, device)
                for t in range(n):
                    _, state = model.step(tokens[:, t], state)

                def cached(state=state, tokens=tokens, n=n):
                    return model.step(tokens[:, n], state)[0]

                def recompute(tokens=tokens):
                    return model(tokens)[:, -1]

                c = time_fn(cached, warmup=warmup, repeats=repeats, device=device)["median_ms"]
                r = time_fn(recompute, warmup=warmup, repeats=repeats, device=device)["median_ms"]
            rows.append({"prefix": n, "cached_ms": c, "recompute_ms": r, "speedup": r / c})
    finally:
        model.train(was_training)  # as it was
    return pd.DataFrame(rows)


def plot_attention_heads(weights: torch.Tensor, labels: Sequence[str], *, title: str | None = None) -> Figure:
    """One heatmap per head of ``weights`` (H, T, T): row = query position, column = key position."""
    if weights.dim() != 3 or weights.shape[1] != weights.shape[2] or weights.shape[1] != len(labels):
        raise ValueError(f"weights must be (H, T, T) with T = len(labels) = {len(labels)}, got {tuple(weights.shape)}")
    n_heads = weights.shape[0]
    ncols = n_heads if n_heads <= 2 else 2  # more heads: a grid two wide, so the labels stay readable on a page
    nrows = math.ceil(n_heads / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.6 * ncols + 0.8, 3.6 * nrows + 0.4), squeeze=False, layout="constrained"
    )
    shown = ["\u2423" if c == " " else repr(c)[1:-1] if c.isspace() else c for c in labels]  # a space shows as ␣
    for h, ax in enumerate(axes.flat):
        if h >= n_heads:
            ax.set_visible(False)
            continue
        im = ax.imshow(weights[h].float().cpu().numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(labels)), shown, fontsize=9, fontfamily="monospace")
        ax.set_yticks(range(len(labels)), shown, fontsize=9, fontfamily="monospace")
        ax.grid(False)
        ax.set_title(f"head {h}")
        ax.set_xlabel("key (attended to)")
        if h % ncols == 0:
            ax.set_ylabel("query (predicting the next)")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight")
    if title:
        fig.suptitle(title)
    return fig
