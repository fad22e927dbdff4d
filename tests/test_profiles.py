"""Profiles: the SEQLIB_PROFILE switch and every experiment declared with both sizes."""

import pytest
import torch

from seqlib import profiles
from seqlib.train import TrainConfig


def test_current_profile(monkeypatch):
    monkeypatch.setenv("SEQLIB_PROFILE", "smoke")
    assert profiles.current_profile() == "smoke"
    monkeypatch.setenv("SEQLIB_PROFILE", "full")
    assert profiles.current_profile() == "full"
    monkeypatch.setenv("SEQLIB_PROFILE", "fast")
    with pytest.raises(ValueError, match="smoke, full"):
        profiles.current_profile()
    monkeypatch.delenv("SEQLIB_PROFILE")
    assert profiles.current_profile() == ("full" if torch.cuda.is_available() else "smoke")


def _shape(d):
    return {k: _shape(v) for k, v in d.items()} if isinstance(d, dict) else None


STEP_CAPPED = {"ch7_char_long"}


@pytest.mark.parametrize("name", sorted(profiles.EXPERIMENTS))
def test_experiment_has_both_sizes_with_the_same_keys(name):
    exp = profiles.EXPERIMENTS[name]
    assert set(exp) == {"smoke", "full"}
    assert _shape(exp["smoke"]) == _shape(exp["full"])
    if "train" in exp["smoke"]:
        smoke, full = TrainConfig(**exp["smoke"]["train"]), TrainConfig(**exp["full"]["train"])
        assert smoke.max_steps and smoke.max_seconds is None  # smoke: steps
        # full: seconds, the same time on any GPU; a step cap may only end a run sooner (ch7_char_long: nanoGPT's)
        assert full.max_seconds and (full.max_steps is None or name in STEP_CAPPED)


#: sizes of a model or of its inputs: never larger in the smoke profile than in the full one, and those of STRICT
#: smaller (the largest of a list of lengths)
SIZES = {"d_model", "n_layers", "target_params", "seq_len", "max_len", "lengths"}
STRICT = {"d_model", "target_params", "max_len", "lengths"}


def _sizes(smoke, full, path=()):
    if isinstance(smoke, dict):
        for key in smoke:
            yield from _sizes(smoke[key], full[key], (*path, key))
    elif path and path[-1] in SIZES and smoke is not None and full is not None:
        yield "/".join(path), smoke, full


@pytest.mark.parametrize("name", sorted(profiles.EXPERIMENTS))
def test_smoke_models_and_sequences_are_smaller_than_full_ones(name):
    exp = profiles.EXPERIMENTS[name]
    for path, smoke, full in _sizes(exp["smoke"], exp["full"]):
        small, big = (max(smoke), max(full)) if isinstance(smoke, list) else (smoke, full)
        smaller = small < big if path.split("/")[-1] in STRICT else small <= big
        assert smaller, f"{name}/{path}: smoke {smoke}, full {full}"


def test_declared_sizes():
    assert profiles.get("char_lm", "smoke")["model"]["d_model"] == 64
    assert profiles.get("synthetic", "smoke")["lengths"] == [32, 64]
    full = profiles.get("synthetic", "full")["lengths"]
    assert full == sorted(full) and full[0] == 64 and full[-1] >= 4096  # chapter 6: from 64 to at least 4K
    assert profiles.get("bench_scaling", "full")["lengths"] == [2**k for k in range(7, 16)]
    assert 1_000_000 <= profiles.get("char_lm", "full")["model"]["target_params"] <= 10_000_000


def test_get_returns_a_copy_and_validates(monkeypatch):
    cfg = profiles.get("char_lm", "smoke")
    cfg["model"]["d_model"] = 1
    assert profiles.get("char_lm", "smoke")["model"]["d_model"] == 64
    monkeypatch.setenv("SEQLIB_PROFILE", "full")
    assert profiles.get("char_lm") == profiles.EXPERIMENTS["char_lm"]["full"]
    with pytest.raises(KeyError, match="char_lm"):
        profiles.get("char_llm")
    with pytest.raises(ValueError, match="profile"):
        profiles.get("char_lm", "medium")
