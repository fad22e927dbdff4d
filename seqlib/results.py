"""Recorded results with provenance: what was measured, on what, with which code.

``record(name, metrics, ...)`` writes ``<results dir>/<name>.json``:

    {"name": ..., "metrics": {...}, "config": {...}, "history": {"columns": [...], "data": {...}},
     "provenance": {"device", "torch", "cuda", "cudnn", "python", "seqlib_version", "code_hash",
                    "dependencies", "git_commit", "git_dirty", "seed", "date", "wall_time", "profile"}}

Only the ``full`` profile writes to the results directory (``$SEQLIB_RESULTS``, else ``results/`` at the
root of the repository holding ``seqlib``, else ``./results`` for an installed package). ``smoke`` runs
write to ``$SEQLIB_SMOKE_RESULTS``, else ``<tmp>/seqlib-results-smoke``, so that a quick check never overwrites a
committed result (``python -m seqlib.book`` gives the book's smoke-profile notebooks a directory of their own).

``code_hash()`` is the SHA-256 of seqlib's source (every ``.py`` file of the package, sorted by relative
path, path and content). ``dependencies()`` names what a process's results depend on: the seqlib modules it
imported (``profiles.py`` aside), the experiment settings it read (``profiles.get``) and the records it read
(``load``, ``seqlib.summary.collect``), with one hash over their current contents. Every record carries it;
``is_stale(record)`` says whether any of it changed since the record was made (the whole package's hash, for a
record that predates it). A change to one experiment's settings or to a module a chapter does not import leaves
that chapter's results fresh.
The JSON is deterministic: sorted keys, one-space indent, missing and non-finite numbers as ``null``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import __version__, profiles
from .device import device_name
from .profiles import PROFILES, current_profile

__all__ = [
    "record",
    "load",
    "is_stale",
    "code_hash",
    "dependencies",
    "dependency_hash",
    "format_provenance",
    "default_dir",
    "provenance",
]

PACKAGE_DIR = Path(__file__).resolve().parent
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)*$")


def _repo_root() -> Path | None:
    root = PACKAGE_DIR.parent
    if root.name in ("site-packages", "dist-packages"):
        return None
    return root if (root / "pyproject.toml").exists() or (root / ".git").exists() else None


def default_dir(profile: str | None = None) -> Path:
    """Where ``profile``'s results live (see the module docstring)."""
    profile = current_profile() if profile is None else profile
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid values: {', '.join(PROFILES)}")
    if profile == "smoke":
        return Path(os.environ.get("SEQLIB_SMOKE_RESULTS") or Path(tempfile.gettempdir()) / "seqlib-results-smoke")
    if os.environ.get("SEQLIB_RESULTS"):
        return Path(os.environ["SEQLIB_RESULTS"])
    root = _repo_root()
    return root / "results" if root is not None else Path.cwd() / "results"


def code_hash() -> str:
    """SHA-256 (hex) over seqlib's ``.py`` files: relative path and content, in sorted order."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py"), key=lambda p: p.relative_to(PACKAGE_DIR).as_posix()):
        h.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


#: ``(name, profile)`` of the full-profile records this process read from the results directory
READ: set[tuple[str, str]] = set()
#: ``(name, profile)`` of the records this process wrote: not inputs of the records it writes after them
WRITTEN: set[tuple[str, str]] = set()
#: a name in ``READ`` that stands for the list of every record in the directory (``seqlib.summary.collect``)
ALL_RECORDS = "*"


def _loaded_modules() -> list[str]:
    """The seqlib source files this process imported, relative to the package (``profiles.py`` aside: its
    experiments count one by one, through ``profiles.READ``)."""
    files = set()
    for module in list(sys.modules.values()):
        f = getattr(module, "__file__", None)
        if f and f.endswith(".py"):
            path = Path(f).resolve()
            if path.is_relative_to(PACKAGE_DIR):
                files.add(path.relative_to(PACKAGE_DIR).as_posix())
    return sorted(files - {"profiles.py"})


def _record_digest(name: str, profile: str) -> str:
    directory = default_dir(profile)
    if name == ALL_RECORDS:
        return hashlib.sha256("\n".join(sorted(p.stem for p in directory.glob("*.json"))).encode()).hexdigest()
    path = directory / f"{name}.json"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<missing>"


def dependency_hash(deps: dict) -> str:
    """SHA-256 over the current contents of what ``deps`` names (see ``dependencies``); "" when ``deps`` cannot
    be read (never equal to a hash: what it describes counts as changed).

    Records are looked up where this process finds them (``default_dir``): check staleness with the same
    ``SEQLIB_RESULTS`` as the results were made with."""
    h = hashlib.sha256()
    try:
        for rel in deps.get("modules", []):
            path = PACKAGE_DIR / rel
            h.update(rel.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"<missing>") + b"\0")
        for name, profile in deps.get("profiles", []):
            h.update(json.dumps([name, profile, profiles.declared(name, profile)], sort_keys=True).encode() + b"\0")
        for name, profile in deps.get("records", []):
            h.update(f"{name}\0{profile}\0{_record_digest(name, profile)}\0".encode())
    except (TypeError, ValueError, AttributeError, OSError):
        return ""
    return h.hexdigest()


def dependencies(for_record: bool = False) -> dict[str, Any]:
    """What this process's results depend on so far, with ``dependency_hash`` over it: ``modules`` (seqlib files
    imported), ``profiles`` (``[experiment, profile]`` read) and ``records`` (``[name, profile]`` of the
    records read, ``"*"`` for the list of them all). ``for_record``: leave out the records this
    process wrote itself (a run reads back what it has just recorded; that is not one of its inputs)."""
    skip = WRITTEN if for_record else set()
    deps: dict[str, Any] = {
        "modules": _loaded_modules(),
        "profiles": sorted([name, profile] for name, profile in profiles.READ),
        "records": sorted([name, profile] for name, profile in READ - skip),
    }
    deps["hash"] = dependency_hash(deps)
    return deps


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(*, seed=None, wall_time=None, profile: str | None = None, name: str | None = None) -> dict[str, Any]:
    """Where and with what a result was produced (device, versions, code, seed, date)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--", str(PACKAGE_DIR)) if commit else None
    return {
        "device": device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "seqlib_version": __version__,
        "code_hash": code_hash(),
        "dependencies": dependencies(for_record=True),
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,  # uncommitted changes to seqlib
        "seed": seed,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_time": wall_time,
        "profile": current_profile() if profile is None else profile,
    }


