"""The book's plotting style and its standard figures.

Colours come from the Okabe-Ito palette, which stays distinguishable with the common colour-vision
deficiencies. It has 8 colours (7 besides yellow, too pale on white) for 13 architectures, so an
architecture is its colour *and* its marker *and* its line style: one colour per family (recurrent,
convolutional, attention, hybrid attention, linear attention / RWKV, state space), a line style
and a marker per member. Every marker is different, so a figure stays readable in grey.

The functions return the ``matplotlib`` Figure. No backend is forced: matplotlib itself falls back to a
non-interactive backend when there is no display, and notebooks keep their inline backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .bench import fit_power_law

__all__ = [
    "OKABE_ITO",
    "ARCH_STYLE",
    "ArchStyle",
    "use_style",
    "arch_color",
    "arch_label",
    "arch_style",
    "plot_loss_curves",
    "plot_scaling",
    "plot_accuracy_vs_length",
]

OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}


class ArchStyle(NamedTuple):
    color: str
    marker: str
    linestyle: str
    label: str


_O = OKABE_ITO
#: registry name -> fixed colour, marker, line style and display name
ARCH_STYLE: dict[str, ArchStyle] = {
    "lstm": ArchStyle(_O["blue"], "o", "-", "LSTM"),
    "gru": ArchStyle(_O["blue"], "s", "--", "GRU"),
    "cnn": ArchStyle(_O["bluish_green"], "^", "-", "CNN (causal, dilated)"),
    "kim_cnn": ArchStyle(_O["bluish_green"], "v", "--", "Kim CNN"),
    "transformer": ArchStyle(_O["vermillion"], "D", "-", "Transformer"),
    "longformer": ArchStyle(_O["vermillion"], "d", ":", "Sliding-window attention"),
    "transformer_naive": ArchStyle(_O["vermillion"], "H", "--", "Transformer, naive attention"),
    "conv_transformer": ArchStyle(_O["orange"], "P", "-", "Conv + Transformer"),
    "recurrent_transformer": ArchStyle(_O["orange"], "X", "--", "Transformer + recurrent memory"),
    "hybrid": ArchStyle(_O["orange"], "*", ":", "Hybrid (SSM + attention)"),
    "linear_attention": ArchStyle(_O["reddish_purple"], "p", "-", "Linear attention"),
    "rwkv": ArchStyle(_O["reddish_purple"], "h", "--", "RWKV"),
    "s4": ArchStyle(_O["sky_blue"], "<", "-", "S4D"),  # S4 with a diagonal state matrix (Gu et al. 2022)
    "mamba": ArchStyle(_O["black"], ">", "-", "Mamba"),
}

_FALLBACK_MARKERS = ["8", "H", "1", "2", "3", "4", "+", "x"]


def use_style(context: str = "notebook") -> None:
    """The book's look: seaborn ``whitegrid``, the Okabe-Ito palette (yellow last), readable sizes."""
    palette = [c for k, c in OKABE_ITO.items() if k != "yellow"] + [OKABE_ITO["yellow"]]
    sns.set_theme(context=context, style="whitegrid", palette=palette)
    plt.rcParams.update(
        {
            "figure.figsize": (7.0, 4.2),
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
        }
    )


def _check(name: str) -> ArchStyle:
    if name not in ARCH_STYLE:
        raise KeyError(f"no style for architecture {name!r}; known: {', '.join(ARCH_STYLE)}")
    return ARCH_STYLE[name]


def arch_color(name: str) -> str:
    """The fixed colour of architecture ``name`` (a registry name)."""
    return _check(name).color


def arch_label(name: str) -> str:
    """The display name of architecture ``name``."""
    return _check(name).label


def arch_style(name: str, index: int = 0) -> ArchStyle:
    """The style of ``name``; a name outside ``ARCH_STYLE`` (a variant) gets a grey style by ``index``."""
    if name in ARCH_STYLE:
        return ARCH_STYLE[name]
    return ArchStyle("#777777", _FALLBACK_MARKERS[index % len(_FALLBACK_MARKERS)], "-.", str(name))


def _new_ax(ax):
    if ax is None:
        fig, ax = plt.subplots(layout="constrained")
        return fig, ax
    return ax.figure, ax


