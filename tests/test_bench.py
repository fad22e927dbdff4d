"""Benchmark harness: timing, memory, sweeps that stop at OOM or a time limit, exponent fits, mixer modes."""

import time

import numpy as np
import pytest
import torch
from torch import nn

from seqlib import bench


def test_time_fn_measures_a_sleep():
    r = bench.time_fn(lambda: time.sleep(0.005), warmup=1, repeats=5, device="cpu")
    assert 4.5 <= r["median_ms"] < 50 and r["repeats"] == 5
    assert r["q25_ms"] <= r["median_ms"] <= r["q75_ms"] and r["iqr_ms"] >= 0
    with pytest.raises(ValueError):
        bench.time_fn(lambda: None, repeats=0, device="cpu")


def test_peak_memory_on_cpu_sees_temporaries():
    def fn():
        a = torch.ones(1024, 1024)  # 4 MiB, freed before b
        del a
        b = torch.ones(512, 1024)  # 2 MiB
        return b.sum()

    peak = bench.peak_memory(fn, "cpu")
    assert 4 * 2**20 <= peak < 5 * 2**20  # the peak is the larger temporary, not the sum


def test_sweep_one_row_per_length():
    df = bench.sweep(
        lambda n: lambda: torch.ones(n).cumsum(0),
        [64, 16, 32],
        device="cpu",
        warmup=1,
        repeats=2,
        labels={"arch": "toy"},
    )
    assert df["seq_len"].tolist() == [16, 32, 64]  # shortest first
    assert (df["status"] == "ok").all() and (df["arch"] == "toy").all() and (df["mode"] == "call").all()
    assert (df["median_ms"] > 0).all() and (df["peak_mem_bytes"] >= 0).all()


def test_sweep_stops_at_oom():
    def make_fn(n):
        def fn():
            if n > 32:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")
            return torch.zeros(n)

        return fn

    df = bench.sweep(make_fn, [16, 32, 64, 128, 256], device="cpu", warmup=1, repeats=2)
    assert df["seq_len"].tolist() == [16, 32, 64]
    assert df["status"].tolist() == ["ok", "ok", "oom"]
    assert np.isnan(df["median_ms"].iloc[-1])


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes"),
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
        RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
        RuntimeError("cuFFT error: CUFFT_ALLOC_FAILED"),
        MemoryError(),
    ],
)
def test_sweep_records_every_kind_of_out_of_memory(error):
    """The CPU allocator's and the CUDA libraries' allocation failures end a sweep as "oom", as torch's own does."""

    def make_fn(n):
        def fn():
            if n > 16:
                raise error
            return torch.zeros(n)

        return fn

    df = bench.sweep(make_fn, [16, 32, 64], device="cpu", warmup=1, repeats=2)
    assert df["status"].tolist() == ["ok", "oom"]


def test_sweep_reraises_other_errors():
    def make_fn(n):
        def fn():
            raise ValueError("a bug, not a memory limit")

        return fn

    with pytest.raises(ValueError, match="a bug"):
        bench.sweep(make_fn, [8], device="cpu")


def test_sweep_stops_when_a_call_is_too_slow():
    df = bench.sweep(
        lambda n: lambda: time.sleep(n / 1000),
        [1, 2, 100, 200],
        device="cpu",
        max_seconds=0.05,
        warmup=1,
        repeats=2,
        memory=False,
    )
    assert df["status"].tolist() == ["ok", "ok", "too slow"]
    assert "peak_mem_bytes" not in df


@pytest.mark.parametrize("k", [1.0, 2.0])
def test_fit_exponent_recovers_slope(k):
    n = np.array([16, 32, 64, 128, 256, 512, 1024])
    assert bench.fit_exponent(n, 3.0 * n**k) == pytest.approx(k, abs=1e-9)
    # a constant overhead flattens the short lengths; the fit on the longest half still sees ~k
    with_overhead = 1.0 + 100 * (n / 1024) ** k  # 1 ms of launch overhead, 100 ms of work at the longest
    tail, everything = bench.fit_exponent(n, with_overhead), bench.fit_exponent(n, with_overhead, tail=1.0)
    assert tail == pytest.approx(k, abs=0.25) and abs(tail - k) < abs(everything - k) - 0.05


def test_fit_ignores_missing_points_and_needs_two():
    assert bench.fit_exponent([1, 2, 4, 8], [1.0, 4.0, None, float("nan")]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="two"):
        bench.fit_exponent([1, 2], [1.0, None])
    k, c = bench.fit_power_law([10, 100], [5.0, 50.0])
    assert k == pytest.approx(1.0) and c == pytest.approx(0.5)


class ToyMixer(nn.Module):
    """Causal running sum of a projection: a mixer with the streaming contract (state: (B, D))."""

    def __init__(self, d_model=8):
        super().__init__()
        self.d_model, self.proj = d_model, nn.Linear(d_model, d_model)

    def forward(self, x):  # (B, T, D)
        return self.proj(x).cumsum(1)

    def init_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, self.d_model, device=device, dtype=dtype)

    def step(self, x_t, state):  # (B, D)
        s = state + self.proj(x_t)
        return s, s

    def state_size(self, seq_len):
        return self.d_model


