import pytest

from seqlib import preflight as pf
from seqlib.__main__ import main


def test_preflight_runs_every_check_of_an_architecture_on_this_device():
    df = pf.preflight(["cnn"], verbose=False)
    assert list(df["check"]) == list(pf.CHECKS) and df["ok"].all() and df["error"].isna().all()


def test_preflight_checks_every_task_head_the_book_trains_and_the_benchmark():
    assert list(pf.CHECKS) == ["lm", "classify", "seq2seq", "synthetic", "bench"]


def test_the_synthetic_check_runs_a_token_task_and_the_regression_head(monkeypatch):
    from seqlib import experiments

    tasks = []
    monkeypatch.setattr(experiments, "run_synthetic", lambda arch, task, *a, **kw: tasks.append((arch, task)))
    pf.CHECKS["synthetic"]("cnn", "cpu")
    assert tasks == [("cnn", "associative_recall"), ("cnn", "adding_problem")]


def test_the_bench_check_trains_both_implementations(monkeypatch):
    import pandas as pd

    from seqlib import bench
    from seqlib.models import MIXERS

    built, measured = [], []
    monkeypatch.setitem(MIXERS, "cnn", lambda d_model, impl: built.append(impl) or impl)

    def bench_mixer(factory, lengths, mode, **kwargs):
        measured.append((mode, factory()))
        return pd.DataFrame({"seq_len": lengths, "median_ms": [1.0] * len(lengths)})

    monkeypatch.setattr(bench, "bench_mixer", bench_mixer)
    pf.CHECKS["bench"]("cnn", "cpu")
    assert ("train", "reference") in measured and ("train", "fast") in measured
    assert {mode for mode, _ in measured} == set(bench.MODES)


def test_a_failed_check_is_reported_by_its_first_line_and_quietly_when_asked(monkeypatch, capsys):
    def broken(arch, device):
        raise RuntimeError("no kernel for this dtype\nmore")

    monkeypatch.setattr(pf, "CHECKS", {"lm": broken})
    df = pf.preflight(["cnn"], verbose=False)
    assert list(df["error"]) == ["RuntimeError: no kernel for this dtype"] and not df["ok"].any()
    assert capsys.readouterr().out == ""


def test_a_failed_check_is_reported_and_the_others_still_run(monkeypatch, capsys):
    def broken(arch, device):
        raise RuntimeError("no kernel for this dtype\nmore")

    ran = []
    monkeypatch.setattr(pf, "CHECKS", {"lm": broken, "classify": lambda arch, device: ran.append(arch)})
    assert main(["preflight", "--arch", "cnn", "--arch", "lstm"]) == 1
    out = capsys.readouterr().out
    assert "FAILED cnn / lm: RuntimeError: no kernel for this dtype" in out and "2 of 4 checks passed" in out
    assert ran == ["cnn", "lstm"]  # the classifier checks ran after the language-model checks failed

    monkeypatch.setattr(pf, "CHECKS", {"classify": lambda arch, device: None})
    assert main(["preflight", "--arch", "gru"]) == 0
    assert main(["preflight", "--arch", "gru", "--arch", "gru"]) == 0  # an architecture repeated is checked once
    assert "1 of 1 checks passed" in capsys.readouterr().out


def test_a_passed_preflight_is_recorded_and_a_failed_one_is_not(monkeypatch, tmp_path, capsys):
    from seqlib import results

    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # smoke results go under <tmp>/seqlib-results-smoke
    monkeypatch.setattr(pf, "CHECKS", {"lm": lambda arch, device: None})
    assert main(["preflight", "--arch", "gru", "--arch", "cnn", "--record", "pf"]) == 0
    rec = results.load("pf", "smoke")
    assert rec["metrics"] == {"checks_passed": 2} and rec["config"]["archs"] == ["gru", "cnn"]
    assert not results.is_stale(rec) and rec["provenance"]["device"]

    def broken(arch, device):
        raise RuntimeError("boom")

    monkeypatch.setattr(pf, "CHECKS", {"lm": broken})
    assert main(["preflight", "--arch", "gru", "--record", "pf_failed"]) == 1
    with pytest.raises(FileNotFoundError):
        results.load("pf_failed", "smoke")


def test_preflight_names_an_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architectures"):
        pf.preflight(["not_a_mixer"], verbose=False)
    with pytest.raises(SystemExit):
        main(["preflight", "--arch", "not_a_mixer"])
