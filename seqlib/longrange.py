"""Long-range ability (chapter 6): synthetic tasks swept over length and width, and verdicts per length band.

* ``task_vocab``, ``chance_accuracy``, ``format_example``: what a synthetic task asks, and its chance level;
* ``matched_widths``: per architecture, the ``d_model`` whose model for a task (a language model on its
  vocabulary, or the sequence regressor of a regression task) lands closest to a parameter target (for language
  models the same answer as ``models.match_d_model``, found by a cheap upward scan);
* ``constant_baseline``, ``adding_floor``: the error of the best constant prediction on a regression task, and
  the lowest error on the adding problem of a model that sees only so many inputs back;
* ``length_sweep`` / ``width_sweep``: one fresh model per (architecture, task, length[, width]) trained with
  ``experiments.run_synthetic``, as a DataFrame with one row per run;
* ``reach_of``: how far back one output of a built model can see (receptive field, window) or ``None`` (unbounded);
* ``family_scores``, ``judge``, ``break_lengths``: rank the outline's families of architectures per length band
  and decide its claims (confirmed / refuted / qualified) from the recorded accuracies.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch

from .data.synthetic import IGNORE_INDEX, REGRESSION_TASKS, SYNTHETIC_TASKS
from .device import default_device
from .models import build_model, count_params

__all__ = [
    "BANDS",
    "TIE_TOLERANCE",
    "FAMILIES",
    "LADDER",
    "adding_floor",
    "answer_distances",
    "band_of",
    "break_lengths",
    "chance_accuracy",
    "chance_floor",
    "constant_baseline",
    "family_scores",
    "format_example",
    "judge",
    "ladder",
    "length_sweep",
    "matched_widths",
    "min_width",
    "reach_of",
    "task_model",
    "task_vocab",
    "width_sweep",
]

#: the outline's length bands: name -> [lo, hi) in tokens
BANDS: dict[str, tuple[int, float]] = {
    "short (<512)": (0, 512),
    "medium (512-2K)": (512, 2048),
    "long (2K-8K)": (2048, 8192),
    "very long (>8K)": (8192, math.inf),
}

#: the outline's families, as registry names (a family scores as its best member)
FAMILIES: dict[str, list[str]] = {
    "RNN": ["lstm", "gru"],
    "CNN": ["cnn"],
    "Transformer": ["transformer"],
    "Efficient Transformers": ["longformer", "linear_attention", "recurrent_transformer"],
    "SSM / Linear Attention": ["s4", "mamba", "linear_attention", "rwkv"],
}

#: the outline's ladder: band -> relations (a, op, b); op ">" (a better), "≈" (within tolerance), "best" (b unused)
LADDER: dict[str, list[tuple[str, str, str | None]]] = {
    "short (<512)": [("Transformer", "≈", "CNN"), ("CNN", ">", "RNN")],
    "medium (512-2K)": [("Transformer", ">", "CNN"), ("CNN", ">", "RNN")],
    "long (2K-8K)": [("Efficient Transformers", ">", "CNN"), ("CNN", ">", "RNN")],
    "very long (>8K)": [("SSM / Linear Attention", "best", None)],
}


def band_of(seq_len: int) -> str:
    """The outline's band that ``seq_len`` falls in."""
    for name, (lo, hi) in BANDS.items():
        if lo <= seq_len < hi:
            return name
    raise ValueError(f"seq_len must be >= 0, got {seq_len}")


