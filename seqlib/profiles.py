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
        "on_divergence": "stop",  # a sweep keeps its other runs; the record says "diverged"
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
        "on_divergence": "stop",  # a sweep keeps its other runs; the record says "diverged"
        **overrides,
    }


EXPERIMENTS: dict[str, dict[str, dict[str, Any]]] = {
    # Tiny Shakespeare, character level (chapters 1-3). Full: a nanoGPT-shakespeare_char-like run, smaller (~3M
    # parameters instead of 10.7M) and shorter (40 s): chapters 1-3 train one each, for its samples and its loss curve;
    # chapter 7 compares them all at these sizes and trains the best one longer.
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
            "train": _full_train(40.0, eval_every=100),
            "sample_tokens": 500,
        },
    },
    # WikiText-2, word level (chapter 7). The 33k-word vocabulary dominates the parameter count.
    "word_lm": {
        "smoke": {
            # the full 33k-word vocabulary (max_vocab is not applied by run_lm): 1M parameters is d_model ~32
            "model": {"d_model": 64, "n_layers": 1, "target_params": 1_000_000},
            "data": {"seq_len": 32, "batch_size": 8, "max_vocab": 2_000},
            "train": _smoke_train(max_steps=8, eval_every=4, eval_batches=1),
        },
        "full": {
            "model": {"d_model": 256, "n_layers": 4, "target_params": 12_000_000},
            "data": {"seq_len": 128, "batch_size": 32, "max_vocab": None},
            # chapter 7 trains all 11 architectures on it: 11 x 6 s (see ch7_char_compare for the arithmetic).
            # eval_batches: more than the validation split's 53 full batches of 32 x 128 words, so all are scored
            "train": _full_train(6.0, warmup_steps=50, eval_every=250, eval_batches=60),
        },
    },
    # IMDB sentiment (chapter 8): long reviews, BPE vocabulary trained on the training split.
    "classify_imdb": {
        "smoke": {
            # 2 layers, so that chapter 10's hybrid (Mamba layers + one attention layer) has both parts; at 200k
            # every architecture lands within 10% at a width that is a multiple of 8
            "model": {"d_model": 48, "n_layers": 2, "target_params": 200_000, "num_classes": 2},
            "data": {
                "max_len": 32,
                "truncation": "head_tail",
                "batch_size": 8,
                "vocab_size": 1_000,
                "max_examples": 64,
                "max_eval_examples": None,
            },
            "train": _smoke_train(max_steps=4, eval_every=None),
            "seeds": [0, 1],
            "kim": {"num_filters": 16, "kernel_sizes": [3, 4, 5], "dropout": 0.5},
        },
        "full": {
            # chapter 8: 12 models x 3 seeds x 2.5 s = 90 s of training (arithmetic in the notebook)
            "model": {"d_model": 128, "n_layers": 2, "target_params": 2_500_000, "num_classes": 2},
            "data": {
                "max_len": 256,  # as bentrevett's baselines; 41% of the training reviews are longer
                "truncation": "head_tail",  # a longer review keeps its first 64 and its last 192 tokens
                "batch_size": 64,
                "vocab_size": 16_000,
                "max_examples": None,
                "max_eval_examples": 5_000,  # a fixed random fifth of the test set: +-0.5 points of standard error
            },
            "train": _full_train(2.5, lr=2e-3, warmup_steps=30, eval_every=None),
            "seeds": [0, 1, 2],
            "kim": {"num_filters": 100, "kernel_sizes": [3, 4, 5], "dropout": 0.5},
        },
    },
    # SST-2 sentiment (chapter 8): short sentences.
    "classify_sst2": {
        "smoke": {
            # 2 layers, so that chapter 10's hybrid (Mamba layers + one attention layer) has both parts; at 200k
            # every architecture lands within 10% at a width that is a multiple of 8
            "model": {"d_model": 48, "n_layers": 2, "target_params": 200_000, "num_classes": 2},
            "data": {
                "max_len": 16,
                "truncation": "head_tail",
                "batch_size": 8,
                "vocab_size": 1_000,
                "max_examples": 64,
            },
            "train": _smoke_train(max_steps=4, eval_every=None),
            "seeds": [0, 1],
            "kim": {"num_filters": 16, "kernel_sizes": [3, 4, 5], "dropout": 0.5},
        },
        "full": {
            # chapter 8: 12 models x 3 seeds x 1.25 s = 45 s of training
            "model": {"d_model": 128, "n_layers": 2, "target_params": 1_500_000, "num_classes": 2},
            "data": {
                "max_len": 64,
                "truncation": "head_tail",
                "batch_size": 64,
                "vocab_size": 8_000,
                "max_examples": None,
            },
            "train": _full_train(1.25, lr=2e-3, warmup_steps=30, eval_every=None),
            "seeds": [0, 1, 2],
            "kim": {"num_filters": 100, "kernel_sizes": [3, 4, 5], "dropout": 0.5},
        },
    },
    # Multi30k En->De (chapter 9): encoder-decoder, greedy and beam-search decoding, BLEU and chrF with sacrebleu.
    # Full budget of the chapter on one H100 (seconds): 3 models x 60 s of training = 180; greedy decoding of the
    # 1,000 test sentences, batched by 128 (8 batches x <= 64 steps), ~5 per model = 15; beam search (beam 4,
    # one sentence at a time, ~0.1 s each) over the first 100 test sentences = 10 per model = 30; data, BPE and
    # validation ~20. Total ~245 s < 300.
    "translate_multi30k": {
        "smoke": {
            "model": {"d_model": 64, "n_layers": 1, "target_params": 300_000, "dropout": 0.0},
            "data": {
                "max_len": 32,
                "batch_size": 16,
                "vocab_size": 1_000,
                "src_lang": "en",
                "tgt_lang": "de",
                "max_examples": 512,
            },
            "train": _smoke_train(),
            # label smoothing of the training target (validation losses are plain cross entropy either way). Not used:
            # Vaswani et al.'s 0.1 scored 1.2 and 1.7 BLEU lower than none (two seeds, a 3M Transformer trained
            # 4-5 epochs on a CPU); the full profile's 60 s on a GPU are more epochs, where it may pay
            "loss": {"label_smoothing": 0.0},
            # n_sentences: test sentences decoded greedily (batched); n_beam: the first n_beam of them also by beam
            "decode": {"max_len": 32, "n_sentences": 16, "batch_size": 16, "beam_size": 3, "n_beam": 4},
        },
        "full": {
            "model": {"d_model": 256, "n_layers": 3, "target_params": 10_000_000, "dropout": 0.1},
            "data": {
                "max_len": 64,
                "batch_size": 128,
                "vocab_size": 8_000,
                "src_lang": "en",
                "tgt_lang": "de",
                "max_examples": None,
            },
            "train": _full_train(60.0, warmup_steps=200, eval_every=250, eval_batches=8),
            "loss": {"label_smoothing": 0.0},
            "decode": {"max_len": 64, "n_sentences": 1_000, "batch_size": 128, "beam_size": 4, "n_beam": 100},
        },
    },
    # Synthetic long-range tasks (chapter 6): one small model per (architecture, task, length), at matched parameter
    # counts (``target_params``, widths chosen per task by ``seqlib.longrange.matched_widths`` within
    # ``match_tolerance``) and an equal budget per run.
    # ``width_sweep``: accuracy against d_model for associative recall.
    # Full-profile cost on one H100 (chapter 6 notebook): 11 architectures x 3 tasks x 3 lengths = 99 runs x
    # (1.4 s training + ~0.3 s build and evaluation) ~ 168 s, plus the width sweep 2 x 2 x 4 = 16 runs x ~1.7 s
    # ~ 27 s: ~195 s of the notebook's 300 s. Three lengths a factor 8 apart, not four a factor 4 apart: each run
    # gets 40% more steps, and at 4096 tokens a step of the slowest mixers is the scarce resource.
    "synthetic": {
        "smoke": {
            "tasks": ["selective_copying", "associative_recall", "induction_heads"],
            "task_options": {
                "selective_copying": {"n_tokens": 8, "vocab_size": 18},
                "associative_recall": {"n_pairs": 4, "vocab_size": 64},
                "induction_heads": {"vocab_size": 16},
            },
            "lengths": [32, 64],
            "model": {"d_model": 32, "n_layers": 2, "target_params": 24_000, "match_tolerance": 0.3},
            "data": {"batch_size": 8, "n_eval": 32},
            "train": _smoke_train(max_steps=10, warmup_steps=2, eval_every=None, eval_batches=4),
            "width_sweep": {
                "archs": ["transformer", "linear_attention"],
                "task": "associative_recall",
                "lengths": [32, 64],
                "d_models": [16, 32],
                "threshold": 0.9,
            },
        },
        "full": {
            "tasks": ["selective_copying", "associative_recall", "induction_heads"],
            "task_options": {
                "selective_copying": {"n_tokens": 16, "vocab_size": 18},
                "associative_recall": {"n_pairs": 8, "vocab_size": 64},
                "induction_heads": {"vocab_size": 16},
            },
            "lengths": [64, 512, 4096],
            "model": {"d_model": 128, "n_layers": 2, "target_params": 400_000, "match_tolerance": 0.1},
            "data": {"batch_size": 32, "n_eval": 256},
            "train": _full_train(1.4, lr=3e-3, warmup_steps=10, eval_every=None, eval_batches=8),
            "width_sweep": {
                "archs": ["transformer", "linear_attention"],
                "task": "associative_recall",
                "lengths": [256, 1024],
                "d_models": [32, 64, 128, 256],
                "threshold": 0.9,
            },
        },
    },
    # ---- chapters 1-3 experiments (added below this line) ----
    # Chapter 3 (Transformers): short side runs at char_lm's data and model sizes, passed to run_lm as
    # train_overrides. "ch3_outline": the outline's TransformerModel, unmasked then masked; "ch3_positions": one
    # run per positional encoding (none, learned, sinusoidal, RoPE). "ch3_bench": attention written out against
    # SDPA (B, H, T, d_head) and KV-cache decoding against recomputing the prefix. Full budget of the chapter on
    # one H100 (seconds): char_lm 40 + outline 2 x 10 + positions 4 x 10 = 100 of training; evaluations, data
    # loading, the benchmarks and the plots about 40 more. Total ~140 s < 300.
    "ch3_outline": {
        # smoke: long enough for the unmasked model to collapse into copying its input
        "smoke": {"train": _smoke_train(max_steps=400, eval_every=100)},
        "full": {"train": _full_train(10.0, eval_every=100)},
    },
    "ch3_positions": {
        "smoke": {"train": _smoke_train(max_steps=20)},
        "full": {"train": _full_train(10.0, eval_every=100)},
    },
    "ch3_bench": {
        "smoke": {
            "attention": {"lengths": [128, 512], "batch_size": 2, "n_heads": 4, "d_head": 16},
            "decode": {"prefixes": [16, 64, 256], "batch_size": 1},
        },
        "full": {
            "attention": {"lengths": [1024, 4096], "batch_size": 8, "n_heads": 8, "d_head": 64},
            "decode": {"prefixes": [64, 256, 1024, 4096], "batch_size": 1},
        },
    },
    # Chapter 2 (CNNs for sequences). The char LM is "char_lm" (shared with chapters 1 and 3: 40 s full); the SST-2
    # run uses "classify_sst2"'s data and learning rate with this entry's "kim_train" overrides. Full budget of this
    # entry: Kim CNN 15 s + lag task len(lags) x 4 s = 47 s; the rest (conv timing, gradient reach) a few seconds.
    "ch2_cnn": {
        "smoke": {
            # written-out convolution (sum over taps) vs CNNMixer's F.conv1d path: outputs, gradients, time
            "conv": {"batch_size": 4, "seq_len": 256, "d_model": 64, "kernel_size": 3, "dilation": 2},
            "warmup": 1,
            "repeats": 5,
            # Kim (2014) CNN on SST-2 through run_classification (vocabulary and budget from classify_sst2)
            "kim": {"embed_dim": 32, "num_filters": 16, "kernel_sizes": [3, 4, 5], "dropout": 0.5},
            "kim_train": {"max_seconds": None, "max_steps": 30, "eval_every": 10},  # over classify_sst2's
            # receptive field computed vs measured (gradient reach) for stacks of 1..max depth
            "reach": {"depths": [1, 2, 3, 4, 5, 6], "d_model": 16, "seq_len": 160},
            # lag copy: a causal CNN of n_layers (kernel 3, dilations 1, 2, ...) at lags around its receptive field
            "lag": {
                "n_layers": 2,
                "d_model": 32,
                "seq_len": 24,
                "vocab_size": 8,
                "lags": [2, 4, 6, 7, 8, 12],
                "n_eval": 64,
                "train": {"max_steps": 60, "max_seconds": None, "lr": 3e-3, "warmup_steps": 5, "eval_every": None},
            },
        },
        "full": {
            "conv": {"batch_size": 8, "seq_len": 4096, "d_model": 512, "kernel_size": 3, "dilation": 2},
            "warmup": 3,
            "repeats": 20,
            "kim": {"embed_dim": 128, "num_filters": 100, "kernel_sizes": [3, 4, 5], "dropout": 0.5},
            "kim_train": {"max_seconds": 15.0, "max_steps": None, "eval_every": 200},
            "reach": {"depths": [1, 2, 3, 4, 5, 6, 7, 8], "d_model": 32, "seq_len": 600},
            "lag": {
                "n_layers": 3,
                "d_model": 64,
                "seq_len": 64,
                "vocab_size": 8,
                "lags": [2, 6, 10, 13, 14, 15, 16, 20],
                "n_eval": 512,
                "train": {"max_steps": None, "max_seconds": 4.0, "lr": 3e-3, "warmup_steps": 50, "eval_every": None},
            },
        },
    },
    # Chapter 1 (RNNs and LSTMs): fast (cuDNN) vs reference LSTM, time per token against length, decoding state,
    # gradient by distance. The char LM of chapter 1 is "char_lm" above (shared with chapters 2 and 3).
    "ch1_rnn": {
        "smoke": {
            "d_model": 64,
            "batch_size": 8,
            "speed_lengths": [32, 128],  # fast vs reference LSTM (forward + backward)
            "seq_lengths": [64, 256, 1024],  # time per token and training memory against length
            "decode_prefixes": [8, 32, 128],  # decoding-state bytes after this many tokens
            "grad_len": 128,  # gradient norm against distance, k = 0 .. grad_len - 1
            "warmup": 3,  # a CPU's first calls of a new shape build oneDNN kernels: keep them out of the timings
            "repeats": 5,
            "max_seconds": 30.0,  # generous: on a shared CPU another job can stall one call for seconds
        },
        "full": {
            "d_model": 256,
            "batch_size": 16,
            "speed_lengths": [256, 1024],
            "seq_lengths": _powers_of_two(64, 4096),
            "decode_prefixes": [64, 256, 1024, 4096],
            "grad_len": 256,
            "warmup": 3,
            "repeats": 10,
            "max_seconds": 10.0,
        },
    },
    # ---- chapters 4-5 experiments (added below this line) ----
    # Chapter 5: peak training memory (forward + backward) and decoding state against sequence length, one mixer
    # at a time (seqlib.memory.sweep_archs). Full-profile estimate on an H100: training sweep ~40 s (13 mixers x 7
    # lengths, 5 calls each, each call capped at train_max_seconds), decoding ~45 s (the state is built by stepping
    # through each prefix, 5,376 steps per mixer at ~0.3-0.7 ms a step; a prefix is capped at decode_max_seconds),
    # plots and the rest ~15 s: about 100 s, under the 4-minute target (worst case with every cap hit: ~4 min).
    "ch5_memory": {
        "smoke": {
            "d_model": 32,
            "batch_size": 1,
            "train_lengths": [64, 128, 256, 512],
            "decode_lengths": [16, 64, 256],
            "options": {
                "transformer": {"n_heads": 4},
                "longformer": {"n_heads": 4, "window": 32},
                "recurrent_transformer": {"n_heads": 4, "segment_len": 48},
                "conv_transformer": {"n_heads": 4},
                "linear_attention": {"n_heads": 4},
            },
            "warmup": 0,
            "repeats": 1,
            "train_max_seconds": 5.0,  # per call: a longer call ends that architecture's sweep
            "decode_max_seconds": 10.0,  # building one prefix's state token by token
            # one CPU thread: layers this small gain nothing from a second one, and on a shared CPU two threads
            # spend most of their time waiting for each other (timings 10-100x slower)
            "torch_threads": 1,
            "decode_repeats": 20,  # one step is cheap: more repeats for a stable median
        },
        "full": {
            "d_model": 256,
            "batch_size": 1,
            "train_lengths": _powers_of_two(256, 16384),
            "decode_lengths": [256, 1024, 4096],
            "options": {
                "transformer": {"n_heads": 4},
                "longformer": {"n_heads": 4, "window": 512},
                "recurrent_transformer": {"n_heads": 4, "segment_len": 384},
                "conv_transformer": {"n_heads": 4},
                "linear_attention": {"n_heads": 4},
            },
            "warmup": 1,
            "repeats": 3,
            "train_max_seconds": 5.0,
            "decode_max_seconds": 10.0,
            "torch_threads": None,  # PyTorch's default
            "decode_repeats": 30,
        },
    },
    # Chapter 4 (complexity, measured): every mixer's time against length, fixed total tokens, gradient reach.
    # Full budget (H100): 11 mixers x 2 modes = 22 sweeps; a sweep stops at the first call over max_seconds, so
    # each costs at most ~6 s (the slow recurrent ones) and a few seconds for the fast ones: ~60-130 s;
    # fixed-total-tokens 2 archs x 11 lengths ~10 s; gradient reach ~5 s; widths ~10 s; about 2-2.5 minutes in all.
    "ch4_complexity": {
        "smoke": {
            "d_model": 16,
            "batch_size": 2,
            "lengths": [32, 64, 128, 256],
            "modes": ["train", "prefill"],
            "warmup": 1,
            "repeats": 3,
            "max_seconds": 5.0,  # per call: a longer call ends that architecture's sweep ("too slow")
            "max_len": {"lstm": None, "gru": None, "recurrent_transformer": None},  # per-architecture length cap
            "fixed_tokens": {"total": 512, "lengths": [8, 32, 128, 512]},
            "reach": {"d_model": 16, "seq_len": 64, "depths": [1, 2, 3, 4, 5]},
            # the d of n·d² and n²·d: one length, widths doubling (LSTM, CNN and Transformer, training step)
            "widths": {"seq_len": 64, "d_models": [16, 32, 64, 128]},
        },
        "full": {
            "d_model": 256,
            "batch_size": 1,
            "lengths": _powers_of_two(128, 131072),
            "modes": ["train", "prefill"],
            "warmup": 2,
            "repeats": 5,
            # a call may take 1.5 s: recurrent layers at batch 1 need about that at 32K tokens; repeats shrink to
            # fit (seqlib.bench), so a sweep's longest length costs ~2 x 1.5 s and the whole sweep ~2 x that
            "max_seconds": 1.5,
            "max_len": {"lstm": 65536, "gru": 65536, "recurrent_transformer": 65536},
            "fixed_tokens": {"total": 65536, "lengths": _powers_of_two(64, 65536)},
            "reach": {"d_model": 64, "seq_len": 1024, "depths": [1, 2, 4, 6, 8, 10]},
            # 3 mixers x 5 widths, each call well under max_seconds: ~10 s with warm-up and repeats
            "widths": {"seq_len": 1024, "d_models": [128, 256, 512, 1024, 2048]},
        },
    },
    # ---- chapter 6 experiments (added below this line) ----
    # Chapter 6, the adding problem (a regression: the sum of two marked numbers, one marker in each half) at two
    # lengths, in full a short T = 100 and Bai et al.'s T = 600: one model per (architecture, length) at matched
    # parameter counts (widths from seqlib.longrange.matched_widths on the regressor that run_synthetic trains),
    # "train" passed to run_synthetic as its overrides (the batch size is the "synthetic" entry's; the same budget
    # per run). Full-profile cost on one H100: 11 x 2 = 22 runs x (1.4 s training + ~0.3 s build and evaluation)
    # ~ 37 s, plus ~5 s to match the widths and estimate the baseline and the reach floors: ~42 s, which takes the
    # chapter from ~195 s (the "synthetic" entry) to ~240 s of its 300 s.
    "ch6_adding": {
        "smoke": {
            "task": "adding_problem",
            "task_options": {"markers": "halves"},
            "lengths": [16, 64],
            "model": {"n_layers": 2, "target_params": 24_000, "match_tolerance": 0.3},
            "data": {"n_eval": 32},
            "train": _smoke_train(max_steps=10, warmup_steps=2, eval_every=None, eval_batches=4),
        },
        "full": {
            "task": "adding_problem",
            "task_options": {"markers": "halves"},
            "lengths": [100, 600],
            "model": {"n_layers": 2, "target_params": 400_000, "match_tolerance": 0.1},
            "data": {"n_eval": 256},
            "train": _full_train(1.4, lr=3e-3, warmup_steps=10, eval_every=None, eval_batches=8),
        },
    },
    # ---- chapters 7-8 experiments (added below this line) ----
    # Chapter 7, tiny Shakespeare: every architecture at ~3M parameters on an equal short budget. Full-profile
    # arithmetic of the notebook (one H100, 5 minutes): 11 x 6 s (this) + 11 x 6 s (word_lm) + 90 s (ch7_char_long)
    # = 222 s of training; evaluation, model building, data loading and samples fill the rest.
    "ch7_char_compare": {
        "smoke": {
            "lm_data": "char_lm",
            "model": {"d_model": 64, "n_layers": 1, "target_params": 80_000},  # every mixer matches within 10%
            "data": {"seq_len": 32, "batch_size": 8},
            "train": _smoke_train(max_steps=8, eval_every=4, eval_batches=1),
            "sample_tokens": 60,
        },
        "full": {
            "lm_data": "char_lm",
            "model": {"d_model": 256, "n_layers": 4, "target_params": 3_000_000},
            "data": {"seq_len": 256, "batch_size": 64},
            "train": _full_train(6.0, warmup_steps=50, eval_every=250, eval_batches=10),
            "sample_tokens": 300,
        },
    },
    # Chapter 7: one longer run of the best architecture of ch7_char_compare at nanoGPT's shakespeare_char size
    # (6 layers, ~10.7M parameters, dropout 0.2), against nanoGPT's 1.47 and the book's 1.55 target.
    "ch7_char_long": {
        "smoke": {
            "lm_data": "char_lm",
            "model": {"d_model": 64, "n_layers": 1, "target_params": 80_000},  # every mixer matches within 10%
            "data": {"seq_len": 32, "batch_size": 8},
            "train": _smoke_train(max_steps=16, eval_every=8, eval_batches=1),
            "options": {"dropout": 0.2},
            "target_val_loss": 1.55,
            "sample_tokens": 200,
        },
        "full": {
            "lm_data": "char_lm",
            "model": {"d_model": 384, "n_layers": 6, "target_params": 10_700_000},
            "data": {"seq_len": 256, "batch_size": 64},
            # or nanoGPT's 5,000 steps, whichever comes first: a fast GPU gets past them within 90 s, and further steps
            # at this size on 1M characters would fit the training text rather than the language
            "train": _full_train(90.0, max_steps=5_000, warmup_steps=100, eval_every=250, eval_batches=20),
            "options": {"dropout": 0.2},
            "target_val_loss": 1.55,
            "sample_tokens": 500,
        },
    },
    # ---- chapter 9 experiments (added below this line) ----
    # ---- chapters 10-11 experiments (added below this line) ----
    # Chapter 11 (modern alternatives). Full budget on one H100: equivalence checks ~5 s; fast path against the
    # step-by-step recurrence, 5 mixers x 2 lengths, 1 call of the step loop (<= ~1.5 s at 4096) and 3 of the fast
    # path: ~20 s; the scaling sweep when chapter 4's record is missing: 6 mixers x 7 lengths, each sweep capped by
    # max_seconds per call: ~60 s; the long-range runs when chapter 6's record is missing: 6 x 2 tasks x 2 lengths
    # = 24 runs x ~2 s ~ 50 s. At most ~2.5 minutes of the page's 5.
    "ch11_modern": {
        "smoke": {
            "check_len": 37,  # not a multiple of any chunk or block: the padding paths are exercised
            "d_model": 32,
            "batch_size": 1,
            "lengths": [64, 128, 256, 512],
            "warmup": 1,
            "repeats": 3,
            "max_seconds": 5.0,
            "options": {"longformer": {"window": 32}},
            "ratio_lengths": [64, 256],
            "ratio_target": {"factor": 20.0, "seq_len": 4096},
            "synthetic_tasks": ["associative_recall", "selective_copying"],
            "synthetic_lengths": [32, 64],
            "torch_threads": 1,  # small layers gain nothing from a second thread on a shared CPU
        },
        "full": {
            "check_len": 300,
            "d_model": 256,
            "batch_size": 1,
            "lengths": _powers_of_two(256, 16384),
            "warmup": 2,
            "repeats": 5,
            "max_seconds": 0.5,
            "options": {"longformer": {"window": 256}},
            "ratio_lengths": [1024, 4096],
            "ratio_target": {"factor": 20.0, "seq_len": 4096},
            "synthetic_tasks": ["associative_recall", "selective_copying"],
            "synthetic_lengths": [512, 4096],  # two of chapter 6's lengths, for when its record is missing
            "torch_threads": None,
        },
    },
    # Chapter 10 (hybrids), the language model: chapter 7's tiny-Shakespeare comparison ("ch7_char_compare"), same
    # full-profile sizes and 6 s budget, so the hybrids sit beside chapter 7's records. Smoke uses 2 layers (not 1)
    # so that the interleaved hybrid holds both a Mamba and an attention layer.
    "ch10_char": {
        "smoke": {
            "lm_data": "char_lm",
            "model": {"d_model": 64, "n_layers": 2, "target_params": 86_000},  # every model within 10% at widths of 8
            "data": {"seq_len": 32, "batch_size": 8},
            "train": _smoke_train(max_steps=8, eval_every=4, eval_batches=1),
        },
        "full": {
            "lm_data": "char_lm",
            "model": {"d_model": 256, "n_layers": 4, "target_params": 3_000_000},
            "data": {"seq_len": 256, "batch_size": 64},
            "train": _full_train(6.0, warmup_steps=50, eval_every=250, eval_batches=10),
        },
    },
    # Chapter 10, the rest. Full budget on one H100 when chapters 6-8 have their records (the book's order): the
    # Mamba + attention hybrid alone, on chapter 6's 3 tasks x 3 lengths x (1.4 s + ~0.3 s) ~ 15 s and on chapter
    # 8's two datasets x 3 seeds x (2.5 s or 1.25 s + ~1 s) ~ 20 s; language models (ch10_char) ~10 s; demonstrations
    # ~5 s: about 1 minute. Without those records the four baselines train here too, the synthetic tasks at
    # "lengths": 5 models x 3 tasks x 2 lengths x ~2 s = 60 s, classification 5 x 20 s = 100 s, language models
    # ~50 s: about 4 minutes of the page's 5.
    "ch10_hybrids": {
        "smoke": {"lengths": [32, 64], "demo_d_model": 16, "stack_depth": 12},
        "full": {"lengths": [512, 4096], "demo_d_model": 64, "stack_depth": 12},
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
            "max_seconds": 5.0,
        },
        "full": {
            "d_model": 512,
            "seq_len": 2048,
            "lengths": [1024, 4096],
            "batch_size": 8,
            "decode_prefixes": [1024, 4096, 16384],
            "warmup": 3,
            "repeats": 20,
            # `bench mixers`: about this many seconds of repeats per (mixer, implementation, length), fewer repeats
            # where a call is slow (a step-by-step reference runs one token after another, 4,096 of them), so that
            # the table stays within a few minutes; a call longer than this ends that mixer's sweep
            "max_seconds": 10.0,
        },
    },
}


