"""The trainer: budgets, schedule, evaluation, losses, and exact resume from a checkpoint."""

import math

import pytest
import torch
from torch import nn

from seqlib.train import (
    TrainConfig,
    Trainer,
    classify_loss,
    learning_rate,
    lm_loss,
    regression_loss,
    seq2seq_loss,
    train,
)

V, D, T, B = 16, 16, 8, 4


class TinyLM(nn.Module):
    """Embedding -> dropout -> linear: tokens (B, T) -> logits (B, T, V). Dropout makes the RNG matter."""

    def __init__(self, dropout: float = 0.1):
        super().__init__()
        self.emb, self.drop, self.head = nn.Embedding(V, D), nn.Dropout(dropout), nn.Linear(D, V)

    def forward(self, x):
        return self.head(self.drop(self.emb(x)))


def get_batch(gen: torch.Generator):
    """The task: predict (token + 1) mod V."""
    x = torch.randint(0, V, (B, T), generator=gen)
    return x, (x + 1) % V


def config(**kw) -> TrainConfig:
    kw = {"max_steps": 20, "lr": 1e-2, "warmup_steps": 2, "progress": False, "log_every": 1, **kw}
    return TrainConfig(**kw)


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TinyLM()


def test_loss_goes_down():
    res = train(make_model(), get_batch, config(max_steps=60), loss_fn=lm_loss, eval_batches=get_batch)
    h = res.history
    assert res.steps == 60 and res.stopped_by == "max_steps"
    assert h["train_loss"].iloc[-5:].mean() < 0.3 * h["train_loss"].iloc[:5].mean()
    assert res.metrics["val_loss"] < 1.0 and res.metrics["val_accuracy"] > 0.9
    assert res.tokens == 60 * B * T and res.tokens_per_s > 0
    assert res.n_params == sum(p.numel() for p in TinyLM().parameters())
    assert res.mfu is None  # no flops_per_token, and no peak on CPU
    assert math.isclose(res.perplexity, math.exp(res.metrics["val_loss"]))


def test_schedule_warmup_then_cosine_to_min_lr():
    c = TrainConfig(max_steps=100, lr=1.0, min_lr=0.1, warmup_steps=10)
    lrs = [learning_rate(c, s, s / 100, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:-1], lrs[11:], strict=True))
    assert learning_rate(c, 100, 1.0, 0.1) == pytest.approx(0.1)
    assert TrainConfig(max_steps=40).warmup == 2 and TrainConfig(max_steps=40, warmup_steps=0.25).warmup == 10
    assert TrainConfig(max_seconds=5).warmup == 100


@pytest.mark.parametrize(
    "kw",
    [
        {},  # no budget
        {"max_steps": 0},
        {"max_steps": 10, "max_seconds": -1},
        {"max_steps": 10, "lr": 0},
        {"max_steps": 10, "min_lr": 1.0},
        {"max_steps": 10, "amp": "fp8"},
        {"max_steps": 10, "eval_every": 0},
        {"max_steps": 10, "checkpoint_every": 5},  # without checkpoint_path
        {"max_seconds": 10, "warmup_steps": 0.1},  # a fraction of max_steps needs max_steps
        {"max_steps": 10, "betas": (0.9, 1.0)},
        {"max_steps": 10, "grad_clip": 0},
        {"max_steps": 10, "on_divergence": "skip"},
    ],
)
def test_invalid_config_raises(kw):
    with pytest.raises(ValueError):
        TrainConfig(**kw)


def test_fp16_on_cpu_raises():
    with pytest.raises(ValueError, match="CUDA"):
        Trainer(make_model(), get_batch, config(amp="fp16"), device="cpu")


def test_max_seconds_budget_stops(monkeypatch):
    import seqlib.train

    clock = [0.0]  # a fake clock: every batch "takes" 10 ms, so the test does not depend on the machine's load
    monkeypatch.setattr(seqlib.train.time, "perf_counter", lambda: clock[0])

    def slow_batch(gen):
        clock[0] += 0.01
        return get_batch(gen)

    res = train(make_model(), slow_batch, config(max_steps=None, max_seconds=0.2, warmup_steps=1))
    assert res.stopped_by == "max_seconds"
    assert 0.2 <= res.train_seconds < 0.25
    assert 19 <= res.steps <= 21  # each step takes 10 ms: 20 fit, plus at most the one that crosses the line
    assert res.tokens_per_s == pytest.approx(res.tokens / res.train_seconds)  # B x T tokens every 10 ms
    assert res.tokens_per_s == pytest.approx(B * T / 0.01, rel=0.1)
    assert res.history["lr"].iloc[-1] < 0.25 * 1e-2  # the schedule follows the clock down to min_lr


