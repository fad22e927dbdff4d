"""Plot style and the standard figures."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

from seqlib import plots

REGISTRY = [
    "lstm",
    "gru",
    "cnn",
    "transformer",
    "conv_transformer",
    "recurrent_transformer",
    "linear_attention",
    "s4",
    "mamba",
    "rwkv",
    "longformer",
    "kim_cnn",
    "hybrid",
]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_every_architecture_has_a_distinct_style():
    assert set(REGISTRY) <= set(plots.ARCH_STYLE)
    styles = [plots.ARCH_STYLE[a] for a in REGISTRY]
    assert len({(s.color, s.marker, s.linestyle) for s in styles}) == len(REGISTRY)
    assert len({s.marker for s in styles}) == len(REGISTRY)  # readable in grey too
    assert len({s.label for s in styles}) == len(REGISTRY)
    assert {s.color for s in styles} <= set(plots.OKABE_ITO.values())  # colour-blind-safe colours only
    # a colour shared by two architectures is told apart by line style
    for c in {s.color for s in styles}:
        same = [s.linestyle for s in styles if s.color == c]
        assert len(same) == len(set(same))
    assert plots.arch_color("mamba") == plots.OKABE_ITO["black"] and plots.arch_label("lstm") == "LSTM"
    with pytest.raises(KeyError, match="lstm"):
        plots.arch_color("lstmm")


def test_use_style_sets_the_palette():
    plots.use_style()
    cycle = [to_rgb(c) for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]]
    assert cycle[0] == to_rgb(plots.OKABE_ITO["black"]) and to_rgb(plots.OKABE_ITO["yellow"]) == cycle[-1]


def _history(n=5, scale=1.0):
    steps = np.arange(1, n + 1) * 10
    return pd.DataFrame(
        {
            "step": steps,
            "time": steps / 10,
            "train_loss": scale * 3 / np.sqrt(steps),
            "val_loss": np.where(steps % 20 == 0, scale * 3.1 / np.sqrt(steps), np.nan),
        }
    )


def test_plot_loss_curves():
    hist = {"lstm": _history(), "transformer": _history(scale=0.8), "my_variant": _history(scale=0.9)}
    fig = plots.plot_loss_curves(hist)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["LSTM", "Transformer", "my_variant"]
    assert ax.get_lines()[0].get_color() == plots.arch_color("lstm")
    assert len(ax.get_lines()[0].get_xdata()) == 2  # NaN rows (no evaluation) are skipped
    fig = plots.plot_loss_curves(hist, x="time", y="train_loss", show_train=True)
    assert len(fig.axes[0].get_lines()) == 6
    with pytest.raises(KeyError, match="val_ppl"):
        plots.plot_loss_curves(hist, y="val_ppl")


def test_plot_loss_curves_labels_the_loss_with_its_unit():
    hist = {"lstm": _history()}
    label = plots.plot_loss_curves(hist).axes[0].get_ylabel()
    assert label == "validation loss (nats per token)"
    # the thin training-loss lines share the axis: the label must not claim validation loss only
    label = plots.plot_loss_curves(hist, show_train=True, per="character").axes[0].get_ylabel()
    assert label == "loss (nats per character)"
    label = plots.plot_loss_curves(hist, y="train_loss", per="example").axes[0].get_ylabel()
    assert label == "training loss (nats per example)"
    hist["lstm"]["val_accuracy"] = 0.5
    assert plots.plot_loss_curves(hist, y="val_accuracy").axes[0].get_ylabel() == "val accuracy"
    plt.close("all")


def test_plot_scaling_shows_fitted_exponents():
    n = np.array([128, 256, 512, 1024, 2048])
    df = pd.concat(
        [
            pd.DataFrame({"arch": "transformer", "seq_len": n, "median_ms": 1e-4 * n**2.0, "status": "ok"}),
            pd.DataFrame({"arch": "mamba", "seq_len": n, "median_ms": 1e-2 * n, "status": "ok"}),
        ]
    )
    df.loc[(df.arch == "transformer") & (df.seq_len == 2048), ["status", "median_ms"]] = ["oom", np.nan]
    fig = plots.plot_scaling(df)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["Transformer (slope 2.00)", "Mamba (slope 1.00)", "power law fitted to the longest half"]
    assert len(ax.get_lines()) == 4  # data + fit for each
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    data_lines = [line for line in ax.get_lines() if line.get_label() in labels]
    assert len(data_lines[0].get_xdata()) == 4  # the OOM row is left out
    fits = [line for line in ax.get_lines() if line not in data_lines]
    for fit, data in zip(fits, data_lines, strict=True):
        # sparse dots: no architecture's line style (matplotlib reports any dash pattern as "--")
        assert fit._unscaled_dash_pattern == plots.FIT_LINESTYLE
        assert fit._unscaled_dash_pattern != data._unscaled_dash_pattern
        assert fit.get_color() == data.get_color() and fit.get_alpha() < 1 and fit.get_linewidth() >= 1.5
        # drawn over every length measured, not only the longest half it was fitted on
        assert fit.get_xdata().min() == pytest.approx(data.get_xdata().min())
        assert fit.get_xdata().max() == pytest.approx(data.get_xdata().max())
    no_fit = plots.plot_scaling(df, fit=False).axes[0]
    assert len(no_fit.get_lines()) == 2
    assert [t.get_text() for t in no_fit.get_legend().get_texts()] == ["Transformer", "Mamba"]


def test_plot_accuracy_vs_length():
    rows = [
        {"task": t, "arch": a, "seq_len": n, "accuracy": 1.0 / (1 + i)}
        for t in ("copy", "recall")
        for a in ("lstm", "mamba")
        for i, n in enumerate([64, 256, 1024])
    ]
    df = pd.DataFrame(rows)
    fig = plots.plot_accuracy_vs_length(df[df.task == "copy"], chance=0.1)
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 2 + 1  # two archs + chance
    with pytest.raises(ValueError, match="col="):  # two tasks in one panel would zig-zag
        plots.plot_accuracy_vs_length(df)
    fig = plots.plot_accuracy_vs_length(df, col="task", chance={"copy": 0.1, "recall": 0.05})
    assert [ax.get_title() for ax in fig.axes] == ["copy", "recall"]
    assert all(len(ax.get_lines()) == 3 for ax in fig.axes)
    assert all(ax.get_legend() is None for ax in fig.axes)  # one legend for the figure, below the panels
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["LSTM", "Mamba", "chance"]
    assert all(ax.get_ylim() == (-0.02, 1.02) for ax in fig.axes)  # accuracies: the whole range, every panel
    assert plots.plot_accuracy_vs_length(df, col="task", ylim=(0, 0.5)).axes[0].get_ylim() == (0, 0.5)


def test_plot_accuracy_vs_length_titles_and_width():
    tasks = ("selective_copying", "associative_recall", "induction_heads")
    rows = [
        {"task": t, "arch": a, "seq_len": n, "accuracy": 0.5}
        for t in tasks
        for a in plots.ARCH_STYLE
        for n in (64, 256, 1024)
    ]
    fig = plots.plot_accuracy_vs_length(pd.DataFrame(rows), col="task")
    assert [ax.get_title() for ax in fig.axes] == ["selective copying", "associative recall", "induction heads"]
    # about 3.2 in per panel, not widened for a legend at the side (it goes below, in several columns)
    assert fig.get_figwidth() <= 3.3 * len(tasks)
    (legend,) = fig.legends
    assert legend._ncols > 1
    fig.canvas.draw()
    assert legend.get_window_extent().x1 <= fig.bbox.x1 + 1  # the legend fits in the figure's width


def test_loss_curves_key_the_training_loss():
    hist = {"lstm": _history(), "transformer": _history(scale=0.8)}
    ax = plots.plot_loss_curves(hist, show_train=True).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["LSTM", "Transformer", "training loss (thin line)"]
    key = ax.get_legend().legend_handles[-1]
    assert key.get_linewidth() < ax.get_lines()[0].get_linewidth()
    assert len(ax.get_lines()) == 4  # the key is not a line of data
    ax = plots.plot_loss_curves(hist).axes[0]
    assert "training loss (thin line)" not in [t.get_text() for t in ax.get_legend().get_texts()]


def test_inside_legend_has_a_frame():
    plots.use_style()  # no frames by default
    ax = plots.plot_loss_curves({"lstm": _history()}).axes[0]
    legend = ax.get_legend()
    assert legend.get_frame_on() and legend.get_frame().get_alpha() >= 0.8


def test_fallback_styles_are_distinct():
    styles = [plots.arch_style(f"variant {i}", i) for i in range(8)]
    assert len({s.marker for s in styles}) == 8
    assert len({s.linestyle for s in styles[:4]}) == 4
    assert len({(s.color, s.linestyle, s.marker) for s in styles}) == 8
    # markers that read apart, and colours no architecture uses
    assert not {s.marker for s in styles} & {"8", "H", "1", "2", "3", "4"}
    assert not {s.color for s in styles} & {s.color for s in plots.ARCH_STYLE.values()}
    assert plots.arch_style("lstm", 3) == plots.ARCH_STYLE["lstm"]


def test_styles_override():
    hist = {"none": _history(), "learned": _history(scale=0.9), "lstm": _history(scale=0.8)}
    mine = {
        "none": plots.ArchStyle(plots.OKABE_ITO["vermillion"], "o", ":", "no positions"),
        "learned": (plots.OKABE_ITO["vermillion"], "s", "--", "learned"),  # a plain tuple works too
    }
    ax = plots.plot_loss_curves(hist, styles=mine).axes[0]
    lines = ax.get_lines()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["no positions", "learned", "LSTM"]
    assert [line.get_marker() for line in lines] == ["o", "s", plots.ARCH_STYLE["lstm"].marker]
    assert [line.get_linestyle() for line in lines] == [":", "--", "-"]
    assert lines[0].get_color() == plots.OKABE_ITO["vermillion"]


def test_plain_log_ticks():
    def labels(lo, hi, base=10):
        fig, ax = plt.subplots()
        ax.plot([lo, hi], [lo, hi])
        ax.set_yscale("log", base=base)
        ax.set_xlim(0, 1)
        assert plots.plain_log_ticks(ax) is ax
        fig.canvas.draw()
        y0, y1 = ax.get_ylim()
        shown = [t for t in ax.get_yticklabels() + ax.yaxis.get_minorticklabels() if t.get_text()]
        return [t.get_text() for t in shown if y0 <= t.get_position()[1] <= y1]

    short = labels(0.6, 3)  # less than a decade: minor ticks are labelled, as plain numbers
    assert {"1", "2", "3"} <= set(short) and not any("times" in t or "^" in t for t in short)
    assert set(labels(16, 4096, base=2)) >= {"16", "256", "4,096"}
    few = labels(5, 80)  # 1.2 decades, one power of ten in view: the 3s are labelled too
    assert "10" in few and "30" in few and len(few) >= 2
    many = labels(0.01, 2000)  # many decades: the powers of ten only, no crowded minor labels
    assert many == ["0.01", "0.1", "1", "10", "100", "1,000"]
    tiny = labels(1e-9, 1)  # beyond plain numbers: powers throughout, never a mix
    assert all("10^" in t for t in tiny)
    fig, ax = plt.subplots()
    ax.set_xscale("log")
    before = ax.yaxis.get_major_formatter()
    plots.plain_log_ticks(ax)  # a linear axis is left alone
    assert ax.yaxis.get_major_formatter() is before
    assert isinstance(ax.xaxis.get_major_formatter(), plots.PlainLogFormatter)
    with pytest.raises(ValueError, match="axis"):
        plots.plain_log_ticks(ax, "z")


def test_scaling_and_logy_use_plain_ticks():
    n = np.array([128, 256, 512])
    df = pd.DataFrame({"arch": "lstm", "seq_len": n, "median_ms": [2.0, 2.5, 3.0]})
    ax = plots.plot_scaling(df).axes[0]
    assert isinstance(ax.yaxis.get_major_formatter(), plots.PlainLogFormatter)
    assert isinstance(ax.xaxis.get_minor_formatter(), plots.PlainLogFormatter)
    ax = plots.plot_loss_curves({"lstm": _history()}, logy=True).axes[0]
    assert isinstance(ax.yaxis.get_major_formatter(), plots.PlainLogFormatter)


def test_one_colour_per_family_and_the_book_labels():
    families = [
        ("lstm", "gru"),
        ("cnn", "kim_cnn"),
        ("transformer", "longformer", "transformer_naive"),
        ("conv_transformer", "recurrent_transformer", "hybrid"),
        ("linear_attention", "rwkv"),
        ("s4",),
        ("mamba",),
    ]
    colours = [{plots.arch_color(a) for a in family} for family in families]
    assert all(len(c) == 1 for c in colours) and len(set().union(*colours)) == len(families)
    assert plots.arch_label("s4") == "S4D" and plots.arch_label("conv_transformer") == "Conv + Transformer"


def test_power_ticks_far_from_one():
    assert plots._power_text(2e-7) == r"$\mathdefault{2\times10^{-7}}$"
    assert (
        plots._power_text(1e-6) == r"$\mathdefault{10^{-6}}$" and plots._power_text(2**20) == r"$\mathdefault{2^{20}}$"
    )


def test_many_lines_put_the_legend_outside_and_widen_the_figure():
    hist = {f"variant {i}": _history(scale=1 + i / 10) for i in range(6)}
    fig = plots.plot_loss_curves(hist)
    assert fig.get_figwidth() > plt.rcParams["figure.figsize"][0]
    assert fig.axes[0].get_legend().get_bbox_to_anchor().x0 > fig.axes[0].get_window_extent().x1


def test_plot_loss_curves_time_axis_and_train_colour():
    fig = plots.plot_loss_curves({"lstm": _history()}, x="time", show_train=True)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "training time (s)"
    assert all(line.get_color() == plots.arch_color("lstm") for line in ax.get_lines())


def _scaling_df(arch, ms, n=(256, 512, 1024, 2048), **cols):
    return pd.DataFrame({"arch": arch, "seq_len": list(n), "median_ms": ms, "status": "ok", **cols})


def test_plot_scaling_labels_and_status():
    df = _scaling_df("lstm", [1.0, 2.0, 4.0, 8.0])
    df.loc[3, ["status", "median_ms"]] = ["timeout", 100.0]  # a row with a number but not "ok": left out
    ax = plots.plot_scaling(df).axes[0]
    assert len(ax.get_lines()[-1].get_xdata()) == 3
    assert ax.get_xlabel() == "sequence length" and ax.get_ylabel() == "time (ms)"
    flat = _scaling_df("lstm", [1.0, 0.9995, 0.999, 0.9985], peak_mem_bytes=[1e6, 2e6, 4e6, 8e6])
    ax = plots.plot_scaling(flat).axes[0]
    assert ax.get_legend().get_texts()[0].get_text() == "LSTM (slope 0.00)"  # not "-0.00"
    ax = plots.plot_scaling(flat, y="peak_mem_bytes").axes[0]
    assert ax.get_ylabel() == "peak memory (bytes)"


def test_fit_labels():
    assert plots._fit_label(0.5) == "power law fitted to the longest half"
    assert plots._fit_label(0.25) == "power law fitted to the longest 25%"
    assert plots._fit_label(1.0) == "power law fitted to all lengths"


def test_plot_accuracy_vs_length_chance_per_panel_ylim_and_order():
    df = pd.DataFrame(
        {
            "task": ["a"] * 3 + ["b"] * 3,
            "arch": "lstm",
            "seq_len": [1024, 64, 256] * 2,  # unsorted: the line still runs left to right
            "accuracy": [0.2, 0.9, 0.5, 0.3, 0.8, 0.6],
        }
    )
    fig = plots.plot_accuracy_vs_length(df, col="task", chance={"a": 0.5, "b": 0.25})
    for ax, level in zip(fig.axes, (0.5, 0.25), strict=True):
        data, chance = ax.get_lines()
        assert list(data.get_xdata()) == [64, 256, 1024]
        assert list(chance.get_ydata()) == [level, level]
    loss = df.assign(accuracy=df.accuracy * 3)  # not accuracies (some above 1): matplotlib's own limits
    assert plots.plot_accuracy_vs_length(loss, col="task").axes[0].get_ylim() != (-0.02, 1.02)
