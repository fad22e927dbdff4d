"""Every architecture gets a width within 10% of its experiment's parameter target (smoke: char_lm; full: all)."""

import pytest
import torch

from seqlib import profiles
from seqlib.experiments import _model_size
from seqlib.models import MIXERS, build_model, count_params


@pytest.mark.parametrize("arch", ["lstm", "gru", "cnn", "transformer"])
def test_char_lm_smoke_matches_params(arch):
    model_cfg = profiles.get("char_lm", "smoke")["model"]
    target = model_cfg["target_params"]
    d = _model_size(arch, "lm", model_cfg, {"vocab_size": 65}, True)  # an LSTM needs the finer grid of 4 here
    assert d % 4 == 0
    n = count_params(build_model(arch, "lm", vocab_size=65, d_model=d, n_layers=model_cfg["n_layers"]))
    assert abs(n - target) <= 0.1 * target


# The full profile's matched widths, checked here so that a GPU run never meets a target no width can reach.
# Vocabulary sizes: tiny Shakespeare's 65 characters, WikiText-2's 33,278 words, the BPE sizes of the profile.
FULL_LM = [("char_lm", 65), ("ch7_char_long", 65), ("word_lm", 33_278)]


def _assert_full_width_matches(experiment, task, arch, build_kwargs):
    cfg = profiles.get(experiment, "full")
    model_cfg = {k: v for k, v in cfg["model"].items() if k != "num_classes"}
    target, n_layers = model_cfg["target_params"], model_cfg["n_layers"]
    extra = {k: v for k, v in model_cfg.items() if k not in ("d_model", "n_layers", "target_params")}
    d = _model_size(arch, task, dict(model_cfg), {**build_kwargs, **extra}, True)
    with torch.device("meta"):
        n = count_params(build_model(arch, task, d_model=d, n_layers=n_layers, **build_kwargs, **extra))
    assert abs(n - target) <= 0.1 * target, f"{experiment}/{arch}: {n:,} parameters at d_model={d}, target {target:,}"


@pytest.mark.parametrize("experiment,vocab", FULL_LM, ids=[e for e, _ in FULL_LM])
@pytest.mark.parametrize("arch", list(MIXERS))
def test_full_profile_language_models_match_their_parameter_target(experiment, vocab, arch):
    _assert_full_width_matches(experiment, "lm", arch, {"vocab_size": vocab})


# chapter 10's hybrid: Mamba layers with one attention layer on top
HYBRIDS = {"ch10_char": ["mamba"] * 3 + ["transformer"], "classify": ["mamba", "transformer"]}


def test_full_profile_ch10_hybrid_language_model_matches_its_parameter_target():
    assert len(HYBRIDS["ch10_char"]) == profiles.get("ch10_char", "full")["model"]["n_layers"]
    _assert_full_width_matches("ch10_char", "lm", HYBRIDS["ch10_char"], {"vocab_size": 65})


@pytest.mark.parametrize("experiment", ["classify_imdb", "classify_sst2"])
@pytest.mark.parametrize("arch", [*MIXERS, "hybrid"])  # the Kim CNN is sized in chapter 8 itself
def test_full_profile_classifiers_match_their_parameter_target(experiment, arch):
    if arch == "hybrid":
        assert len(HYBRIDS["classify"]) == profiles.get(experiment, "full")["model"]["n_layers"]
        arch = HYBRIDS["classify"]
    cfg = profiles.get(experiment, "full")
    kwargs = {"vocab_size": cfg["data"]["vocab_size"], "num_classes": cfg["model"]["num_classes"]}
    _assert_full_width_matches(experiment, "classify", arch, kwargs)


@pytest.mark.parametrize("arch,options", [("lstm", {}), ("cnn", {"decoder": "transformer"}), ("transformer", {})])
def test_full_profile_translation_models_match_their_parameter_target(arch, options):
    vocab = profiles.get("translate_multi30k", "full")["data"]["vocab_size"]
    _assert_full_width_matches(
        "translate_multi30k", "seq2seq", arch, {"vocab_size": vocab, "tgt_vocab_size": vocab, **options}
    )


@pytest.mark.parametrize("task", profiles.get("synthetic", "full")["tasks"])
def test_full_profile_synthetic_widths_match_their_parameter_target(task):
    from seqlib.longrange import matched_widths

    cfg = profiles.get("synthetic", "full")
    m = cfg["model"]
    with torch.device("meta"):  # shapes only
        widths = matched_widths(
            [*MIXERS, ("mamba",) * (m["n_layers"] - 1) + ("transformer",)],
            task,
            m["target_params"],
            n_layers=m["n_layers"],
            task_options=cfg["task_options"][task],
            tolerance=m["match_tolerance"],
        )
    assert len(widths) == len(MIXERS) + 1  # matched_widths raises on a miss beyond the tolerance