def test_eval_every_n_steps_and_at_the_end():
    res = train(make_model(), get_batch, config(max_steps=10, eval_every=4, log_every=100), eval_batches=get_batch)
    h = res.history
    assert h["step"].tolist() == [4, 8, 10]
    assert h["val_loss"].notna().all() and h["val_accuracy"].between(0, 1).all()


def test_evaluation_does_not_change_training():
    a, b = make_model(), make_model()
    train(a, get_batch, config())
    calls = []

    def evaluate(model):
        calls.append(torch.rand(1))  # consumes the global RNG
        return {"score": 1.0}

    res = train(b, get_batch, config(eval_every=3), eval_batches=get_batch, evaluate=evaluate)
    assert len(calls) == 7 and res.metrics["score"] == 1.0
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


class Crash(RuntimeError):
    pass


def crashing(fn, at: int):
    calls = [0]

    def wrapped(gen):
        calls[0] += 1
        if calls[0] == at:
            raise Crash("simulated disconnect")
        return fn(gen)

    return wrapped


class FixedBatches:
    """A deterministic re-iterable data set; ``crash_at`` raises on that batch of the first pass."""

    def __init__(self, n: int = 6, crash_at: int | None = None):
        gen = torch.Generator().manual_seed(123)
        self.batches = [get_batch(gen) for _ in range(n)]
        self.crash_at, self.served = crash_at, 0

    def __iter__(self):
        for b in self.batches:
            self.served += 1
            if self.served == self.crash_at:
                raise Crash("simulated disconnect")
            yield b


