"""Smoke and full sizes for every experiment of the book, declared once.

Each experiment is data: a dict with a ``"smoke"`` and a ``"full"`` entry of the same shape.

* ``smoke`` runs in seconds on a CPU and checks the code path (shapes, loss goes down, plots render).
  Training budgets are in **steps**, so a smoke run does the same work everywhere.
* ``full`` is what the book shows. Training budgets are in **seconds** (``max_seconds``), so a notebook
  takes about the same time on any GPU; the trainer then reports how many steps that bought.

Conventions for the sections of an entry (so they can be unpacked directly):

* ``model``: keyword arguments of ``seqlib.models.build_model`` (``d_model``, ``n_layers``, ...) and
  ``target_params``, the parameter count that ``match_d_model`` matches across architectures;
* ``data``: batching (``seq_len`` or ``max_len``, ``batch_size``, tokenizer and vocabulary sizes);
* ``train``: keyword arguments of ``seqlib.train.TrainConfig`` (budget, learning rate, evaluation);
* anything else (``lengths``, ``tasks``, ...) is read by the notebook that runs the experiment.

>>> cfg = get("char_lm")                 # the current profile (SEQLIB_PROFILE, or full on a GPU)
>>> TrainConfig(**cfg["train"])
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch

PROFILES = ("smoke", "full")
ENV_VAR = "SEQLIB_PROFILE"


def current_profile() -> str:
    """``$SEQLIB_PROFILE`` (``smoke`` or ``full``); unset: ``full`` where CUDA is available, else ``smoke``."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return "full" if torch.cuda.is_available() else "smoke"
    if value not in PROFILES:
        raise ValueError(f"{ENV_VAR}={value!r} is not a profile; valid values: {', '.join(PROFILES)} (or unset)")
    return value


def _powers_of_two(lo: int, hi: int) -> list[int]:
    return [2**k for k in range(lo.bit_length() - 1, hi.bit_length()) if lo <= 2**k <= hi]


def _smoke_train(**overrides) -> dict[str, Any]:
    """TrainConfig arguments of a smoke run: 30 steps, high learning rate, evaluation every 10 steps."""
    return {
        "max_steps": 30,
        "max_seconds": None,
        "lr": 3e-3,
        "warmup_steps": 3,
        "eval_every": 10,
        "eval_batches": 2,
        **overrides,
    }


def _full_train(seconds: float, **overrides) -> dict[str, Any]:
    """TrainConfig arguments of a full run: a budget in seconds (the same wall time on any GPU)."""
    return {
        "max_steps": None,
        "max_seconds": seconds,
        "lr": 1e-3,
        "warmup_steps": 100,
        "eval_every": 200,
        "eval_batches": 20,
        **overrides,
    }


