"""The book's final comparison, aggregated from the results the chapters recorded (chapter 12).

``collect()`` reads every record of a profile's results directory; ``comparison_table(records)`` turns them
into one row per architecture and one column per measured property, each column taken from one chapter:

==========================  =========================================================  =======
column                      from the record(s)                                         chapter
==========================  =========================================================  =======
``char bits/char``          ``ch7_char_<arch>``: validation loss / ln 2                7
``WikiText-2 ppl``          ``ch7_word_<arch>``: exp(validation loss)                  7
``LM tokens/s``             ``ch7_char_<arch>``: training throughput                   7
``IMDB acc``, ``SST-2 acc``  ``ch8_<imdb|sst2>_<arch>_s<seed>``: mean over seeds        8
``Multi30k BLEU``           ``ch9_translate_<arch>``: test BLEU, greedy (see below)    9
``train time exponent``     ``ch4_scaling``: fitted slope of training time vs length   4
``train memory exponent``   ``ch5_train_memory``: slope of peak memory vs length       5
``decode state (KiB)``      ``ch5_decode_memory``: state per sequence, longest prefix  5
``decode state exponent``   ``ch5_decode_memory``: slope of that state vs length       5
``long-range acc``          ``ch6_length_sweep``: mean accuracy over tasks, longest    6
==========================  =========================================================  =======

Chapter 10's Mamba + attention hybrid fills the cells of its row whose runs were made as the chapter's own models'
were (same data, budget, depth and device, a parameter count within 10%): the two tiny-Shakespeare columns from
``ch10_char_hybrid`` (against chapter 7's records), ``IMDB acc`` and ``SST-2 acc`` from
``ch10_<imdb|sst2>_hybrid_s<seed>`` (against chapter 8's), ``long-range acc`` from ``ch10_synthetic`` (the same
settings, tasks and lengths as ``ch6_length_sweep``). Its memory columns come from chapter 5.

A translation model is an encoder-decoder; its BLEU goes to the row of its mixer when the decoder uses the same
mixer as the encoder, and to a row of its own otherwise (chapter 9's CNN encoder with a Transformer decoder is the
row ``cnn_encoder_transformer_decoder``, placed after the CNN's): no row is credited with a model it did not run.
``row_label(name)`` gives a row's display name.

A record that is missing leaves its cells empty (NaN): the table says what was measured, never fills a gap.
``sources(records, names)`` lists records (by default those the table shows) with their device, profile, date and
whether the code changed since.

Two helpers serve chapter 12's notes and ledger: ``full_window_columns(records)`` finds the columns in which the
sliding-window model's window spans every sequence it ran on (its attention there is full attention), and
``ladder_verdicts(sweep)`` gives chapter 6's verdict on each rung of the outline's length ladder from its record.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

from . import results
from .plots import ARCH_STYLE, arch_label
from .profiles import current_profile
from .results import default_dir, is_stale

__all__ = [
    "COLUMNS",
    "collect",
    "comparison_table",
    "full_window_columns",
    "ladder_verdicts",
    "row_label",
    "sources",
]

#: column -> (chapter notebook, True when higher is better)
COLUMNS: dict[str, tuple[str, bool]] = {
    "char bits/char": ("07_language_modeling", False),
    "WikiText-2 ppl": ("07_language_modeling", False),
    "LM tokens/s": ("07_language_modeling", True),
    "IMDB acc": ("08_classification", True),
    "SST-2 acc": ("08_classification", True),
    "Multi30k BLEU": ("09_translation", True),
    "train time exponent": ("04_complexity", False),
    "train memory exponent": ("05_memory", False),
    "decode state (KiB)": ("05_memory", False),
    "decode state exponent": ("05_memory", False),
    "long-range acc": ("06_long_range", True),
}

#: short names of mixers used as a translation encoder (the registry's display name otherwise)
_ENCODER_NAMES = {"cnn": "CNN", "lstm": "LSTM"}
_SEQ2SEQ_ROW = re.compile(r"(\w+?)_encoder_(\w+)_decoder")


def _translation_row(arch: str, rec: dict) -> str:
    """The row of a ``ch9_translate_<arch>`` record: its mixer's, or ``<arch>_encoder_<decoder>_decoder`` when the
    decoder is another mixer (``config.model.decoder``)."""
    decoder = ((rec.get("config") or {}).get("model") or {}).get("decoder")
    return arch if decoder in (None, arch) else f"{arch}_encoder_{decoder}_decoder"


def row_label(name: str) -> str:
    """The display name of a row of ``comparison_table``: the architecture's (``seqlib.plots.arch_label``), or for an
    encoder-decoder of two mixers, e.g. "CNN encoder + Transformer decoder"."""
    if name in ARCH_STYLE:
        return arch_label(name)
    if match := _SEQ2SEQ_ROW.fullmatch(name):
        enc, dec = (_ENCODER_NAMES.get(a) or (arch_label(a) if a in ARCH_STYLE else a) for a in match.groups())
        return f"{enc} encoder + {dec} decoder"
    return name


def collect(profile: str | None = None, results_dir: str | Path | None = None) -> dict[str, dict]:
    """Every record (``name -> record``, history as a DataFrame) in the results directory of ``profile``."""
    directory = Path(results_dir) if results_dir is not None else default_dir(profile)
    profile = profile or current_profile()
    logged = results_dir is None  # what the caller's results read
    records = {}
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not a valid result record ({e}); delete it or re-run its notebook") from e
        if not isinstance(rec, dict) or "metrics" not in rec or "provenance" not in rec:
            continue  # another JSON file (book_execution.json)
        hist = rec.get("history")
        rec["history"] = pd.DataFrame(hist["data"], columns=hist["columns"]) if hist else None
        records[rec.get("name", path.stem)] = rec
        if logged:
            results.READ.add((path.stem, profile))
    if logged:
        results.READ.add((results.ALL_RECORDS, profile))  # which records there are: a new one changes the table
    return records


def _at_longest(df: pd.DataFrame, value: str) -> dict[str, float]:
    """Per architecture, ``value`` at the longest length that architecture reached."""
    df = df[df["status"] == "ok"] if "status" in df else df
    df = df.dropna(subset=[value])
    idx = df.groupby("arch")["seq_len"].idxmax()
    return dict(zip(df.loc[idx, "arch"], df.loc[idx, value].astype(float), strict=True))


def _matched_size(rec: dict, ref: dict) -> bool:
    """Both matched to the same parameter target and each within 10% of it (records that name no target: within
    10% of each other)."""
    n, n_ref = rec["metrics"].get("n_params"), ref["metrics"].get("n_params")
    if not (n and n_ref):
        return False
    target, target_ref = rec["config"]["model"].get("target_params"), ref["config"]["model"].get("target_params")
    if target and target_ref:
        return target == target_ref and abs(n - target) <= 0.1 * target and abs(n_ref - target) <= 0.1 * target
    return abs(n - n_ref) <= 0.1 * n_ref


def _trained_alike(rec: dict, ref: dict) -> bool:
    """Two language-model records trained on the same data, budget, depth and device at a matched size."""
    a, b = rec["config"], ref["config"]
    same = all(a.get(k) == b.get(k) for k in ("lm_data", "data", "train"))
    same &= a["model"].get("n_layers") == b["model"].get("n_layers")
    same &= rec["provenance"].get("device") == ref["provenance"].get("device")
    return bool(same and _matched_size(rec, ref))


def _classified_alike(rec: dict, ref: dict | None) -> bool:
    """Two classification records of one dataset trained with the same data, budget, depth and device, at a
    matched size."""
    if ref is None:
        return False
    a, b = rec["config"], ref["config"]
    same = all(a.get(k) == b.get(k) for k in ("data", "train", "seeds"))
    same &= a["model"].get("n_layers") == b["model"].get("n_layers")
    same &= rec["provenance"].get("device") == ref["provenance"].get("device")
    return bool(same and _matched_size(rec, ref))


def _swept_alike(rec: dict, ref: dict) -> bool:
    """Chapter 10's synthetic sweep made with chapter 6's settings, tasks, lengths and device."""
    c = rec["config"]
    lengths = sorted(int(n) for n in ref["history"]["seq_len"].unique()) if ref["history"] is not None else []
    same = c.get("synthetic") == ref["config"] and c.get("lengths") == lengths
    return bool(same and rec["provenance"].get("device") == ref["provenance"].get("device"))


def _long_range(df: pd.DataFrame) -> dict[str, float]:
    """Per architecture, the mean accuracy over tasks at the longest length it was run at."""
    longest = df.groupby("arch")["seq_len"].transform("max")
    return df[df["seq_len"] == longest].groupby("arch")["accuracy"].mean().to_dict()


def comparison_table(records: dict[str, dict]) -> pd.DataFrame:
    """One row per architecture that has at least one recorded figure; columns as in ``COLUMNS``.

    ``table.attrs["records"]``: the names of the records whose figures are in the table (for ``sources``)."""
    cols: dict[str, dict[str, float]] = {c: {} for c in COLUMNS}
    used: set[str] = set()
    for name, rec in records.items():
        m = rec["metrics"]
        if match := re.fullmatch(r"ch7_(char|word)_(\w+)", name):
            kind, arch = match.groups()
            if arch == "long" or m.get("val_loss") is None:
                continue
            used.add(name)
            if kind == "char":
                cols["char bits/char"][arch] = m["val_loss"] / math.log(2)
                cols["LM tokens/s"][arch] = m.get("tokens_per_s")
            else:
                cols["WikiText-2 ppl"][arch] = math.exp(m["val_loss"])
        elif match := re.fullmatch(r"ch9_translate_(\w+)", name):
            cols["Multi30k BLEU"][_translation_row(match.group(1), rec)] = m.get("test_bleu")
            used.add(name)
    hybrid, ref = records.get("ch10_char_hybrid"), records.get("ch7_char_transformer")
    if hybrid and ref and hybrid["metrics"].get("val_loss") is not None and _trained_alike(hybrid, ref):
        used.add("ch10_char_hybrid")
        cols["char bits/char"]["hybrid"] = hybrid["metrics"]["val_loss"] / math.log(2)
        cols["LM tokens/s"]["hybrid"] = hybrid["metrics"].get("tokens_per_s")
    for ds, col in (("imdb", "IMDB acc"), ("sst2", "SST-2 acc")):
        accs: dict[str, list[float]] = {}
        for name, rec in records.items():
            if match := re.fullmatch(rf"ch8_{ds}_(\w+)_s\d+", name):
                accs.setdefault(match.group(1), []).append(rec["metrics"]["val_accuracy"])
                used.add(name)
            elif match := re.fullmatch(rf"ch10_{ds}_hybrid_s(\d+)", name):
                if _classified_alike(rec, records.get(f"ch8_{ds}_transformer_s{match.group(1)}")):
                    accs.setdefault("hybrid", []).append(rec["metrics"]["val_accuracy"])
                    used.add(name)
        cols[col] = {a: sum(v) / len(v) for a, v in accs.items()}
    if rec := records.get("ch4_scaling"):
        used.add("ch4_scaling")
        cols["train time exponent"] = {
            k.split("/")[0]: v for k, v in rec["metrics"].items() if k.endswith("/train") and v is not None
        }
    if rec := records.get("ch5_train_memory"):
        used.add("ch5_train_memory")
        cols["train memory exponent"] = dict(rec["metrics"].get("exponent", {}))
    if rec := records.get("ch5_decode_memory"):
        used.add("ch5_decode_memory")
        cols["decode state exponent"] = dict(rec["metrics"].get("state_exponent", {}))
        state = _at_longest(rec["history"], "state_bytes_per_seq")
        cols["decode state (KiB)"] = {a: v / 1024 for a, v in state.items()}
    if rec := records.get("ch6_length_sweep"):
        used.add("ch6_length_sweep")
        cols["long-range acc"] = _long_range(rec["history"])
        if (rec10 := records.get("ch10_synthetic")) is not None and _swept_alike(rec10, rec):
            used.add("ch10_synthetic")
            hybrid_rows = rec10["history"][rec10["history"]["arch"] == "hybrid"]
            cols["long-range acc"].update(_long_range(hybrid_rows))
    table = pd.DataFrame(cols, columns=list(COLUMNS)).astype(float).dropna(how="all")
    order = []
    for a in ARCH_STYLE:  # the book's order; an encoder-decoder of two mixers after its encoder's row
        order += [a] if a in table.index else []
        order += sorted(r for r in table.index if (m := _SEQ2SEQ_ROW.fullmatch(r)) and m.group(1) == a)
    table = table.loc[order + sorted(r for r in table.index if r not in order)]
    table.attrs["records"] = sorted(used)
    return table


def sources(records: dict[str, dict], names=None) -> pd.DataFrame:
    """Records with their provenance: name, device, profile, date, and whether the code changed since. ``names``:
    the records to list (those of them that exist); None: the ones whose figures ``comparison_table`` shows."""
    names = set(comparison_table(records).attrs["records"] if names is None else names)
    rows = []
    for name, rec in sorted(records.items()):
        if name not in names:
            continue
        p = rec["provenance"]
        rows.append(
            {
                "record": name,
                "device": p.get("device"),
                "profile": p.get("profile"),
                "date": (p.get("date") or "")[:10],
                "stale": is_stale(rec),
            }
        )
    return pd.DataFrame(rows, columns=["record", "device", "profile", "date", "stale"])


def _window(config: dict) -> int:
    """The sliding window a record's model used: its ``window`` option, else the mixer's default."""
    import inspect

    from .models.local_attention import SlidingWindowMixer

    window = ((config or {}).get("model") or {}).get("window")
    return int(window) if window else inspect.signature(SlidingWindowMixer).parameters["window"].default


def full_window_columns(records: dict[str, dict]) -> dict[str, tuple[int, int]]:
    """The quality columns in which the sliding-window model's window spans every sequence it was trained and scored
    on: ``column -> (window, longest sequence)``. There its attention is full attention (causal: a sequence of at
    most ``window`` tokens; bidirectional, ``|i - j| <= window``: at most ``window + 1``), the Transformer's layer
    computed in blocks, so the row measures the same model as the Transformer's.

    Read from the records' configurations: ``ch7_<char|word>_longformer`` (``data.seq_len``, causal),
    ``ch8_<imdb|sst2>_longformer_s<seed>`` (``data.max_len``, bidirectional; every seed) and ``ch6_length_sweep``
    (the longest length the sliding window ran at, causal).
    """
    out: dict[str, tuple[int, int]] = {}
    for kind, col in (("char", "char bits/char"), ("word", "WikiText-2 ppl")):
        cfg = (records.get(f"ch7_{kind}_longformer") or {}).get("config") or {}
        if (T := (cfg.get("data") or {}).get("seq_len")) and T <= (w := _window(cfg)):
            out[col] = (w, int(T))
    for ds, col in (("imdb", "IMDB acc"), ("sst2", "SST-2 acc")):
        seeds = [r.get("config") or {} for n, r in records.items() if re.fullmatch(rf"ch8_{ds}_longformer_s\d+", n)]
        spans = [  # a classifier is bidirectional unless its record says causal=True
            (_window(c), (c.get("data") or {}).get("max_len"), (c.get("model") or {}).get("causal")) for c in seeds
        ]
        if spans and all(T and (T if causal else T - 1) <= w for w, T, causal in spans):
            out[col] = (min(w for w, _, _ in spans), int(max(T for _, T, _ in spans)))
    if (rec := records.get("ch6_length_sweep")) is not None and rec["history"] is not None:
        h = rec["history"]
        lengths = h.loc[h["arch"] == "longformer", "seq_len"]
        if len(lengths) and lengths.max() <= (w := _window(rec.get("config"))):
            out["long-range acc"] = (w, int(lengths.max()))
    return {c: out[c] for c in COLUMNS if c in out}


def ladder_verdicts(sweep: dict) -> dict[str, tuple[str, str]]:
    """Chapter 6's verdict on each rung of the outline's length ladder, from its record ``ch6_length_sweep``:
    ``band -> (verdict, evidence)``, by chapter 6's rule (``seqlib.longrange``: family scores per band, ``judge``
    with the tie tolerance and the chance floor). A band with no length measured is *qualified*: not measured, with
    the verdict of the longest band measured as its evidence."""
    from . import longrange as lr

    df, cfg = sweep["history"], sweep["config"]
    floor = lr.chance_floor(cfg["tasks"], cfg.get("task_options"))
    out = {}
    for band, (verdict, why, judged_on) in lr.ladder(lr.family_scores(df), floor).items():
        if judged_on == band:
            out[band] = (verdict, why)
        else:
            out[band] = (
                "qualified",
                f"not measured: the longest length is {max(cfg.get('lengths') or df['seq_len']):,}; "
                f"in the longest band measured, {judged_on}: {verdict} ({why})",
            )
    return out