@pytest.mark.parametrize("startup", [False, True], ids=["plain", "startup"])
@pytest.mark.parametrize("form", ["function", "iterable"])
def test_resume_after_crash_equals_uninterrupted_run(tmp_path, form, startup):
    """With the startup step, the resumed run warms up again on its first batch, and still trains on it."""
    ckpt = str(tmp_path / "run.pt")
    data = get_batch if form == "function" else FixedBatches()
    ref_model = make_model()
    ref = train(ref_model, data, config(eval_every=4, startup_step=startup), eval_batches=get_batch)

    crash_data = crashing(get_batch, at=13) if form == "function" else FixedBatches(crash_at=13)
    cfg = config(eval_every=4, checkpoint_path=ckpt, checkpoint_every=5, log_every=3, startup_step=startup)
    with pytest.raises(Crash):
        train(make_model(), crash_data, cfg, eval_batches=get_batch)
    assert torch.load(ckpt, weights_only=True)["step"] == 10

    resumed_model = make_model(seed=99)  # a different init: everything must come from the checkpoint
    data = get_batch if form == "function" else FixedBatches()
    res = train(resumed_model, data, cfg, eval_batches=get_batch)
    assert res.steps == 20
    for p, q in zip(ref_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(p, q)
    # same losses at the steps both logged (the crashed run logged every 3 steps, the reference every step)
    h = res.history.set_index("step")
    r = ref.history.set_index("step").loc[h.index]
    assert h.index.tolist() == [3, 4, 6, 8, 9, 12, 15, 16, 18, 20]
    assert h["lr"].tolist() == r["lr"].tolist()
    assert h["val_loss"].dropna().tolist() == r["val_loss"].dropna().tolist()
    # a row logs the mean over its interval: rebuild it from the reference's per-step losses
    per_step = ref.history.set_index("step")["train_loss"]
    starts = [0, *h.index[:-1]]
    for (end, loss), start in zip(h["train_loss"].items(), starts, strict=True):
        assert loss == pytest.approx(per_step.loc[start + 1 : end].mean(), rel=1e-6)


def test_resume_refuses_a_different_config(tmp_path):
    ckpt = str(tmp_path / "run.pt")
    train(make_model(), get_batch, config(max_steps=4, checkpoint_path=ckpt))
    with pytest.raises(ValueError, match="lr"):
        train(make_model(), get_batch, config(max_steps=8, lr=0.5, checkpoint_path=ckpt))


def test_data_exhausted_and_epochs():
    one_shot = iter(FixedBatches(7).batches)
    res = train(make_model(), one_shot, config(max_steps=20))
    assert res.steps == 7 and res.stopped_by == "data exhausted"
    res = train(make_model(), FixedBatches(3).batches, config(max_steps=10))  # a list: re-iterated per epoch
    assert res.steps == 10
    with pytest.raises(TypeError, match="re-iterable"):
        train(make_model(), get_batch, config(), eval_batches=iter(FixedBatches(2).batches))


def poisoned_loss(at_step: int, seen: dict):
    """``lm_loss`` that turns into nan at call ``at_step`` (1-based); ``seen["weights"]``: the weights it got then."""
    calls = [0]

    def loss_fn(model, batch):
        calls[0] += 1
        loss, n = lm_loss(model, batch)[:2]
        if calls[0] == at_step:
            seen["weights"] = {k: v.clone() for k, v in model.state_dict().items()}
            loss = loss * float("nan")
        return loss, n

    return loss_fn


@pytest.mark.parametrize("grad_clip", [1.0, None])
def test_divergence_raises_or_stops_at_the_last_finite_row(grad_clip):
    cfg = config(max_steps=20, log_every=5, grad_clip=grad_clip)
    with pytest.raises(FloatingPointError, match="at step 15"):
        train(make_model(), get_batch, cfg, loss_fn=poisoned_loss(12, {}))
    seen = {}
    cfg = config(max_steps=20, log_every=5, grad_clip=grad_clip, on_divergence="stop")
    model = make_model()
    with pytest.warns(RuntimeWarning, match="diverged by step 15"):
        res = train(model, get_batch, cfg, loss_fn=poisoned_loss(12, seen), eval_batches=get_batch)
    assert res.stopped_by == "diverged" and res.diverged_at_step == 15 and res.steps == 10
    assert res.summary()["diverged_at_step"] == 15
    assert res.history["step"].tolist() == [5, 10] and math.isfinite(res.metrics["val_loss"])
    # the tokens, seconds and throughput are those of the 10 steps it keeps, not of the dropped interval
    assert res.tokens == 10 * int(get_batch(torch.Generator())[1].numel())
    assert res.train_seconds == res.history["time"].iloc[-1]
    assert res.tokens_per_s == pytest.approx(res.tokens / res.train_seconds)
    # the weights the 12th step's loss saw are those after 11 updates: the run kept those after 10, all finite
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    assert any(not torch.equal(v, seen["weights"][k]) for k, v in model.state_dict().items())
    # nan in the first interval: no finite row to go back to
    with pytest.raises(FloatingPointError, match="at step 5"):
        train(make_model(), get_batch, cfg, loss_fn=poisoned_loss(3, {}))


def test_divergence_in_the_last_partial_interval_stops_too():
    cfg = config(max_steps=13, log_every=5, on_divergence="stop")  # rows at 5, 10 and the end, 13
    with pytest.warns(RuntimeWarning, match="diverged by step 13"):
        res = train(make_model(), get_batch, cfg, loss_fn=poisoned_loss(12, {}), eval_batches=get_batch)
    assert res.stopped_by == "diverged" and res.steps == 10 and res.history["step"].tolist() == [5, 10]
    assert math.isfinite(res.metrics["val_loss"])  # evaluated once more, after going back to step 10
    evals = []
    res = train(
        make_model(), get_batch, config(max_steps=13, log_every=5), evaluate=lambda m: evals.append(1) or {"n": 1.0}
    )
    assert res.stopped_by == "max_steps" and len(evals) == 1  # a run that ends normally is evaluated once at the end


def test_stopping_at_divergence_keeps_the_weights_of_the_last_finite_row():
    seen = {}
    cfg = config(max_steps=20, log_every=5, on_divergence="stop")
    model = make_model()
    with pytest.warns(RuntimeWarning):
        train(model, get_batch, cfg, loss_fn=poisoned_loss(11, seen))  # the 11th step sees the 10th's weights
    assert all(torch.equal(v, seen["weights"][k]) for k, v in model.state_dict().items())


def test_bad_batch_structure_is_explained():
    with pytest.raises(ValueError, match=r"lm_loss expects batches \(tokens, targets\)"):
        train(make_model(), lambda g: get_batch(g)[0], config())


class TinyClassifier(nn.Module):
    def __init__(self, n_classes=3):
        super().__init__()
        self.emb, self.head = nn.Embedding(V, D), nn.Linear(D, n_classes)

    def forward(self, tokens, mask=None):
        h = self.emb(tokens)  # (B, T, D)
        m = mask.unsqueeze(-1).float()
        return self.head((h * m).sum(1) / m.sum(1))  # (B, C)


class TinySeq2Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.src, self.tgt, self.head = nn.Embedding(V, D), nn.Embedding(V, D), nn.Linear(D, V)

    def forward(self, src, tgt_in, src_mask=None):
        ctx = self.src(src).mean(1, keepdim=True)  # (B, 1, D)
        return self.head(self.tgt(tgt_in) + ctx)  # (B, T, V)


class TinyRegressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):  # (B, T, 2) -> (B, 1)
        return self.lin(x).sum(1)


