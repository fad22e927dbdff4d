"""The book's plotting style and its standard figures.

Colours come from the Okabe-Ito palette, which stays distinguishable with the common colour-vision
deficiencies. It has 8 colours (7 besides yellow, too pale on white) for 13 architectures, so an
architecture is its colour *and* its marker *and* its line style: one colour per family (recurrent,
convolutional, attention, hybrid attention, linear attention / RWKV, state space), a line style
and a marker per member. Every marker is different, so a figure stays readable in grey.

Names outside ``ARCH_STYLE`` (variants such as "learned" or "RoPE") get greys, told apart by line style and
marker; a caller can pass its own styles (``styles=``). Log axes are labelled with plain numbers
(``plain_log_ticks``), not "2×10⁰".

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
from matplotlib.lines import Line2D
from matplotlib.ticker import Formatter

from .bench import fit_power_law

__all__ = [
    "OKABE_ITO",
    "ARCH_STYLE",
    "ArchStyle",
    "use_style",
    "arch_color",
    "arch_label",
    "arch_style",
    "plain_log_ticks",
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

# Names outside ARCH_STYLE: every Okabe-Ito colour but yellow (too pale) is taken by a family, so greys of three
# shades; four line styles and markers unlike each other tell up to eight such lines apart.
_FALLBACK_COLORS = ["#444444", "#888888", "#222222"]
_FALLBACK_LINESTYLES = ["-", "--", ":", "-."]
_FALLBACK_MARKERS = ["o", "s", "^", "x", "D", "v", "+", "*"]
#: the fitted power laws of ``plot_scaling``: sparse dots, a style no architecture uses
FIT_LINESTYLE = (0, (1, 4))


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
    """The style of ``name``; a name outside ``ARCH_STYLE`` (a variant) gets a grey style by ``index``.

    Different indices give different line styles and markers (and grey shades), so variants plotted together
    stay apart; pass each its position in the figure.
    """
    if name in ARCH_STYLE:
        return ARCH_STYLE[name]
    return ArchStyle(
        _FALLBACK_COLORS[index % len(_FALLBACK_COLORS)],
        _FALLBACK_MARKERS[index % len(_FALLBACK_MARKERS)],
        _FALLBACK_LINESTYLES[index % len(_FALLBACK_LINESTYLES)],
        str(name),
    )


def _style(name, index: int, styles: Mapping[str, ArchStyle] | None) -> ArchStyle:
    """The caller's style for ``name`` if it gave one, else ``arch_style``."""
    if styles is not None and name in styles:
        return ArchStyle(*styles[name])
    return arch_style(str(name), index)


def _plain_number(x: float) -> str:
    """A tick value as written in prose: 0.6, 2, 128, 65,536."""
    if float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:,.6g}"


def _power_text(x: float) -> str:
    """A tick value far from 1 in mathtext: 10^k, 2^k, or m×10^k."""
    k10 = math.log10(x)
    if abs(k10 - round(k10)) < 1e-9:
        return rf"$\mathdefault{{10^{{{round(k10)}}}}}$"
    k2 = math.log2(x)
    if abs(k2 - round(k2)) < 1e-9:
        return rf"$\mathdefault{{2^{{{round(k2)}}}}}$"
    e = math.floor(k10)
    return rf"$\mathdefault{{{x / 10**e:g}\times10^{{{e}}}}}$"


class PlainLogFormatter(Formatter):
    """Tick labels for a log axis: plain numbers ("0.6", "2", "1,024") while the axis stays within
    [0.001, 10⁶), powers (10⁻⁶, 2²⁰) beyond, so one axis never mixes the two.

    ``minor``: label every minor tick while the axis spans under 0.4 of a decade (it may have no major tick), those
    with a leading 2, 3 or 5 up to 1.2 decades, those with a leading 3 up to 2.5 (an axis of one or two major ticks
    still reads), none beyond.
    """

    PLAIN_RANGE = (1e-3, 1e6)

    def __init__(self, minor: bool = False):
        self.minor = minor

    def _span(self) -> tuple[float, float]:
        lo, hi = sorted(self.axis.get_view_interval()) if self.axis is not None else (1.0, 10.0)
        return max(lo, 1e-300), max(hi, 1e-300)

    def __call__(self, x, pos=None) -> str:
        if not np.isfinite(x) or x <= 0:
            return ""
        lo, hi = self._span()
        if self.minor:
            decades = math.log10(hi / lo)
            lead = round(x / 10 ** math.floor(math.log10(x) + 1e-9), 6)
            shown = (1, 2, 3, 5) if decades <= 1.2 else (3,) if decades <= 2.5 else ()
            if decades > 0.4 and lead not in shown:
                return ""
        if self.PLAIN_RANGE[0] <= lo and hi < self.PLAIN_RANGE[1]:
            return _plain_number(x)
        return _power_text(x)


