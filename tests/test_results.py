"""Recorded results: where they go (full vs smoke), round trip, provenance and staleness."""

import json
import tempfile

import numpy as np
import pandas as pd
import pytest

from seqlib import results


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """A results dir for the full profile and a private temp dir for smoke runs."""
    full, tmp = tmp_path / "results", tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("SEQLIB_RESULTS", str(full))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return full, tmp / "seqlib-results-smoke"


def history():
    return pd.DataFrame({"step": [10, 20], "train_loss": [2.5, 1.5], "val_loss": [np.nan, 1.7]})


def test_full_profile_writes_to_results_dir(dirs):
    full, smoke = dirs
    path = results.record(
        "ch07/char_lm_lstm",
        {"val_loss": 1.7, "steps": np.int64(20)},
        config={"lr": 1e-3},
        history=history(),
        seed=3,
        wall_time=61.5,
        profile="full",
    )
    assert path == full / "ch07" / "char_lm_lstm.json" and path.exists()
    assert not smoke.exists()
    rec = json.loads(path.read_text())
    p = rec["provenance"]
    assert p["profile"] == "full" and p["seed"] == 3 and p["wall_time"] == 61.5
    assert p["code_hash"] == results.code_hash() and len(p["code_hash"]) == 64
    for key in ("device", "torch", "cuda", "cudnn", "python", "git_commit", "date"):
        assert key in p
    assert rec["history"]["data"]["val_loss"] == [None, 1.7]  # NaN is not JSON: null


def test_smoke_never_writes_to_results_dir(dirs):
    full, smoke = dirs
    path = results.record("char_lm_lstm", {"val_loss": 3.0}, profile="smoke")
    assert path == smoke / "char_lm_lstm.json" and path.exists()
    assert not full.exists()
    assert results.load("char_lm_lstm", profile="smoke")["metrics"] == {"val_loss": 3.0}
    with pytest.raises(FileNotFoundError, match="SEQLIB_PROFILE=full"):
        results.load("char_lm_lstm", profile="full")


def test_round_trip_is_deterministic(dirs):
    kw = {"config": {"betas": (0.9, 0.95), "amp": None}, "history": history(), "profile": "full"}
    path = results.record("run", {"acc": 0.5, "inf": float("inf")}, **kw)
    rec = results.load("run", profile="full")
    assert rec["metrics"] == {"acc": 0.5, "inf": None}
    assert rec["config"] == {"betas": [0.9, 0.95], "amp": None}
    pd.testing.assert_frame_equal(rec["history"], history())
    assert rec["path"] == str(path)
    text = path.read_text()
    assert text.startswith('{\n "config"')  # sorted keys, indent 1
    a = json.loads(text)
    results.record("run", {"acc": 0.5, "inf": float("inf")}, **kw)
    b = json.loads(path.read_text())
    a["provenance"].pop("date"), b["provenance"].pop("date")
    assert a == b


def test_missing_result_says_where_and_how(dirs):
    full, _ = dirs
    with pytest.raises(FileNotFoundError) as e:
        results.load("nothing_here", profile="full")
    assert str(full / "nothing_here.json") in str(e.value)


def test_bad_inputs():
    with pytest.raises(ValueError, match="name"):
        results.record("../escape", {}, results_dir=".", profile="full")
    with pytest.raises(TypeError, match="metrics"):
        results.record("x", [1, 2], results_dir=".", profile="full")
    with pytest.raises(TypeError, match="object"):
        results.record("x", {"model": object()}, results_dir=".", profile="full")


def test_is_stale_detects_a_code_change(dirs, monkeypatch):
    results.record("run", {"a": 1}, profile="full")
    rec = results.load("run", profile="full")
    assert not results.is_stale(rec)
    assert "STALE" not in results.format_provenance(rec)
    monkeypatch.setattr(results, "code_hash", lambda: "0" * 64)
    assert results.is_stale(rec)
    assert "STALE" in results.format_provenance(rec)


def test_code_hash_covers_the_package_source(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    (pkg / "notes.txt").write_text("ignored")
    monkeypatch.setattr(results, "PACKAGE_DIR", pkg)
    h1 = results.code_hash()
    (pkg / "notes.txt").write_text("still ignored")
    assert results.code_hash() == h1
    (pkg / "sub" / "b.py").write_text("y = 3\n")
    assert results.code_hash() != h1


def test_format_provenance_is_one_line(dirs):
    results.record("run", {"a": 1}, seed=7, wall_time=12.3, profile="full")
    line = results.format_provenance(results.load("run", profile="full"))
    assert "\n" not in line and "seed 7" in line and "12 s" in line and "profile full" in line


def test_default_dir(monkeypatch):
    monkeypatch.delenv("SEQLIB_RESULTS", raising=False)
    assert results.default_dir("full") == results.PACKAGE_DIR.parent / "results"  # a git clone / editable install
    assert results.default_dir("smoke").name == "seqlib-results-smoke"
    with pytest.raises(ValueError, match="profile"):
        results.default_dir("medium")
