"""python -m seqlib: help, argument errors, and one short run of each command."""

import pytest

from seqlib import results
from seqlib.__main__ import main


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["bench", "--help"], ["book", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--arch", "lstmm", "--task", "char_lm"],
        ["train", "--arch", "lstm", "--task", "poetry"],
        ["train", "--task", "char_lm"],
        ["bench", "everything"],
        ["bench", "mixers", "--lengths", "many"],
    ],
)
def test_bad_arguments_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_bench_mixers_prints_the_fast_and_reference_table(capsys):
    assert (
        main(["bench", "mixers", "--arch", "lstm", "--arch", "transformer", "--lengths", "16", "--profile", "smoke"])
        == 0
    )
    out = capsys.readouterr().out
    assert "speedup" in out and "lstm" in out and "transformer" in out


def test_bench_mixers_records_its_table_with_provenance(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # smoke results go under <tmp>/seqlib-results-smoke
    argv = ["bench", "mixers", "--arch", "cnn", "--lengths", "8", "16", "--profile", "smoke", "--record", "bench_t"]
    assert main(argv) == 0
    rec = results.load("bench_t", "smoke")
    assert rec["metrics"]["cnn/speedup"] > 0 and rec["provenance"]["profile"] == "smoke"
    assert list(rec["history"]["seq_len"]) == [8, 16]
    assert "recorded as" in capsys.readouterr().out


def test_train_smoke_run(capsys, monkeypatch):
    if not __import__("os").environ.get("SEQLIB_DATA"):
        pytest.skip("needs SEQLIB_DATA")
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    assert main(["train", "--arch", "gru", "--task", "char_lm"]) == 0
    out = capsys.readouterr().out
    assert "val_loss" in out and "sample:" in out


def test_bench_mixers_stopped_at_its_time_budget_resumes_where_it_stopped(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    argv = ["bench", "mixers", "--arch", "cnn", "--arch", "lstm", "--lengths", "8", "--profile", "smoke"]
    argv += ["--record", "bench_r"]
    assert main([*argv, "--time-budget", "0"]) == 3  # one architecture per call at least, then the budget stops it
    rec = results.load("bench_r", "smoke")
    assert rec["config"]["complete"] is False and list(rec["history"]["arch"]) == ["cnn"]
    assert "run the same command again" in capsys.readouterr().out

    assert main(argv) == 0
    rec = results.load("bench_r", "smoke")
    assert "resuming bench_r: 1 of 2" in capsys.readouterr().out
    assert rec["config"]["complete"] is True and list(rec["history"]["arch"]) == ["cnn", "lstm"]
    assert set(rec["metrics"]) == {"cnn/speedup", "lstm/speedup"}

    assert main(argv) == 0  # a finished record is measured again, not resumed
    assert "resuming" not in capsys.readouterr().out
    assert main([*argv, "--time-budget", "0"]) == 3  # unfinished again
    other = [x if x != "8" else "16" for x in argv]
    assert main([*other, "--time-budget", "0"]) == 3
    assert "resuming" not in capsys.readouterr().out  # other settings: afresh, not resumed
    rec = results.load("bench_r", "smoke")
    assert list(rec["history"]["seq_len"]) == [16] and rec["config"]["lengths"] == [16]
