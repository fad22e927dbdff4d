"""Tests of seqlib.longrange: matched widths, chance levels, reach, verdicts from a table of accuracies."""

import math

import pandas as pd
import pytest

from seqlib import longrange as lr
from seqlib.data import IGNORE_INDEX, SYNTHETIC_TASKS
from seqlib.models import build_model, match_d_model


def test_matched_widths_agree_with_match_d_model():
    widths = lr.matched_widths(["transformer", "lstm"], "associative_recall", 60_000, n_layers=2, task_options={})
    for arch, (d, n) in widths.items():
        assert d == match_d_model(arch, "lm", 60_000, n_layers=2, vocab_size=64)
        assert abs(n - 60_000) / 60_000 <= 0.10
    with pytest.raises(ValueError, match="within"):
        lr.matched_widths(["lstm"], "induction_heads", 20_000, n_layers=2, tolerance=0.01)


def test_tasks_vocab_chance_and_example():
    assert lr.task_vocab("selective_copying", {"vocab_size": 18}) == 18
    assert lr.chance_accuracy("selective_copying", {"vocab_size": 18}) == pytest.approx(1 / 16)
    assert lr.chance_accuracy("associative_recall") == pytest.approx(1 / 32)  # default vocab 64
    assert lr.chance_accuracy("induction_heads", {"vocab_size": 16}) == pytest.approx(1 / 15)
    for task in ("copying", "selective_copying", "associative_recall", "induction_heads"):
        for v in (19, 20):  # odd and even vocabularies: chance is one over the answers the generator gives
            _, y = SYNTHETIC_TASKS[task](4000, 64, seed=0, vocab_size=v)
            answers = y[y != IGNORE_INDEX].unique().numel()
            assert lr.chance_accuracy(task, {"vocab_size": v}) == pytest.approx(1 / answers), (task, v)
    with pytest.raises(ValueError, match="regression"):
        lr.task_vocab("adding_problem")
    text = lr.format_example("induction_heads", 30, {"vocab_size": 16}, width=10)
    assert text.count("input") == 3 and text.count("target") == 3


def test_bands_and_reach():
    assert lr.band_of(64) == "short (<512)" and lr.band_of(512) == "medium (512-2K)"
    assert lr.band_of(4096) == "long (2K-8K)" and lr.band_of(10_000) == "very long (>8K)"
    cnn = build_model("cnn", "lm", vocab_size=10, d_model=16, n_layers=2)  # dilations 1, 2, kernel 3
    assert lr.reach_of(cnn) == 1 + 2 + 4
    win = build_model("longformer", "lm", vocab_size=10, d_model=16, n_layers=2, window=8)
    assert lr.reach_of(win) == 1 + 2 * 7
    assert lr.reach_of(build_model("lstm", "lm", vocab_size=10, d_model=16, n_layers=2)) is None


#: one architecture per family of the length ladder
LADDER_FAMILIES = {
    "RNN": ["lstm"],
    "CNN": ["cnn"],
    "Transformer": ["transformer"],
    "Efficient Transformers": ["transformer"],
    "SSM / Linear Attention": ["mamba"],
}


def _table():
    rows = []
    acc = {"transformer": [1.0, 1.0, 0.9], "cnn": [0.97, 0.3, 0.1], "lstm": [0.5, 0.1, 0.1], "mamba": [1, 1, 1]}
    for arch, accs in acc.items():
        for L, a in zip([64, 1024, 4096], accs, strict=True):
            rows.append({"arch": arch, "task": "t", "seq_len": L, "accuracy": a})
    return pd.DataFrame(rows)


