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
        ["bench", "mixers", "--arch", "cnn", "--lengths", "8", "--time-budget", "nan"],
        ["train", "--arch", "lstm", "--task", "char_lm", "--profile", "medium"],
        ["bench", "mixers", "--arch", "lstm,gru"],  # a layer pattern is one hybrid model: train only
        ["preflight", "--arch", "lstm,gru"],
        ["bench", "mfu", "--lengths", "8"],  # an option of bench mixers
        ["bench", "mfu", "--time-budget", "5"],
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


def test_bench_mixers_time_budget_without_a_record_names_what_it_left_and_exits_0(capsys, monkeypatch):
    """Without a record a second call would start afresh and stop at the same place: no "run again" (exit 3)."""
    from seqlib import __main__ as cli

    monkeypatch.setattr(cli, "bench_mixer_rows", _fake_mixer_rows)
    argv = ["bench", "mixers", "--arch", "cnn", "--arch", "lstm", "--arch", "gru", "--lengths", "8", "--profile"]
    assert main([*argv, "smoke", "--time-budget", "0"]) == 0
    out = capsys.readouterr().out
    assert "after 1 of 3 architectures; not measured: lstm, gru (with --record NAME" in out
    assert "run the same command again" not in out


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
    monkeypatch.setenv("SEQLIB_DEBUG", "0")  # switched off
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("seqlib bench: error: ")
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


def test_an_input_error_of_seqlib_is_shown_as_one_line_without_quotes(capsys, monkeypatch):
    from seqlib import preflight, profiles
    from seqlib.data.corpora import DataUnavailableError

    monkeypatch.setattr(preflight, "preflight", lambda archs: profiles.get("no_such_experiment"))  # a KeyError
    assert main(["preflight", "--arch", "cnn"]) == 2
    assert capsys.readouterr().err.startswith("seqlib preflight: error: unknown experiment 'no_such_experiment'")

    def unavailable(archs):
        raise DataUnavailableError("Could not load the data:\n  set SEQLIB_DATA")

    monkeypatch.setattr(preflight, "preflight", unavailable)  # data that cannot be had, whatever raised it
    assert main(["preflight", "--arch", "cnn"]) == 2
    assert capsys.readouterr().err == "seqlib preflight: error: Could not load the data: set SEQLIB_DATA\n"


def test_a_bug_inside_seqlib_keeps_its_traceback(monkeypatch):
    from seqlib import book, preflight

    monkeypatch.setattr(
        preflight, "preflight", lambda archs: book.and_join(5)
    )  # a TypeError raised by Python in seqlib
    with pytest.raises(TypeError, match="not iterable"):
        main(["preflight", "--arch", "cnn"])


class _Run:
    record = None

    class result:  # noqa: N801
        @staticmethod
        def summary():
            return {"val_loss": 1.0}


@pytest.mark.parametrize(
    ("task", "runner"),
    [("char_lm", "run_lm"), ("word_lm", "run_lm"), ("sst2", "run_classification"), ("imdb", "run_classification")],
)
def test_train_passes_its_options_to_the_experiment_of_the_task(task, runner, monkeypatch, capsys):
    from seqlib import experiments

    calls = []

    def fake(name):
        return lambda arch, task, **kw: calls.append((name, arch, task, kw)) or _Run()

    monkeypatch.setattr(experiments, "run_lm", fake("run_lm"))
    monkeypatch.setattr(experiments, "run_classification", fake("run_classification"))
    monkeypatch.setattr(experiments, "sample_text", lambda run, n_tokens: "text")
    main(["train", "--arch", "gru", "--task", task, "--profile", "smoke", "--seed", "3", "--record", "r"])
    main(["train", "--arch", "gru,transformer", "--task", task])
    assert calls == [
        (runner, "gru", task, {"profile": "smoke", "seed": 3, "record_as": "r"}),
        (runner, ["gru", "transformer"], task, {"profile": None, "seed": 0, "record_as": None}),  # the defaults
    ]
    assert "val_loss" in capsys.readouterr().out