def test_classify_seq2seq_regression_losses():
    def cls_batch(gen):
        tokens = torch.randint(0, V, (B, T), generator=gen)
        mask = torch.ones(B, T, dtype=torch.bool)
        mask[:, 5:] = False
        return tokens, mask, tokens[:, 0] % 3

    res = train(TinyClassifier(), cls_batch, config(max_steps=5), loss_fn=classify_loss, eval_batches=cls_batch)
    assert res.tokens == 5 * B * 5  # real tokens only
    assert 0 <= res.metrics["val_accuracy"] <= 1 and res.metrics["val_loss"] > 0

    def s2s_batch(gen):
        src = torch.randint(0, V, (B, T), generator=gen)
        tgt = torch.randint(0, V, (B, T + 1), generator=gen)
        tgt_out = tgt[:, 1:].clone()
        tgt_out[:, -2:] = -100  # padding
        return src, None, tgt[:, :-1], tgt_out

    res = train(TinySeq2Seq(), s2s_batch, config(max_steps=5), loss_fn=seq2seq_loss, eval_batches=s2s_batch)
    assert res.tokens == 5 * B * (T - 2) and "val_accuracy" in res.metrics

    def reg_batch(gen):
        x = torch.randn(B, T, 2, generator=gen)
        return x, x[..., 0].sum(1)

    cfg = config(max_steps=40, lr=0.1)
    res = train(TinyRegressor(), reg_batch, cfg, loss_fn=regression_loss, eval_batches=reg_batch)
    assert res.metrics["val_loss"] < 0.5 * res.history["train_loss"].iloc[0]
    with pytest.raises(ValueError, match="prediction"):
        train(TinyRegressor(), lambda g: (reg_batch(g)[0], torch.zeros(B, 2)), config(), loss_fn=regression_loss)


def test_seq2seq_label_smoothing_trains_on_the_smoothed_loss_and_evaluates_the_plain_one():
    torch.manual_seed(0)
    model = TinySeq2Seq()
    gen = torch.Generator().manual_seed(1)
    src, tgt = torch.randint(0, V, (B, T), generator=gen), torch.randint(0, V, (B, T + 1), generator=gen)
    tgt_out = tgt[:, 1:].clone()
    tgt_out[:, -2:] = -100  # padding is not scored
    batch = (src, None, tgt[:, :-1], tgt_out)
    logits = model(src, tgt[:, :-1]).reshape(-1, V)
    keep = tgt_out.reshape(-1) != -100
    logp, targets = logits[keep].log_softmax(-1), tgt_out.reshape(-1)[keep]
    plain = -logp.gather(1, targets[:, None]).mean()
    smoothed = 0.9 * plain - 0.1 * logp.mean()  # 0.1 of the target spread evenly over the V entries
    loss, n, _ = seq2seq_loss(model, batch, label_smoothing=0.1)
    torch.testing.assert_close(loss, smoothed)
    assert n == B * (T - 2) and abs(loss - plain) > 1e-3
    with torch.no_grad():
        eval_loss, _, metrics = seq2seq_loss(model, batch, label_smoothing=0.1)
    torch.testing.assert_close(eval_loss, plain.detach())
    assert "accuracy" in metrics
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="label_smoothing"):
            seq2seq_loss(model, batch, label_smoothing=bad)