class KVMixer(ToyMixer):
    """Keeps every past input, like a KV cache: the state grows with the prefix."""

    def init_state(self, batch_size, device=None, dtype=None):
        return {"k": torch.zeros(batch_size, 0, self.d_model, device=device, dtype=dtype)}

    def step(self, x_t, state):
        k = torch.cat([state["k"], x_t[:, None]], 1)  # (B, n+1, D)
        return self.proj(k.sum(1)), {"k": k}

    def state_size(self, seq_len):
        return seq_len * self.d_model


@pytest.mark.parametrize("mode", bench.MODES)
def test_bench_mixer_modes(mode):
    df = bench.bench_mixer(
        ToyMixer, [4, 8], mode=mode, batch_size=2, device="cpu", warmup=1, repeats=2, labels={"arch": "toy"}
    )
    assert df["seq_len"].tolist() == [4, 8] and (df["status"] == "ok").all() and (df["mode"] == mode).all()
    # tokens per second from the median time of one call: B x T tokens a call, one token per sequence decoding
    per_call = 2 * (1 if mode == "decode" else df["seq_len"])
    assert df["tokens_per_s"].to_numpy() == pytest.approx((per_call / (df["median_ms"] / 1e3)).to_numpy(), rel=1e-6)
    if mode == "decode":
        assert df["state_bytes_per_seq"].tolist() == [8 * 4, 8 * 4]  # (D,) float32 per sequence
        assert df["state_numbers_per_seq"].tolist() == [8, 8]


def test_decode_state_grows_with_a_kv_cache():
    df = bench.bench_mixer(KVMixer, [4, 16], mode="decode", batch_size=2, device="cpu", warmup=1, repeats=2)
    assert df["state_bytes_per_seq"].tolist() == [4 * 8 * 4, 16 * 8 * 4]
    assert df["state_numbers_per_seq"].tolist() == [32, 128]
    fn, extra = bench.decode_fn(KVMixer(), 3, batch_size=1, device="cpu")
    assert fn().shape == (1, 8) and extra["state_bytes_per_seq"] == 3 * 8 * 4
    with pytest.raises(ValueError, match="mode"):
        bench.bench_mixer(KVMixer, [4], mode="generate", device="cpu")


def test_train_mode_counts_gradients_as_memory():
    mixer = nn.Linear(256, 256)
    mixer.d_model = 256
    fn = bench.train_step_fn(mixer, torch.randn(1, 4, 256))
    fn()
    assert bench.peak_memory(fn, "cpu") >= 256 * 256 * 4  # the weight's gradient is allocated by the call


def test_tensor_bytes_counts_shared_storage_once():
    t = torch.zeros(10, 4)
    assert bench.tensor_bytes({"a": t, "b": [t[1:], (torch.zeros(3, dtype=torch.float64),)]}) == 160 + 24


def test_linear_time_verdict_needs_the_sweep_to_tell_linear_from_quadratic():
    v = bench.linear_time_verdict
    assert v({"mamba": 1.0, "rwkv": 1.1, "transformer": 1.9}, ["mamba", "rwkv"]) == "confirmed"
    assert v({"mamba": 1.0, "transformer": 1.2}, ["mamba"]).startswith("inconclusive")  # attention looks linear too
    assert v({"mamba": 1.6, "transformer": 1.9}, ["mamba"]) == "not confirmed by this run"
    assert v({"mamba": 1.0}, ["mamba"]) == v({"mamba": float("nan"), "transformer": 2.0}, ["mamba"]) == "not measured"


def test_bench_mixer_takes_amp_as_the_trainer_does_and_explains_bad_input():
    run = {"mode": "train", "device": "cpu", "warmup": 0, "repeats": 1}
    assert bench.bench_mixer(ToyMixer, [4], amp="bf16", **run)["status"].tolist() == ["ok"]
    cpu = torch.device("cpu")
    for amp, dtype in [("bf16", torch.bfloat16), ("fp32", None), ("auto", None), (torch.float16, torch.float16)]:
        assert bench._amp_dtype(amp, cpu) == dtype
    assert bench._amp_dtype(torch.float32, cpu) is None and bench._amp_dtype(None, cpu) is None
    with pytest.raises(ValueError, match="fp16' needs a CUDA GPU"):
        bench.bench_mixer(ToyMixer, [4], amp="fp16", **run)
    with pytest.raises(ValueError, match="amp must be one of"):
        bench.bench_mixer(ToyMixer, [4], amp="fp8", **run)
    with pytest.raises(TypeError, match=r"callable returning a fresh mixer.*a ToyMixer already built"):
        bench.bench_mixer(ToyMixer(), [4], **run)
    with pytest.raises(TypeError, match=r"must return a mixer \(an nn.Module\), got int"):
        bench.bench_mixer(lambda: 3, [4], **run)
    for lengths in ([0], [-5, 4], []):
        with pytest.raises(ValueError, match="lengths must be one or more whole numbers >= 1"):
            bench.bench_mixer(ToyMixer, lengths, **run)
    assert bench.bench_mixer(ToyMixer, [0], **{**run, "mode": "decode"})["status"].tolist() == ["ok"]  # a prefix


