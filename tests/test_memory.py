"""Memory formulas, the benchmark hybrid, and decoding state measured against ``state_size``."""

import pytest
import torch

from seqlib import bench
from seqlib.memory import (
    MixerChain,
    kv_cache_bytes,
    make_mixer,
    outline_kv_bytes,
    score_matrix_bytes,
    sweep_archs,
)
from seqlib.models import MIXERS


def test_formulas_gpt2_small():
    # GPT-2 small: 12 layers, d=768, 12 heads; 1024 tokens in bf16
    assert kv_cache_bytes(12, 768, 1024, 2) == 2 * 12 * 1024 * 768 * 2 == 36 * 2**20
    assert outline_kv_bytes(12, 12, 1024, 2) == 12 * 1024**2 * 12 * 2
    assert outline_kv_bytes(12, 12, 1024, 2) / kv_cache_bytes(12, 768, 1024, 2) == 1024 * 12 / (2 * 768)
    assert score_matrix_bytes(100, 4, 4, batch_size=2) == 2 * 4 * 100 * 100 * 4
    with pytest.raises(ValueError, match="seq_len"):
        kv_cache_bytes(12, 768, 0)


def test_kv_cache_formula_matches_a_decoded_cache():
    mixer = MIXERS["transformer"](d_model=32, n_heads=4)
    fn, extra = bench.decode_fn(mixer, 10, 3, device="cpu")
    assert extra["state_bytes_per_seq"] == kv_cache_bytes(1, 32, 10, 4)


def test_make_mixer_names_and_options():
    naive = make_mixer("transformer_naive", 16, transformer={"n_heads": 2})
    assert naive.impl == "reference" and naive.n_heads == 2
    window = make_mixer("longformer", 16, longformer={"window": 5}, transformer={"n_heads": 8})
    assert window.window == 5
    hybrid = make_mixer("hybrid", 16, transformer={"n_heads": 2})
    assert isinstance(hybrid, MixerChain) and [type(m).__name__ for m in hybrid.layers] == [
        "MambaMixer",
        "AttentionMixer",
    ]
    with pytest.raises(ValueError, match="unknown architecture"):
        make_mixer("nope", 16)


def test_mixer_chain_steps_like_its_forward():
    torch.manual_seed(0)
    chain = make_mixer("hybrid", 16, transformer={"n_heads": 2}).eval()
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        y = chain(x)
        state = chain.init_state(2)
        steps = []
        for t in range(7):
            y_t, state = chain.step(x[:, t], state)
            steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, 1), y, atol=1e-4, rtol=1e-4)
    assert chain.state_size(7) == sum(m.state_size(7) for m in chain.layers)
    assert bench.tensor_bytes(state) == 2 * 4 * chain.state_size(7)  # fp32, batch of 2


def test_mixer_chain_rejects_mixed_widths():
    with pytest.raises(ValueError, match="d_model"):
        MixerChain([MIXERS["lstm"](d_model=8), MIXERS["gru"](d_model=16)])


def test_sweep_archs_labels_and_state_bytes():
    df = sweep_archs(
        ["lstm", "longformer"],
        [4, 12],
        mode="decode",
        d_model=16,
        options={"longformer": {"window": 6, "n_heads": 2}},
        device="cpu",
        warmup=0,
        repeats=1,
    )
    assert list(df["arch"]) == ["lstm", "lstm", "longformer", "longformer"]
    assert (df["state_bytes_per_seq"] == 4 * df["state_numbers_per_seq"]).all()
    window = df[df["arch"] == "longformer"].set_index("seq_len")["state_numbers_per_seq"]
    assert window[4] == 2 * 4 * 16 and window[12] == 2 * 6 * 16  # capped at the window


def test_fit_exponents_and_verdicts():
    import pandas as pd

    from seqlib.memory import exponent_verdict, fit_exponents

    n = [64, 128, 256, 512]
    df = pd.DataFrame(
        {
            "arch": ["a"] * 4 + ["b"] * 4 + ["c"] * 4,
            "seq_len": n * 3,
            "status": ["ok"] * 9 + ["ok", "oom", "oom"],
            "y": [7.0 * v**2 for v in n] + [5.0] * 4 + [1.0, None, None, None],
        }
    )
    k = fit_exponents(df, "y")
    assert k["a"] == pytest.approx(2.0) and k["b"] == pytest.approx(0.0) and k.isna()["c"]
    # flat, then linear: the default fits the longest half of the lengths, tail=1.0 all of them
    bent = pd.DataFrame({"arch": ["d"] * 4, "seq_len": n, "y": [512.0, 512.0, 512.0, 1024.0]})
    assert fit_exponents(bent, "y")["d"] == pytest.approx(1.0)
    assert fit_exponents(bent, "y", tail=1.0)["d"] < 0.5
    assert exponent_verdict(1.9, 2) == "confirmed" and exponent_verdict(1.0, 2) == "refuted"
    assert exponent_verdict(float("nan"), 1) == "not measured"


def test_formulas_refuse_an_empty_batch():
    for formula, args in ((kv_cache_bytes, (12, 768, 1024)), (outline_kv_bytes, (12, 12, 1024))):
        with pytest.raises(ValueError, match="batch_size"):
            formula(*args, batch_size=0)


def test_per_architecture_options_override_the_shared_ones():
    window = make_mixer("longformer", 16, window=8, n_heads=4, longformer={"window": 5})
    assert window.window == 5 and window.n_heads == 4


def test_a_chain_is_causal_only_when_every_layer_is():
    causal = MIXERS["transformer"](d_model=16, n_heads=2, causal=True)
    both = MIXERS["transformer"](d_model=16, n_heads=2, causal=False)
    assert MixerChain([causal, causal]).causal and not MixerChain([causal, both]).causal


def test_fit_exponents_leave_out_lengths_that_did_not_run():
    import pandas as pd

    from seqlib.memory import fit_exponents

    # the state of a prefix that ran out of memory while timing is still recorded: it is not a measured point
    df = pd.DataFrame(
        {"arch": ["a"] * 4, "seq_len": [64, 128, 256, 512], "status": ["ok"] * 3 + ["oom"], "y": [1.0, 2.0, 4.0, 64.0]}
    )
    assert fit_exponents(df, "y")["a"] == pytest.approx(1.0)


def test_exponent_verdict_default_tolerance():
    from seqlib.memory import exponent_verdict

    assert exponent_verdict(1.8, 2) == "confirmed" and exponent_verdict(1.6, 2) == "refuted"
