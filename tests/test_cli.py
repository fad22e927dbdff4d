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
        ["bench", "mixers", "--lengths", "0"],
        ["bench", "mixers", "--lengths", "-5"],
        ["bench", "mixers", "--d-model", "0"],
        ["bench", "mixers", "--time-budget", "-1"],
        ["bench", "mixers", "--arch", "lstm,gru"],  # a layer pattern is one hybrid model: train only
        ["preflight", "--arch", "lstm,gru"],
        ["bench", "mfu", "--lengths", "8"],  # an option of bench mixers
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
    assert ("NaN" in out) == ("NaN = not measured" in out)  # a NaN in the table is explained under it


def test_bench_mixers_records_its_table_with_provenance(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # smoke results go under <tmp>/seqlib-results-smoke
    argv = ["bench", "mixers", "--arch", "cnn", "--lengths", "8", "16", "--profile", "smoke", "--record", "bench_t"]
    assert main(argv) == 0
    rec = results.load("bench_t", "smoke")
    assert rec["metrics"]["cnn/speedup"] > 0 and rec["provenance"]["profile"] == "smoke"
    assert list(rec["history"]["seq_len"]) == [8, 16]
    assert "recorded as" in capsys.readouterr().out


def test_train_smoke_run(capsys, monkeypatch, tmp_path):
    if not __import__("os").environ.get("SEQLIB_DATA"):
        pytest.skip("needs SEQLIB_DATA")
    # --profile smoke where the full profile would be the default: the record goes among the smoke results
    monkeypatch.setenv("SEQLIB_PROFILE", "full")
    monkeypatch.setenv("SEQLIB_RESULTS", str(tmp_path / "full"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # smoke results go under <tmp>/seqlib-results-smoke
    assert main(["train", "--arch", "gru", "--task", "char_lm", "--profile", "smoke", "--record", "train_t"]) == 0
    out = capsys.readouterr().out
    assert "val_loss" in out and "sample:" in out
    path = tmp_path / "seqlib-results-smoke" / "train_t.json"
    assert f"recorded as {path}" in out and path.exists() and not (tmp_path / "full").exists()


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


def test_one_architecture_per_arch_where_mixers_are_measured_one_by_one(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "mixers", "--arch", "lstm,gru", "--lengths", "16"])
    assert "repeat the option: --arch lstm --arch gru" in capsys.readouterr().err


def test_help_names_the_profile_variable_the_debug_switch_and_how_book_was_invoked(capsys):
    for argv in (["train", "--help"], ["bench", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "$SEQLIB_PROFILE when set" in out and "SEQLIB_DEBUG=1" in out
        assert "SEQLIB_SMOKE_RESULTS" in out and "the path is printed" in out
    with pytest.raises(SystemExit):
        main(["book", "--help"])
    assert capsys.readouterr().out.startswith("usage: python -m seqlib book ")


def test_an_input_error_is_one_line_and_exit_status_2(capsys, monkeypatch, tmp_path):
    argv = ["bench", "mixers", "--arch", "transformer", "--d-model", "30", "--lengths", "8", "--profile", "smoke"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqlib bench: error: ") and "d_model=30" in err and err.count("\n") == 1
    monkeypatch.setenv("SEQLIB_DEBUG", "1")  # the traceback, for whoever debugs it
    with pytest.raises(ValueError, match="d_model=30"):
        main(argv)
    monkeypatch.delenv("SEQLIB_DEBUG")
    monkeypatch.setenv("SEQLIB_PROFILE", "fast")
    assert main(["train", "--arch", "lstm", "--task", "char_lm"]) == 2
    assert "seqlib train: error: SEQLIB_PROFILE='fast' is not a profile" in capsys.readouterr().err
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    monkeypatch.setenv("SEQLIB_DATA", str(tmp_path))  # an empty folder
    assert main(["train", "--arch", "lstm", "--task", "char_lm"]) == 2
    assert "SHA256SUMS is missing" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback_and_a_deliberate_type_error_does_not(capsys, monkeypatch):
    from seqlib import preflight

    monkeypatch.setattr(preflight, "preflight", lambda archs: {}["no such key"])  # a bug: a KeyError
    with pytest.raises(KeyError):
        main(["preflight", "--arch", "cnn"])
    monkeypatch.setattr(preflight, "preflight", lambda archs: len(5))  # a bug: a TypeError from Python
    with pytest.raises(TypeError):
        main(["preflight", "--arch", "cnn"])
    monkeypatch.setattr(preflight, "preflight", lambda archs: [a for a, b in [(1, 2, 3)]])  # a bug: a ValueError
    with pytest.raises(ValueError, match="too many values"):
        main(["preflight", "--arch", "cnn"])
    monkeypatch.setattr(preflight, "preflight", lambda archs: results.record("x", [1.0]))  # seqlib's own check
    assert main(["preflight", "--arch", "cnn"]) == 2
    assert "seqlib preflight: error: metrics must be a dict" in capsys.readouterr().err


def test_bench_mixers_says_what_its_nan_means(capsys, monkeypatch):
    from seqlib import profiles

    monkeypatch.setitem(profiles.EXPERIMENTS["bench_mixers"]["smoke"], "max_seconds", 1e-9)  # every call too slow
    assert main(["bench", "mixers", "--arch", "cnn", "--lengths", "8", "16", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "NaN = not measured:" in out
    assert "cnn fast at 8: one call took longer than max_seconds=1e-09 s" in out
    assert "cnn reference at 16: not run, the sweep having stopped at a shorter length" in out