def test_training_peak_memory_counts_the_gradients_on_every_call():
    """Gradients are freed at the end of each call: the second call's peak still holds them (freed at the start
    instead, the previous call's gradients sat in the baseline and cancelled out)."""
    from torch import nn

    from seqlib.bench import peak_memory, train_step_fn

    class Dense(nn.Module):  # a stand-in mixer: (B, T, D) -> (B, T, D)
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(256, 256)

        def forward(self, x):
            return self.lin(x)

    fn = train_step_fn(Dense(), torch.randn(1, 1, 256))
    grads = (256 * 256 + 256) * 4
    peaks = [peak_memory(fn) for _ in range(3)]
    assert all(p >= grads for p in peaks), peaks
    assert max(peaks) - min(peaks) < grads / 4, peaks


def test_linear_time_is_not_confirmed_when_any_one_architecture_grows_faster():
    v = bench.linear_time_verdict
    assert v({"mamba": 1.0, "rwkv": 1.8, "transformer": 2.0}, ["mamba", "rwkv"]) == "not confirmed by this run"
    assert v({"mamba": 1.8, "rwkv": 1.0, "transformer": 2.0}, ["mamba", "rwkv"]) == "not confirmed by this run"
    assert v({"mamba": 1.0, "rwkv": 1.3, "transformer": 2.0}, ["mamba", "rwkv"]) == "confirmed"  # at the limit


def scripted_clock(monkeypatch, durations_ms):
    """``time.perf_counter`` as seen by ``fn``: each call of the returned ``fn`` takes the next of ``durations_ms``."""
    clock, calls = [0.0], []
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])

    def fn():
        clock[0] += durations_ms[len(calls)] / 1e3
        calls.append(1)

    return fn, calls


def test_time_fn_warms_up_then_reports_the_median_of_the_timed_calls(monkeypatch):
    # two warm-up calls (slow: first-use costs), then five timed calls, one of them an outlier
    fn, calls = scripted_clock(monkeypatch, [500.0, 500.0, 2.0, 1.0, 3.0, 100.0, 2.0])
    r = bench.time_fn(fn, warmup=2, repeats=5, device="cpu")
    assert len(calls) == 7
    assert r["median_ms"] == pytest.approx(2.0) and r["min_ms"] == pytest.approx(1.0)
    assert r["mean_ms"] == pytest.approx(108.0 / 5)


def test_sweep_makes_no_more_repeats_than_asked_under_a_time_limit():
    df = bench.sweep(lambda n: lambda: None, [4], device="cpu", warmup=0, repeats=2, max_seconds=10.0, memory=False)
    assert df["repeats"].tolist() == [2]


def test_sweep_forgives_a_slow_first_call(monkeypatch):
    """The first call may pay one-off costs (autotuning): it is probed again before the length is called too slow."""
    fn, _ = scripted_clock(monkeypatch, [1000.0] + [1.0] * 20)
    df = bench.sweep(lambda n: fn, [4], device="cpu", warmup=1, repeats=2, max_seconds=0.05, memory=False)
    assert df["status"].tolist() == ["ok"]


def test_fit_uses_the_longest_half_rounded_up():
    # five lengths: the longest three (rounded up from 2.5), not two; flat then doubling
    n, y = [1, 2, 4, 8, 16], [1.0, 1.0, 1.0, 1.0, 2.0]
    expected = np.polyfit(np.log([4, 8, 16]), np.log([1.0, 1.0, 2.0]), 1)[0]
    assert bench.fit_exponent(n, y) == pytest.approx(expected)


def test_linear_time_verdict_at_the_threshold():
    v = bench.linear_time_verdict
    assert v({"mamba": 1.0, "transformer": 1.3}, ["mamba"]).startswith("inconclusive")  # the reference at the limit
    assert v({"mamba": 1.4, "transformer": 2.0}, ["mamba"]) == "not confirmed by this run"


class ModeRecorder(ToyMixer):
    """Records whether it was called in training mode (dropout would be active)."""

    def __init__(self, d_model=8):
        super().__init__(d_model)
        self.modes = set()

    def forward(self, x):
        self.modes.add(self.training)
        return super().forward(x)

    def step(self, x_t, state):
        self.modes.add(self.training)
        return super().step(x_t, state)


@pytest.mark.parametrize("mode", bench.MODES)
def test_bench_mixer_trains_only_in_train_mode(mode):
    made = []
    bench.bench_mixer(
        lambda: made.append(ModeRecorder()) or made[-1], [4], mode=mode, device="cpu", warmup=0, repeats=1
    )
    assert made[0].modes == {mode == "train"}