def test_bench_mfu_passes_its_profile_and_records_its_figures(monkeypatch, tmp_path, capsys):
    from seqlib import train

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # smoke results go under <tmp>/seqlib-results-smoke
    profiles_asked = []
    monkeypatch.setattr(train, "gpt2_mfu_benchmark", lambda profile: profiles_asked.append(profile) or {"mfu": 0.25})
    assert main(["bench", "mfu", "--profile", "smoke", "--record", "mfu_t"]) == 0
    assert profiles_asked == ["smoke"]
    rec = results.load("mfu_t", "smoke")
    assert rec["metrics"] == {"mfu": 0.25} and rec["config"] == {"benchmark": "gpt2_small_mfu"}
    assert "recorded as" in capsys.readouterr().out


def _fake_mixer_rows(arch, lengths, d_model, batch_size, warmup, repeats, max_seconds=60.0):
    """Rows as ``bench_mixer_rows`` makes them, without measuring: the speedup at length n is n."""
    import pandas as pd

    n = len(lengths)
    return pd.DataFrame(
        {
            "arch": arch,
            "seq_len": list(lengths),
            "fast ms": [1.0] * n,
            "reference ms": [float(x) for x in lengths],
            "speedup": [float(x) for x in lengths],
            "fast MiB": [1.0] * n,
            "reference MiB": [1.0] * n,
            "fast status": ["ok"] * n,
            "reference status": ["ok"] * n,
        }
    )


def test_bench_mixers_records_sorted_lengths_and_the_speedup_at_the_longest(monkeypatch, tmp_path, capsys):
    from seqlib import __main__ as cli

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(cli, "bench_mixer_rows", _fake_mixer_rows)
    argv = ["bench", "mixers", "--arch", "lstm", "--arch", "cnn", "--arch", "lstm", "--lengths", "16", "8", "8"]
    assert main([*argv, "--profile", "smoke", "--record", "bench_s"]) == 0
    rec = results.load("bench_s", "smoke")
    assert rec["config"]["lengths"] == [8, 16] and rec["config"]["archs"] == ["lstm", "cnn"]
    assert rec["metrics"] == {"lstm/speedup": 16.0, "cnn/speedup": 16.0}
    out = capsys.readouterr().out
    assert out.index("lstm") < out.index("cnn")  # the table in the order of --arch


def test_bench_mixers_does_not_resume_a_record_made_by_other_code(monkeypatch, tmp_path, capsys):
    from seqlib import __main__ as cli

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(cli, "bench_mixer_rows", _fake_mixer_rows)
    argv = ["bench", "mixers", "--arch", "cnn", "--arch", "lstm", "--lengths", "8", "--profile", "smoke"]
    argv += ["--record", "bench_stale"]
    assert main([*argv, "--time-budget", "0"]) == 3
    monkeypatch.setattr(results, "is_stale", lambda rec: True)
    assert main(argv) == 0
    assert "resuming" not in capsys.readouterr().out


def test_mixers_table_follows_the_order_of_the_architectures_asked_for():
    import pandas as pd

    from seqlib.__main__ import mixers_table

    rows = pd.concat([_fake_mixer_rows(a, [8, 16], 8, 1, 1, 1) for a in ("cnn", "lstm")], ignore_index=True)
    table = mixers_table(rows, ["lstm", "gru", "cnn"])  # gru: not measured, left out
    assert list(table.index) == [("lstm", 8), ("lstm", 16), ("cnn", 8), ("cnn", 16)]


def test_the_nan_legend_names_only_what_was_not_measured():
    from seqlib.__main__ import mixers_legend

    rows = _fake_mixer_rows("cnn", [8, 16], 8, 1, 1, 1)
    assert mixers_legend(rows, 5.0) == []  # no NaN, no legend
    rows.loc[1, ["fast ms", "speedup", "fast MiB"]] = float("nan")
    rows.loc[1, "fast status"] = "too slow"
    assert mixers_legend(rows, 5.0) == [
        "NaN = not measured:",
        "  cnn fast at 16: one call took longer than max_seconds=5 s, so the sweep stopped there",
        "  speedup is NaN where either time is",
    ]