def _jsonable(x: Any) -> Any:
    """Plain JSON types; NaN and infinities become None (JSON has no NaN)."""
    if isinstance(x, pd.DataFrame):
        return {"columns": [str(c) for c in x.columns], "data": {str(c): _jsonable(x[c].tolist()) for c in x.columns}}
    if isinstance(x, pd.Series):
        return _jsonable(x.tolist())
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _jsonable(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return _jsonable(x.tolist())
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if isinstance(x, (Path, torch.dtype, torch.device)):
        return str(x)
    raise TypeError(f"cannot record a {type(x).__name__} ({x!r:.80}); convert it to numbers, strings or lists")


def _path(name: str, directory: Path) -> Path:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"result name {name!r}: use letters, digits, '_', '-', '.', and '/' for subfolders")
    return directory / f"{name}.json"


def record(
    name: str,
    metrics: dict,
    *,
    config=None,
    history=None,
    seed=None,
    wall_time=None,
    profile: str | None = None,
    results_dir: str | os.PathLike | None = None,
) -> Path:
    """Write result ``name`` (metrics, config, history, provenance) and return its path.

    ``profile`` defaults to ``current_profile()``: ``full`` writes to the results directory, ``smoke`` to a
    temporary one. An explicit ``results_dir`` is used as given, for either profile.
    """
    profile = current_profile() if profile is None else profile
    if not isinstance(metrics, dict):
        raise TypeError(f"metrics must be a dict of numbers, got {type(metrics).__name__}")
    directory = Path(results_dir) if results_dir is not None else default_dir(profile)
    path = _path(name, directory)
    if history is not None and not isinstance(history, pd.DataFrame):
        history = pd.DataFrame(history)
    if results_dir is None:
        WRITTEN.add((name, profile))
    rec = {
        "name": name,
        "metrics": metrics,
        "config": config,
        "history": history,
        "provenance": provenance(seed=seed, wall_time=wall_time, profile=profile),
    }
    text = json.dumps(_jsonable(rec), indent=1, sort_keys=True, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def load(name: str, profile: str | None = None, *, results_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read result ``name``: a dict with ``metrics``, ``config``, ``history`` (DataFrame or None), ``provenance``."""
    profile = current_profile() if profile is None else profile
    directory = Path(results_dir) if results_dir is not None else default_dir(profile)
    path = _path(name, directory)
    if results_dir is None:  # a missing record counts too: its arrival changes the result
        READ.add((name, profile))
    if not path.exists():
        how = (
            "run the notebook that records it in the full profile (SEQLIB_PROFILE=full, on a GPU), "
            "or set SEQLIB_RESULTS to the directory that holds it"
            if profile == "full"
            else "run the notebook that records it with SEQLIB_PROFILE=smoke first"
        )
        raise FileNotFoundError(f"no recorded result {name!r} for the {profile} profile at {path}; {how}")
    rec = json.loads(path.read_text())
    hist = rec.get("history")
    rec["history"] = pd.DataFrame(hist["data"], columns=hist["columns"]) if hist else None
    rec["path"] = str(path)
    return rec


def is_stale(record: dict) -> bool:
    """True when what ``record`` depends on changed since it was made (see ``dependencies``); for a record that
    names no dependencies, when any of seqlib's code changed (``code_hash()``)."""
    p = record.get("provenance", {})
    deps = p.get("dependencies")
    if isinstance(deps, dict) and "hash" in deps:
        return dependency_hash(deps) != deps["hash"]
    return p.get("code_hash") != code_hash()


def format_provenance(record: dict) -> str:
    """One line for a notebook: date, device, versions, code, seed, wall time, profile (and staleness)."""
    p = record.get("provenance", {})
    date = (p.get("date") or "?").replace("T", " ").replace("+00:00", " UTC")
    cuda = f", CUDA {p['cuda']}" if p.get("cuda") else ""
    code = f"seqlib {p.get('seqlib_version', '?')} code {str(p.get('code_hash'))[:10]}"
    if p.get("git_commit"):
        code += f" (git {p['git_commit'][:7]}{', modified' if p.get('git_dirty') else ''})"
    parts = [f"recorded {date}", f"on {p.get('device', '?')}", f"torch {p.get('torch', '?')}{cuda}", code]
    if p.get("seed") is not None:
        parts.append(f"seed {p['seed']}")
    if p.get("wall_time") is not None:
        w = p["wall_time"]
        parts.append(f"{w:.0f} s" if w >= 10 else f"{w:.2g} s")
    parts.append(f"profile {p.get('profile', '?')}")
    line = " · ".join(parts)
    return line + (" · STALE: its code, settings or inputs changed since" if is_stale(record) else "")