def plain_log_ticks(ax, axis: str = "both"):
    """Label the log-scaled axes of ``ax`` (``axis``: "x", "y" or "both") with plain numbers (``PlainLogFormatter``).

    Linear axes are left alone, so this can be called on any axes after its scales are set. Returns ``ax``.
    """
    if axis not in ("x", "y", "both"):
        raise ValueError(f"axis must be 'x', 'y' or 'both', got {axis!r}")
    for name in ("x", "y") if axis == "both" else (axis,):
        a = ax.xaxis if name == "x" else ax.yaxis
        if a.get_scale() == "log":
            a.set_major_formatter(PlainLogFormatter())
            a.set_minor_formatter(PlainLogFormatter(minor=True))
    return ax


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
        # framed: with no frame (the style's default) a line through the legend runs through its text
        ax.legend(handles, labels, fontsize="small", frameon=True, framealpha=0.9, edgecolor="none")


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
    styles: Mapping[str, ArchStyle] | None = None,
) -> Figure:
    """One line per run (``histories``: name -> the trainer's history); ``x`` "step" or "time" (seconds).

    ``show_train`` adds each run's ``train_loss`` as a thin line of the same colour, with one legend entry for
    them all. ``styles``: name -> ``ArchStyle`` for names the caller styles itself (variants of one
    architecture); other names get ``arch_style``. The y axis is labelled
    with the loss's unit: the trainer's losses are cross-entropies in nats, averaged per token for language
    models and translation (``per="character"``, ``"word"``, ``"subword"`` where the tokens are those), per
    example for classifiers (``per="example"``). A ``y`` that is not a loss column is labelled with its name.
    """
    own, (fig, ax) = ax is None, _new_ax(ax)
    for i, (name, h) in enumerate(histories.items()):
        for col in (x, y):
            if col not in h:
                raise KeyError(f"history of {name!r} has no column {col!r}; columns: {list(h.columns)}")
        s = _style(name, i, styles)
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
        plain_log_ticks(ax, "y")
    if title:
        ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    if show_train and y != "train_loss":  # a key for the thin lines (drawn in each run's colour)
        handles.append(Line2D([], [], color="0.4", lw=0.8))
        labels.append("training loss (thin line)")
    _legend(ax, handles, labels, grow=own)
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
    styles: Mapping[str, ArchStyle] | None = None,
) -> Figure:
    """Log-log ``y`` against ``x``, one line per ``hue``, with the fitted exponent in the legend.

    Rows whose ``status`` is not "ok" (out of memory, too slow) and missing values are left out. The fit
    (``seqlib.bench.fit_power_law``, longest ``tail`` of the lengths) is drawn as a faint, sparsely dotted line
    in the line's colour (``FIT_LINESTYLE``, a style no architecture uses) over every length measured, so its
    departure from the data at short lengths shows; the legend has one entry for the fits. Ticks are plain
    numbers (``plain_log_ticks``). ``styles``: as in ``plot_loss_curves``.
    """
    for col in (x, y):
        if col not in df:
            raise KeyError(f"no column {col!r}; columns: {list(df.columns)}")
    own, (fig, ax) = ax is None, _new_ax(ax)
    ok = df if "status" not in df else df[df["status"] == "ok"]
    fitted = False
    for i, (name, g) in enumerate(_groups(ok, hue, x)):
        g = g[[x, y]].apply(pd.to_numeric, errors="coerce").dropna().sort_values(x)
        s = _style(name, i, styles)
        label = s.label
        if fit and g[x].nunique() >= 2:
            k, c = fit_power_law(g[x], g[y], tail=tail)
            label = f"{label} (slope {k if abs(k) >= 0.005 else 0.0:.2f})"  # no "-0.00"
            xs = np.geomspace(g[x].min(), g[x].max(), 50)  # fitted on the longest lengths, drawn over all
            ax.plot(xs, c * xs**k, color=s.color, ls=FIT_LINESTYLE, lw=2, alpha=0.6, zorder=1.5)
            fitted = True
        ax.plot(g[x], g[y], color=s.color, ls=s.linestyle, marker=s.marker, label=label, zorder=2)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length" if x == "seq_len" else x)
    ax.set_ylabel(ylabel or {"median_ms": "time (ms)", "peak_mem_bytes": "peak memory (bytes)"}.get(y, y))
    plain_log_ticks(ax)
    if title:
        ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    if fitted:
        handles.append(Line2D([], [], color="0.3", ls=FIT_LINESTYLE, lw=2, alpha=0.6))
        labels.append(_fit_label(tail))
    _legend(ax, handles, labels, grow=own)
    return fig


