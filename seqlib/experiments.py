"""The book's experiments, each a function of an architecture: data, model, trainer and record in one place.

Sizes and budgets come from ``seqlib.profiles`` (smoke or full). Models are matched in parameter count across
architectures with ``match_d_model`` (``target_params`` of the profile), so that a comparison is about the
architecture, not its size. Every run returns a ``Run``: the trained model, the ``TrainResult`` and the
record written by ``seqlib.results.record`` (with provenance) when a name is given.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import profiles, results
from .data import lm_batches, lm_eval_batches, load_char_lm, load_classification, load_word_lm
from .data.synthetic import REGRESSION_TASKS, SYNTHETIC_TASKS
from .device import default_device
from .models import MIXERS, Block, build_model, count_params, match_d_model
from .train import TrainConfig, TrainResult, classify_loss, lm_loss, regression_loss, train


@dataclass
class Run:
    arch: str | list[str]
    model: nn.Module
    result: TrainResult
    config: dict  # the profile entry used, with the chosen d_model
    extra: dict[str, Any] = field(default_factory=dict)  # samples, tokenizer, number of training examples, ...
    record: dict | None = None

    @property
    def label(self) -> str:
        return self.arch if isinstance(self.arch, str) else "+".join(self.arch)


def _match_on_meta(arch, task: str, target: int, n_layers: int, multiple: int, build_kwargs: dict) -> int:
    """``match_d_model`` with the candidate models built on the meta device (shapes only: no memory, no init),
    about 20 times faster than building them for real; falls back to real models if a mixer cannot."""
    try:
        with torch.device("meta"):
            return match_d_model(arch, task, target, n_layers=n_layers, multiple=multiple, **build_kwargs)
    except ValueError:
        raise
    except Exception:  # a mixer whose construction needs real tensors
        return match_d_model(arch, task, target, n_layers=n_layers, multiple=multiple, **build_kwargs)


def _model_size(arch, task: str, model_cfg: dict, build_kwargs: dict, match: bool) -> int:
    """The width: matched to ``model_cfg["target_params"]`` when ``match`` (the target stays in ``model_cfg``, so
    that the record says what the size was matched to), else ``model_cfg["d_model"]`` (the target is dropped)."""
    target = model_cfg.get("target_params")
    if not (match and target):
        model_cfg.pop("target_params", None)
    if match and target:
        # widths in multiples of 8 are the fastest; a small model may need the finer grid of 4 to land within 10%
        for multiple in (8, 4):
            try:
                return _match_on_meta(arch, task, target, model_cfg["n_layers"], multiple, build_kwargs)
            except ValueError:
                if multiple == 4:
                    raise
    return model_cfg["d_model"]


def _given_model_config(model: nn.Module) -> dict:
    """What a run's record says of a model passed in ready-made: the profile's sizes do not describe it."""
    return {"given_model": f"{type(model).__module__}.{type(model).__qualname__}"}


def _train_config(cfg: dict, seed: int, progress: bool, overrides: dict | None) -> TrainConfig:
    return TrainConfig(**{**cfg["train"], "seed": seed, "progress": progress, **(overrides or {})})


def _finish(run: Run, record_as: str | None, seed: int, profile: str | None) -> Run:
    """Record the run as ``record_as`` among the results of ``profile`` (the profile it ran in; None: the current
    one), and keep the record (its ``"path"`` says where it was written)."""
    if record_as is not None:
        results.record(
            record_as,
            run.result.summary(),
            config={"arch": run.arch, **run.config},
            history=run.result.history,
            seed=seed,
            wall_time=run.result.wall_seconds,
            profile=profile,
        )
        run.record = results.load(record_as, profile)
    return run


def diverged_runs(records: dict) -> str:
    """One line for a notebook: which of ``records`` (``name -> record``) stopped because training diverged
    (``TrainConfig.on_divergence="stop"``: their figures are those of their last finite history row), or none."""
    bad = [
        f"{name} (by step {rec['metrics'].get('diverged_at_step')}, kept step {rec['metrics'].get('steps')})"
        for name, rec in records.items()
        if rec["metrics"].get("stopped_by") == "diverged"
    ]
    if not bad:
        return f"diverged: none (of {len(records)} run{'' if len(records) == 1 else 's'})"
    return f"diverged: {', '.join(bad)}; their figures are those of the step kept, their last finite history row"


# ----------------------------------------------------------------------------- language modelling
def _lm_corpus(experiment) -> str | None:
    """The corpus (``char_lm`` or ``word_lm``) that profile entry ``experiment`` trains a language model on, or None
    where it is no language-model entry (or no entry)."""
    entry = profiles.EXPERIMENTS.get(experiment) if isinstance(experiment, str) else None
    if not entry:
        return None
    corpus = next(iter(entry.values())).get("lm_data", experiment)
    return corpus if corpus in ("char_lm", "word_lm") else None


def run_lm(
    arch,
    experiment: str = "char_lm",
    *,
    profile: str | None = None,
    seed: int = 0,
    match_params: bool = True,
    record_as: str | None = None,
    progress: bool = True,
    train_overrides: dict | None = None,
    model: nn.Module | None = None,
    **model_options,
) -> Run:
    """Train a language model on tiny Shakespeare (``char_lm``) or WikiText-2 (``word_lm``).

    ``experiment``: ``char_lm``, ``word_lm``, or another language-model entry of ``seqlib.profiles`` (one that
    names its corpus with ``lm_data``, e.g. ``ch7_char_compare``). ``model`` replaces the built model (any module
    mapping tokens (B, T) to logits (B, T, V)), e.g. the outline's ``TransformerModel``; ``model_options`` go to
    ``build_model``.
    """
    lm_experiments = sorted(n for n in profiles.EXPERIMENTS if _lm_corpus(n) is not None)
    if _lm_corpus(experiment) is None:
        hint = (
            f"; {experiment!r} is a classification dataset: run_classification trains on it"
            if experiment in ("sst2", "imdb") or str(experiment).startswith(("classify_", "ch8_"))
            else ""
        )
        raise ValueError(
            f"run_lm trains language models on 'char_lm' or 'word_lm' (experiments: {', '.join(lm_experiments)}), "
            f"not {experiment!r}{hint}"
        )
    cfg = profiles.get(experiment, profile)
    corpus = cfg.get("lm_data", experiment)  # an experiment may declare which corpus it trains on
    if corpus == "char_lm":
        train_ids, val_ids, tok = load_char_lm("tiny_shakespeare")
    else:
        train_ids, val_ids, _, tok = load_word_lm("wikitext2")
    vocab = tok.vocab_size
    model_cfg = {**cfg["model"]}
    build_kwargs = {"vocab_size": vocab, **model_options}
    if model is None:
        model_cfg["d_model"] = _model_size(arch, "lm", model_cfg, build_kwargs, match_params)
        model = build_model(arch, "lm", d_model=model_cfg["d_model"], n_layers=model_cfg["n_layers"], **build_kwargs)
    else:
        model_cfg = _given_model_config(model)
    seq_len, batch_size = cfg["data"]["seq_len"], cfg["data"]["batch_size"]
    val_batches = list(lm_eval_batches(val_ids, batch_size, seq_len))
    val_batches = [b for b in val_batches if b[0].shape == (batch_size, seq_len)] or val_batches

    def batches(gen: torch.Generator):
        return next(lm_batches(train_ids, batch_size, seq_len, generator=gen, num_batches=1))

    n_params = count_params(model)
    result = train(
        model,
        batches,
        _train_config(cfg, seed, progress, train_overrides),
        loss_fn=lm_loss,
        eval_batches=val_batches,
        flops_per_token=6 * n_params,
        device=default_device(),
    )
    extra: dict[str, Any] = {"tokenizer": tok, "n_params": n_params}
    if corpus == "char_lm":
        extra["bits_per_char"] = result.metrics.get("val_loss", float("nan")) / math.log(2)
    config = {**{k: v for k, v in cfg.items() if k != "model"}, "model": {**model_cfg, **model_options}}
    return _finish(Run(arch, model, result, config, extra), record_as, seed, profile)


def sample_text(
    run: Run, prompt: str = "\n", n_tokens: int | None = None, temperature: float = 0.8, seed: int = 0
) -> str:
    """A sample from a trained character or word language model (decoded token by token through ``step``)."""
    tok = run.extra["tokenizer"]
    model = run.model.eval()
    device = next(model.parameters()).device
    ids = torch.tensor([tok.encode(prompt)], device=device)
    n = n_tokens or run.config.get("sample_tokens", 200)
    gen = torch.Generator(device=device).manual_seed(seed)
    if hasattr(model, "generate"):
        out = model.generate(ids, n, temperature=temperature, top_k=None, generator=gen)[0]
    else:  # a plain module: re-run the whole prefix each time
        out = ids
        with torch.no_grad():
            for _ in range(n):
                logits = model(out[:, -1024:])[:, -1].float() / temperature
                out = torch.cat([out, torch.multinomial(logits.softmax(-1), 1, generator=gen)], dim=1)
        out = out[0]
    return tok.decode(out.tolist())


# ----------------------------------------------------------------------------- classification
@functools.lru_cache(maxsize=4)
def classification_data(
    dataset: str, vocab_size: int, max_len: int, max_examples: int | None = None, truncation: str = "head_tail"
):
    """``load_classification`` once per process and setting: sweeps over architectures and seeds reuse the
    tokenized splits (encoding IMDB takes seconds); the splits are never modified in place."""
    return load_classification(
        dataset, vocab_size=vocab_size, max_len=max_len, truncation=truncation, max_examples=max_examples or None
    )


def _classification_entry(dataset: str, experiment: str | None, profile: str | None) -> dict:
    """The profile entry of a classification run (``experiment``, default ``classify_<dataset>``), checked."""
    default = {"sst2": "classify_sst2", "imdb": "classify_imdb"}.get(dataset)
    if default is None:
        raise ValueError(f"dataset must be 'sst2' or 'imdb', got {dataset!r}")
    cfg = profiles.get(experiment or default, profile)
    needs = {"model": ("n_layers", "target_params", "num_classes"), "data": ("max_len", "batch_size", "vocab_size")}
    missing = [k for k in ("model", "data", "train") if k not in cfg]
    missing += [f"{part}.{k}" for part, keys in needs.items() for k in keys if k not in cfg.get(part, {})]
    if missing:
        raise ValueError(f"experiment {experiment!r} is not a classification entry: it has no {', '.join(missing)}")
    return cfg


def _classification_splits(dataset: str, data: dict, seed: int):
    train_split, test_split, tok = classification_data(
        dataset, data["vocab_size"], data["max_len"], data.get("max_examples"), data.get("truncation", "head_tail")
    )
    if data.get("max_examples"):
        train_split = train_split.subset(data["max_examples"], seed)
        test_split = test_split.subset(data["max_examples"], seed)
    if data.get("max_eval_examples") and len(test_split) > data["max_eval_examples"]:
        test_split = test_split.subset(data["max_eval_examples"], 0)  # the same held-out examples for every seed
    return train_split, test_split, tok


def classification_splits(dataset: str, *, experiment: str | None = None, profile: str | None = None, seed: int = 0):
    """``(train, held_out, tokenizer)``: the examples ``run_classification`` trains and scores a run of ``seed``
    on, under ``experiment``'s settings (default ``classify_<dataset>``) in ``profile``."""
    return _classification_splits(dataset, _classification_entry(dataset, experiment, profile)["data"], seed)