def _trained_longer(
    base: str, seconds: float, epochs: int, target_accuracy: float, full_data: dict | None = None
) -> dict[str, Any]:
    """A classification entry (``base``) with another budget, dropout 0.1 and a target accuracy (one seed)."""
    entry = copy.deepcopy(EXPERIMENTS[base])
    for profile, train, max_epochs in (("smoke", {"max_steps": 8}, None), ("full", {"max_seconds": seconds}, epochs)):
        e = entry[profile]
        del e["seeds"]
        e["train"] = {**e["train"], **train}
        e["max_epochs"] = max_epochs  # run_classification: a step cap of that many passes over the training split
        e["options"] = {"dropout": 0.1}  # build_model options: a longer run starts to overfit
        e["target_accuracy"] = target_accuracy
        e["top"] = 2  # how many of the comparison's best models are trained longer
    entry["full"]["data"].update(full_data or {})
    return entry


# Chapter 8: the two best models of each corpus in the equal-budget comparison (``top``), each trained again for
# longer, against the book's targets for a model trained from scratch: the same width, learning rate and tokenizer.
# Two, because a short budget favours the models that learn fastest, and those need not be the ones that get
# furthest (below: trained for epochs on the CPU, the Transformer was the best on IMDB and the LSTM on SST-2).
# Full budget: a number of epochs or seconds, whichever comes first, so that a fast GPU stops before overfitting and
# a slow one (a T4) never runs longer: 2 x (20 + 15) s = 70 s at most. IMDB reviews are cut at 512 tokens instead
# of 256 (14% of the training reviews are longer than 512, 41% longer than 256): the full-profile Transformer
# classifier, trained for 2 epochs on the CPU with dropout 0.1 and the head-and-tail cut, scored 86.8% on the
# held-out reviews at 256 tokens (without dropout) and 88.4% at 512 (seed 0, one run each; the Kim CNN got 83.1% at
# 256). On SST-2, the same way: Transformer 79.7% after 2 epochs (80.4% after 1), Kim CNN 80.4% after 2, LSTM 82.0%
# after 3 epochs (82.2% and 82.7% for seeds 0 and 1 in later runs) and 83.0% after 5 (seed 0): the LSTM, unlike the
# other two, still gains from epochs 4 and 5, so SST-2's cap is 5 epochs, in 15 s at most.
EXPERIMENTS["ch8_imdb_long"] = _trained_longer(
    "classify_imdb", seconds=20.0, epochs=2, target_accuracy=0.88, full_data={"max_len": 512}
)
EXPERIMENTS["ch8_sst2_long"] = _trained_longer("classify_sst2", seconds=15.0, epochs=5, target_accuracy=0.82)

#: ``(experiment, profile)`` of every ``get`` in this process: the settings its results depend on, recorded with
#: them (``seqlib.results.dependencies``), so that a change to one experiment leaves the others' results fresh
READ: set[tuple[str, str]] = set()


def get(name: str, profile: str | None = None) -> dict[str, Any]:
    """The settings of experiment ``name`` for ``profile`` (default: ``current_profile()``), as a fresh copy."""
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; declared experiments: {', '.join(sorted(EXPERIMENTS))}")
    profile = current_profile() if profile is None else profile
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid values: {', '.join(PROFILES)}")
    READ.add((name, profile))
    return copy.deepcopy(EXPERIMENTS[name][profile])


def declared(name: str, profile: str) -> dict[str, Any] | None:
    """The settings as declared now, or None where there are none (not logged in ``READ``; for staleness checks)."""
    return EXPERIMENTS.get(name, {}).get(profile)
