"""Execute the book's notebooks in place and check them (the command line of ``seqlib.book``).

    python -m seqlib.book execute [NOTEBOOK ...] [--all] [--time-budget S]   # stale notebooks, or the ones named
    python -m seqlib.book check [--strict]                 # outputs present, no errors; a table of every notebook

``execute`` runs each notebook top to bottom through nbclient (the profile comes from ``SEQLIB_PROFILE``),
stores in its metadata (``metadata.seqlib``) the device, profile, wall time, a hash of its code cells, a hash
of seqlib's sources and what its kernel depended on (``seqlib.results.dependencies``: the seqlib modules it
imported, the experiment settings and the records it read), and updates
``results/book_execution.json``. A notebook is *stale* when its code cells or any of those dependencies changed
since it was executed: a change to chapter 7's settings leaves chapter 4 fresh, and a new chapter 6 record makes
chapter 10, which reads it, stale. Smoke-profile records go to a directory of the book's own
(``book_smoke_results``). ``check`` fails on a notebook without outputs or with an
error output; ``--strict`` also fails on a stale notebook, one not executed on a GPU in the full profile, one that took
longer than ``NOTEBOOK_LIMIT_S``, and a full-profile book that took longer than ``BOOK_LIMIT_S`` in all.

Notebooks import ``seqlib.book`` (``setup``, ``glue``), never this module: a change to the tooling leaves every
notebook fresh.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXECUTION_LOG = "results/book_execution.json"


# ---------------------------------------------------------------- book side
def absolute_data_path() -> None:
    """Kernels run in the notebook's folder: a relative ``SEQLIB_DATA`` is made absolute before they start."""
    if os.environ.get("SEQLIB_DATA"):
        os.environ["SEQLIB_DATA"] = os.path.abspath(os.environ["SEQLIB_DATA"])


#: where the book's notebooks keep their smoke-profile records (under the temporary directory)
BOOK_SMOKE_RESULTS = "seqlib-results-smoke-book"


