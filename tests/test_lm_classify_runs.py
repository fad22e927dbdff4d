"""The helpers behind chapters 7 and 8: matching widths on the meta device, capped classification data,
experiments that name their corpus (``lm_data``)."""

import math
import os
from types import SimpleNamespace

import pytest
import torch

from seqlib import profiles
from seqlib.experiments import _match_on_meta, classification_data
from seqlib.models import match_d_model

needs_data = pytest.mark.skipif(
    not os.environ.get("SEQLIB_DATA", "").strip(), reason="set SEQLIB_DATA to a folder with the layout of shared/data"
)


@pytest.mark.parametrize("arch", ["lstm", "transformer", "mamba", "s4"])
def test_matching_on_meta_gives_the_same_width(arch):
    kw = {"vocab_size": 65}
    assert _match_on_meta(arch, "lm", 150_000, 2, 8, kw) == match_d_model(arch, "lm", 150_000, n_layers=2, **kw)
    assert torch.empty(1).device.type == "cpu"  # the meta device does not leak out


def test_chapter_7_experiments_name_their_corpus():
    for name in ("ch7_char_compare", "ch7_char_long"):
        for p in profiles.PROFILES:
            assert profiles.get(name, p)["lm_data"] == "char_lm"


@needs_data
def test_capped_classification_data_draws_both_labels():
    train, test, tok = classification_data("imdb", 500, 24, 40)
    assert len(train) == len(test) == 40
    assert 0 < float(train.labels.float().mean()) < 1  # IMDB is sorted by label: the draw must be random
    assert max(len(t) for t in train.tokens) <= 24 and tok.vocab_size <= 500
    assert classification_data("imdb", 500, 24, 40) is classification_data("imdb", 500, 24, 40)  # cached


@needs_data
def test_a_ready_made_model_is_recorded_by_its_class_not_the_profile_sizes(monkeypatch, tmp_path):
    from seqlib import results
    from seqlib.experiments import run_classification
    from seqlib.models import CNNModel

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # smoke results go under <tmp>/seqlib-results-smoke
    vocab = profiles.get("classify_sst2", "smoke")["data"]["vocab_size"]
    model = CNNModel(vocab, 8, 4, kernel_sizes=(3,))
    run_classification(
        "kim_cnn",
        "sst2",
        profile="smoke",
        model=model,
        record_as="given_t",
        progress=False,
        train_overrides={"max_steps": 1, "eval_every": None},
    )
    cfg = results.load("given_t", "smoke")["config"]["model"]
    assert cfg == {"given_model": "seqlib.models.cnn.CNNModel"}


@needs_data
def test_classification_splits_and_majority_baseline_follow_run_classification(monkeypatch, tmp_path):
    from seqlib.experiments import classification_splits, majority_baseline, run_classification

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    data = profiles.get("classify_sst2", "smoke")["data"]
    splits = {seed: classification_splits("sst2", profile="smoke", seed=seed) for seed in (0, 1)}
    train, held_out, tok = splits[0]
    assert len(train) == len(held_out) == data["max_examples"]  # smoke: a draw of that many
    run = run_classification(
        "lstm", "sst2", profile="smoke", progress=False, train_overrides={"max_steps": 1, "eval_every": None}
    )
    assert run.extra["train_examples"] == len(train) and run.extra["tokenizer"] is tok
    per_seed = [max(p, 1 - p) for p in (float(s[1].labels.float().mean()) for s in splits.values())]
    assert majority_baseline("sst2", profile="smoke", seeds=(0, 1)) == pytest.approx(sum(per_seed) / 2)
    assert majority_baseline("sst2", profile="smoke") == pytest.approx(per_seed[0]) and per_seed[0] >= 0.5
    with pytest.raises(ValueError, match="dataset must be"):
        majority_baseline("mnist")


def test_a_classification_run_refuses_an_entry_of_another_kind():
    from seqlib.experiments import run_classification

    with pytest.raises(ValueError, match="not a classification entry.*num_classes"):
        run_classification("lstm", "sst2", experiment="char_lm", profile="smoke")


@needs_data
def test_a_longer_run_uses_its_own_budget_and_options(monkeypatch, tmp_path):
    from seqlib import results
    from seqlib.experiments import run_classification

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    run = run_classification(
        "transformer", "sst2", experiment="ch8_sst2_long", profile="smoke", record_as="long_t", progress=False,
        dropout=0.1,
    )  # fmt: skip
    rec = results.load("long_t", "smoke")
    assert run.result.steps == profiles.get("ch8_sst2_long", "smoke")["train"]["max_steps"]
    assert profiles.get("ch8_sst2_long", "full")["max_epochs"] and rec["config"]["max_epochs"] is None
    assert rec["config"]["model"]["dropout"] == 0.1 and rec["config"]["target_accuracy"] == 0.82
    assert rec["config"]["data"] == profiles.get("classify_sst2", "smoke")["data"]  # the comparison's data


