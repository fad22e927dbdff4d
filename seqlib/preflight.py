"""A minute's check of a device before a long run: every architecture, every task head, on this device.

``python -m seqlib preflight`` builds a small model of every architecture of the registry for each task the book
trains (language model, classifier, encoder-decoder, the synthetic tasks and the adding problem's regressor), and
runs each the way the book does, in the precision the trainer picks for the device (bf16 autocast on recent GPUs,
fp16 with a gradient scaler on older ones, fp32 on a CPU): a few optimizer steps with an evaluation, then sampling
through the streaming ``step`` (language models), greedy decoding and beam search (encoder-decoders), and one
timed and memory-measured call through ``seqlib.bench``. Sizes are tiny, so it takes seconds on a CPU and about a
minute on a GPU; what it checks is that nothing breaks on this device (a kernel missing for a dtype, a tensor on
the wrong device), not speed or quality. It prints one row per check and exits with status 1 if any failed, with
the error, so that a long execution of the book stops before it starts rather than halfway through.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence

import pandas as pd
import torch

from .device import as_device, device_name

__all__ = ["CHECKS", "preflight"]

_VOCAB, _D, _LAYERS, _B, _T = 40, 32, 2, 4, 24
_TRAIN = {"max_steps": 2, "warmup_steps": 1, "eval_every": None, "eval_batches": 1, "progress": False}


def _train(model, batch, loss_fn, device):
    from .train import TrainConfig, train

    return train(
        model, lambda g: batch, TrainConfig(**_TRAIN), loss_fn=loss_fn, eval_batches=lambda g: batch, device=device
    )


def _lm(arch, device):
    from .models import build_model
    from .stepmem import random_lm_batch
    from .train import lm_loss

    model = build_model(arch, "lm", vocab_size=_VOCAB, d_model=_D, n_layers=_LAYERS)
    _train(model, random_lm_batch(_VOCAB, _B, _T), lm_loss, device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        out = model.eval().generate(torch.zeros(1, 3, dtype=torch.long, device=device), 5, generator=gen)
    if out.shape != (1, 8):
        raise RuntimeError(f"generate returned shape {tuple(out.shape)}, expected (1, 8)")


def _classify(arch, device):
    from .models import build_model
    from .stepmem import random_classify_batch
    from .train import classify_loss

    tokens, mask, labels = random_classify_batch(_VOCAB, _B, _T)
    mask[0, _T // 2 :] = False  # one padded row: the mask-aware paths run too
    model = build_model(arch, "classify", vocab_size=_VOCAB, d_model=_D, n_layers=_LAYERS, num_classes=2)
    _train(model, (tokens, mask, labels), classify_loss, device)


def _seq2seq(arch, device):
    from .models import build_model
    from .models.decoding import beam_search, greedy_decode
    from .train import seq2seq_loss

    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, _VOCAB, (_B, _T), generator=g)
    src_mask = torch.ones(_B, _T, dtype=torch.bool)
    src_mask[0, _T // 2 :] = False
    tgt = torch.randint(4, _VOCAB, (_B, _T + 1), generator=g)
    model = build_model(arch, "seq2seq", vocab_size=_VOCAB, d_model=_D, n_layers=_LAYERS, tgt_vocab_size=_VOCAB)
    _train(model, (src, src_mask, tgt[:, :-1], tgt[:, 1:]), seq2seq_loss, device)
    src, src_mask = src[:2].to(device), src_mask[:2].to(device)
    with torch.no_grad():
        greedy_decode(model.eval(), src, src_mask, bos_id=1, eos_id=2, max_len=6)
        beam_search(model, src, src_mask, bos_id=1, eos_id=2, beam_size=3, max_len=6)


def _synthetic(arch, device):
    from .experiments import run_synthetic

    for task in ("associative_recall", "adding_problem"):  # a token task and the regression head
        run_synthetic(arch, task, 32, profile="smoke", d_model=_D, n_layers=_LAYERS, n_eval=8, train_overrides=_TRAIN)


def _bench(arch, device):
    from .bench import MODES, bench_mixer
    from .models import MIXERS

    # the training step of both implementations (as `bench mixers`), prefill and per-token decoding of the fast one
    for mode, impl in [("train", "reference"), *((m, "fast") for m in MODES)]:
        df = bench_mixer(
            lambda i=impl: MIXERS[arch](d_model=_D, impl=i),
            [32],
            mode=mode,
            batch_size=2,
            device=device,
            warmup=1,
            repeats=2,
        )
        if not df["median_ms"].notna().all():
            raise RuntimeError(f"{mode} ({impl}) was not measured: {df.to_dict('records')}")


#: the checks run for every architecture: name -> check(arch, device)
CHECKS: dict[str, Callable[[str, torch.device], None]] = {
    "lm": _lm,
    "classify": _classify,
    "seq2seq": _seq2seq,
    "synthetic": _synthetic,
    "bench": _bench,
}


def preflight(
    archs: Sequence[str] | None = None, device: torch.device | str | None = None, verbose: bool = True
) -> pd.DataFrame:
    """Run ``CHECKS`` for each architecture (default: the whole registry) on ``device``; one row per check with
    ``ok``, ``seconds`` and the ``error`` (its last line) of a failed one. A failed check's traceback is printed."""
    from .models import MIXERS

    device = as_device(device)
    archs = list(MIXERS) if archs is None else list(archs)
    unknown = [a for a in archs if a not in MIXERS]
    if unknown:
        raise ValueError(f"unknown architectures {unknown}; choose from {', '.join(MIXERS)}")
    if verbose:
        print(f"preflight on {device_name(device)}: {len(archs)} architectures x {len(CHECKS)} checks", flush=True)
    rows = []
    for arch in archs:
        for name, check in CHECKS.items():
            t0 = time.perf_counter()
            try:
                check(arch, device)
                error = None
            except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the others
                error = f"{type(e).__name__}: {e}".strip().splitlines()[0]
                if verbose:
                    print(f"--- {arch} / {name} failed:\n{traceback.format_exc()}", flush=True)
            rows.append(
                {"arch": arch, "check": name, "ok": error is None, "seconds": time.perf_counter() - t0, "error": error}
            )
    return pd.DataFrame(rows)
