"""Recorded results: where they go (full vs smoke), round trip, provenance and staleness."""

import json
import tempfile

import numpy as np
import pandas as pd
import pytest

from seqlib import profiles, results


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


@pytest.fixture
def fresh_reads(monkeypatch):
    """An empty record of what this process read, as at the start of a notebook's kernel."""
    monkeypatch.setattr(results, "READ", set())
    monkeypatch.setattr(results, "WRITTEN", set())
    monkeypatch.setattr(profiles, "READ", set())


def _record_elsewhere(name, metrics):
    """A record written by another process (another notebook's kernel)."""
    results.record(name, metrics, profile="full")
    results.WRITTEN.discard((name, "full"))


def test_a_record_without_dependencies_is_stale_on_any_code_change(dirs, monkeypatch):
    results.record("run", {"a": 1}, profile="full")
    rec = results.load("run", profile="full")
    del rec["provenance"]["dependencies"]  # as recorded before dependencies were
    assert not results.is_stale(rec)
    assert "STALE" not in results.format_provenance(rec)
    monkeypatch.setattr(results, "code_hash", lambda: "0" * 64)
    assert results.is_stale(rec)
    assert "STALE" in results.format_provenance(rec)


def test_staleness_follows_the_modules_imported(dirs, fresh_reads, tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    for name in ("used.py", "unused.py"):
        (pkg / name).write_text("x = 1\n")
    monkeypatch.setattr(results, "PACKAGE_DIR", pkg)
    monkeypatch.setattr(results, "_loaded_modules", lambda: ["used.py"])
    results.record("run", {"a": 1}, profile="full")
    rec = results.load("run", profile="full")
    assert rec["provenance"]["dependencies"]["modules"] == ["used.py"]
    (pkg / "unused.py").write_text("x = 2\n")
    assert not results.is_stale(rec)  # a module the run did not import
    (pkg / "used.py").write_text("x = 2\n")
    assert results.is_stale(rec)


@pytest.mark.parametrize("profile, other", [("full", "smoke"), ("smoke", "full")])
def test_staleness_follows_the_experiment_settings_read(dirs, fresh_reads, monkeypatch, profile, other):
    experiments = {name: dict(profiles.EXPERIMENTS[name]) for name in ("char_lm", "word_lm")}
    monkeypatch.setattr(profiles, "EXPERIMENTS", experiments)
    profiles.get("char_lm", profile)
    results.record("run", {"a": 1}, profile=profile)
    rec = results.load("run", profile=profile)
    assert rec["provenance"]["dependencies"]["profiles"] == [["char_lm", profile]]
    experiments["word_lm"][profile] = {"changed": True}
    experiments["char_lm"][other] = {"changed": True}
    assert not results.is_stale(rec)  # another experiment, or the same one in the profile the run did not use
    experiments["char_lm"][profile] = {**experiments["char_lm"][profile], "seeds": [9]}
    assert results.is_stale(rec)


def test_staleness_follows_the_records_read(dirs, fresh_reads):
    with pytest.raises(FileNotFoundError):
        results.load("later", profile="full")  # missing: its arrival changes what depends on it
    _record_elsewhere("upstream", {"a": 1})
    results.load("upstream", profile="full")
    results.record("downstream", {"b": 2}, profile="full")
    down = results.load("downstream", profile="full")
    assert down["provenance"]["dependencies"]["records"] == [["later", "full"], ["upstream", "full"]]
    assert not results.is_stale(down)
    results.record("downstream", {"b": 3}, profile="full")  # a record does not depend on its own earlier self
    assert not results.is_stale(results.load("downstream", profile="full"))
    _record_elsewhere("upstream", {"a": 2})
    assert results.is_stale(down)
    _record_elsewhere("unread", {"c": 1})
    _record_elsewhere("later", {"c": 1})
    assert results.is_stale(results.load("downstream", profile="full"))


def test_what_a_process_wrote_is_not_an_input_of_what_it_writes_next(dirs, fresh_reads):
    results.record("first", {"a": 1}, profile="full")
    results.load("first", profile="full")  # read back, as every run does after recording
    results.record("second", {"b": 1}, profile="full")
    second = results.load("second", profile="full")
    assert second["provenance"]["dependencies"]["records"] == []
    results.record("first", {"a": 2}, profile="full")  # re-running one run leaves the other fresh
    assert not results.is_stale(second)
    deps = results.dependencies()  # a notebook's own record of what it read includes its records
    assert ["first", "full"] in deps["records"] and ["second", "full"] in deps["records"]


def test_unreadable_dependencies_count_as_changed(dirs):
    assert results.dependency_hash({"records": [["x", "no-such-profile"]]}) == ""
    assert results.dependency_hash({"profiles": [["char_lm"]]}) == ""
    rec = {"provenance": {"dependencies": {"modules": 3, "hash": "abc"}}}
    assert results.is_stale(rec)


def test_explicit_directories_are_not_dependencies_smoke_records_are(dirs, fresh_reads, tmp_path):
    results.record("other", {"a": 1}, results_dir=tmp_path / "elsewhere")
    results.load("other", results_dir=tmp_path / "elsewhere")
    assert results.READ == set()
    results.record("run", {"a": 1}, profile="smoke")
    results.load("run", profile="smoke")  # a smoke chapter that shows another's record depends on it too
    assert results.READ == {("run", "smoke")}
    assert results.dependencies(for_record=True)["records"] == []  # a run's own record is its output
    deps = results.dependencies()
    assert deps["records"] == [["run", "smoke"]] and results.dependency_hash(deps) == deps["hash"]
    results.record("run", {"a": 2}, profile="smoke")  # another run replaces it: what was shown is stale
    assert results.dependency_hash(deps) != deps["hash"]


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


def test_dependencies_name_modules_of_subpackages_and_follow_their_changes(dirs, fresh_reads, tmp_path, monkeypatch):
    import shutil

    import seqlib.data.synthetic  # noqa: F401  (a module of a subpackage, as every chapter imports)

    results.record("run", {"a": 1}, profile="full")
    rec = results.load("run", profile="full")
    modules = rec["provenance"]["dependencies"]["modules"]
    assert "data/synthetic.py" in modules
    assert all((results.PACKAGE_DIR / m).is_file() for m in modules)  # each names a real file of the package
    copy = tmp_path / "pkg"
    shutil.copytree(results.PACKAGE_DIR, copy)
    monkeypatch.setattr(results, "PACKAGE_DIR", copy)
    assert not results.is_stale(rec)
    with open(copy / "data" / "synthetic.py", "a") as f:
        f.write("\n# changed\n")
    assert results.is_stale(rec)  # a change to a data generator makes the result stale