@needs_data
def test_max_epochs_caps_a_run_at_passes_over_the_training_split(monkeypatch, tmp_path):
    from seqlib.experiments import run_classification

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    smoke = profiles.EXPERIMENTS["ch8_sst2_long"]["smoke"]
    monkeypatch.setitem(smoke, "max_epochs", 2)
    monkeypatch.setitem(smoke, "train", {**smoke["train"], "max_steps": 1_000})
    run = run_classification("lstm", "sst2", experiment="ch8_sst2_long", profile="smoke", progress=False)
    per_epoch = -(-run.extra["train_examples"] // smoke["data"]["batch_size"])
    assert run.result.steps == 2 * per_epoch < 1_000 and run.result.stopped_by == "max_steps"


def test_diverged_runs_names_the_runs_that_stopped_at_divergence():
    from seqlib.experiments import diverged_runs

    ok = {"metrics": {"stopped_by": "max_seconds", "steps": 100}}
    bad = {"metrics": {"stopped_by": "diverged", "diverged_at_step": 50, "steps": 40}}
    assert diverged_runs({"a": ok, "b": ok}) == "diverged: none (of 2 runs)"
    assert diverged_runs({"a": ok}) == "diverged: none (of 1 run)"
    line = diverged_runs({"a": ok, "b": bad})
    assert line.startswith("diverged: b (by step 50, kept step 40)") and "a (" not in line


def test_run_lm_names_the_experiments_it_runs():
    from seqlib.experiments import run_lm

    with pytest.raises(ValueError, match="run_lm trains language models on 'char_lm' or 'word_lm'.*run_classification"):
        run_lm("lstm", "sst2", profile="smoke")
    with pytest.raises(ValueError, match=r"experiments: ch10_char, ch7_char_compare, .*word_lm\), not 'classify_sst2'"):
        run_lm("lstm", "classify_sst2", profile="smoke")
    with pytest.raises(ValueError, match="not 'poetry'$"):
        run_lm("lstm", "poetry", profile="smoke")


@needs_data
def test_run_classification_evaluates_on_the_held_out_split(monkeypatch):
    from seqlib import experiments
    from seqlib.experiments import classification_splits, run_classification

    seen = {}

    def fake_train(model, batches, cfg, *, loss_fn, eval_batches, **kw):
        seen["eval"], seen["train"] = list(eval_batches), [batches(None) for _ in range(2)]
        return SimpleNamespace(metrics={})

    monkeypatch.setattr(experiments, "train", fake_train)
    run_classification("lstm", "sst2", profile="smoke", seed=1, progress=False)
    train, held_out, _ = classification_splits("sst2", profile="smoke", seed=1)
    labels = torch.cat([b[2] for b in seen["eval"]])
    assert len(labels) == len(held_out) and torch.equal(labels, held_out.labels)  # every held-out example, in order
    first = next(iter(held_out.batches(len(seen["eval"][0][2]), shuffle=False)))
    assert torch.equal(seen["eval"][0][0], first[0])
    assert not torch.equal(seen["eval"][0][0], next(iter(train.batches(len(first[2]), shuffle=False)))[0])


@needs_data
def test_run_lm_evaluates_on_the_validation_text(monkeypatch):
    from seqlib import experiments, profiles
    from seqlib.data import load_char_lm
    from seqlib.models import count_params

    seen = {}

    def fake_train(model, batches, cfg, *, loss_fn, eval_batches, flops_per_token=None, **kw):
        seen.update(eval=list(eval_batches), flops=flops_per_token)
        return SimpleNamespace(metrics={"val_loss": 2.0})

    monkeypatch.setattr(experiments, "train", fake_train)
    run = experiments.run_lm("lstm", "char_lm", profile="smoke", progress=False)
    train_ids, val_ids, _ = load_char_lm("tiny_shakespeare")
    data = profiles.get("char_lm", "smoke")["data"]
    B, T = data["batch_size"], data["seq_len"]
    x, y = seen["eval"][0]
    assert torch.equal(x, val_ids[: B * T].view(B, T)) and torch.equal(y, val_ids[1 : B * T + 1].view(B, T))
    assert sum(b[0].numel() for b in seen["eval"]) == (len(val_ids) - 1) // (B * T) * B * T  # the whole text once
    assert run.extra["bits_per_char"] == pytest.approx(2.0 / math.log(2))
    assert seen["flops"] == 6 * count_params(run.model)
