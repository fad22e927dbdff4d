"""How far back does information flow? Gradient reach, used by chapters 1 (vanishing gradients),
2 (receptive field) and 4 (maximum path length).

For a stack of mixers f and an input sequence x (B, T, D), the gradient of the last output
with respect to each input position,

    g[k] = E_b || d <v, f(x)_{T-1}> / d x_{T-1-k} ||      (k = distance back from the last position)

is exactly zero beyond the receptive field of a CNN, decays geometrically for an RNN whose recurrence
is contractive, and stays of the same order at every distance for attention.
"""

from __future__ import annotations

import torch
from torch import nn

from .models import MIXERS, Block


class MixerStack(nn.Module):
    """``n_layers`` blocks of one architecture (or a per-layer pattern), on embeddings: (B, T, D) -> (B, T, D)."""

    def __init__(self, arch: str | list[str], n_layers: int, d_model: int, **options):
        super().__init__()
        names = [arch] * n_layers if isinstance(arch, str) else [arch[i % len(arch)] for i in range(n_layers)]
        self.blocks = nn.ModuleList(
            Block(MIXERS[name](d_model=d_model, layer_idx=i, **options.get(name, {}))) for i, name in enumerate(names)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def gradient_by_distance(
    f: nn.Module, seq_len: int, d_model: int, *, batch: int = 4, seed: int = 0, device=None, dtype=torch.float32
) -> torch.Tensor:
    """``g[k]`` for k = 0..seq_len-1: the mean gradient norm of the last output w.r.t. the input k steps back."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, seq_len, d_model, generator=gen, dtype=dtype).to(device)
    v = torch.randn(batch, d_model, generator=gen, dtype=dtype).to(device)
    x.requires_grad_(True)
    y = f(x)  # (B, T, D)
    (grad,) = torch.autograd.grad((y[:, -1] * v).sum(), x)
    return grad.norm(dim=-1).mean(0).flip(0).detach().cpu()  # (T,), index = distance back


def reach(g: torch.Tensor, rel_tol: float = 1e-6) -> int:
    """The largest distance k with ``g[k] > rel_tol * max(g)``: how far back the gradient reaches."""
    nz = torch.nonzero(g > rel_tol * g.max()).flatten()
    return int(nz.max()) if len(nz) else 0
