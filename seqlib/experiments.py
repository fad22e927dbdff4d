"""The book's experiments, each a function of an architecture: data, model, trainer and record in one place.

Sizes and budgets come from ``seqlib.profiles`` (smoke or full). Models are matched in parameter count across
architectures with ``match_d_model`` (``target_params`` of the profile), so that a comparison is about the
architecture, not its size. Every run returns a ``Run``: the trained model, the ``TrainResult`` and the
record written by ``seqlib.results.record`` (with provenance) when a name is given.
"""

from __future__ import annotations

import math
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
    extra: dict[str, Any] = field(default_factory=dict)  # samples, tokenizer, ...
    record: dict | None = None

    @property
    def label(self) -> str:
        return self.arch if isinstance(self.arch, str) else "+".join(self.arch)


def _model_size(arch, task: str, model_cfg: dict, build_kwargs: dict, match: bool) -> int:
    target = model_cfg.pop("target_params", None)
    if match and target:
        return match_d_model(arch, task, target, n_layers=model_cfg["n_layers"], **build_kwargs)
    return model_cfg["d_model"]


def _train_config(cfg: dict, seed: int, progress: bool, overrides: dict | None) -> TrainConfig:
    return TrainConfig(**{**cfg["train"], "seed": seed, "progress": progress, **(overrides or {})})


def _finish(run: Run, record_as: str | None, seed: int) -> Run:
    if record_as is not None:
        results.record(
            record_as,
            run.result.summary(),
            config={"arch": run.arch, **run.config},
            history=run.result.history,
            seed=seed,
            wall_time=run.result.wall_seconds,
        )
        run.record = results.load(record_as)
    return run


# ----------------------------------------------------------------------------- language modelling
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

    ``model`` replaces the built model (any module mapping tokens (B, T) to logits (B, T, V)), e.g. the outline's
    ``TransformerModel``; ``model_options`` go to ``build_model``.
    """
    cfg = profiles.get(experiment, profile)
    if experiment == "char_lm":
        train_ids, val_ids, tok = load_char_lm("tiny_shakespeare")
    elif experiment == "word_lm":
        train_ids, val_ids, _, tok = load_word_lm("wikitext2")
    else:
        raise ValueError(f"run_lm runs 'char_lm' or 'word_lm', not {experiment!r}")
    vocab = tok.vocab_size
    model_cfg = {**cfg["model"]}
    build_kwargs = {"vocab_size": vocab, **model_options}
    if model is None:
        model_cfg["d_model"] = _model_size(arch, "lm", model_cfg, build_kwargs, match_params)
        model = build_model(arch, "lm", d_model=model_cfg["d_model"], n_layers=model_cfg["n_layers"], **build_kwargs)
    else:
        model_cfg.pop("target_params", None)
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
    if experiment == "char_lm":
        extra["bits_per_char"] = result.metrics.get("val_loss", float("nan")) / math.log(2)
    config = {**{k: v for k, v in cfg.items() if k != "model"}, "model": {**model_cfg, **model_options}}
    return _finish(Run(arch, model, result, config, extra), record_as, seed)


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
def run_classification(
    arch,
    dataset: str = "sst2",
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
    """Train a classifier on SST-2 or IMDB (BPE vocabulary trained on the training split) and evaluate it on the
    held-out split (SST-2 validation, IMDB test): ``val_accuracy`` in the result's metrics."""
    experiment = {"sst2": "classify_sst2", "imdb": "classify_imdb"}.get(dataset)
    if experiment is None:
        raise ValueError(f"dataset must be 'sst2' or 'imdb', got {dataset!r}")
    cfg = profiles.get(experiment, profile)
    data = cfg["data"]
    train_split, test_split, tok = load_classification(dataset, vocab_size=data["vocab_size"], max_len=data["max_len"])
    if data.get("max_examples"):
        train_split = train_split.subset(data["max_examples"], seed)
        test_split = test_split.subset(data["max_examples"], seed)
    model_cfg = {**cfg["model"]}
    num_classes = model_cfg.pop("num_classes")
    build_kwargs = {"vocab_size": tok.vocab_size, "num_classes": num_classes, **model_options}
    if model is None:
        model_cfg["d_model"] = _model_size(arch, "classify", model_cfg, build_kwargs, match_params)
        model = build_model(
            arch, "classify", d_model=model_cfg["d_model"], n_layers=model_cfg["n_layers"], **build_kwargs
        )
    else:
        model_cfg.pop("target_params", None)
    bs = data["batch_size"]
    epoch = [0]

    def batches():  # an endless stream of shuffled epochs
        while True:
            yield from train_split.batches(bs, shuffle=True, seed=seed + epoch[0])
            epoch[0] += 1

    stream = batches()
    eval_batches = list(test_split.batches(bs, shuffle=False))
    train_cfg = _train_config(cfg, seed, progress, {"eval_batches": len(eval_batches), **(train_overrides or {})})
    result = train(
        model,
        lambda gen: next(stream),
        train_cfg,
        loss_fn=classify_loss,
        eval_batches=eval_batches,
        device=default_device(),
    )
    config = {**{k: v for k, v in cfg.items() if k != "model"}, "model": {**model_cfg, **model_options}}
    return _finish(Run(arch, model, result, config, {"tokenizer": tok}), record_as, seed)


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
