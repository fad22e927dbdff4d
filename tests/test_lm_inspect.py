"""lm_inspect: attention maps, step-by-step decoding against the forward, the decoding benchmark."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from seqlib.lm_inspect import attention_maps, decode_vs_recompute, plot_attention_heads, step_logits
from seqlib.models import build_model


def _lm(arch="transformer", **kw):
    torch.manual_seed(0)
    return build_model(arch, "lm", vocab_size=11, d_model=16, n_layers=2, **kw).eval()


def test_attention_maps_are_causal_distributions():
    model = _lm()
    tokens = torch.randint(0, 11, (2, 7))
    maps = attention_maps(model, tokens)
    assert sorted(maps) == [0, 1]
    for w in maps.values():
        assert w.shape == (2, 4, 7, 7)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 7))
        assert torch.all(w.triu(1) == 0)  # no weight on the future
    assert model.training is False


def test_attention_maps_are_those_of_the_inputs_the_mixers_see_in_the_forward():
    model = _lm()
    tokens = torch.randint(0, 11, (2, 7))
    seen = {}
    hooks = [
        block.mixer.register_forward_pre_hook(lambda m, args, i=i: seen.__setitem__(i, args[0]))
        for i, block in enumerate(model.backbone.blocks)
    ]
    with torch.no_grad():
        model(tokens)
    for h in hooks:
        h.remove()
    maps = attention_maps(model, tokens)
    for i, block in enumerate(model.backbone.blocks):  # normalised, and after the earlier blocks
        torch.testing.assert_close(maps[i], block.mixer.attention_map(seen[i]).detach())


def test_attention_maps_need_attention():
    with pytest.raises(ValueError, match="no attention"):
        attention_maps(_lm("lstm"), torch.randint(0, 11, (1, 5)))
    with pytest.raises(TypeError, match="LanguageModel"):
        attention_maps(torch.nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.long))


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_step_logits_equal_forward(arch):
    model = _lm(arch)
    tokens = torch.randint(0, 11, (2, 9))
    with torch.no_grad():
        full = model(tokens)
    torch.testing.assert_close(step_logits(model, tokens), full, rtol=1e-4, atol=1e-5)


def test_decode_vs_recompute_rows():
    df = decode_vs_recompute(_lm(), [4, 8], warmup=0, repeats=2, amp=None)
    assert list(df["prefix"]) == [4, 8]
    assert (df[["cached_ms", "recompute_ms", "speedup"]] > 0).all().all()
    # how many times faster the cache is: recomputing over the prefix, per cached step
    assert df["speedup"].to_numpy() == pytest.approx((df["recompute_ms"] / df["cached_ms"]).to_numpy())
    model = _lm().train()
    decode_vs_recompute(model, [2], warmup=0, repeats=1, amp=None)
    assert model.training  # left in the mode it was in (dropout stays on in the middle of training)


def test_plot_attention_heads_checks_shape():
    fig = plot_attention_heads(torch.rand(2, 3, 3).softmax(-1), list("ab "))
    assert len(fig.axes) == 3  # two heads and a colour bar
    with pytest.raises(ValueError, match="labels"):
        plot_attention_heads(torch.rand(2, 3, 3), list("ab"))


def test_plot_attention_heads_wraps_more_than_two_heads():
    fig = plot_attention_heads(torch.rand(3, 4, 4).softmax(-1), list("abcd"))
    heads = [ax for ax in fig.axes if ax.get_visible() and ax.get_title().startswith("head")]
    assert [ax.get_title() for ax in heads] == ["head 0", "head 1", "head 2"]
    assert fig.get_figwidth() < 9  # two heatmaps a row, not three
    assert len({round(ax.get_position().y0, 3) for ax in heads}) == 2  # on two rows
    matplotlib.pyplot.close(fig)


def test_attention_maps_leave_the_training_mode_as_it_was():
    model = _lm()
    attention_maps(model, torch.randint(0, 11, (1, 5)))
    assert not model.backbone.training
    model.train()
    attention_maps(model, torch.randint(0, 11, (1, 5)))
    assert model.backbone.training


def test_plot_attention_heads_scale_labels_and_shape():
    w = torch.softmax(torch.randn(4, 3, 3), dim=-1) * 0.5  # no weight near 1: the scale must still be [0, 1]
    fig = plot_attention_heads(w, ["a", "\n", "b"])
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_title().startswith("head")]
    assert all(ax.get_images()[0].get_clim() == (0.0, 1.0) for ax in axes)  # one colour scale for every head
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["a", "\\n", "b"]  # whitespace shown escaped
    fig = plot_attention_heads(torch.rand(1, 2, 2).softmax(-1), ["a", " "])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "\u2423"]  # a space is not a blank label
    assert [bool(ax.get_ylabel()) for ax in axes] == [True, False, True, False]  # first column of each row
    with pytest.raises(ValueError, match="weights must be"):
        plot_attention_heads(torch.rand(2, 3, 4), ["a", "b", "c"])


def test_decode_vs_recompute_uses_the_batch_size(monkeypatch):
    import seqlib.lm_inspect as li

    monkeypatch.setattr(li, "time_fn", lambda fn, **kw: fn() is None or {"median_ms": 1.0})
    model = _lm()
    batches = []
    model.backbone.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    decode_vs_recompute(model, [2], batch_size=3)
    assert batches == [3]