def majority_baseline(
    dataset: str, *, experiment: str | None = None, profile: str | None = None, seeds: Sequence[int] = (0,)
) -> float:
    """Held-out accuracy of the better constant answer, always the label more frequent among the held-out texts
    (the full IMDB training split is exactly balanced, so the training split cannot choose it): the accuracy a
    classifier that reads nothing gets. With a held-out split that depends on the seed (``max_examples``), the
    mean over ``seeds``, as the models' accuracies are compared."""
    out = []
    for seed in seeds:
        p_pos = float(
            classification_splits(dataset, experiment=experiment, profile=profile, seed=seed)[1].labels.float().mean()
        )
        out.append(max(p_pos, 1 - p_pos))
    return sum(out) / len(out)


def run_classification(
    arch,
    dataset: str = "sst2",
    *,
    experiment: str | None = None,
    profile: str | None = None,
    seed: int = 0,
    match_params: bool = True,
    record_as: str | None = None,
    progress: bool = True,
    train_overrides: dict | None = None,
    model: nn.Module | None = None,
    **model_options,
) -> Run:
    """Train a classifier on SST-2 or IMDB (BPE vocabulary trained on the training split) and evaluate it on the
    held-out split (SST-2 validation, IMDB test): ``val_accuracy`` in the result's metrics.

    ``experiment``: the profile entry to run (default ``classify_sst2`` or ``classify_imdb``); any entry with the
    same sections (``model``, ``data``, ``train``) works, e.g. chapter 8's longer runs. An entry's ``max_epochs``
    (when set) caps the run at that many passes over the training split, besides its budget in seconds."""
    cfg = _classification_entry(dataset, experiment, profile)
    data = cfg["data"]
    train_split, test_split, tok = _classification_splits(dataset, data, seed)
    model_cfg = {**cfg["model"]}
    num_classes = model_cfg.pop("num_classes")
    build_kwargs = {"vocab_size": tok.vocab_size, "num_classes": num_classes, **model_options}
    if model is None:
        model_cfg["d_model"] = _model_size(arch, "classify", model_cfg, build_kwargs, match_params)
        model = build_model(
            arch, "classify", d_model=model_cfg["d_model"], n_layers=model_cfg["n_layers"], **build_kwargs
        )
    else:
        model_cfg = _given_model_config(model)
    bs = data["batch_size"]
    epoch = [0]

    def batches():  # an endless stream of shuffled epochs
        while True:
            yield from train_split.batches(bs, shuffle=True, seed=seed + epoch[0])
            epoch[0] += 1

    stream = batches()
    eval_batches = list(test_split.batches(bs, shuffle=False))
    epoch_cap = {"max_steps": cfg["max_epochs"] * math.ceil(len(train_split) / bs)} if cfg.get("max_epochs") else {}
    overrides = {"eval_batches": len(eval_batches), **epoch_cap, **(train_overrides or {})}
    train_cfg = _train_config(cfg, seed, progress, overrides)
    result = train(
        model,
        lambda gen: next(stream),
        train_cfg,
        loss_fn=classify_loss,
        eval_batches=eval_batches,
        device=default_device(),
    )
    config = {**{k: v for k, v in cfg.items() if k != "model"}, "model": {**model_cfg, **model_options}}
    return _finish(
        Run(arch, model, result, config, {"tokenizer": tok, "train_examples": len(train_split)}),
        record_as,
        seed,
        profile,
    )


