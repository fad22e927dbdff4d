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
    assert labels == ["Transformer (slope 2.00)", "Mamba (slope 1.00)"]
    assert len(ax.get_lines()) == 4  # data + fit for each
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    data_lines = [line for line in ax.get_lines() if line.get_label() in labels]
    assert len(data_lines[0].get_xdata()) == 4  # the OOM row is left out
    assert len(plots.plot_scaling(df, fit=False).axes[0].get_lines()) == 2


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
    labels = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert labels == ["LSTM", "Mamba", "chance"]
