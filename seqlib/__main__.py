"""Command line: ``python -m seqlib {train,bench,preflight,book} ...`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import sys
import time

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
    return 0


MIXER_TABLE_COLUMNS = ["fast ms", "reference ms", "speedup", "fast MiB", "reference MiB"]


def bench_mixer_rows(arch: str, lengths, d_model: int, batch_size: int, warmup: int, repeats: int, max_seconds=60.0):
    """Forward+backward time and peak memory of one mixer's fast path and its reference: a row per length, with
    the columns ``arch``, ``seq_len`` and ``MIXER_TABLE_COLUMNS`` (NaN where a run was too slow or out of memory)."""
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
    index = sorted(set(runs["fast"].index) | set(runs["reference"].index))

    def column(impl: str, name: str) -> pd.Series:
        df = runs[impl]
        values = df[name] if name in df else pd.Series(float("nan"), index=df.index)
        return pd.to_numeric(values, errors="coerce").reindex(index)  # None (not measurable) -> NaN

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
        }
    )


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
        archs = [a if isinstance(a, str) else a[0] for a in (args.arch or list(MIXERS))]
        lengths = args.lengths or cfg["lengths"]
        d = args.d_model or cfg["d_model"]
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
        table = mixers_table(pd.concat(parts, ignore_index=True), archs)
        print(table.to_string(float_format=lambda v: f"{v:,.2f}"))
        if path is not None:
            print(f"\nrecorded as {path}")
        if stopped:
            print(
                f"\nstopped at the time budget ({args.time_budget:g} s) after {len(done)} of {len(archs)} "
                "architectures: run the same command again to measure the rest"
            )
            return 3
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

    archs = None if args.arch is None else [a if isinstance(a, str) else a[0] for a in args.arch]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seqlib", description="seqlib: train, benchmark, build the book")
    sub = parser.add_subparsers(dest="cmd", required=True)

    tr = sub.add_parser("train", help="train one architecture on one task with the shared trainer")
    tr.add_argument("--arch", required=True, type=_arch, help="a registry name, or a comma-separated layer pattern")
    tr.add_argument(
        "--task", required=True, choices=list(TRAIN_TASKS), help="; ".join(f"{k}: {v}" for k, v in TRAIN_TASKS.items())
    )
    tr.add_argument("--profile", choices=["smoke", "full"], help="default: full on a GPU, smoke otherwise")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--record", metavar="NAME", help="record the result as results/NAME.json (full profile)")

    be = sub.add_parser("bench", help="benchmarks that print figures")
    be.add_argument(
        "what",
        choices=["mixers", "mfu"],
        help="mixers: every mixer's fast path against its reference; mfu: GPT-2-small training MFU",
    )
    be.add_argument("--arch", action="append", type=_arch, help="only these architectures (repeatable)")
    be.add_argument("--lengths", type=int, nargs="+", help="sequence lengths (default: from the profile)")
    be.add_argument("--d-model", type=int, help="width (default: from the profile)")
    be.add_argument("--profile", choices=["smoke", "full"], help="default: full on a GPU, smoke otherwise")
    be.add_argument("--record", metavar="NAME", help="record the figures as results/NAME.json (full profile)")
    be.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="mixers: start no architecture that would probably end past this; with --record, the same command "
        "again measures the rest (exit status 3 while some are left)",
    )

    pf = sub.add_parser(
        "preflight",
        help="every architecture and task head for a few steps on this device, in its precision (exit 1 on a failure)",
    )
    pf.add_argument("--arch", action="append", type=_arch, help="only these architectures (repeatable)")
    pf.add_argument(
        "--record", metavar="NAME", help="when every check passes, record it as results/NAME.json (full profile)"
    )

    sub.add_parser("book", help="execute and check the book's notebooks (python -m seqlib book --help)", add_help=False)

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["book"]:
        from .book import main as book_main

        return book_main(argv[1:])
    args = parser.parse_args(argv)
    if args.cmd == "preflight":
        return cmd_preflight(args)
    return cmd_train(args) if args.cmd == "train" else cmd_bench(args)


if __name__ == "__main__":
    sys.exit(main())