# ----------------------------------------------------------------------------- synthetic tasks
class SequenceRegressor(nn.Module):
    """Real-valued inputs (B, T, F) -> one number per sequence (B,), read at the last position (adding problem)."""

    def __init__(self, arch, in_features: int, d_model: int, n_layers: int, **options):
        super().__init__()
        names = [arch] * n_layers if isinstance(arch, str) else [arch[i % len(arch)] for i in range(n_layers)]
        self.inp = nn.Linear(in_features, d_model)
        self.blocks = nn.ModuleList(
            Block(MIXERS[n](d_model=d_model, layer_idx=i, **options.get(n, {}))) for i, n in enumerate(names)
        )
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)  # (B, T, D)
        for block in self.blocks:
            h = block(h)
        return self.out(self.norm(h[:, -1]))[:, 0]  # (B,)


def run_synthetic(
    arch,
    task: str,
    seq_len: int,
    *,
    profile: str | None = None,
    seed: int = 0,
    d_model: int | None = None,
    n_layers: int | None = None,
    task_options: dict | None = None,
    progress: bool = False,
    train_overrides: dict | None = None,
    n_eval: int = 512,
    **model_options,
) -> Run:
    """Train a fresh model on a synthetic task at one length; ``metrics['val_accuracy']`` (token tasks: the
    fraction of answer tokens right) or ``metrics['val_loss']`` (adding problem: mean squared error)."""
    if task not in SYNTHETIC_TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {sorted(SYNTHETIC_TASKS)}")
    cfg = profiles.get("synthetic", profile)
    make = SYNTHETIC_TASKS[task]
    opts = task_options or {}
    d = d_model or cfg["model"]["d_model"]
    layers = n_layers or cfg["model"]["n_layers"]
    bs = cfg["data"]["batch_size"]

    def batches(gen: torch.Generator):
        return make(bs, seq_len, seed=int(torch.randint(2**31 - 1, (1,), generator=gen)), **opts)

    held_out = make(n_eval, seq_len, seed=10_000_019 + seed, **opts)  # never seen in training
    eval_batches = [(held_out[0][i : i + bs], held_out[1][i : i + bs]) for i in range(0, n_eval, bs)]
    if task in REGRESSION_TASKS:
        model = SequenceRegressor(arch, held_out[0].shape[-1], d, layers, **model_options)
        loss_fn = regression_loss
    else:
        vocab = int(max(held_out[0].max(), held_out[1].max())) + 1
        vocab = max(vocab, opts.get("vocab_size", 0))
        model = build_model(arch, "lm", vocab_size=vocab, d_model=d, n_layers=layers, **model_options)
        loss_fn = lm_loss
    train_cfg = _train_config(cfg, seed, progress, {"eval_batches": len(eval_batches), **(train_overrides or {})})
    result = train(model, batches, train_cfg, loss_fn=loss_fn, eval_batches=eval_batches, device=default_device())
    config = {
        "task": task,
        "seq_len": seq_len,
        "d_model": d,
        "n_layers": layers,
        "task_options": opts,
        "train": cfg["train"],
        "batch_size": bs,
    }
    return Run(arch, model, result, config)