def _legend(ax, handles=None, labels=None, grow: bool = True) -> None:
    """Inside the axes for a few lines, outside on the right for many (it would hide the data).

    ``grow``: widen the figure by the room the legend takes (for figures made here, not the caller's).
    """
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if len(handles) > 5:
        ax.legend(handles, labels, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
        if grow:
            ax.figure.set_figwidth(ax.figure.get_figwidth() + 0.09 * max(len(str(lab)) for lab in labels))
    else:
        ax.legend(handles, labels, fontsize="small")


def plot_loss_curves(
    histories: Mapping[str, pd.DataFrame],
    *,
    x: str = "step",
    y: str = "val_loss",
    show_train: bool = False,
    logy: bool = False,
    title: str | None = None,
    ax=None,
    per: str = "token",
) -> Figure:
    """One line per run (``histories``: name -> the trainer's history); ``x`` "step" or "time" (seconds).

    ``show_train`` adds each run's ``train_loss`` as a thin line of the same colour. The y axis is labelled
    with the loss's unit: the trainer's losses are cross-entropies in nats, averaged per token for language
    models and translation (``per="character"``, ``"word"``, ``"subword"`` where the tokens are those), per
    example for classifiers (``per="example"``). A ``y`` that is not a loss column is labelled with its name.
    """
    own, (fig, ax) = ax is None, _new_ax(ax)
    for i, (name, h) in enumerate(histories.items()):
        for col in (x, y):
            if col not in h:
                raise KeyError(f"history of {name!r} has no column {col!r}; columns: {list(h.columns)}")
        s = arch_style(name, i)
        pts = h[[x, y]].dropna()
        ax.plot(
            pts[x],
            pts[y],
            color=s.color,
            ls=s.linestyle,
            marker=s.marker,
            markevery=max(1, len(pts) // 8),
            label=s.label,
        )
        if show_train:
            ax.plot(h[x], h["train_loss"], color=s.color, lw=0.8, alpha=0.4)
    ax.set_xlabel({"step": "optimizer step", "time": "training time (s)"}.get(x, x))
    ax.set_ylabel(_loss_label(y, show_train, per))
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    _legend(ax, grow=own)
    return fig


def _loss_label(y: str, show_train: bool, per: str) -> str:
    """The y label of a loss plot: which loss, with its unit; ``show_train`` puts both losses on the axis."""
    what = {"val_loss": "validation loss", "train_loss": "training loss"}.get(y)
    if what is None:
        return y.replace("_", " ")
    if show_train and y != "train_loss":
        what = "loss"  # the validation curve and the thin training-loss line share the axis
    return f"{what} (nats per {per})"


def _groups(df: pd.DataFrame, hue: str | None, x: str):
    """(name, rows) per line; one row per x in each line, else the line would zig-zag between settings."""
    if hue is not None and hue not in df:
        raise KeyError(f"no column {hue!r} to colour by; columns: {list(df.columns)}")
    groups = [("", df)] if hue is None else list(df.groupby(hue, sort=False))
    for name, g in groups:
        if g[x].duplicated().any():
            raise ValueError(
                f"several rows per {x} for {name or 'the data'!r}: filter the data, or split it with hue=/col="
            )
    return groups


def plot_scaling(
    df: pd.DataFrame,
    *,
    x: str = "seq_len",
    y: str = "median_ms",
    hue: str | None = "arch",
    fit: bool = True,
    tail: float = 0.5,
    ylabel: str | None = None,
    title: str | None = None,
    ax=None,
) -> Figure:
    """Log-log ``y`` against ``x``, one line per ``hue``, with the fitted exponent in the legend.

    Rows whose ``status`` is not "ok" (out of memory, too slow) and missing values are left out; the
    fit (``seqlib.bench.fit_power_law``, longest ``tail`` of the lengths) is drawn dotted.
    """
    for col in (x, y):
        if col not in df:
            raise KeyError(f"no column {col!r}; columns: {list(df.columns)}")
    own, (fig, ax) = ax is None, _new_ax(ax)
    ok = df if "status" not in df else df[df["status"] == "ok"]
    for i, (name, g) in enumerate(_groups(ok, hue, x)):
        g = g[[x, y]].apply(pd.to_numeric, errors="coerce").dropna().sort_values(x)
        s = arch_style(str(name), i)
        label = s.label
        if fit and g[x].nunique() >= 2:
            k, c = fit_power_law(g[x], g[y], tail=tail)
            label = f"{label} (slope {k if abs(k) >= 0.005 else 0.0:.2f})"  # no "-0.00"
            xs = np.geomspace(g[x].iloc[-max(2, math.ceil(tail * len(g))) :].min(), g[x].max(), 50)  # fitted range
            ax.plot(xs, c * xs**k, color=s.color, ls=":", lw=1)
        ax.plot(g[x], g[y], color=s.color, ls=s.linestyle, marker=s.marker, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length" if x == "seq_len" else x)
    ax.set_ylabel(ylabel or {"median_ms": "time (ms)", "peak_mem_bytes": "peak memory (bytes)"}.get(y, y))
    if title:
        ax.set_title(title)
    _legend(ax, grow=own)
    return fig


def plot_accuracy_vs_length(
    df: pd.DataFrame,
    *,
    x: str = "seq_len",
    y: str = "accuracy",
    hue: str | None = "arch",
    col: str | None = None,
    chance: float | Mapping[str, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Accuracy against sequence length (log x), one line per ``hue``, one panel per value of ``col``.

    ``chance``: a dashed line at the chance level (one number, or one per ``col`` value).
    """
    for c in (x, y) + ((col,) if col else ()):
        if c not in df:
            raise KeyError(f"no column {c!r}; columns: {list(df.columns)}")
    panels = [("", df)] if col is None else list(df.groupby(col, sort=False))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels) + 2, 3.8), sharey=True, squeeze=False, layout="constrained"
    )
    for ax, (panel, pdf) in zip(axes[0], panels, strict=True):
        for i, (name, g) in enumerate(_groups(pdf, hue, x)):
            g = g.sort_values(x)
            s = arch_style(str(name), i)
            ax.plot(g[x], g[y], color=s.color, ls=s.linestyle, marker=s.marker, label=s.label)
        level = chance.get(panel) if isinstance(chance, Mapping) else chance
        if level is not None:
            ax.axhline(level, color="0.5", ls="--", lw=1, label="chance")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length" if x == "seq_len" else x)
        if col is not None:
            ax.set_title(str(panel))
    axes[0][0].set_ylabel(y.replace("_", " "))
    legend = {}  # label -> handle, over every panel (a panel may lack an architecture)
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(lab, h)
    _legend(axes[0][-1], list(legend.values()), list(legend.keys()))
    if title:
        fig.suptitle(title)
    return fig
