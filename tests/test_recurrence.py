import pytest
import torch

from seqlib.models import MIXERS
from seqlib.recurrence import fast_vs_step, step_through


@pytest.mark.parametrize("arch", ["linear_attention", "s4", "mamba", "rwkv", "longformer"])
def test_step_through_equals_forward(arch):
    torch.manual_seed(0)
    mixer = MIXERS[arch](d_model=16).double()
    x = torch.randn(2, 21, 16, dtype=torch.float64)
    torch.testing.assert_close(step_through(mixer, x), mixer(x))


def test_step_through_rejects_bad_rank():
    with pytest.raises(ValueError, match="batch, time"):
        step_through(MIXERS["rwkv"](d_model=8), torch.randn(3, 8))


def test_fast_vs_step_columns():
    df = fast_vs_step(lambda: MIXERS["rwkv"](d_model=8), [4, 8], warmup=0, repeats=1, labels={"arch": "rwkv"})
    assert list(df["seq_len"]) == [4, 8]
    assert {"arch", "fast_ms", "step_ms", "ratio"} <= set(df.columns)
    assert (df["ratio"] > 0).all()
    assert df["ratio"].to_numpy() == pytest.approx((df["step_ms"] / df["fast_ms"]).to_numpy())  # how many times faster


def test_fast_vs_step_uses_the_batch_size_and_the_step_repeats(monkeypatch):
    import seqlib.recurrence as rec

    calls = []

    def fake_time_fn(fn, *, warmup, repeats, device):
        calls.append(repeats)
        fn()
        return {"median_ms": 1.0}

    monkeypatch.setattr(rec, "time_fn", fake_time_fn)
    mixer = MIXERS["rwkv"](d_model=8)
    shapes = []
    mixer.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
    fast_vs_step(lambda: mixer, [5], batch_size=3, repeats=4, step_repeats=2)
    assert shapes == [(3, 5, 8)] and calls == [4, 2]
