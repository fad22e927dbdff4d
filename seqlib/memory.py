"""Memory of sequence models: the formulas, and sweeps that measure them for many architectures.

Formulas (numbers of bytes; ``bytes_per_number`` 2 for bf16/fp16, 4 for fp32)::

    kv_cache_bytes        = 2 * n_layers * seq_len * d_model * bytes * batch    # K and V of every past token
    outline_kv_bytes      = n_layers * seq_len**2 * n_heads * bytes * batch     # the outline's O(n^2 h), literally
    score_matrix_bytes    = batch * n_heads * seq_len**2 * bytes                # one (T, T) matrix per head

The KV cache is linear in the length: a decoding step appends one key and one value (``2 * d_model`` numbers)
per layer. ``n^2 * h`` is the size of the attention scores that naive full-sequence attention writes out
(training, or prefill), not of the cache.

``make_mixer(name, d_model, **options)`` builds a registry mixer, ``"transformer_naive"`` (attention written out,
``impl="reference"``) or ``"hybrid"`` (a Mamba layer then an attention layer, a :class:`MixerChain`), so that
``sweep_archs`` can hand any of them to ``seqlib.bench.bench_mixer``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from .bench import bench_mixer
from .models import MIXERS
from .models.base import Mixer

__all__ = [
    "kv_cache_bytes",
    "outline_kv_bytes",
    "score_matrix_bytes",
    "MixerChain",
    "make_mixer",
    "sweep_archs",
    "VARIANTS",
    "fit_exponents",
    "exponent_verdict",
]


def _check_positive(**values) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def kv_cache_bytes(n_layers: int, d_model: int, seq_len: int, bytes_per_number: int = 2, batch_size: int = 1) -> int:
    """Bytes of the KV cache after ``seq_len`` tokens: ``2 * n_layers * seq_len * d_model * bytes * batch``.

    Multi-head attention with ``n_heads * d_head = d_model`` (no grouped or multi-query keys).
    """
    _check_positive(n_layers=n_layers, d_model=d_model, seq_len=seq_len, bytes_per_number=bytes_per_number)
    _check_positive(batch_size=batch_size)
    return 2 * n_layers * seq_len * d_model * bytes_per_number * batch_size


def outline_kv_bytes(n_layers: int, n_heads: int, seq_len: int, bytes_per_number: int = 2, batch_size: int = 1) -> int:
    """The outline's "O(n^2 h) with KV-cache", taken literally: ``n_layers * seq_len^2 * n_heads`` numbers (wrong)."""
    _check_positive(n_layers=n_layers, n_heads=n_heads, seq_len=seq_len, bytes_per_number=bytes_per_number)
    _check_positive(batch_size=batch_size)
    return n_layers * seq_len**2 * n_heads * bytes_per_number * batch_size


def score_matrix_bytes(seq_len: int, n_heads: int, bytes_per_number: int = 4, batch_size: int = 1) -> int:
    """Bytes of one layer's attention scores, ``(batch, n_heads, seq_len, seq_len)``."""
    _check_positive(seq_len=seq_len, n_heads=n_heads, bytes_per_number=bytes_per_number, batch_size=batch_size)
    return batch_size * n_heads * seq_len**2 * bytes_per_number


