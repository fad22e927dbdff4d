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