def test_family_scores_and_judge():
    fam = {"RNN": ["lstm"], "CNN": ["cnn"], "Transformer": ["transformer"], "SSM": ["mamba"]}
    s = lr.family_scores(_table(), fam)
    assert list(s.index) == ["short (<512)", "medium (512-2K)", "long (2K-8K)"]
    short = s.loc["short (<512)"]
    assert lr.judge(short, [("Transformer", "≈", "CNN"), ("CNN", ">", "RNN")])[0] == "confirmed"
    assert lr.judge(short, [("RNN", ">", "CNN")])[0] == "refuted"
    assert lr.judge(short, [("Transformer", ">", "SSM")])[0] == "qualified"  # a tie
    assert lr.judge(s.loc["long (2K-8K)"], [("SSM", "best", None)])[0] == "confirmed"
    assert lr.judge(s.loc["long (2K-8K)"], [("CNN", "best", None)])[0] == "refuted"
    verdict, why = lr.judge(short, [("RNN", ">", "CNN")], floor=1.0)
    assert verdict == "undecided" and "nothing was learned" in why
    failed = short.copy()
    failed["RNN"] = math.nan  # every RNN run of the band ran out of memory or diverged
    verdict, why = lr.judge(failed, [("CNN", ">", "RNN")])
    assert verdict == "undecided" and why == "no result for RNN (out of memory or diverged)"
    assert lr.judge(failed.drop("RNN"), [("CNN", ">", "RNN")])[0] == "undecided"
    assert lr.judge(failed, [("Transformer", "≈", "CNN")])[0] == "confirmed"  # a claim that needs no RNN


def test_ladder_judges_each_rung_on_its_band_or_the_longest_measured():
    s = lr.family_scores(_table(), LADDER_FAMILIES)
    rungs = lr.ladder(s)
    assert list(rungs) == list(lr.LADDER)
    for band in ["short (<512)", "medium (512-2K)", "long (2K-8K)"]:
        verdict, why, judged_on = rungs[band]
        assert judged_on == band and (verdict, why) == lr.judge(s.loc[band], lr.LADDER[band])
    verdict, _, judged_on = rungs["very long (>8K)"]  # no length above 8K: judged on the longest band
    assert judged_on == "long (2K-8K)" and verdict == "confirmed"  # mamba 1.0 is best there
    assert rungs["short (<512)"][0] == "confirmed" and rungs["medium (512-2K)"][0] == "confirmed"
    assert all(v == "undecided" for v, _, _ in lr.ladder(s, floor=1.0).values())
    with pytest.raises(ValueError, match="no family scores"):
        lr.ladder(pd.DataFrame())


def test_break_lengths_and_min_width():
    b = lr.break_lengths(_table(), 0.8).set_index("arch")
    assert b.loc["cnn", "breaks_at"] == 1024 and b.loc["cnn", "holds_up_to"] == 64
    assert math.isnan(b.loc["mamba", "breaks_at"]) and b.loc["mamba", "holds_up_to"] == 4096
    assert math.isnan(b.loc["lstm", "holds_up_to"])
    assert b["above_again"].isna().all() and b["no_result_from"].isna().all()
    t = pd.DataFrame(
        {
            "arch": ["up_down"] * 3 + ["oom_late"] * 3 + ["failed"] * 3,
            "task": "t",
            "seq_len": [64, 512, 4096] * 3,
            "accuracy": [0.4, 0.9, 0.3, 0.9, 0.95, math.nan, math.nan, math.nan, math.nan],
        }
    )
    b = lr.break_lengths(t, 0.8).set_index("arch")
    assert b.loc["up_down", "breaks_at"] == 64 and b.loc["up_down", "above_again"] == 512  # passed after failing
    assert math.isnan(b.loc["up_down", "holds_up_to"])
    # out of memory at the longest length is not "it never broke": it has no result there
    assert math.isnan(b.loc["oom_late", "breaks_at"]) and b.loc["oom_late", "holds_up_to"] == 512
    assert b.loc["oom_late", "no_result_from"] == 4096
    assert b.loc["failed", "no_result_from"] == 64 and math.isnan(b.loc["failed", "holds_up_to"])
    w = pd.DataFrame(
        {"arch": ["a"] * 4, "seq_len": [64, 64, 256, 256], "d_model": [16, 32, 16, 32], "accuracy": [0.95, 1, 0.2, 0.5]}
    )
    m = lr.min_width(w, 0.9).set_index("seq_len")["min_d_model"]
    assert m[64] == 16 and math.isnan(m[256])


