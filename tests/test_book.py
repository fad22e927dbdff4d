"""The book's plumbing: the setup cell, the table of contents, execute and check."""

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest
import yaml

from seqlib import book, results

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def test_config_is_jupyter_book_1():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert cfg["bibtex_bibfiles"] == ["references.bib"]
    assert cfg["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
    assert cfg["html"]["use_repository_button"] is True


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_installs_from_the_configured_repository(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0] if nb.cells[0].cell_type == "code" else nb.cells[1]
    assert first.cell_type == "code", f"{path.name}: the setup cell must come first (after an optional title)"
    urls = re.findall(r"seqlib @ git\+(\S+?)[\"']", first.source)
    assert urls == [repository_url()], (
        f"{path.name}: setup cell installs from {urls}, _config.yml says {repository_url()}"
    )
    assert "from seqlib.book import setup" in first.source and "setup()" in first.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_the_python3_kernel_and_no_editor_metadata(path):
    meta = nbformat.read(path, as_version=4).metadata
    assert meta.get("kernelspec", {}).get("name") == "python3", f"{path.name}: Colab and nbmake need kernelspec python3"
    assert "jupytext" not in meta, f"{path.name}: drop the jupytext metadata"


def test_toc_lists_every_notebook_and_only_existing_files():
    listed = book.toc_notebooks(ROOT)
    assert sorted(listed) == NOTEBOOKS, "every notebook in notebooks/ must be in _toc.yml, and only those"
    toc = (ROOT / "_toc.yml").read_text()
    for f in re.findall(r"file:\s*(\S+)", toc) + re.findall(r"root:\s*(\S+)", toc):
        assert any((ROOT / (f + ext)).exists() for ext in ("", ".md", ".ipynb")), f"_toc.yml lists missing {f}"


def test_notebooks_are_numbered_in_book_order():
    names = [p.name for p in book.toc_notebooks(ROOT)]
    assert names == sorted(names)
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", n) for n in names)


def _notebook(tmp_path, *sources, outputs=True, name="nb.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    for i, src in enumerate(sources):
        cell = nbformat.v4.new_code_cell(src)
        if outputs:
            cell.execution_count = i + 1
        nb.cells.append(cell)
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_reads_names_every_other_chapter_whose_records_a_notebook_reads():
    """A record name "chN_..." in a notebook's code, N another chapter's number: that chapter is in ``READS``.
    A name passed to ``profiles.get`` is another chapter's settings, not its records, and does not count."""
    names = [p.name for p in NOTEBOOKS]
    by_chapter = {int(n[:2]): n for n in names}
    for path in NOTEBOOKS:
        if path.name in book.AGGREGATES:
            continue
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        code = re.sub(r"profiles\.get\(\s*[\"'][^\"']*[\"']", "profiles.get(", code)
        read = {int(m) for m in re.findall(r"[\"']ch(\d+)_", code)} - {int(path.name[:2])}
        assert {by_chapter[n] for n in read} == set(book.READS.get(path.name, ())), path.name
    for nb, reads in book.READS.items():  # every one of them comes earlier in the book
        assert all(names.index(r) < names.index(nb) for r in reads), nb


def test_code_cells_hash_tracks_code_only():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("a")])
    h = book.code_cells_hash(nb)
    nb.cells[1].source = "b"
    assert book.code_cells_hash(nb) == h
    nb.cells[0].source = "x = 2"
    assert book.code_cells_hash(nb) != h


def test_check_fails_without_outputs_and_on_errors(tmp_path, capsys):
    path = _notebook(tmp_path, "x = 1", outputs=False)
    assert book.check([path]) == 1
    assert "NO OUTPUTS" in capsys.readouterr().out

    nb = nbformat.read(path, as_version=4)
    nb.cells[0].execution_count = 1
    nb.cells[0].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[])]
    nbformat.write(nb, path)
    assert book.check([path]) == 1
    assert "ValueError: boom" in capsys.readouterr().out


