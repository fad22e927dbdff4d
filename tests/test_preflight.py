import pytest

from seqlib import preflight as pf
from seqlib.__main__ import main


def test_preflight_runs_every_check_of_an_architecture_on_this_device():
    df = pf.preflight(["cnn"], verbose=False)
    assert list(df["check"]) == list(pf.CHECKS) and df["ok"].all() and df["error"].isna().all()


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