# ----------------------------------------------------------------------------- translation (chapter 9)
def run_translation(
    arch,
    *,
    profile: str | None = None,
    seed: int = 0,
    record_as: str | None = None,
    progress: bool = True,
    train_overrides: dict | None = None,
    **model_options,
) -> Run:
    """Train an encoder-decoder on Multi30k (English -> German by default) and score it on test2016.

    ``arch`` is the encoder's mixer (and the decoder's, unless ``decoder=...`` is given: e.g. ``"cnn"`` with
    ``decoder="transformer"``); every decoder layer adds cross-attention to the encoder states. Parameters are
    matched to the profile's ``target_params``. After training, the first ``decode.n_sentences`` test sentences
    are translated greedily (batched) and the first ``decode.n_beam`` of them also with beam search; the
    metrics gain ``test_bleu``/``test_chrf`` (greedy), ``subset_bleu_greedy``/``subset_bleu_beam`` (the same
    subset both ways) and decoding times. ``run.extra`` holds the tokenizers, the sources, references and
    translations (``"greedy"``, ``"beam"``).
    """
    import time

    from .data import TranslationSplit
    from .train import seq2seq_loss
    from .translation import bleu_chrf, translate, translation_data

    cfg = profiles.get("translate_multi30k", profile)
    data, dec = cfg["data"], cfg["decode"]
    train_split, val_split, test_split, src_tok, tgt_tok = translation_data(profile)
    n_train = len(train_split)
    keep = list(range(n_train))
    if data.get("max_examples") and data["max_examples"] < n_train:
        keep = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))[: data["max_examples"]].tolist()
    L = data["max_len"]  # sentences are cut to max_len subwords for training (Multi30k's are rarely longer)
    train_split = TranslationSplit(
        [train_split.src[i][:L] for i in keep],
        [train_split.tgt[i][:L] for i in keep],
        [train_split.src_texts[i] for i in keep],
        [train_split.tgt_texts[i] for i in keep],
        train_split.pad_id,
        train_split.bos_id,
        train_split.eos_id,
    )
    model_cfg = {**cfg["model"]}
    extra_build = {k: v for k, v in model_cfg.items() if k not in ("d_model", "n_layers", "target_params")}
    build_kwargs = {
        "vocab_size": src_tok.vocab_size,
        "tgt_vocab_size": tgt_tok.vocab_size,
        **extra_build,
        **model_options,
    }
    model_cfg["d_model"] = _model_size(arch, "seq2seq", model_cfg, build_kwargs, True)
    model = build_model(arch, "seq2seq", d_model=model_cfg["d_model"], n_layers=model_cfg["n_layers"], **build_kwargs)
    bs = data["batch_size"]
    epoch = [0]

    def batches():  # an endless stream of shuffled epochs (batches of similar lengths)
        while True:
            yield from train_split.batches(bs, shuffle=True, seed=seed + epoch[0])
            epoch[0] += 1

    stream = batches()
    eval_batches = list(val_split.batches(bs, shuffle=True, seed=12345))  # a fixed mix of lengths
    result = train(
        model,
        lambda gen: next(stream),
        _train_config(cfg, seed, progress, train_overrides),
        loss_fn=functools.partial(seq2seq_loss, **cfg["loss"]),
        eval_batches=eval_batches,
        device=default_device(),
    )
    config = {**{k: v for k, v in cfg.items() if k != "model"}, "model": {**model_cfg, **model_options}}
    run = Run(arch, model, result, config, {"src_tokenizer": src_tok, "tgt_tokenizer": tgt_tok})

    n, n_beam = min(dec["n_sentences"], len(test_split)), min(dec["n_beam"], dec["n_sentences"], len(test_split))
    src_texts, refs = test_split.src_texts[:n], test_split.tgt_texts[:n]
    t0 = time.perf_counter()
    greedy = translate(run, src_texts, beam_size=1, max_len=dec["max_len"], batch_size=dec["batch_size"])
    t_greedy = time.perf_counter() - t0
    t0 = time.perf_counter()
    beam = translate(run, src_texts[:n_beam], beam_size=dec["beam_size"], max_len=dec["max_len"])
    t_beam = time.perf_counter() - t0
    full = bleu_chrf(greedy, refs)
    sub_g, sub_b = bleu_chrf(greedy[:n_beam], refs[:n_beam]), bleu_chrf(beam, refs[:n_beam])
    result.metrics.update(
        {
            "test_bleu": full["bleu"],
            "test_chrf": full["chrf"],
            "test_sentences": n,
            "subset_sentences": n_beam,
            "subset_bleu_greedy": sub_g["bleu"],
            "subset_bleu_beam": sub_b["bleu"],
            "subset_chrf_greedy": sub_g["chrf"],
            "subset_chrf_beam": sub_b["chrf"],
            "beam_size": dec["beam_size"],
            "greedy_seconds": t_greedy,
            "beam_seconds": t_beam,
        }
    )
    run.extra.update(
        {
            "sources": src_texts,
            "references": refs,
            "greedy": greedy,
            "beam": beam,
            "signatures": {"bleu": full["bleu_signature"], "chrf": full["chrf_signature"]},
        }
    )
    return _finish(run, record_as, seed, profile)