# ----------------------------------------------------------------------------- tasks
def _options(task: str, task_options: Mapping | None) -> dict:
    if task not in SYNTHETIC_TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {sorted(SYNTHETIC_TASKS)}")
    defaults = {
        k: p.default
        for k, p in inspect.signature(SYNTHETIC_TASKS[task]).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return {**defaults, **(task_options or {})}


def task_vocab(task: str, task_options: Mapping | None = None) -> int:
    """The vocabulary a model of a token task needs (every id that can appear, as ``run_synthetic`` sizes it)."""
    if task in REGRESSION_TASKS:
        raise ValueError(f"{task!r} is a regression task: it has no vocabulary")
    return int(_options(task, task_options)["vocab_size"])


def chance_accuracy(task: str, task_options: Mapping | None = None) -> float:
    """Accuracy of guessing uniformly among the answers the task can have."""
    opts = _options(task, task_options)
    v = opts.get("vocab_size")
    if task in ("copying", "selective_copying"):
        return 1 / (v - 2)  # data tokens are 2 .. V-1
    if task == "associative_recall":
        return 1 / (v - v // 2)  # values are V//2 .. V-1
    if task == "induction_heads":
        return 1 / (v - 1)  # any token but the trigger
    raise ValueError(f"{task!r} has no accuracy (a regression task)")


def format_example(task: str, seq_len: int, task_options: Mapping | None = None, seed: int = 0, width: int = 24) -> str:
    """One example of a token task as text: input ids above the targets ('.' = not scored), ``width`` per line."""
    x, y = SYNTHETIC_TASKS[task](1, seq_len, seed=seed, **(task_options or {}))
    x, y = x[0].tolist(), y[0].tolist()
    w = max(len(str(v)) for v in x + y) + 1
    lines = []
    for s in range(0, seq_len, width):
        xs = "".join(f"{v:>{w}}" for v in x[s : s + width])
        ys = "".join(f"{'.' if v == IGNORE_INDEX else v:>{w}}" for v in y[s : s + width])
        lines += [f"pos {s:>4}  input  {xs}", f"          target {ys}", ""]
    return "\n".join(lines).rstrip()


def answer_distances(task: str, seq_len: int, task_options: Mapping | None = None, n: int = 256, seed: int = 0):
    """How far back each scored answer's evidence lies: a 1-D tensor, one entry per scored position of ``n`` examples.

    selective copying: answer position minus its data token's position; associative recall: query position minus
    its key's position (the key and its value come first); induction heads: last position minus the position of
    the token after the first trigger. A model that sees only ``R`` positions back cannot do better than chance on
    the answers with distance ``>= R``.
    """
    opts = _options(task, task_options)
    x, y = SYNTHETIC_TASKS[task](n, seq_len, seed=seed, **(task_options or {}))
    scored = y != IGNORE_INDEX  # (n, T)
    t_ans = scored.nonzero()[:, 1].view(n, -1)  # (n, k) answer positions, increasing
    if task == "selective_copying":
        k = opts["n_tokens"]
        src = (x[:, : seq_len - k] >= 2).nonzero()[:, 1].view(n, k)  # data positions, in order
    elif task == "associative_recall":
        k = opts["n_pairs"]
        keys = x[:, 0 : 2 * k : 2]  # (n, k)
        q = x.gather(1, t_ans)  # the key asked at each answer position
        src = 2 * (q.unsqueeze(-1) == keys.unsqueeze(1)).float().argmax(-1)  # position of that key
    elif task == "induction_heads":
        trig = opts["vocab_size"] - 1
        src = (x == trig).float().argmax(1, keepdim=True) + 1  # the token after the first trigger
    else:
        raise ValueError(f"no answer distances for {task!r}")
    return (t_ans - src).flatten()


# ----------------------------------------------------------------------------- matched widths
def task_model(
    arch: str | Sequence[str],
    task: str,
    d_model: int,
    *,
    n_layers: int,
    task_options: Mapping | None = None,
    **model_options,
) -> torch.nn.Module:
    """The model ``experiments.run_synthetic`` trains on ``task``, untrained: a language model on the task's
    vocabulary for a token task, a ``SequenceRegressor`` on the task's input features for a regression task
    (the adding problem). ``model_options`` are passed on as ``run_synthetic`` passes them."""
    if task in REGRESSION_TASKS:
        from .experiments import SequenceRegressor

        x, _ = SYNTHETIC_TASKS[task](1, 16, **_task_kwargs(task, task_options))  # (1, T, features)
        return SequenceRegressor(arch, x.shape[-1], d_model, n_layers, **model_options)
    vocab = task_vocab(task, task_options)
    return build_model(arch, "lm", vocab_size=vocab, d_model=d_model, n_layers=n_layers, **model_options)


def _task_kwargs(task: str, task_options: Mapping | None) -> dict:
    _options(task, task_options)  # validates the task name
    return dict(task_options or {})


def matched_widths(
    archs: Iterable[str | Sequence[str]],
    task: str,
    target_params: int,
    *,
    n_layers: int,
    task_options: Mapping | None = None,
    multiple: int = 8,
    tolerance: float = 0.10,
    **model_options,
) -> dict[str, tuple[int, int]]:
    """``arch -> (d_model, n_params)``: the width (a multiple of ``multiple``) whose model for the task
    (``task_model``: a language model on the task's vocabulary, or the regressor of a regression task) lands
    closest to ``target_params``. Raises when an architecture misses it by more than ``tolerance``.

    For a token task, the same choice as ``seqlib.models.match_d_model``; it scans widths upward and stops past
    the target, so it only builds small models (cheap enough to call per task on a CPU).
    """
    _task_kwargs(task, task_options)  # an unknown task raises here, not as a width to skip
    out = {}
    for arch in archs:

        def n_params(d: int, arch=arch) -> int:
            model = task_model(arch, task, d, n_layers=n_layers, task_options=task_options, **model_options)
            return count_params(model)

        tried: dict[int, int] = {}
        d = multiple
        while True:
            try:
                tried[d] = n_params(d)
            except ValueError:  # e.g. a width the heads cannot split: skip it
                pass
            if tried and tried[max(tried)] >= target_params or d > 8192:
                break
            d += multiple
        best = min(tried, key=lambda k: abs(tried[k] - target_params))
        err = abs(tried[best] - target_params) / target_params
        if err > tolerance:
            raise ValueError(
                f"{arch!r}: no d_model (multiple of {multiple}) within {tolerance:.0%} of {target_params:,} parameters "
                f"(closest: d_model={best}, {tried[best]:,})"
            )
        out[arch] = (best, tried[best])
    return out


def constant_baseline(
    task: str, seq_len: int, task_options: Mapping | None = None, n: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """A regression task's floor for "learned nothing": ``(mse, sd)``, the mean squared error of the best constant
    prediction (the mean target, so ``mse`` is the targets' variance) on ``n`` generated examples, and the standard
    deviation of one example's squared error (the standard error of an MSE measured on ``m`` examples is about
    ``sd / sqrt(m)``). A model that ignores its input can do no better than ``mse``, up to that noise."""
    if task not in REGRESSION_TASKS:
        raise ValueError(f"{task!r} is not a regression task; choose from {REGRESSION_TASKS}")
    _, y = SYNTHETIC_TASKS[task](n, seq_len, seed=seed, **_task_kwargs(task, task_options))
    sq = (y.double() - y.double().mean()) ** 2
    return float(sq.mean()), float(sq.std())


def adding_floor(
    seq_len: int, reach: int | None, task_options: Mapping | None = None, n: int = 10_000, seed: int = 0
) -> float:
    """The lowest mean squared error on the adding problem of a model that sees only the last ``reach`` inputs
    (``None``: all of them, so 0): it adds the marked numbers it sees and can only guess the mean, 1/2, for a
    marked number further back. Estimated on ``n`` generated examples; ``reach`` 0 gives about the
    ``constant_baseline``."""
    opts = _task_kwargs("adding_problem", task_options)
    if reach is None or reach >= seq_len:
        return 0.0  # sees both numbers
    x, y = SYNTHETIC_TASKS["adding_problem"](n, seq_len, seed=seed, **opts)
    values, marks = x[..., 0].double(), x[..., 1].double()  # (n, T) each
    seen = torch.arange(seq_len - 1, -1, -1) < reach  # (T,): distance from the last position below the reach
    pred = (marks * torch.where(seen, values, torch.full_like(values, 0.5))).sum(1)  # (n,)
    return float(((y.double() - pred) ** 2).mean())


# ----------------------------------------------------------------------------- sweeps
@contextlib.contextmanager
def _cpu_threads(n: int):
    """Run the block with ``n`` intra-op threads on a CPU (restored afterwards); no effect on a GPU run.

    The sweeps train many tiny models: on a CPU their operations are too small to gain from several threads, and
    the threads' synchronisation costs more than it saves (far more on a machine shared with other work).
    """
    if default_device().type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_row(run_synthetic, arch, task, seq_len, d_model, n_layers, opts, kw) -> dict:
    """One run as a row. A run that runs out of memory (a long sequence on a small GPU) is a row too: ``oom``
    True and no accuracy, so that a sweep goes on and its table says where each architecture stopped; so is a run
    whose training loss stopped being a number (``diverged`` True, no accuracy: the trainer raised, or stopped the
    run there under ``on_divergence="stop"``)."""
    from .bench import _free, _is_oom
    from .device import default_device

    t0 = time.perf_counter()
    row = {"arch": arch, "task": task, "seq_len": seq_len, "d_model": d_model}
    failed = None
    try:
        with _cpu_threads(1):
            run = run_synthetic(arch, task, seq_len, d_model=d_model, n_layers=n_layers, task_options=opts, **kw)
    except FloatingPointError:  # the trainer's "training loss is nan": this run's result, not the sweep's end
        run, failed = None, "diverged"
    except Exception as e:
        if not _is_oom(e):
            raise
        run, failed = None, "oom"
    else:
        if run.result.stopped_by == "diverged":  # on_divergence="stop": ended early, scored as diverged all the same
            run, failed = None, "diverged"
    if failed is not None:
        _free(default_device())  # outside the except block: its traceback no longer holds the run's tensors
        nan = float("nan")
        row.update(n_params=nan, accuracy=nan, val_loss=nan, steps=0, train_seconds=nan)
        row.update(oom=failed == "oom", diverged=failed == "diverged")
    else:
        m = run.result.metrics
        row.update(
            n_params=run.result.n_params,
            accuracy=m.get("val_accuracy", float("nan")),
            val_loss=m.get("val_loss", float("nan")),
            steps=run.result.steps,
            train_seconds=run.result.train_seconds,
            oom=False,
            diverged=False,
        )
    return {**row, "wall_seconds": time.perf_counter() - t0}


def length_sweep(
    archs: Sequence[str],
    tasks: Sequence[str],
    lengths: Sequence[int],
    widths: Mapping[str, Mapping[str, int]],
    *,
    n_layers: int,
    task_options: Mapping[str, Mapping] | None = None,
    on_row: Callable[[dict], None] | None = None,
    **run_kwargs,
) -> pd.DataFrame:
    """Train one fresh model per (task, length, arch) with ``run_synthetic``; ``widths[task][arch]`` is its
    ``d_model``. ``run_kwargs`` go to ``run_synthetic`` (``profile``, ``seed``, ``n_eval``, ``train_overrides``)."""
    from .experiments import run_synthetic

    rows = []
    for task in tasks:
        opts = dict((task_options or {}).get(task, {}))
        for seq_len in lengths:
            for arch in archs:
                rows.append(
                    _run_row(run_synthetic, arch, task, seq_len, widths[task][arch], n_layers, opts, run_kwargs)
                )
                if on_row is not None:
                    on_row(rows[-1])
    return pd.DataFrame(rows)


def width_sweep(
    archs: Sequence[str],
    task: str,
    lengths: Sequence[int],
    d_models: Sequence[int],
    *,
    n_layers: int,
    task_options: Mapping | None = None,
    **run_kwargs,
) -> pd.DataFrame:
    """Accuracy against width: one fresh model per (arch, length, d_model), same columns as ``length_sweep``."""
    from .experiments import run_synthetic

    opts = dict(task_options or {})
    rows = [
        _run_row(run_synthetic, arch, task, seq_len, d, n_layers, opts, run_kwargs)
        for arch in archs
        for seq_len in lengths
        for d in d_models
    ]
    return pd.DataFrame(rows)


def min_width(df: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per (arch, seq_len) of a width sweep: the smallest ``d_model`` reaching ``threshold`` accuracy (NaN: none)."""
    ok = df[df["accuracy"] >= threshold]
    need = ok.groupby(["arch", "seq_len"])["d_model"].min()
    full = df.groupby(["arch", "seq_len"])["d_model"].min() * math.nan
    return need.combine_first(full).rename("min_d_model").reset_index()


# ----------------------------------------------------------------------------- reach
def reach_of(model: torch.nn.Module) -> int | None:
    """How many input positions one output of ``model`` can depend on; ``None`` when unbounded. ``model``: a
    built model with a backbone (``build_model``) or a stack of blocks of its own (``task_model`` of a regression
    task).

    Convolutions add ``receptive_field - 1`` per layer, sliding windows ``window - 1``; any mixer without either
    (recurrence, attention, state-space scans) makes the reach unbounded.
    """
    blocks = model.backbone.blocks if hasattr(model, "backbone") else model.blocks
    total = 1
    for block in blocks:
        mixer = block.mixer
        if hasattr(mixer, "receptive_field"):
            rf = mixer.receptive_field
            total += (rf() if callable(rf) else rf) - 1
        elif hasattr(mixer, "window") and type(mixer).__name__ == "SlidingWindowMixer":
            total += mixer.window - 1
        else:
            return None
    return total


# ----------------------------------------------------------------------------- verdicts
def family_scores(df: pd.DataFrame, families: Mapping[str, Sequence[str]] = FAMILIES) -> pd.DataFrame:
    """Rows: band; columns: family; value: the family's best member's accuracy, averaged over tasks and lengths."""
    scores = []
    for fam, members in families.items():
        sub = df[df["arch"].isin(members)]
        if sub.empty:
            continue
        best = sub.groupby(["task", "seq_len"])["accuracy"].max().reset_index()  # best member per task and length
        best["band"] = best["seq_len"].map(band_of)
        scores.append(best.groupby("band")["accuracy"].mean().rename(fam))
    out = pd.concat(scores, axis=1)
    return out.reindex([b for b in BANDS if b in out.index])


#: accuracy differences below this count as ties when architectures are ranked (chapters 6 and 12)
TIE_TOLERANCE = 0.05


def chance_floor(tasks: Iterable[str], task_options: Mapping[str, Mapping] | None = None, tol: float = TIE_TOLERANCE):
    """The accuracy below which nothing was learned: the tasks' mean chance accuracy plus ``tol``. A ranking of
    architectures that all sit below it says nothing, and a verdict built on it stays undecided."""
    tasks = list(tasks)
    if not tasks:
        raise ValueError("no tasks")
    return sum(chance_accuracy(t, (task_options or {}).get(t)) for t in tasks) / len(tasks) + tol


def judge(
    scores: Mapping[str, float],
    relations: Sequence[tuple[str, str, str | None]],
    tol: float = 0.05,
    floor: float | None = None,
) -> tuple[str, str]:
    """Decide a claim from one band's family scores: ``(verdict, reason)``.

    ``a > b`` holds when a beats b by more than ``tol``, is reversed when b beats a by more than ``tol``;
    ``a ≈ b`` holds within ``tol``; ``a best`` holds when no family beats a by more than ``tol``. Every relation
    holds: *confirmed*; one reversed (or an ``≈`` or ``best`` broken): *refuted*; otherwise (a tie where the claim
    says ``>``): *qualified*. ``floor`` (e.g. chance + tol): when no family scores above it, nothing was learned
    and the claim cannot be decided: *undecided*.
    """
    scores = {k: float(v) for k, v in dict(scores).items() if not math.isnan(float(v))}
    needed = {f for a, _, b in relations for f in (a, b) if f is not None}
    if missing := sorted(needed - set(scores)):  # every run of the family failed (out of memory, diverged)
        return "undecided", f"no result for {', '.join(missing)} (out of memory or diverged)"
    if floor is not None and max(scores.values()) <= floor:
        return "undecided", f"no family above {floor:.2f} (chance + tolerance): nothing was learned"
    status, reasons = [], []
    for a, op, b in relations:
        sa = scores[a]
        if op == "best":
            top = max(scores, key=scores.get)
            ok = scores[top] - sa <= tol
            status.append("holds" if ok else "reversed")
            reasons.append(f"{a} {sa:.2f} vs best {top} {scores[top]:.2f}")
            continue
        sb = scores[b]
        if op == ">":
            status.append("holds" if sa > sb + tol else "reversed" if sb > sa + tol else "tie")
        elif op == "≈":
            status.append("holds" if abs(sa - sb) <= tol else "reversed")
        else:
            raise ValueError(f"unknown relation {op!r}")
        reasons.append(f"{a} {sa:.2f} {op} {b} {sb:.2f}: {status[-1]}")
    verdict = "confirmed" if all(s == "holds" for s in status) else "refuted" if "reversed" in status else "qualified"
    return verdict, "; ".join(reasons)


def ladder(
    scores: pd.DataFrame, floor: float | None = None, tol: float = TIE_TOLERANCE
) -> dict[str, tuple[str, str, str]]:
    """Every rung of :data:`LADDER` judged on :func:`family_scores`: ``band -> (verdict, reason, judged_on)``.

    ``judged_on`` is the band whose scores decided it: the band itself when one of its lengths was measured, else
    the longest band measured. A caller reports a rung judged on another band as not measured (*qualified*), with
    that verdict as its evidence."""
    if scores.empty:
        raise ValueError("no family scores: the sweep has no trained run")
    out = {}
    for band, relations in LADDER.items():
        judged_on = band if band in scores.index else scores.index[-1]
        out[band] = (*judge(scores.loc[judged_on], relations, tol, floor), judged_on)
    return out


def break_lengths(df: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per (task, arch): ``breaks_at``, the shortest length whose accuracy is below ``threshold`` (NaN: it never
    broke); ``holds_up_to``, the longest length it passed below that and below any length without a result;
    ``above_again``, the longest length it passed beyond ``breaks_at`` (NaN: none); ``no_result_from``, the
    shortest length without an accuracy (a run that ran out of memory or diverged; NaN: none)."""

    def first(lengths):
        return int(lengths.min()) if len(lengths) else math.nan

    def last(lengths):
        return int(lengths.max()) if len(lengths) else math.nan

    rows = []
    for (task, arch), g in df.sort_values("seq_len").groupby(["task", "arch"], sort=False):
        passed = g[g["accuracy"] >= threshold]["seq_len"]
        first_fail = first(g[g["accuracy"] < threshold]["seq_len"])
        no_result = first(g[g["accuracy"].isna()]["seq_len"])
        rows.append(
            {
                "task": task,
                "arch": arch,
                "breaks_at": first_fail,
                "holds_up_to": last(passed[~(passed >= first_fail) & ~(passed >= no_result)]),
                "above_again": last(passed[passed > first_fail]),
                "no_result_from": no_result,
            }
        )
    return pd.DataFrame(rows)