def test_device_helpers_pick_precision_and_peak(monkeypatch):
    from seqlib import device as dev

    assert dev.autocast_dtype("cpu") is None and not dev.needs_grad_scaler("cpu")
    assert dev.peak_flops("cpu", torch.bfloat16) is None
    assert dev.device_name("cpu").startswith("cpu (") and "cores)" in dev.device_name("cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulated bf16 says True on a T4
    for capability, dtype in [((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, c=capability: c)
        assert dev.autocast_dtype("cuda") == dtype
        assert dev.needs_grad_scaler("cuda") == (dtype == torch.float16)
    for name, dtype, peak in [
        ("NVIDIA H100 80GB HBM3", torch.bfloat16, 989e12),
        ("NVIDIA H100 PCIe", torch.bfloat16, 756e12),
        ("NVIDIA H200", torch.bfloat16, 989e12),
        ("NVIDIA H200 NVL", torch.bfloat16, 835e12),
        ("NVIDIA A100-SXM4-40GB", torch.bfloat16, 312e12),
        ("Tesla T4", torch.float16, 65e12),
        ("Tesla T4", torch.bfloat16, None),
        ("NVIDIA L4", torch.bfloat16, 121e12),
        ("NVIDIA L40S", torch.bfloat16, 362e12),  # not the L4's or the L40's row
        ("NVIDIA A10G", torch.bfloat16, 70e12),  # not the A10's row
        ("NVIDIA A10", torch.bfloat16, 125e12),
        ("NVIDIA H100 80GB HBM3", torch.float32, 67e12),  # fp32 and no dtype: the plain fp32 peak
        ("NVIDIA H100 80GB HBM3", None, 67e12),
        ("Some Future GPU", torch.bfloat16, None),
    ]:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None, n=name: n)
        assert dev.peak_flops("cuda", dtype) == peak, name


def test_mfu_uses_flops_per_token_and_the_peak(monkeypatch):
    import seqlib.train as train_module

    monkeypatch.setattr(train_module, "peak_flops", lambda device, dtype: 1e9)
    res = train(make_model(), get_batch, config(max_steps=3), flops_per_token=600.0)
    assert res.mfu == pytest.approx(600.0 * res.tokens_per_s / 1e9)


def test_mfu_benchmark_measures_without_compile_where_compile_fails(monkeypatch):
    import seqlib.train as train_module

    def broken_compile(model, *args, **kwargs):
        raise RuntimeError("no C compiler found\nmore details")

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        out = train_module.gpt2_mfu_benchmark(profile="smoke", compile=True)
    assert "compile=False" in out["config"] and out["tokens_per_s"] > 0
    assert out["compile_error"] == "RuntimeError: no C compiler found"
    assert train_module.gpt2_mfu_benchmark(profile="smoke")["compile_error"] is None


# ----------------------------------------------------------------------------- bad input: targets, warmup, device
class CountingLM(TinyLM):
    """TinyLM that counts its forwards."""

    def __init__(self):
        super().__init__(dropout=0.0)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x)


def count_syncs(monkeypatch) -> list:
    """Counts ``Tensor.tolist`` and ``Tensor.item`` calls: each is one wait for the GPU."""
    calls = []
    for name in ("tolist", "item"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda t, _f=original, _n=name: calls.append(_n) or _f(t))
    return calls


def test_lm_targets_are_checked_with_one_sync_before_the_forward(monkeypatch):
    x = torch.randint(0, V, (B, T))
    model = CountingLM()
    for bad, match in [
        (torch.full((B, T), V), rf"targets hold ids in \[{V}, {V}\].*{V} logits per position"),
        (torch.full((B, T), -1), rf"in \[0, {V}\) or -100 \(not scored\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            lm_loss(model, (x, bad))
    before = model.calls
    with pytest.raises(TypeError, match="integer class ids"):
        lm_loss(model, (x, torch.zeros(B, T)))
    with pytest.raises(ValueError, match="every one of the batch's 32 targets is -100"):
        lm_loss(model, (x, torch.full((B, T), -100)))
    assert model.calls == before  # refused before the forward
    y = (x + 1) % V
    y[:, :2] = -100
    syncs = count_syncs(monkeypatch)
    loss, n, _ = lm_loss(model, (x, y.int()))  # int32 targets are converted exactly to the int64 of cross_entropy
    assert syncs == ["tolist"] and n == B * (T - 2)
    monkeypatch.undo()
    torch.testing.assert_close(loss, lm_loss(model, (x, y))[0])
    syncs = count_syncs(monkeypatch)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    lm_loss(model, (x, y))
    assert syncs == []  # no check (and no wait) while torch.compile traces


def test_seq2seq_and_classify_targets_are_checked():
    src = torch.randint(0, V, (B, T))
    tgt_out = torch.randint(0, V, (B, T))
    tgt_out[0, 0] = V + 3
    with pytest.raises(ValueError, match=r"seq2seq_loss: tgt_out hold ids in \[0, 19\]"):
        seq2seq_loss(TinySeq2Seq(), (src, None, src, tgt_out))
    mask = torch.ones(B, T, dtype=torch.bool)
    for labels, error, match in [
        (torch.tensor([0, 1, 2, 3]), ValueError, r"labels hold ids in \[0, 3\].*3 logits.*\[0, 3\);"),
        (torch.tensor([0, 1, -100, 2]), ValueError, "scores every example"),
        (torch.tensor([0.0, 1.0, 2.0, 1.0]), TypeError, "integer class ids"),
        (torch.tensor([], dtype=torch.long), ValueError, "no labels"),
    ]:
        with pytest.raises(error, match=match):
            classify_loss(TinyClassifier(), (src, mask, labels))
    with torch.no_grad():
        loss, _, metrics = classify_loss(TinyClassifier(), (src, mask, torch.tensor([0, 1, 2, 1], dtype=torch.uint8)))
    assert torch.isfinite(loss) and metrics["accuracy"][1] == B


def test_a_batch_without_a_scored_target_is_named_not_reported_as_divergence():
    def unscored(gen):
        x, y = get_batch(gen)
        return x, torch.full_like(y, -100)

    with pytest.raises(ValueError, match="-100 \\(not scored\\)"):
        train(make_model(), unscored, config(max_steps=3))


def test_warmup_as_long_as_the_run_is_cut_so_that_the_peak_is_reached():
    with pytest.warns(UserWarning, match=r"warmup_steps=50 >= max_steps=5.*2 steps"):
        c = TrainConfig(max_steps=5, warmup_steps=50, lr=1.0, progress=False, log_every=1)
    assert c.warmup == 2
    assert TrainConfig(max_steps=1).warmup == 0 and TrainConfig(max_steps=2, warmup_steps=0.9).warmup == 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warmup shorter than the run is left alone, silently
        assert TrainConfig(max_steps=4, warmup_steps=3).warmup == 3
    res = train(make_model(), get_batch, c)
    assert res.history["lr"].max() == pytest.approx(1.0)


def test_a_device_this_machine_lacks_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device is available.*device='cpu'"):
        train(make_model(), get_batch, config(), device="cuda")
    with pytest.raises(ValueError, match="'gpu' is not a device"):
        Trainer(make_model(), get_batch, config(), device="gpu")


def test_mfu_benchmark_honours_steps_in_every_profile(monkeypatch):
    import seqlib.train as train_module

    seen = []
    real_train = train_module.train
    monkeypatch.setattr(train_module, "train", lambda *a, **k: seen.append(a[2].max_steps) or real_train(*a, **k))
    assert train_module.gpt2_mfu_benchmark(profile="smoke", steps=2, compile=False)["tokens_per_s"] > 0
    assert seen == [2]
    with pytest.raises(ValueError, match="steps must be a positive int"):
        train_module.gpt2_mfu_benchmark(profile="smoke", steps=0)


def test_startup_step_is_untimed_and_leaves_the_trajectory_unchanged(tmp_path):
    """The untimed first forward and backward: no update, the random state restored (dropout draws the same
    masks), the same batches in the same order, its time outside the budget's clock."""
    a, b = make_model(), make_model()
    plain = train(a, get_batch, config(startup_step=False))
    warmed = train(b, get_batch, config(startup_step=True))
    assert plain.startup_seconds == 0.0 and warmed.startup_seconds > 0
    assert warmed.summary()["startup_seconds"] == warmed.startup_seconds
    assert warmed.steps == plain.steps and warmed.tokens == plain.tokens
    assert warmed.history["train_loss"].tolist() == plain.history["train_loss"].tolist()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    # a one-shot iterable: the batch drawn for the startup step is the first one trained on, not skipped
    c, d = make_model(), make_model()
    r1 = train(c, FixedBatches(n=6), config(max_steps=6, startup_step=False))
    r2 = train(d, FixedBatches(n=6), config(max_steps=6, startup_step=True))
    assert r1.history["train_loss"].tolist() == r2.history["train_loss"].tolist()
    # a resumed run (a new process pays the one-off costs again) warms up again and adds its time; one with no
    # step left to take does not
    ck = tmp_path / "ck.pt"
    first = train(make_model(), get_batch, config(max_steps=4, startup_step=True, checkpoint_path=str(ck)))
    with pytest.warns(UserWarning, match="different budget"):
        again = train(make_model(), get_batch, config(max_steps=8, startup_step=True, checkpoint_path=str(ck)))
    assert again.steps == 8 and again.startup_seconds > first.startup_seconds
    done = train(make_model(), get_batch, config(max_steps=8, startup_step=True, checkpoint_path=str(ck)))
    assert done.steps == 8 and done.startup_seconds == again.startup_seconds


def test_a_collapsing_float16_loss_scale_is_named():
    """Under fp16 the gradient scaler skips overflowing steps and halves its scale; a scale below 1 means step
    after step was skipped (the run would otherwise idle to the end of its budget with a nan loss)."""
    trainer = Trainer(make_model(), get_batch, config(max_steps=4), loss_fn=lm_loss)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=0.25)  # as if halved 18 times from 65,536
    with pytest.raises(FloatingPointError, match="loss scale fell to 0.25"):
        trainer.run()
    healthy = Trainer(make_model(), get_batch, config(max_steps=4), loss_fn=lm_loss)
    healthy.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    assert healthy.run().steps == 4


class FirstTokenLogits(torch.nn.Module):
    """A classifier whose logits are a fixed row of ``table`` per first token."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, tokens, mask=None):
        return self.table[tokens[:, 0]]


def test_validation_metrics_are_averaged_over_examples_not_batches():
    """Batches of 3 and then 1 example: accuracy and loss over the 4 examples, as one would compute them by hand."""
    table = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5]])
    batches = [
        (
            torch.tensor([[0, 5], [1, 5], [2, 5]]),
            torch.tensor([[True, True], [True, False], [True, True]]),
            torch.tensor([0, 1, 1]),
        ),
        (torch.tensor([[1, 5]]), torch.tensor([[True, True]]), torch.tensor([1])),
    ]
    trainer = Trainer(
        FirstTokenLogits(table), lambda g: batches[0], config(max_steps=1), loss_fn=classify_loss, eval_batches=batches
    )
    m = trainer.evaluate_now()
    logits, labels = table[torch.tensor([0, 1, 2, 1])], torch.tensor([0, 1, 1, 1])
    assert m["val_accuracy"] == pytest.approx(0.75)  # the third example is wrong
    assert m["val_loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())


def test_validation_loss_of_a_language_model_is_per_scored_token():
    """Two batches with different numbers of unscored (-100) targets: the loss is the mean over scored tokens."""
    torch.manual_seed(0)
    model = make_model()
    x = torch.randint(0, V, (2, T + 1))
    y1, y2 = x[:, 1:].clone(), x[:, 1:].clone()
    y1[:, 3:] = -100  # 6 scored targets
    y2[0, 1:] = -100  # T + 1 scored targets
    batches = [(x[:, :-1], y1), (x[:, :-1], y2)]
    m = Trainer(model, get_batch, config(max_steps=1), loss_fn=lm_loss, eval_batches=batches).evaluate_now()
    with torch.no_grad():
        logits = model.eval()(x[:, :-1])  # as evaluated: without dropout
    both = torch.cat([y1, y2]).flatten()
    expected = torch.nn.functional.cross_entropy(logits.repeat(2, 1, 1).flatten(0, 1), both)  # ignore_index -100
    assert m["val_loss"] == pytest.approx(expected.item(), rel=1e-5)


def fake_clock(monkeypatch, step_seconds: float = 0.01):
    """A clock that only moves when a batch is drawn (``step_seconds`` each): timings do not depend on the load."""
    import seqlib.train

    clock = [0.0]
    monkeypatch.setattr(seqlib.train.time, "perf_counter", lambda: clock[0])

    def slow_batch(gen):
        clock[0] += step_seconds
        return get_batch(gen)

    return slow_batch


def test_default_min_lr_is_a_tenth_of_the_peak():
    c = TrainConfig(max_steps=100, lr=1.0, warmup_steps=10)
    assert learning_rate(c, 99, 1.0, 0.1) == pytest.approx(0.1)


def test_with_two_budgets_the_schedule_follows_the_one_that_ends_the_run(monkeypatch):
    slow_batch = fake_clock(monkeypatch)
    res = train(make_model(), slow_batch, config(max_steps=1000, max_seconds=0.2, warmup_steps=1))
    assert res.stopped_by == "max_seconds" and res.steps < 30
    assert res.history["lr"].iloc[-1] < 0.25 * 1e-2  # down to min_lr by the clock, far from the step budget


def test_throughput_counts_each_interval_and_training_time_only(monkeypatch):
    """Every batch, evaluation batches too, takes 10 ms: each row's tokens/s is its own interval's, and the run's
    leaves the evaluation out."""
    slow_batch = fake_clock(monkeypatch)
    cfg = config(max_steps=10, log_every=2, eval_every=5, eval_batches=3)
    res = train(make_model(), slow_batch, cfg, eval_batches=slow_batch)
    assert res.wall_seconds > res.train_seconds + 0.05  # the evaluations took clock time
    assert res.tokens_per_s == pytest.approx(B * T / 0.01)
    assert res.history["tokens_per_s"].to_numpy() == pytest.approx(B * T / 0.01)


def test_grad_norm_of_a_row_is_the_mean_over_its_interval():
    every = train(make_model(), get_batch, config(max_steps=10)).history.set_index("step")["grad_norm"]
    fifth = train(make_model(), get_batch, config(max_steps=10, log_every=5)).history.set_index("step")["grad_norm"]
    assert fifth.index.tolist() == [5, 10]
    assert fifth.loc[5] == pytest.approx(every.loc[1:5].mean(), rel=1e-5)
    assert fifth.loc[10] == pytest.approx(every.loc[6:10].mean(), rel=1e-5)


def test_weight_decay_applies_to_matrices_only():
    trainer = Trainer(make_model(), get_batch, config(weight_decay=0.3))
    decay = {p.dim() >= 2 for g in trainer.optimizer.param_groups if g["weight_decay"] == 0.3 for p in g["params"]}
    plain = {p.dim() >= 2 for g in trainer.optimizer.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert decay == {True} and plain == {False}  # embedding and linear weights; the linear bias is not decayed


def test_mfu_benchmark_skips_the_first_third_and_takes_the_median(monkeypatch):
    from types import SimpleNamespace

    import pandas as pd

    import seqlib.train as train_module

    # the first third (compilation) is slow to start; the rest's median (25) differs from its mean (40)
    history = pd.DataFrame({"tokens_per_s": [1e6, 1e6, 10.0, 20.0, 30.0, 100.0]})
    monkeypatch.setattr(train_module, "train", lambda *a, **k: SimpleNamespace(history=history))
    monkeypatch.setattr(train_module, "peak_flops", lambda device, dtype: 1e6)
    out = train_module.gpt2_mfu_benchmark(profile="smoke", compile=False)
    assert out["tokens_per_s"] == 25
    L, T_, d = 2, 64, 64  # the tiny configuration
    assert out["flops_per_token"] == 6 * out["parameters"] + 12 * L * T_ * d
    assert out["mfu"] == pytest.approx(out["flops_per_token"] * 25 / 1e6, abs=1e-4)


def nan_gradient(at_step: int):
    """``lm_loss`` plus, at call ``at_step``, a term that is 0 but whose gradient is nan: a finite loss."""
    calls = [0]

    def loss_fn(model, batch):
        calls[0] += 1
        loss, n = lm_loss(model, batch)[:2]
        if calls[0] == at_step:
            b = model.head.bias
            loss = loss + torch.sqrt((b - b.detach()).abs().sum())
        return loss, n

    return loss_fn


def test_a_gradient_that_is_not_finite_is_divergence_though_the_loss_is_finite():
    with pytest.raises(FloatingPointError, match="gradient norm is nan at step 3"):
        train(make_model(), get_batch, config(max_steps=10), loss_fn=nan_gradient(3))
    model = make_model()
    with pytest.warns(RuntimeWarning, match="diverged by step 3"):
        res = train(model, get_batch, config(max_steps=10, on_divergence="stop"), loss_fn=nan_gradient(3))
    assert res.steps == 2 and all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_autocast_only_on_cuda_and_cpu_name_from_cpuinfo(monkeypatch):
    import io

    from seqlib import device as dev

    assert dev.autocast_dtype("mps") is None and not dev.needs_grad_scaler("mps")  # no fp16 autocast off CUDA
    cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n"
    monkeypatch.setattr(dev, "open", lambda *a, **k: io.StringIO(cpuinfo), raising=False)
    monkeypatch.setattr(dev.os, "cpu_count", lambda: 2)
    assert dev.device_name("cpu") == "cpu (AMD EPYC 7B13, 2 cores)"