@contextlib.contextmanager
def book_smoke_results():
    """Within it, the book's smoke-profile notebooks have a records directory of their own (``SEQLIB_SMOKE_RESULTS``,
    unless set; the kernels inherit it), one per checkout of the book: tests, other smoke runs and other checkouts
    on this machine then never replace a record that a chapter showed, and a chapter that read another's record goes
    stale when that record changes."""
    import tempfile

    before = os.environ.get("SEQLIB_SMOKE_RESULTS")
    checkout = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
    os.environ.setdefault("SEQLIB_SMOKE_RESULTS", str(Path(tempfile.gettempdir()) / f"{BOOK_SMOKE_RESULTS}-{checkout}"))
    try:
        yield Path(os.environ["SEQLIB_SMOKE_RESULTS"])
    finally:
        if before is None:
            os.environ.pop("SEQLIB_SMOKE_RESULTS", None)


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """Notebooks listed in ``_toc.yml``, in book order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    files.append(node[key])
            for value in node.values():
                if isinstance(value, list | dict):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    out = []
    for f in files:
        path = root / (f if f.endswith(".ipynb") else f + ".ipynb")
        if path.exists():
            out.append(path)
    return out


def code_cells_hash(nb) -> str:
    src = "\n\0".join(c.source for c in nb.cells if c.cell_type == "code")
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def _error_outputs(nb) -> list[str]:
    errors = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
    return errors


def _has_outputs(nb) -> bool:
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    return bool(code) and all(c.get("execution_count") is not None for c in code)


def notebook_status(path: Path) -> dict:
    import nbformat

    from .results import code_hash, dependency_hash

    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("seqlib", {})
    deps = meta.get("dependencies")
    if isinstance(deps, dict) and "hash" in deps:
        code_changed = dependency_hash(deps) != deps["hash"]
    else:  # executed before dependencies were recorded: any change to seqlib counts
        code_changed = meta.get("seqlib_hash") != code_hash()
    stale = not meta or meta.get("code_cells_hash") != code_cells_hash(nb) or code_changed
    return {
        "notebook": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "device": meta.get("device", "-"),
        "profile": meta.get("profile", "-"),
        "wall_s": meta.get("wall_time_s"),
        "executed": _has_outputs(nb),
        "errors": _error_outputs(nb),
        "stale": stale,
        "gpu": bool(meta.get("cuda")),
    }


#: notebooks that aggregate what the others record: executed again whenever another one is
AGGREGATES = ("12_when_to_use.ipynb",)
#: notebooks that read what earlier ones record, and which (an aggregating notebook reads them all): ``execute``
#: starts none of them while one of those is left over or failed in the same call, since its figures would be
#: stale as soon as that one runs
READS = {
    "03_transformer.ipynb": ("01_rnn_lstm.ipynb", "02_cnn.ipynb"),
    "10_hybrids.ipynb": ("06_long_range.ipynb", "07_language_modeling.ipynb", "08_classification.ipynb"),
    "11_modern.ipynb": ("04_complexity.ipynb", "06_long_range.ipynb"),
}


def needs_execution(path: Path) -> bool:
    """Stale, without outputs, or executed in another profile than the current one."""
    from .profiles import current_profile

    st = notebook_status(path)
    return st["stale"] or not st["executed"] or st["profile"] != current_profile()


def to_execute(paths: list[Path]) -> list[Path]:
    """The notebooks of ``paths`` that need executing now (``needs_execution``), plus the aggregating notebooks
    when anything else runs. Order is kept. (``execute(..., only_needed=True)`` asks again before each notebook:
    executing one can make a later one that reads its records stale.)"""
    chosen = [p for p in paths if needs_execution(p)]
    if any(p.name not in AGGREGATES for p in chosen):
        chosen = [p for p in paths if p in chosen or p.name in AGGREGATES]
    return chosen


#: what a notebook may take in each profile (seconds); the guess for one that has no recorded execution yet
NOTEBOOK_LIMIT_S = {"smoke": 180.0, "full": 300.0}
#: what the whole book may take in the full profile on one GPU (seconds): ``check --strict`` holds it to this
BOOK_LIMIT_S = 1800.0

#: before a notebook's first execution in the full profile, its time on one H100-class GPU as the budgets in
#: ``seqlib.profiles`` add up (training budgets plus an allowance for data, evaluation and plots): a schedule for
#: ``--time-budget``, never a reported figure; its first execution records the real one. They add up to less than
#: ``BOOK_LIMIT_S`` (a test holds them to it), so the budgets are sized for the whole book's limit, not only each page's
FULL_PROFILE_GUESS_S = {
    "00_setup.ipynb": 15.0,
    "01_rnn_lstm.ipynb": 80.0,
    "02_cnn.ipynb": 95.0,
    "03_transformer.ipynb": 140.0,
    "04_complexity.ipynb": 160.0,
    "05_memory.ipynb": 100.0,
    "06_long_range.ipynb": 240.0,
    "07_language_modeling.ipynb": 268.0,
    "08_classification.ipynb": 268.0,
    "09_translation.ipynb": 245.0,
    "10_hybrids.ipynb": 75.0,
    "11_modern.ipynb": 100.0,
    "12_when_to_use.ipynb": 10.0,
}


#: what a notebook is given on top of its guessed time before its first full-profile execution: one that outlives
#: the time budget is interrupted and its work lost, so a guess is trusted less than a measured time
GUESS_MARGIN = 1.15


def _time_guess(name: str, last: dict, profile: str) -> float:
    """What a notebook should take: its last time in this profile, else the full profile's guess (with
    ``GUESS_MARGIN``), else the limit."""
    if last.get("profile") == profile and last.get("wall_time_s") is not None:
        return float(last["wall_time_s"])
    if profile == "full" and name in FULL_PROFILE_GUESS_S:
        return GUESS_MARGIN * FULL_PROFILE_GUESS_S[name]
    return NOTEBOOK_LIMIT_S[profile]


#: run in the kernel after a notebook's cells (and removed from it): what the kernel depended on, as JSON
_DEPENDENCY_PROBE = (  # records the notebook wrote itself are its outputs, not its inputs
    "import json as _json\nfrom seqlib.results import dependencies as _deps\nprint(_json.dumps(_deps(for_record=True)))"
)


def _probe_result(cell) -> dict | None:
    """The dependencies the probe cell printed (its last line on stdout), or None when it printed none."""
    lines = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout").strip().splitlines()
    try:
        deps = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        deps = None
    return deps if isinstance(deps, dict) and "hash" in deps else None


def execute(
    paths: list[Path],
    timeout: int = 1800,
    log_path: Path | None = None,
    time_budget: float | None = None,
    only_needed: bool = False,
) -> list[dict]:
    """Execute notebooks in place (kernel ``python3``, working directory = the notebook's folder).

    Records how in each notebook's metadata and in ``log_path`` (default ``results/book_execution.json``),
    after each notebook. A notebook that fails is left as it was (its error is printed) and the next one runs;
    ``RuntimeError`` at the end names the failures. ``time_budget`` (seconds): a notebook is not started when
    its last recorded wall time in this profile (else ``FULL_PROFILE_GUESS_S`` or ``NOTEBOOK_LIMIT_S``) no longer
    fits in what is left, but a later one that fits is, unless it reads what a notebook left over records
    (``READS``, ``AGGREGATES``); the notebooks left over are named, so that a later call (``execute`` without
    arguments) picks them up.
    ``only_needed``: skip a notebook that does not need executing (``needs_execution``, asked just before it,
    so that one made stale by an earlier one of this call runs too), except an aggregating one after any other ran.
    """
    import nbformat
    import torch
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    from .device import device_name
    from .profiles import current_profile
    from .results import code_hash

    profile = current_profile()
    os.environ["SEQLIB_PROFILE"] = profile  # the kernel inherits it
    absolute_data_path()
    log_path = Path(log_path) if log_path is not None else ROOT / EXECUTION_LOG
    log = json.loads(log_path.read_text()) if log_path.exists() else {}
    done, failed, left, start = [], [], [], time.perf_counter()
    for path in paths:
        rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
        if only_needed and not needs_execution(path) and not (path.name in AGGREGATES and (done or left)):
            continue
        reads = [p.name for p in paths if p != path] if path.name in AGGREGATES else READS.get(path.name, ())
        if any(name in left or name in failed for name in reads):  # after those, in a later call
            left.append(path.name)
            continue
        if time_budget is not None:
            # one that does not fit is left for a later call, and a later, shorter one may still fit
            if time.perf_counter() - start + _time_guess(path.name, log.get(rel, {}), profile) > time_budget:
                left.append(path.name)
                continue
        nb = nbformat.read(path, as_version=4)
        print(f"executing {path.name} (profile {profile}) ...", flush=True)
        t0 = time.perf_counter()
        # allowed to fail (a kernel with another seqlib): the notebook is then recorded without its dependencies
        nb.cells.append(nbformat.v4.new_code_cell(_DEPENDENCY_PROBE, metadata={"tags": ["raises-exception"]}))
        try:
            NotebookClient(
                nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
            ).execute()
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
            print(f"  FAILED after {time.perf_counter() - t0:.1f} s; {path.name} left unchanged:\n{e}", flush=True)
            failed.append(path.name)
            continue
        wall = time.perf_counter() - t0
        deps = _probe_result(nb.cells.pop())
        meta = {
            "device": device_name(),
            "cuda": torch.cuda.is_available(),
            "profile": profile,
            "wall_time_s": round(wall, 1),
            "code_cells_hash": code_cells_hash(nb),
            "seqlib_hash": code_hash(),
            "dependencies": deps,
            "torch": torch.__version__,
            "executed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        nb.metadata["seqlib"] = meta
        nbformat.write(nb, path)
        log[rel] = meta
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(json.dumps(dict(sorted(log.items())), indent=1) + "\n")
        print(f"  {wall:.1f} s on {meta['device']}", flush=True)
        done.append(meta)
    if left:
        print(f"left for a later call (time budget, or waiting for one of those): {', '.join(left)}", flush=True)
    if failed:
        raise RuntimeError(f"{len(failed)} notebook(s) failed: {', '.join(failed)} (errors above)")
    return done


def check(paths: list[Path], strict: bool = False) -> int:
    """Print a table of every notebook; return the number of failures."""
    rows = [notebook_status(p) for p in paths]
    header = f"{'notebook':38} {'device':34} {'profile':7} {'wall s':>7}  state"
    print(header)
    print("-" * len(header))
    failures = 0
    for r in rows:
        problems = []
        if not r["executed"]:
            problems.append("NO OUTPUTS")
        if r["errors"]:
            problems.append("ERRORS: " + "; ".join(r["errors"]))
        if strict and r["stale"]:
            problems.append("STALE")
        if strict and not (r["gpu"] and r["profile"] == "full"):
            problems.append("NOT A FULL-PROFILE GPU RUN")
        limit = NOTEBOOK_LIMIT_S.get(r["profile"])
        if strict and limit is not None and r["wall_s"] is not None and r["wall_s"] > limit:
            problems.append(f"OVER ITS {limit:.0f} s LIMIT")
        failures += bool(problems)
        state = ("stale" if r["stale"] else "fresh") + ("  " + ", ".join(problems) if problems else "")
        wall = f"{r['wall_s']:.1f}" if r["wall_s"] is not None else "-"
        print(f"{r['notebook']:38} {str(r['device'])[:34]:34} {r['profile']:7} {wall:>7}  {state}")
    total = sum(r["wall_s"] or 0 for r in rows)
    over = strict and all(r["profile"] == "full" for r in rows) and total > BOOK_LIMIT_S
    failures += over
    print(f"{len(rows)} notebooks, {total:.0f} s of recorded execution, {failures} failing")
    if over:
        print(f"the book took {total:.0f} s in the full profile, over its limit of {BOOK_LIMIT_S:.0f} s")
    if any(r["stale"] and r["profile"] == "smoke" for r in rows):
        print(
            "note: smoke-profile records are kept in a temporary folder ($SEQLIB_SMOKE_RESULTS), so a smoke chapter "
            "that shows another's record is stale on a machine that has not executed that chapter since; "
            "`python -m seqlib.book execute --all` executes them in order"
        )
    return failures


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    prog = prog or "python -m seqlib.book"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("execute", help="execute notebooks in place and record how")
    ex.add_argument("notebooks", nargs="*", type=Path, help="default: the stale notebooks of _toc.yml")
    ex.add_argument("--all", action="store_true", help="execute every notebook of _toc.yml, stale or not")
    ex.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    ex.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="start no notebook that would not finish within this many seconds (by its last recorded time)",
    )
    ck = sub.add_parser("check", help="fail on notebooks without outputs or with errors; print their state")
    ck.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook of _toc.yml")
    ck.add_argument(
        "--strict", action="store_true", help="also fail on stale notebooks, non-GPU runs and times over the limits"
    )
    vh = sub.add_parser("verify-html", help="open every page of the built book in headless Chromium and check it")
    vh.add_argument("--build-dir", type=Path, default=ROOT / "_build" / "html")
    vh.add_argument("--screenshots", type=Path, help="folder for screenshots of the pages named by --shot")
    vh.add_argument("--shot", action="append", default=[], help="a page to screenshot, e.g. notebooks/00_setup.html")
    args = parser.parse_args(argv)
    try:
        return _command(parser, args)
    except ModuleNotFoundError as e:  # run outside the environment of requirements.txt
        print(
            f"{prog} {args.cmd} needs the project's requirements, and {e.name!r} is not installed "
            "in this Python. Install them first (the README's install step): "
            "pip install -r requirements.txt -e . (the README says how to get the CPU build of PyTorch).",
            file=sys.stderr,
        )
        return 2


def _command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.cmd == "verify-html":
        from .htmlcheck import verify

        return 1 if verify(args.build_dir, args.screenshots, args.shot) else 0

    for p in getattr(args, "notebooks", []):
        if not p.exists() or p.suffix != ".ipynb":
            parser.error(f"not a notebook: {p}")
    paths = [p.resolve() for p in args.notebooks] or toc_notebooks()
    with book_smoke_results():
        return _notebook_command(args, paths)


def _notebook_command(args: argparse.Namespace, paths: list[Path]) -> int:
    if args.cmd == "execute":
        only_needed = not args.notebooks and not args.all
        if only_needed and not to_execute(paths):
            print("every notebook is fresh and was executed in this profile; use --all to execute them anyway")
            return 0
        try:
            execute(paths, timeout=args.timeout, time_budget=args.time_budget, only_needed=only_needed)
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 1
        return 0
    return 1 if check(paths, strict=args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
