"""Command line: ``python -m seqlib {train,bench,book} ...`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import sys

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


def bench_mixers_table(
    archs, lengths, d_model: int, batch_size: int, warmup: int, repeats: int, max_seconds: float = 60.0
):
    """Forward+backward time and peak memory of every mixer's fast path and its reference, at several lengths."""
    import pandas as pd

    from .bench import bench_mixer
    from .models import MIXERS

    rows = []
    for arch in archs:
        for impl in ("fast", "reference"):
            df = bench_mixer(
                lambda a=arch, i=impl: MIXERS[a](d_model=d_model, impl=i),
                lengths,
                mode="train",
                batch_size=batch_size,
                warmup=warmup,
                repeats=repeats,
                max_seconds=max_seconds,
                labels={"arch": arch, "impl": impl},
            )
            rows.append(df)
    df = pd.concat(rows, ignore_index=True)
    table = df.pivot_table(
        index=["arch", "seq_len"], columns="impl", values=["median_ms", "peak_mem_bytes"], aggfunc="first"
    )
    out = pd.DataFrame(
        {
            "fast ms": table[("median_ms", "fast")],
            "reference ms": table.get(("median_ms", "reference")),
            "speedup": table[("median_ms", "reference")] / table[("median_ms", "fast")],
            "fast MiB": table[("peak_mem_bytes", "fast")] / 2**20,
            "reference MiB": table.get(("peak_mem_bytes", "reference")) / 2**20,
        }
    )
    return out.reindex(pd.MultiIndex.from_product([archs, sorted(set(df.seq_len))], names=["arch", "seq_len"]))


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
        from .models import MIXERS

        cfg = profiles.get("bench_mixers", args.profile)
        archs = args.arch or list(MIXERS)
        lengths = args.lengths or cfg["lengths"]
        d = args.d_model or cfg["d_model"]
        print(
            f"forward+backward, batch {cfg['batch_size']}, d_model {d}, autocast where the GPU supports it; "
            "median of repeats after warm-up\n"
        )
        table = bench_mixers_table(
            [a if isinstance(a, str) else a[0] for a in archs],
            lengths,
            d,
            cfg["batch_size"],
            cfg["warmup"],
            cfg["repeats"],
            cfg.get("max_seconds", 60.0),
        )
        print(table.to_string(float_format=lambda v: f"{v:,.2f}"))
        if args.record:
            longest = table.reset_index().groupby("arch").last()  # each architecture at its longest length
            metrics = {f"{a}/speedup": r["speedup"] for a, r in longest.iterrows()}
            config = {"archs": list(table.index.levels[0]), "lengths": lengths, "d_model": d, **cfg}
            _record(args, metrics, config, table.reset_index())
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

    sub.add_parser("book", help="execute and check the book's notebooks (python -m seqlib book --help)", add_help=False)

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["book"]:
        from .book import main as book_main

        return book_main(argv[1:])
    args = parser.parse_args(argv)
    return cmd_train(args) if args.cmd == "train" else cmd_bench(args)


if __name__ == "__main__":
    sys.exit(main())