def _fit_label(tail: float) -> str:
    part = "half" if tail == 0.5 else f"{tail:.0%}"
    return f"power law fitted to the longest {part}" if tail < 1 else "power law fitted to all lengths"


def plot_accuracy_vs_length(
    df: pd.DataFrame,
    *,
    x: str = "seq_len",
    y: str = "accuracy",
    hue: str | None = "arch",
    col: str | None = None,
    chance: float | Mapping[str, float] | None = None,
    title: str | None = None,
    ylim: tuple[float, float] | None = None,
    styles: Mapping[str, ArchStyle] | None = None,
    panel_width: float = 3.2,
) -> Figure:
    """Accuracy against sequence length (log x), one line per ``hue``, one panel per value of ``col``.

    ``chance``: a dashed line at the chance level (one number, or one per ``col`` value). ``ylim``: the y range,
    by default (-0.02, 1.02) when every ``y`` lies in [0, 1] (an accuracy), else matplotlib's. Panels are
    ``panel_width`` inches wide (titled with the ``col`` value, underscores as spaces); one legend for all of
    them goes below the panels. ``styles``: as in ``plot_loss_curves``.
    """
    for c in (x, y) + ((col,) if col else ()):
        if c not in df:
            raise KeyError(f"no column {c!r}; columns: {list(df.columns)}")
    panels = [("", df)] if col is None else list(df.groupby(col, sort=False))
    width = max(panel_width * len(panels), 5.0)  # one panel alone still leaves room for its legend
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 3.4), sharey=True, squeeze=False, layout="constrained")
    for ax, (panel, pdf) in zip(axes[0], panels, strict=True):
        for i, (name, g) in enumerate(_groups(pdf, hue, x)):
            g = g.sort_values(x)
            s = _style(name, i, styles)
            ax.plot(g[x], g[y], color=s.color, ls=s.linestyle, marker=s.marker, label=s.label)
        level = chance.get(panel) if isinstance(chance, Mapping) else chance
        if level is not None:
            ax.axhline(level, color="0.5", ls="--", lw=1, label="chance")
        ax.set_xscale("log", base=2)
        plain_log_ticks(ax, "x")
        ax.set_xlabel("sequence length" if x == "seq_len" else x)
        if col is not None:
            ax.set_title(str(panel).replace("_", " "))
    axes[0][0].set_ylabel(y.replace("_", " "))
    values = pd.to_numeric(df[y], errors="coerce").dropna()
    if ylim is None and len(values) and values.between(0, 1).all():
        ylim = (-0.02, 1.02)
    if ylim is not None:
        axes[0][0].set_ylim(*ylim)  # shared by every panel
    legend = {}  # label -> handle, over every panel (a panel may lack an architecture)
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(lab, h)
    if legend:
        # about 0.55 in of handle and padding plus 0.075 in per character at the small legend size
        entry = 0.55 + 0.075 * max(len(lab) for lab in legend)
        ncol = max(1, min(len(legend), int(width // entry)))
        rows = math.ceil(len(legend) / ncol)
        fig.set_figheight(fig.get_figheight() + 0.25 * rows + 0.1)  # the legend's room, not the panels'
        fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncol=ncol, fontsize="small")
    if title:
        fig.suptitle(title)
    return fig