EXPERIMENTS: dict[str, dict[str, dict[str, Any]]] = {
    # Tiny Shakespeare, character level (chapters 1-3 and 7). Full: a nanoGPT-shakespeare_char-like run, smaller
    # (~3M parameters instead of 10.7M) so that every architecture of chapter 7 fits the same minute.
    "char_lm": {
        "smoke": {
            "model": {"d_model": 64, "n_layers": 2, "target_params": 100_000},
            "data": {"seq_len": 64, "batch_size": 16},
            "train": _smoke_train(),
            "sample_tokens": 100,
        },
        "full": {
            "model": {"d_model": 256, "n_layers": 4, "target_params": 3_000_000},
            "data": {"seq_len": 256, "batch_size": 64},
            "train": _full_train(60.0, eval_every=100),
            "sample_tokens": 500,
        },
    },
    # WikiText-2, word level (chapter 7). The 33k-word vocabulary dominates the parameter count.
    "word_lm": {
        "smoke": {
            "model": {"d_model": 64, "n_layers": 2, "target_params": 300_000},
            "data": {"seq_len": 32, "batch_size": 16, "max_vocab": 2_000},
            "train": _smoke_train(),
        },
        "full": {
            "model": {"d_model": 256, "n_layers": 4, "target_params": 12_000_000},
            "data": {"seq_len": 128, "batch_size": 32, "max_vocab": None},
            "train": _full_train(120.0, eval_batches=40),
        },
    },
    # IMDB sentiment (chapter 8): long reviews, BPE vocabulary trained on the training split.
    "classify_imdb": {
        "smoke": {
            "model": {"d_model": 32, "n_layers": 1, "target_params": 100_000, "num_classes": 2},
            "data": {"max_len": 128, "batch_size": 16, "vocab_size": 1_000, "max_examples": 512},
            "train": _smoke_train(),
        },
        "full": {
            "model": {"d_model": 128, "n_layers": 2, "target_params": 2_500_000, "num_classes": 2},
            "data": {"max_len": 512, "batch_size": 32, "vocab_size": 16_000, "max_examples": None},
            "train": _full_train(120.0, eval_batches=50),
        },
    },
    # SST-2 sentiment (chapter 8): short sentences.
    "classify_sst2": {
        "smoke": {
            "model": {"d_model": 32, "n_layers": 1, "target_params": 60_000, "num_classes": 2},
            "data": {"max_len": 32, "batch_size": 16, "vocab_size": 1_000, "max_examples": 512},
            "train": _smoke_train(),
        },
        "full": {
            "model": {"d_model": 128, "n_layers": 2, "target_params": 1_500_000, "num_classes": 2},
            "data": {"max_len": 64, "batch_size": 64, "vocab_size": 8_000, "max_examples": None},
            "train": _full_train(60.0, eval_batches=14),
        },
    },
    # Multi30k En->De (chapter 9): encoder-decoder, greedy decoding, BLEU and chrF with sacrebleu.
    "translate_multi30k": {
        "smoke": {
            "model": {"d_model": 64, "n_layers": 1, "target_params": 300_000},
            "data": {
                "max_len": 32,
                "batch_size": 16,
                "vocab_size": 1_000,
                "src_lang": "en",
                "tgt_lang": "de",
                "max_examples": 512,
            },
            "train": _smoke_train(),
            "decode": {"max_len": 32, "n_sentences": 16},
        },
        "full": {
            "model": {"d_model": 256, "n_layers": 3, "target_params": 10_000_000},
            "data": {
                "max_len": 64,
                "batch_size": 64,
                "vocab_size": 8_000,
                "src_lang": "en",
                "tgt_lang": "de",
                "max_examples": None,
            },
            "train": _full_train(300.0, warmup_steps=200, eval_batches=16),
            "decode": {"max_len": 64, "n_sentences": 1_000},
        },
    },
    # Synthetic long-range tasks (chapter 6): one small model per (architecture, task, length).
    "synthetic": {
        "smoke": {
            "tasks": ["selective_copying", "associative_recall", "adding_problem", "induction_heads"],
            "lengths": [32, 64],
            "model": {"d_model": 32, "n_layers": 2},
            "data": {"batch_size": 16},
            "train": _smoke_train(),
        },
        "full": {
            "tasks": ["selective_copying", "associative_recall", "adding_problem", "induction_heads"],
            "lengths": [64, 256, 1024, 4096],
            "model": {"d_model": 128, "n_layers": 2},
            "data": {"batch_size": 64},
            "train": _full_train(30.0, eval_batches=8),
        },
    },
    # Time and memory against sequence length, one mixer at a time (chapters 4, 5 and 11).
    "bench_scaling": {
        "smoke": {
            "lengths": [32, 64, 128],
            "d_model": 32,
            "batch_size": 2,
            "modes": ["train", "prefill", "decode"],
            "warmup": 1,
            "repeats": 3,
            "max_seconds": 5.0,  # per call: a longer call ends that architecture's sweep
        },
        "full": {
            "lengths": _powers_of_two(128, 32768),
            "d_model": 256,
            "batch_size": 1,
            "modes": ["train", "prefill", "decode"],
            "warmup": 3,
            "repeats": 10,
            "max_seconds": 10.0,
        },
    },
    # Throughput of every mixer at one realistic size: training tokens/s, prefill, per-token decode latency.
    "bench_mixers": {
        "smoke": {
            "d_model": 32,
            "seq_len": 64,
            "lengths": [32, 128],  # `python -m seqlib bench mixers`: fast path against the reference
            "batch_size": 2,
            "decode_prefixes": [16, 64],
            "warmup": 1,
            "repeats": 3,
        },
        "full": {
            "d_model": 512,
            "seq_len": 2048,
            "lengths": [1024, 4096],
            "batch_size": 8,
            "decode_prefixes": [1024, 4096, 16384],
            "warmup": 3,
            "repeats": 20,
        },
    },
}


def get(name: str, profile: str | None = None) -> dict[str, Any]:
    """The settings of experiment ``name`` for ``profile`` (default: ``current_profile()``), as a fresh copy."""
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; declared experiments: {', '.join(sorted(EXPERIMENTS))}")
    profile = current_profile() if profile is None else profile
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid values: {', '.join(PROFILES)}")
    return copy.deepcopy(EXPERIMENTS[name][profile])
