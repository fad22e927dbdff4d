"""Command line: ``python -m seqlib {train,bench,preflight,book} ...`` (``--help`` on each).

An ordinary error of the input (a bad setting, a missing data folder, a model that cannot be built at the width
asked for) is one line on stderr, ``seqlib <command>: error: <message>``, and exit status 2, as argparse's own
errors; ``SEQLIB_DEBUG=1`` shows its traceback instead. Any other exception (a bug) keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

PROG = "python -m seqlib"
EPILOG = """environment:
  SEQLIB_PROFILE   smoke or full: the profile when --profile is not given (unset: full on a GPU, smoke otherwise)
  SEQLIB_DATA      the local data folder (layout of shared/data); unset: the Hugging Face hub
  SEQLIB_RESULTS   where full-profile records go (default: results/ of the repository)
  SEQLIB_SMOKE_RESULTS  where smoke-profile records go (default: <tmp>/seqlib-results-smoke)
  SEQLIB_DEBUG=1   show the traceback of an input error instead of its one-line message"""
PROFILE_HELP = "smoke or full (default: $SEQLIB_PROFILE when set, else full on a GPU and smoke otherwise)"
RECORD_HELP = (
    "record {what} as NAME.json among the results of the profile it ran in: full in results/ ($SEQLIB_RESULTS), "
    "smoke in $SEQLIB_SMOKE_RESULTS or <tmp>/seqlib-results-smoke, so that a quick run never overwrites a "
    "committed result; the path is printed"
)

TRAIN_TASKS = {
    "char_lm": "tiny Shakespeare, characters",
    "word_lm": "WikiText-2, words",
    "sst2": "SST-2 sentiment",
    "imdb": "IMDB sentiment",
}


def _arch(value: str):
    from .models import MIXERS

    names = value.split(",")
    for n in names:
        if n not in MIXERS:
            raise argparse.ArgumentTypeError(f"unknown architecture {n!r}; choose from {', '.join(MIXERS)}")
    return names[0] if len(names) == 1 else names


def _one_arch(value: str) -> str:
    """An ``--arch`` of ``bench`` and ``preflight``: one registry name (they measure mixers one by one; a
    comma-separated pattern is a hybrid model, which only ``train`` builds)."""
    names = value.split(",")
    if len(names) > 1:
        repeat = " ".join(f"--arch {n}" for n in names if n)
        raise argparse.ArgumentTypeError(
            f"{value!r}: one architecture per --arch here (a comma-separated layer pattern is one hybrid model, "
            f"which only train builds); to measure several, repeat the option: {repeat}"
        )
    return _arch(value)


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value!r}")
    return n


def _seconds(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {value!r}") from None
    if not 0 <= x < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {value!r}")
    return x


def _unique(names) -> list:
    return list(dict.fromkeys(names))


def cmd_train(args) -> int:
    from . import results
    from .experiments import run_classification, run_lm, sample_text

    if args.task in ("char_lm", "word_lm"):
        run = run_lm(args.arch, args.task, profile=args.profile, seed=args.seed, record_as=args.record)
    else:
        run = run_classification(args.arch, args.task, profile=args.profile, seed=args.seed, record_as=args.record)
    for key, value in run.result.summary().items():
        print(f"{key:>14}: {value}")
    if args.task == "char_lm":
        print("\nsample:\n" + sample_text(run, n_tokens=300))
    if run.record is not None:
        print("\n" + results.format_provenance(run.record))
        print(f"recorded as {run.record['path']}")
    return 0


MIXER_TABLE_COLUMNS = ["fast ms", "reference ms", "speedup", "fast MiB", "reference MiB"]


def bench_mixer_rows(arch: str, lengths, d_model: int, batch_size: int, warmup: int, repeats: int, max_seconds=60.0):
    """Forward+backward time and peak memory of one mixer's fast path and its reference: a row per length, with
    the columns ``arch``, ``seq_len``, ``MIXER_TABLE_COLUMNS`` and ``fast status`` / ``reference status``. A
    figure is NaN where that implementation was not measured at that length: its status says why, "too slow" (a
    call took longer than ``max_seconds``), "oom" (out of memory) or "not run" (a shorter length had already
    stopped its sweep, for one of those reasons); a MiB figure is also NaN where the device cannot measure memory."""
    import pandas as pd

    from .bench import bench_mixer
    from .models import MIXERS

    runs = {
        impl: bench_mixer(
            lambda i=impl: MIXERS[arch](d_model=d_model, impl=i),
            lengths,
            mode="train",
            batch_size=batch_size,
            warmup=warmup,
            repeats=repeats,
            max_seconds=max_seconds,
        ).set_index("seq_len")
        for impl in ("fast", "reference")
    }
    index = sorted({int(n) for n in lengths} | set(runs["fast"].index) | set(runs["reference"].index))

    def column(impl: str, name: str) -> pd.Series:
        df = runs[impl]
        values = df[name] if name in df else pd.Series(float("nan"), index=df.index)
        return pd.to_numeric(values, errors="coerce").reindex(index)  # None (not measurable) -> NaN

    def status(impl: str) -> pd.Series:
        df = runs[impl]
        values = df["status"] if "status" in df else pd.Series("ok", index=df.index)
        return values.reindex(index).fillna("not run")  # lengths after the one that stopped the sweep

    fast, ref = column("fast", "median_ms"), column("reference", "median_ms")
    return pd.DataFrame(
        {
            "arch": arch,
            "seq_len": index,
            "fast ms": fast.to_numpy(),
            "reference ms": ref.to_numpy(),
            "speedup": (ref / fast).to_numpy(),
            "fast MiB": (column("fast", "peak_mem_bytes") / 2**20).to_numpy(),
            "reference MiB": (column("reference", "peak_mem_bytes") / 2**20).to_numpy(),
            "fast status": status("fast").to_numpy(),
            "reference status": status("reference").to_numpy(),
        }
    )


_STATUS_MEANING = {
    "too slow": "one call took longer than max_seconds={max_seconds:g} s, so the sweep stopped there",
    "oom": "it ran out of memory, so the sweep stopped there",
    "not run": "not run, the sweep having stopped at a shorter length (too slow or out of memory)",
}


def mixers_legend(rows, max_seconds: float) -> list[str]:
    """Lines under the ``bench mixers`` table that say what each NaN of it means (none when it has no NaN)."""
    import pandas as pd

    table = rows[["arch", "seq_len", *MIXER_TABLE_COLUMNS]]
    if not table[MIXER_TABLE_COLUMNS].isna().any().any():
        return []
    lines = ["NaN = not measured:"]
    statuses = {
        impl: (rows[f"{impl} status"] if f"{impl} status" in rows else pd.Series(None, index=rows.index)).fillna(
            "unknown"  # rows resumed from a record made before statuses were kept
        )
        for impl in ("fast", "reference")
    }
    for arch in rows["arch"].unique():
        for impl, status_of in statuses.items():
            mine = rows["arch"] == arch
            for status in status_of[mine].unique():
                if status == "ok":
                    continue
                lengths = ", ".join(str(n) for n in sorted(rows.loc[mine & (status_of == status), "seq_len"]))
                why = _STATUS_MEANING.get(status, "not measured (the record does not say why)")
                lines.append(f"  {arch} {impl} at {lengths}: {why.format(max_seconds=max_seconds)}")
    measured = rows[[f"{i} ms" for i in ("fast", "reference")]].notna().all(axis=1)
    if rows.loc[measured, ["fast MiB", "reference MiB"]].isna().any().any():
        lines.append("  MiB: this device cannot measure peak memory")
    lines.append("  speedup is NaN where either time is")
    return lines


def mixers_table(rows, archs):
    """Rows of ``bench_mixer_rows`` as the printed table: indexed by (arch, seq_len), ``archs`` in their order."""
    import pandas as pd

    table = rows.set_index(["arch", "seq_len"])[MIXER_TABLE_COLUMNS].astype(float)
    names = [a for a in archs if a in set(rows["arch"])]
    return table.reindex(pd.MultiIndex.from_product([names, sorted(set(rows["seq_len"]))], names=["arch", "seq_len"]))


def _unfinished_mixers_rows(args, settings: dict):
    """The rows of ``args.record`` when it is an unfinished ``bench mixers`` run of the same settings and of the
    current code (a run stopped at its time budget or interrupted), else None: the run starts afresh."""
    import json

    from . import results

    if not args.record:
        return None
    try:
        rec = results.load(args.record, args.profile)
    except FileNotFoundError:
        return None
    config = rec.get("config") or {}
    unfinished = config.get("complete") is False and rec.get("history") is not None
    same = {k: v for k, v in config.items() if k != "complete"} == json.loads(json.dumps(settings))
    return rec["history"] if unfinished and same and not results.is_stale(rec) else None


def _record_mixers(args, rows, settings: dict, complete: bool):
    """Record ``bench mixers`` rows: the speedup of each architecture at its longest length that has one."""
    from . import results

    ok = rows.dropna(subset=["speedup"]).sort_values("seq_len")
    metrics = {f"{a}/speedup": float(r["speedup"]) for a, r in ok.groupby("arch", sort=False).last().iterrows()}
    config = {**settings, "complete": complete}
    rank = settings["archs"].index  # a resumed run's rows in the order of the architectures
    rows = rows.sort_values(["arch", "seq_len"], key=lambda c: c.map(rank) if c.name == "arch" else c)
    return results.record(args.record, metrics, config=config, history=rows, profile=args.profile)


def _record(args, metrics: dict, config: dict, history) -> None:
    from . import results

    path = results.record(args.record, metrics, config=config, history=history, profile=args.profile)
    print(f"\nrecorded as {path}")


def cmd_bench(args) -> int:
    import torch

    from . import profiles
    from .device import device_name

    print(f"device: {device_name()} | torch {torch.__version__}")
    if args.what == "mixers":
        import pandas as pd

        from .models import MIXERS

        cfg = profiles.get("bench_mixers", args.profile)
        archs = _unique(args.arch or list(MIXERS))
        lengths = sorted(set(args.lengths or cfg["lengths"]))
        d = cfg["d_model"] if args.d_model is None else args.d_model
        settings = {**cfg, "archs": archs, "lengths": lengths, "d_model": d}  # what this run measures
        print(
            f"forward+backward, batch {cfg['batch_size']}, d_model {d}, autocast where the GPU supports it; "
            "median of repeats after warm-up\n"
        )
        rows = _unfinished_mixers_rows(args, settings)
        done = set() if rows is None else set(rows["arch"])
        if done:
            print(f"resuming {args.record}: {len(done)} of {len(archs)} architectures measured with this code already")
        parts = [] if rows is None else [rows]
        start, longest, stopped, path = time.perf_counter(), 0.0, False, None
        for arch in archs:
            if arch in done:
                continue
            # each call measures at least one architecture; then none that would probably end past the budget
            budget = args.time_budget
            if budget is not None and longest > 0 and time.perf_counter() - start + longest > budget:
                stopped = True
                break
            t0 = time.perf_counter()
            parts.append(
                bench_mixer_rows(
                    arch, lengths, d, cfg["batch_size"], cfg["warmup"], cfg["repeats"], cfg.get("max_seconds", 60.0)
                )
            )
            longest = max(longest, time.perf_counter() - t0)
            done.add(arch)
            if args.record:  # after each architecture: an interrupted run keeps what it measured
                path = _record_mixers(args, pd.concat(parts, ignore_index=True), settings, complete=done >= set(archs))
        if args.record and path is None and done >= set(archs):  # resumed with nothing left to measure
            path = _record_mixers(args, pd.concat(parts, ignore_index=True), settings, complete=True)
        all_rows = pd.concat(parts, ignore_index=True)
        table = mixers_table(all_rows, archs)
        print(table.to_string(float_format=lambda v: f"{v:,.2f}"))
        legend = mixers_legend(all_rows, cfg.get("max_seconds", 60.0))
        if legend:
            print("\n" + "\n".join(legend))
        if path is not None:
            print(f"\nrecorded as {path}")
        if stopped:
            said = (
                f"\nstopped at the time budget ({args.time_budget:g} s) after {len(done)} of {len(archs)} architectures"
            )
            if args.record:
                print(f"{said}: run the same command again to measure the rest")
                return 3
            # nothing recorded: the same command again would start afresh and stop at the same place
            left = ", ".join(a for a in archs if a not in done)
            print(f"{said}; not measured: {left} (with --record NAME, the same command run again measures the rest)")
        return 0
    if args.what == "mfu":
        from .train import gpt2_mfu_benchmark

        result = gpt2_mfu_benchmark(profile=args.profile)
        for key, value in result.items():
            print(f"{key:>18}: {value}")
        if args.record:
            _record(args, result, {"benchmark": "gpt2_small_mfu"}, None)
        return 0
    raise AssertionError(args.what)


def cmd_preflight(args) -> int:
    from .preflight import CHECKS, preflight

    archs = None if args.arch is None else _unique(args.arch)
    df = preflight(archs)
    table = df.pivot(index="arch", columns="check", values="ok").reindex(df["arch"].unique())[list(CHECKS)]
    print(table.replace({True: "ok", False: "FAILED"}).to_string())
    failed = df[~df["ok"]]
    print(f"\n{len(df) - len(failed)} of {len(df)} checks passed in {df['seconds'].sum():.0f} s")
    for r in failed.itertuples():
        print(f"FAILED {r.arch} / {r.check}: {r.error}")
    if args.record and failed.empty:
        from . import results

        config = {"archs": list(table.index), "checks": list(CHECKS)}
        path = results.record(
            args.record, {"checks_passed": len(df)}, config=config, history=df, wall_time=df["seconds"].sum()
        )
        print(f"recorded as {path}")
    return 1 if len(failed) else 0


def _is_input_error(e: BaseException) -> bool:
    """Whether ``e`` is an ordinary error of the input, shown as one line rather than a traceback: data that cannot
    be had (``DataUnavailableError``), or a ``ValueError``, ``TypeError``, ``KeyError`` or missing file or folder
    raised on purpose by seqlib's own checks (its last frame a ``raise`` statement in seqlib; ``seqlib.data``'s
    ``ChecksumError`` among them). Other exceptions, bugs, keep their traceback, even of those types."""
    corpora = sys.modules.get("seqlib.data.corpora")
    if corpora is not None and isinstance(e, corpora.DataUnavailableError):
        return True
    if not isinstance(e, (ValueError, TypeError, KeyError, FileNotFoundError, NotADirectoryError)):
        return False
    frames = traceback.extract_tb(e.__traceback__)
    if not frames:
        return False
    last = frames[-1]
    package = Path(__file__).resolve().parent
    try:
        ours = Path(last.filename).resolve().is_relative_to(package)
    except (OSError, ValueError):
        ours = False
    return ours and (last.line or "").lstrip().startswith("raise ")


def _message(e: BaseException) -> str:
    text = e.args[0] if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str) else str(e)
    return " ".join(text.split()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG, description="seqlib: train, benchmark, build the book", epilog=EPILOG, formatter_class=formatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    common = {"epilog": EPILOG, "formatter_class": formatter}

    tr = sub.add_parser("train", help="train one architecture on one task with the shared trainer", **common)
    tr.add_argument(
        "--arch", required=True, type=_arch, help="a registry name, or a comma-separated layer pattern (a hybrid)"
    )
    tr.add_argument(
        "--task", required=True, choices=list(TRAIN_TASKS), help="; ".join(f"{k}: {v}" for k, v in TRAIN_TASKS.items())
    )
    tr.add_argument("--profile", choices=["smoke", "full"], help=PROFILE_HELP)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--record", metavar="NAME", help=RECORD_HELP.format(what="the result"))

    be = sub.add_parser("bench", help="benchmarks that print figures", **common)
    be.add_argument(
        "what",
        choices=["mixers", "mfu"],
        help="mixers: every mixer's fast path against its reference; mfu: GPT-2-small training MFU",
    )
    be.add_argument(
        "--arch", action="append", type=_one_arch, help="mixers: only this architecture (repeat for several)"
    )
    be.add_argument(
        "--lengths",
        type=_positive_int,
        nargs="+",
        metavar="N",
        help="mixers: sequence lengths (default: the profile's)",
    )
    be.add_argument("--d-model", type=_positive_int, metavar="D", help="mixers: width (default: the profile's)")
    be.add_argument("--profile", choices=["smoke", "full"], help=PROFILE_HELP)
    be.add_argument("--record", metavar="NAME", help=RECORD_HELP.format(what="the figures"))
    be.add_argument(
        "--time-budget",
        type=_seconds,
        metavar="SECONDS",
        help="mixers: start no architecture that would probably end past this; with --record, the same command "
        "again measures the rest (exit status 3 while some are left)",
    )

    pf = sub.add_parser(
        "preflight",
        help="every architecture and task head for a few steps on this device, in its precision (exit 1 on a failure)",
        **common,
    )
    pf.add_argument("--arch", action="append", type=_one_arch, help="only this architecture (repeat for several)")
    pf.add_argument("--record", metavar="NAME", help="when every check passes, " + RECORD_HELP.format(what="it"))

    sub.add_parser("book", help=f"execute and check the book's notebooks ({PROG} book --help)", add_help=False)

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["book"]:
        from .book import main as book_main

        return book_main(argv[1:], prog=f"{PROG} book")
    args = parser.parse_args(argv)
    if args.cmd == "bench" and args.what == "mfu":
        given = [o for o, v in (("--arch", args.arch), ("--lengths", args.lengths), ("--d-model", args.d_model),
                                ("--time-budget", args.time_budget)) if v is not None]  # fmt: skip
        if given:
            be.error(f"{', '.join(given)}: for bench mixers only, not bench mfu")
    command = {"train": cmd_train, "bench": cmd_bench, "preflight": cmd_preflight}[args.cmd]
    try:
        return command(args)
    except Exception as e:
        if os.environ.get("SEQLIB_DEBUG", "").strip() not in ("", "0") or not _is_input_error(e):
            raise
        print(f"seqlib {args.cmd}: error: {_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