class MixerChain(Mixer):
    """Mixers applied one after another, each with a residual (``x = x + mixer(x)``), behind the mixer contract.

    A minimal hybrid for benchmarks (no norms, no MLP): ``state_size`` is the sum of the layers' states, and
    stepping through a sequence equals the parallel forward, as for every mixer.
    """

    supports_bidirectional = True

    def __init__(self, mixers: Sequence[Mixer]):
        mixers = list(mixers)
        if not mixers:
            raise ValueError("MixerChain needs at least one mixer")
        d = mixers[0].d_model
        if any(m.d_model != d for m in mixers):
            raise ValueError(f"every mixer must have the same d_model, got {[m.d_model for m in mixers]}")
        super().__init__(d, causal=all(m.causal for m in mixers), impl=mixers[0].impl)
        self.layers = nn.ModuleList(mixers)
        self.supports_step = all(m.supports_step for m in mixers)

    def _chain(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for m in self.layers:
            x = x + m(x, mask)  # (B, T, D)
        return x

    forward_fast = _chain
    forward_reference = _chain

    def init_state(self, batch_size: int, device=None, dtype: torch.dtype | None = None) -> list:
        self._check_can_step()
        return [m.init_state(batch_size, device=device, dtype=dtype) for m in self.layers]

    def step(self, x_t: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        self.check_step_input(x_t)
        new = []
        for m, s in zip(self.layers, state, strict=True):
            y, s = m.step(x_t, s)
            x_t = x_t + y  # (B, D)
            new.append(s)
        return x_t, new

    def state_size(self, seq_len: int) -> int:
        return sum(m.state_size(seq_len) for m in self.layers)


#: names ``make_mixer`` accepts besides the registry's: name -> (registry names, options added)
VARIANTS: dict[str, tuple[tuple[str, ...], dict]] = {
    "transformer_naive": (("transformer",), {"impl": "reference"}),
    "hybrid": (("mamba", "transformer"), {}),
}


def make_mixer(name: str, d_model: int, *, causal: bool = True, **options) -> Mixer:
    """A causal mixer by name: a registry name, ``"transformer_naive"`` or ``"hybrid"`` (see the module docstring).

    ``options`` go to the mixer; ``<registry name>=dict(...)`` gives options to one architecture only (e.g.
    ``longformer={"window": 256}``), so one options dict serves a whole sweep.
    """
    per_arch = {k: options.pop(k) for k in list(options) if k in MIXERS and isinstance(options[k], dict)}
    if name in VARIANTS:
        names, extra = VARIANTS[name]
    elif name in MIXERS:
        names, extra = (name,), {}
    else:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(MIXERS) + sorted(VARIANTS)}")
    mixers = []
    for i, n in enumerate(names):
        opts = {**options, **per_arch.get(n, {}), **extra}
        mixers.append(MIXERS[n](d_model=d_model, causal=causal, layer_idx=i, **opts))
    return mixers[0] if len(mixers) == 1 else MixerChain(mixers)


def sweep_archs(
    archs: Sequence[str],
    lengths: Sequence[int],
    *,
    mode: str,
    d_model: int,
    options: dict | None = None,
    seed: int = 0,
    **bench_kwargs,
) -> pd.DataFrame:
    """``bench_mixer`` for each architecture (``make_mixer`` names), one DataFrame with an ``arch`` column.

    ``options``: mixer options for ``make_mixer`` (per-architecture dicts allowed); ``bench_kwargs`` go to
    ``bench_mixer`` (``batch_size``, ``device``, ``dtype``, ``amp``, ``warmup``, ``repeats``, ``max_seconds``).
    """
    frames = []
    for arch in archs:
        torch.manual_seed(seed)
        opts = dict(options or {})
        frames.append(
            bench_mixer(
                lambda a=arch, o=opts: make_mixer(a, d_model, **o),
                lengths,
                mode=mode,
                labels={"arch": arch},
                **bench_kwargs,
            )
        )
    return pd.concat(frames, ignore_index=True)


def fit_exponents(df: pd.DataFrame, y: str, *, by: str = "arch", x: str = "seq_len", tail: float = 0.5) -> pd.Series:
    """The fitted exponent of ``y ~ x^k`` for each group of ``by`` (rows with ``status`` other than "ok" dropped).

    NaN for a group with fewer than two usable lengths (it ran out of memory or time almost at once).
    """
    from .bench import fit_exponent

    ok = df if "status" not in df else df[df["status"] == "ok"]
    out = {}
    for name, g in ok.groupby(by, sort=False):
        try:
            out[name] = fit_exponent(g[x], g[y], tail=tail)
        except ValueError:
            out[name] = float("nan")
    return pd.Series(out, name=f"exponent of {y}")


def exponent_verdict(measured: float, claimed: float, tol: float = 0.25) -> str:
    """``"confirmed"`` when a measured growth exponent is within ``tol`` of the claimed one, else ``"refuted"``."""
    if measured != measured:  # NaN: nothing measured
        return "not measured"
    return "confirmed" if abs(measured - claimed) <= tol else "refuted"