def test_length_sweep_runs_and_learns_nothing_silly():
    df = lr.length_sweep(
        ["cnn"],
        ["induction_heads"],
        [16],
        {"induction_heads": {"cnn": 16}},
        n_layers=1,
        task_options={"induction_heads": {"vocab_size": 8}},
        profile="smoke",
        n_eval=16,
        train_overrides={"max_steps": 2, "eval_every": None},
    )
    assert list(df.columns[:4]) == ["arch", "task", "seq_len", "d_model"] and len(df) == 1
    assert 0.0 <= df["accuracy"].iloc[0] <= 1.0 and df["steps"].iloc[0] == 2
    assert not df["oom"].iloc[0]


def test_a_run_out_of_memory_is_a_row_and_the_sweep_goes_on(monkeypatch):
    import torch

    from seqlib import experiments

    real = experiments.run_synthetic
    kw = {"profile": "smoke", "n_eval": 8, "train_overrides": {"max_steps": 1, "eval_every": None}}

    def sweep_failing_at_32(error=None, stopped_by=None):
        """The run at 32 tokens raises ``error`` (or ends with ``stopped_by``); the one at 16 trains."""

        def run_synthetic(arch, task, seq_len, **kw):
            if seq_len == 32 and error is not None:
                raise error
            run = real(arch, task, seq_len, **kw)
            if seq_len == 32 and stopped_by is not None:
                run.result.stopped_by = stopped_by
            return run

        monkeypatch.setattr(experiments, "run_synthetic", run_synthetic)
        opts = {"induction_heads": {"vocab_size": 8}}
        return lr.length_sweep(
            ["cnn"],
            ["induction_heads"],
            [16, 32],
            {"induction_heads": {"cnn": 16}},
            n_layers=1,
            task_options=opts,
            **kw,
        )

    df = sweep_failing_at_32(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 24.00 GiB"))
    assert list(df["oom"]) == [False, True] and math.isnan(df["accuracy"].iloc[1]) and df["steps"].iloc[1] == 0
    assert not df["diverged"].any()

    # what the trainer raises when the loss is nan
    df = sweep_failing_at_32(FloatingPointError("training loss is nan at step 40: lower lr, or check the data"))
    assert list(df["diverged"]) == [False, True] and list(df["oom"]) == [False, False]
    assert math.isnan(df["accuracy"].iloc[1]) and not math.isnan(df["accuracy"].iloc[0])

    df = sweep_failing_at_32(stopped_by="diverged")  # on_divergence="stop": the run ends, marked diverged
    assert list(df["diverged"]) == [False, True] and math.isnan(df["accuracy"].iloc[1])

    def broken(*a, **k):
        raise RuntimeError("shape mismatch")  # any other error is not swallowed

    monkeypatch.setattr(experiments, "run_synthetic", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        lr.length_sweep(["cnn"], ["induction_heads"], [16], {"induction_heads": {"cnn": 16}}, n_layers=1, **kw)


def test_answer_distances():
    import torch

    d = lr.answer_distances("selective_copying", 40, {"n_tokens": 4, "vocab_size": 10}, n=8)
    assert d.shape == (32,) and int(d.min()) >= 4 and int(d.max()) <= 40 - 1
    d = lr.answer_distances("associative_recall", 64, {"n_pairs": 4, "vocab_size": 32}, n=8)
    assert d.shape == (32,) and bool((d % 2 == 0).all()) and int(d.min()) >= 2
    d = lr.answer_distances("induction_heads", 50, {"vocab_size": 8}, n=16)
    assert d.shape == (16,) and int(d.min()) >= 1 and int(d.max()) <= 49
    x, y = lr.SYNTHETIC_TASKS["induction_heads"](16, 50, seed=0, vocab_size=8)
    p = (x == 7).float().argmax(1)
    assert torch.equal(d, 49 - (p + 1))


def test_matched_widths_of_a_regression_task_count_the_regressor():
    from seqlib.experiments import SequenceRegressor
    from seqlib.models import count_params

    widths = lr.matched_widths(["lstm", "cnn"], "adding_problem", 20_000, n_layers=2, tolerance=0.3)
    for arch, (d, n) in widths.items():
        assert n == count_params(SequenceRegressor(arch, 2, d, 2))  # two input channels: value and marker
        assert abs(n - 20_000) / 20_000 <= 0.3
    model = lr.task_model("cnn", "adding_problem", 16, n_layers=2, task_options={"markers": "halves"})
    assert isinstance(model, SequenceRegressor) and lr.reach_of(model) == 1 + 2 + 4
    assert lr.reach_of(lr.task_model("lstm", "adding_problem", 16, n_layers=1)) is None
    lm = lr.task_model("lstm", "induction_heads", 16, n_layers=1, task_options={"vocab_size": 8})
    assert lm.backbone.vocab_size == 8  # a token task: a language model on the task's vocabulary
    with pytest.raises(ValueError, match="unknown task"):
        lr.matched_widths(["lstm"], "adding", 20_000, n_layers=2)


def test_constant_baseline_and_adding_floor():
    mse, sd = lr.constant_baseline("adding_problem", 64, n=50_000)
    assert mse == pytest.approx(1 / 6, rel=0.02)  # Var(U1 + U2) = 2 / 12
    assert sd == pytest.approx(math.sqrt(7 / 180), rel=0.03)  # E[Z^4] - E[Z^2]^2 for Z = U1 + U2 - 1
    with pytest.raises(ValueError, match="not a regression task"):
        lr.constant_baseline("induction_heads", 64)
    assert lr.adding_floor(64, None) == 0.0
    assert lr.adding_floor(64, 64) == pytest.approx(0.0, abs=1e-12)  # sees both numbers
    # sees only the second half: the first number is always a guess (1/12), the second never
    assert lr.adding_floor(64, 32, n=50_000) == pytest.approx(1 / 12, rel=0.03)
    assert lr.adding_floor(64, 0, n=50_000) == pytest.approx(1 / 6, rel=0.03)
    # T = 4: the first number sits at 0 or 1, the second at 2 or 3. Reach 1 sees position 3 only: the first number is
    # always a guess, the second half the time (1/12 + 1/24); reach 3 sees 1..3: only a first number at 0 is a guess
    assert lr.adding_floor(4, 1, n=50_000) == pytest.approx(1 / 8, rel=0.03)
    assert lr.adding_floor(4, 3, n=50_000) == pytest.approx(1 / 24, rel=0.04)


def test_length_sweep_of_the_adding_problem_reports_its_mse():
    df = lr.length_sweep(
        ["cnn"],
        ["adding_problem"],
        [16],
        {"adding_problem": {"cnn": 16}},
        n_layers=1,
        profile="smoke",
        n_eval=16,
        seed=0,
        train_overrides={"max_steps": 2, "eval_every": None, "eval_batches": 2},
    )
    row = df.iloc[0]
    assert math.isnan(row["accuracy"]) and row["val_loss"] > 0 and row["steps"] == 2 and not row["oom"]


def test_full_profile_adding_widths_match_their_parameter_target():
    import torch

    from seqlib import profiles
    from seqlib.models import MIXERS

    for profile in ("smoke", "full"):
        cfg = profiles.get("ch6_adding", profile)
        m = cfg["model"]
        with torch.device("meta"):  # shapes only
            widths = lr.matched_widths(
                list(MIXERS),
                cfg["task"],
                m["target_params"],
                n_layers=m["n_layers"],
                task_options=cfg["task_options"],
                tolerance=m["match_tolerance"],
            )
        assert len(widths) == len(MIXERS)  # matched_widths raises on a miss beyond the tolerance


def test_chance_floor_is_the_mean_chance_accuracy_plus_the_tie_tolerance():
    opts = {"associative_recall": {"vocab_size": 64}, "induction_heads": {"vocab_size": 16}}
    mean_chance = (1 / 32 + 1 / 15) / 2
    assert lr.chance_floor(opts, opts) == pytest.approx(mean_chance + lr.TIE_TOLERANCE)
    with pytest.raises(ValueError, match="no tasks"):
        lr.chance_floor([])


def test_one_family_at_chance_does_not_make_a_learned_band_undecided():
    rel = [("Transformer", "≈", "CNN"), ("CNN", ">", "RNN")]
    learned = pd.Series({"Transformer": 0.95, "CNN": 0.93, "RNN": 0.04})  # the RNN sits at chance, the rest learned
    assert lr.judge(learned, rel, floor=0.10) == lr.judge(learned, rel)
    assert lr.judge(learned, rel, floor=0.10)[0] == "confirmed"
    nothing = pd.Series({"Transformer": 0.08, "CNN": 0.09, "RNN": 0.04})  # every family at or below the floor
    assert lr.judge(nothing, rel, floor=0.10)[0] == "undecided"
    # the same through ladder(): a floor between the RNN's and the others' scores changes no verdict
    rows = [
        {"arch": a, "task": "t", "seq_len": L, "accuracy": acc}
        for a, accs in {
            "transformer": [1.0, 1.0, 0.9],
            "cnn": [0.97, 0.3, 0.1],
            "lstm": [0.5, 0.1, 0.1],
            "mamba": [1, 1, 1],
        }.items()
        for L, acc in zip([64, 1024, 4096], accs, strict=True)
    ]
    s = lr.family_scores(pd.DataFrame(rows), LADDER_FAMILIES)
    assert lr.ladder(s, floor=0.2) == lr.ladder(s)


def test_a_lead_within_the_tolerance_is_a_tie_not_a_confirmation():
    rel = [("CNN", ">", "RNN")]
    assert lr.judge({"CNN": 0.93, "RNN": 0.90}, rel)[0] == "qualified"  # ahead by 0.03 < 0.05
    assert lr.judge({"CNN": 0.90, "RNN": 0.93}, rel)[0] == "qualified"  # behind by 0.03: not reversed either
    assert lr.judge({"CNN": 0.96, "RNN": 0.90}, rel)[0] == "confirmed"
    assert lr.judge({"CNN": 0.90, "RNN": 0.96}, rel)[0] == "refuted"
    assert lr.judge({"CNN": 0.93, "RNN": 0.90}, rel, tol=0.01)[0] == "confirmed"  # the tolerance is what decides


def test_family_scores_take_the_best_member_then_average_over_tasks_and_lengths():
    rows = [
        ("lstm", "a", 64, 0.2),
        ("gru", "a", 64, 0.6),
        ("lstm", "a", 128, 0.4),
        ("gru", "a", 128, 0.3),
        ("lstm", "b", 64, 0.1),
        ("gru", "b", 64, 0.1),
        ("lstm", "b", 128, 0.1),
        ("gru", "b", 128, 0.1),
        ("lstm", "a", 1024, 0.5),
        ("gru", "a", 1024, 0.7),
    ]
    df = pd.DataFrame(rows, columns=["arch", "task", "seq_len", "accuracy"])
    s = lr.family_scores(df)  # the outline's FAMILIES: RNN = lstm, gru
    assert list(s.columns) == ["RNN"]
    assert s.loc["short (<512)", "RNN"] == pytest.approx((0.6 + 0.4 + 0.1 + 0.1) / 4)
    assert s.loc["medium (512-2K)", "RNN"] == pytest.approx(0.7)


def test_holds_up_to_stops_below_the_first_failure_of_a_noisy_curve():
    df = pd.DataFrame(
        {
            "arch": ["cnn"] * 4 + ["lstm"] * 2,
            "task": ["t"] * 6,
            "seq_len": [1024, 64, 256, 4096, 64, 256],
            "accuracy": [0.85, 0.9, 0.5, 0.2, 0.4, 0.95],
        }
    )
    b = lr.break_lengths(df, 0.8).set_index("arch")
    assert b.loc["cnn", "breaks_at"] == 256 and b.loc["cnn", "holds_up_to"] == 64  # 1024 passed again: not counted
    assert b.loc["lstm", "breaks_at"] == 64 and math.isnan(b.loc["lstm", "holds_up_to"])