def test_execute_records_metadata_and_log_then_check_passes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    path = _notebook(tmp_path, "print(6 * 7)", outputs=False)
    log = tmp_path / "book_execution.json"
    book.execute([path], timeout=120, log_path=log)
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].outputs[0]["text"].strip() == "42"
    meta = nb.metadata["seqlib"]
    assert meta["profile"] == "smoke" and meta["code_cells_hash"] == book.code_cells_hash(nb)
    assert meta["wall_time_s"] >= 0 and meta["device"]
    assert str(path) in log.read_text() or path.name in log.read_text()
    status = book.notebook_status(path)
    assert status["executed"] and not status["stale"] and not status["errors"]
    assert book.check([path]) == 0
    # --strict: a smoke run on a CPU is not what the rendered book needs
    assert book.check([path], strict=True) == 1
    assert "NOT A FULL-PROFILE GPU RUN" in capsys.readouterr().out


def test_execute_leaves_a_failing_notebook_unchanged_and_runs_the_next(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    bad = _notebook(tmp_path, "raise ValueError('broken cell')", outputs=False, name="a.ipynb")
    good = _notebook(tmp_path, "print(6 * 7)", outputs=False, name="b.ipynb")
    before = bad.read_text()
    log = tmp_path / "book_execution.json"
    with pytest.raises(RuntimeError, match="a.ipynb"):
        book.execute([bad, good], timeout=120, log_path=log)
    assert bad.read_text() == before
    assert "broken cell" in capsys.readouterr().out
    assert book.notebook_status(good)["executed"] and "b.ipynb" in log.read_text()


def test_execute_starts_no_notebook_that_reads_one_that_failed_in_the_same_call(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    bad = _notebook(tmp_path, "raise ValueError('broken cell')", outputs=False, name="a.ipynb")
    reader = _notebook(tmp_path, "print(1)", outputs=False, name="b.ipynb")
    other = _notebook(tmp_path, "print(2)", outputs=False, name="c.ipynb")
    monkeypatch.setitem(book.READS, "b.ipynb", ("a.ipynb",))  # b reads what a records
    with pytest.raises(RuntimeError, match="1 notebook\\(s\\) failed: a.ipynb"):
        book.execute([bad, reader, other], timeout=120, log_path=tmp_path / "log.json")
    assert [book.notebook_status(p)["executed"] for p in (bad, reader, other)] == [False, False, True]
    assert "waiting for one of those): b.ipynb" in capsys.readouterr().out


def test_execute_starts_nothing_that_does_not_fit_the_time_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    paths = [_notebook(tmp_path, "print(1)", outputs=False, name=f"{n}.ipynb") for n in "ab"]
    log = tmp_path / "book_execution.json"
    assert book.execute(paths, timeout=120, log_path=log, time_budget=book.NOTEBOOK_LIMIT_S["smoke"] - 1) == []
    assert "a later call (time budget, or waiting for one of those): a.ipynb, b.ipynb" in capsys.readouterr().out
    assert not book.notebook_status(paths[0])["executed"]


def test_execute_fits_a_shorter_later_notebook_but_not_one_that_reads_a_left_over_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    names = ["a.ipynb", "b.ipynb", "c.ipynb", "d.ipynb"]
    paths = [_notebook(tmp_path, "print(1)", outputs=False, name=n) for n in names]
    monkeypatch.setitem(book.READS, "c.ipynb", ("a.ipynb",))  # c reads what a records
    log = tmp_path / "book_execution.json"
    times = {"a.ipynb": 1000.0, "b.ipynb": 1.0, "c.ipynb": 1.0, "d.ipynb": 1.0}
    log.write_text(json.dumps({n: {"profile": "smoke", "wall_time_s": t} for n, t in times.items()}))
    done = book.execute(paths, timeout=120, log_path=log, time_budget=100)
    assert len(done) == 2  # b and d: a does not fit, c waits for a
    assert [book.notebook_status(p)["executed"] for p in paths] == [False, True, False, True]
    assert "): a.ipynb, c.ipynb" in capsys.readouterr().out


def test_to_execute_picks_stale_other_profile_and_the_aggregating_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    names = ["01_a.ipynb", "02_b.ipynb", book.AGGREGATES[0]]
    paths = [_notebook(tmp_path, "print(1)", outputs=False, name=n) for n in names]
    book.execute(paths[:1], timeout=120, log_path=tmp_path / "log.json")
    for p in paths[1:]:  # the same code executed the same way: one kernel is enough
        shutil.copy(paths[0], p)
    assert book.to_execute(paths) == []  # all fresh in this profile
    monkeypatch.setenv("SEQLIB_PROFILE", "full")
    assert book.to_execute(paths) == paths  # executed in another profile
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    nb = nbformat.read(paths[1], as_version=4)
    nb.cells[0].source = "print(2)"
    nbformat.write(nb, paths[1])
    assert book.to_execute(paths) == [paths[1], paths[2]]  # the changed one, then the one that aggregates


def test_cli_rejects_a_path_that_is_not_a_notebook(tmp_path):
    with pytest.raises(SystemExit):
        book.main(["check", str(tmp_path / "missing.ipynb")])


def test_a_notebook_is_stale_when_what_it_read_changes_and_only_then(tmp_path, monkeypatch):
    """The kernel's dependencies go into the metadata: settings and records read; execute asks again before each
    notebook, so one made stale by an earlier one of the same call runs too."""
    from seqlib import profiles

    monkeypatch.setenv("SEQLIB_PROFILE", "full")
    monkeypatch.setenv("SEQLIB_RESULTS", str(tmp_path / "results"))  # the kernels inherit it
    up = _notebook(
        tmp_path,
        "from seqlib import profiles, results\nprofiles.get('char_lm')\nresults.record('up', {'x': 1})\n"
        "results.load('up')",  # read back: an output of this notebook, not an input
        outputs=False,
        name="01_up.ipynb",
    )
    down = _notebook(tmp_path, "from seqlib import results\nresults.load('up')", outputs=False, name="02_down.ipynb")
    log = tmp_path / "log.json"
    book.execute([up, down], timeout=120, log_path=log)
    deps = nbformat.read(down, as_version=4).metadata["seqlib"]["dependencies"]
    assert deps["records"] == [["up", "full"]] and "results.py" in deps["modules"]
    assert nbformat.read(up, as_version=4).metadata["seqlib"]["dependencies"]["records"] == []
    assert len(nbformat.read(up, as_version=4).cells) == 1  # the probe cell is not left in the notebook
    assert not book.notebook_status(up)["stale"] and not book.notebook_status(down)["stale"]
    experiments = {k: dict(v) for k, v in profiles.EXPERIMENTS.items()}
    monkeypatch.setattr(profiles, "EXPERIMENTS", experiments)
    experiments["word_lm"]["full"] = {"changed": True}
    assert not book.notebook_status(up)["stale"]  # settings it did not read
    experiments["char_lm"]["full"] = {"changed": True}
    assert book.notebook_status(up)["stale"] and not book.notebook_status(down)["stale"]
    monkeypatch.undo()  # the kernels read the settings as declared: change the notebook itself instead
    monkeypatch.setenv("SEQLIB_PROFILE", "full")
    monkeypatch.setenv("SEQLIB_RESULTS", str(tmp_path / "results"))
    nb = nbformat.read(up, as_version=4)
    nb.cells[0].source += "\nresults.record('up', {'x': 2})"
    nbformat.write(nb, up)
    assert book.notebook_status(up)["stale"] and not book.notebook_status(down)["stale"]
    ran = book.execute([up, down], timeout=120, log_path=log, only_needed=True)  # up runs, and rewrites 'up'
    assert len(ran) == 2 and not book.notebook_status(down)["stale"]
    assert book.execute([up, down], timeout=120, log_path=log, only_needed=True) == []


def test_the_book_command_line_gives_smoke_records_a_directory_of_its_own(monkeypatch):
    """Tests and other smoke runs on this machine never replace a smoke record that a chapter showed."""
    monkeypatch.delenv("SEQLIB_SMOKE_RESULTS", raising=False)
    with book.book_smoke_results() as directory:
        assert directory.name.startswith(book.BOOK_SMOKE_RESULTS + "-") and results.default_dir("smoke") == directory
        assert directory.parent == Path(tempfile.gettempdir())
    assert results.default_dir("smoke") == Path(tempfile.gettempdir()) / "seqlib-results-smoke"
    assert "SEQLIB_SMOKE_RESULTS" not in os.environ


def test_notebooks_do_not_import_the_execution_tooling():
    """A change to seqlib.bookexec must leave every executed notebook fresh: the notebook side never imports it."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom seqlib.book import glue, setup\nsetup()\nglue('x', 1)\n"
        "print('seqlib.bookexec' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
    from seqlib import bookexec

    assert book.execute is bookexec.execute  # the tooling is still reachable from seqlib.book


def test_execute_records_a_cell_timeout_as_a_failure_and_runs_the_next(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    slow = _notebook(tmp_path, "import time\ntime.sleep(120)", outputs=False, name="a.ipynb")
    good = _notebook(tmp_path, "print(6 * 7)", outputs=False, name="b.ipynb")
    with pytest.raises(RuntimeError, match="a.ipynb"):
        book.execute([slow, good], timeout=6, log_path=tmp_path / "log.json")
    assert "FAILED" in capsys.readouterr().out
    assert book.notebook_status(good)["executed"] and not book.notebook_status(slow)["executed"]


def test_time_guess_before_a_notebooks_first_full_profile_run():
    from seqlib import bookexec

    guess = bookexec.GUESS_MARGIN * bookexec.FULL_PROFILE_GUESS_S["07_language_modeling.ipynb"]  # the arithmetic
    assert bookexec._time_guess("07_language_modeling.ipynb", {}, "full") == guess
    assert bookexec._time_guess("07_language_modeling.ipynb", {"profile": "full", "wall_time_s": 250.0}, "full") == 250
    smoke_run = {"profile": "smoke", "wall_time_s": 50.0}
    assert bookexec._time_guess("07_language_modeling.ipynb", smoke_run, "full") == guess
    assert bookexec._time_guess("new.ipynb", {}, "full") == book.NOTEBOOK_LIMIT_S["full"]
    assert set(bookexec.FULL_PROFILE_GUESS_S) == {p.name for p in book.toc_notebooks()}


def test_the_full_profile_is_planned_within_the_books_limits():
    """The budgets of seqlib.profiles, as the guesses add them up, fit each page's limit and the whole book's."""
    from seqlib import bookexec

    guesses = bookexec.FULL_PROFILE_GUESS_S
    assert max(guesses.values()) <= bookexec.NOTEBOOK_LIMIT_S["full"]
    assert sum(guesses.values()) <= bookexec.BOOK_LIMIT_S


def test_check_strict_fails_on_a_notebook_or_a_book_over_its_time_limit(tmp_path, monkeypatch, capsys):
    from seqlib import bookexec

    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    paths = [_notebook(tmp_path, "print(1)", outputs=False, name=f"{i}.ipynb") for i in range(2)]
    book.execute(paths, timeout=120, log_path=tmp_path / "log.json")

    def recorded(path, seconds):  # as a full-profile GPU execution of that many seconds would have left it
        nb = nbformat.read(path, as_version=4)
        nb.metadata["seqlib"].update(profile="full", cuda=True, wall_time_s=seconds)
        nbformat.write(nb, path)

    recorded(paths[0], 200.0)
    recorded(paths[1], 250.0)
    assert book.check(paths, strict=True) == 0
    recorded(paths[1], 400.0)  # one page over its 5 minutes
    assert book.check(paths, strict=True) == 1
    assert "OVER ITS 300 s LIMIT" in capsys.readouterr().out
    monkeypatch.setattr(bookexec, "BOOK_LIMIT_S", 400.0)  # each page within its limit, the book over its own
    recorded(paths[1], 250.0)
    assert book.check(paths, strict=True) == 1
    assert "over its limit of 400 s" in capsys.readouterr().out
    assert book.check(paths) == 0  # without --strict, time is reported, not held to a limit


def test_the_command_line_names_a_missing_requirement(monkeypatch, capsys):
    from seqlib import bookexec

    def missing(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'nbformat'", name="nbformat")

    monkeypatch.setattr(bookexec, "check", missing)
    assert book.main(["check"]) == 2
    err = capsys.readouterr().err
    assert "'nbformat' is not installed" in err and "requirements.txt" in err


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_setup_on_a_cpu_names_the_profile_that_runs(profile, monkeypatch, capsys):
    import torch

    from seqlib.book import setup

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("SEQLIB_PROFILE", profile)
    assert setup() == profile
    out = capsys.readouterr().out
    assert f"profile: {profile}" in out
    # the smoke note only where the smoke profile runs; the warning only where the full one does
    assert ("the smoke profile runs" in out) is (profile == "smoke")
    assert ("full on a CPU will take a long time" in out) is (profile == "full")


@pytest.mark.parametrize(("capability", "bfloat16"), [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_setup_on_a_gpu_says_when_it_has_no_bfloat16_and_does_not_warn_of_the_cpu(
    capability, bfloat16, monkeypatch, capsys
):
    import torch

    from seqlib import device
    from seqlib.book import setup

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(device, "device_name", lambda *a: "a GPU")
    monkeypatch.setenv("SEQLIB_PROFILE", "full")
    assert setup() == "full"
    out = capsys.readouterr().out
    assert ("no bfloat16" in out) is not bfloat16
    assert "on a CPU" not in out and "No GPU found" not in out and "Smoke profile" not in out


def test_setup_seeds_torch_with_its_seed(monkeypatch, capsys):
    import torch

    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    book.setup(seed=3)
    drawn = torch.rand(3)
    torch.manual_seed(3)
    assert torch.equal(drawn, torch.rand(3))


def test_glue_hands_the_value_and_the_display_choice_to_myst_nb(monkeypatch):
    myst_nb = pytest.importorskip("myst_nb")
    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: calls.append((name, value, display)))
    assert book.glue("n_params", 42) == 42
    assert book.glue("fig", "figure", display=True) == "figure"
    assert calls == [("n_params", 42, False), ("fig", "figure", True)]


def test_check_strict_fails_on_a_stale_notebook(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    path = _notebook(tmp_path, "print(1)", outputs=False)
    book.execute([path], timeout=120, log_path=tmp_path / "log.json")
    nb = nbformat.read(path, as_version=4)
    nb.metadata["seqlib"].update(profile="full", cuda=True)  # as a full-profile GPU execution would have left it
    nbformat.write(nb, path)
    assert book.check([path], strict=True) == 0
    nb.cells[0].source = "print(2)"  # edited since: the outputs no longer show what the code does
    nbformat.write(nb, path)
    capsys.readouterr()
    assert book.notebook_status(path)["stale"]
    assert book.check([path], strict=True) == 1
    assert "STALE" in capsys.readouterr().out
    assert book.check([path]) == 0  # without --strict, staleness is reported, not a failure


def test_a_notebook_without_recorded_dependencies_is_stale_when_seqlib_changes(tmp_path, monkeypatch):
    path = _notebook(tmp_path, "print(1)")
    nb = nbformat.read(path, as_version=4)
    nb.metadata["seqlib"] = {  # executed where the dependency probe failed (a kernel with another seqlib)
        "profile": "smoke",
        "code_cells_hash": book.code_cells_hash(nb),
        "seqlib_hash": results.code_hash(),
        "dependencies": None,
    }
    nbformat.write(nb, path)
    assert not book.notebook_status(path)["stale"]
    monkeypatch.setattr(results, "code_hash", lambda: "0" * 64)  # any change to seqlib's source
    assert book.notebook_status(path)["stale"]


def test_execute_counts_the_time_already_spent_against_the_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    a = _notebook(tmp_path, "import time\ntime.sleep(4)", outputs=False, name="a.ipynb")
    b = _notebook(tmp_path, "print(1)", outputs=False, name="b.ipynb")
    log = tmp_path / "book_execution.json"
    log.write_text(json.dumps({n: {"profile": "smoke", "wall_time_s": 4.0} for n in ("a.ipynb", "b.ipynb")}))
    done = book.execute([a, b], timeout=120, log_path=log, time_budget=7)
    assert len(done) == 1  # a fits; after its 4 s (at least), b's 4 s no longer fit in the 7 s budget
    assert [book.notebook_status(p)["executed"] for p in (a, b)] == [True, False]
    assert "): b.ipynb" in capsys.readouterr().out


def test_the_time_budget_uses_the_time_logged_under_the_notebooks_path(tmp_path, monkeypatch):
    from seqlib import bookexec

    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    monkeypatch.setattr(bookexec, "ROOT", tmp_path)  # a book whose notebooks live in notebooks/
    (tmp_path / "notebooks").mkdir()
    path = _notebook(tmp_path / "notebooks", "print(1)", outputs=False, name="a.ipynb")
    log = tmp_path / "book_execution.json"
    log.write_text(json.dumps({"notebooks/a.ipynb": {"profile": "smoke", "wall_time_s": 1.0}}))
    # its measured 1 s fits the 60 s budget (the 180 s limit, the guess without a measurement, would not)
    assert len(book.execute([path], timeout=120, log_path=log, time_budget=60)) == 1
    assert list(json.loads(log.read_text())) == ["notebooks/a.ipynb"]


def test_and_join_writes_a_list_as_prose():
    assert book.and_join(["a"]) == "a"
    assert book.and_join([16, 64]) == "16 and 64"
    assert book.and_join("abc", "or") == "a, b or c"
    with pytest.raises(ValueError, match="nothing to join"):
        book.and_join([])
