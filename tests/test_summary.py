import json
import math

import pandas as pd
import pytest

from seqlib import results, summary


def _write(tmp_path, name, metrics, history=None):
    results.record(name, metrics, history=history, profile="smoke", results_dir=tmp_path)


@pytest.fixture
def records(tmp_path):
    _write(tmp_path, "ch7_char_lstm", {"val_loss": 2 * math.log(2), "tokens_per_s": 1000.0})
    _write(tmp_path, "ch7_char_transformer", {"val_loss": math.log(2), "tokens_per_s": 3000.0})
    _write(tmp_path, "ch7_char_long", {"val_loss": 0.1})  # the long run is not a row of its own
    _write(tmp_path, "ch7_word_lstm", {"val_loss": math.log(150.0)})
    for seed, acc in enumerate([0.8, 0.9]):
        _write(tmp_path, f"ch8_imdb_kim_cnn_s{seed}", {"val_accuracy": acc})
    _write(tmp_path, "ch8_imdb_s4_s0", {"val_accuracy": 0.7})  # the S4 mixer, seed 0
    _write(tmp_path, "ch8_long_imdb_s4", {"val_accuracy": 0.99})  # a longer run is not a seed of the comparison
    _write(tmp_path, "ch9_translate_transformer", {"test_bleu": 30.0})
    _write(tmp_path, "ch4_scaling", {"lstm/train": 1.0, "transformer/train": 2.0, "transformer/prefill": 1.9})
    decode = pd.DataFrame(
        {
            "arch": ["lstm", "lstm", "transformer", "transformer"],
            "seq_len": [16, 32, 16, 32],
            "state_bytes_per_seq": [512, 512, 4096, 8192],
            "median_ms": [0.1, 0.1, 0.2, 0.3],
        }
    )
    _write(tmp_path, "ch5_decode_memory", {"state_exponent": {"lstm": 0.0, "transformer": 1.0}}, decode)
    sweep = pd.DataFrame(
        {
            "arch": ["lstm"] * 4 + ["transformer"] * 2,
            "task": ["copy", "recall"] * 3,
            "seq_len": [32, 32, 64, 64, 32, 32],
            "accuracy": [1.0, 0.8, 0.5, 0.3, 1.0, 1.0],
        }
    )
    _write(tmp_path, "ch6_length_sweep", {"runs": 6}, sweep)
    (tmp_path / "notes.json").write_text(json.dumps({"not": "a record"}))
    return summary.collect(results_dir=tmp_path)


def test_comparison_table_aggregates_each_chapter(records):
    t = summary.comparison_table(records)
    assert list(t.columns) == list(summary.COLUMNS)
    assert "long" not in t.index and "notes" not in records
    assert t.loc["lstm", "char bits/char"] == pytest.approx(2.0)
    assert t.loc["transformer", "char bits/char"] == pytest.approx(1.0)
    assert t.loc["transformer", "LM tokens/s"] == 3000.0
    assert t.loc["lstm", "WikiText-2 ppl"] == pytest.approx(150.0)
    assert t.loc["kim_cnn", "IMDB acc"] == pytest.approx(0.85)  # the mean over seeds
    assert t.loc["s4", "IMDB acc"] == pytest.approx(0.7)
    assert t.loc["transformer", "Multi30k BLEU"] == 30.0
    assert t.loc["transformer", "train time exponent"] == 2.0  # the training fit, not the prefill one
    assert t.loc["transformer", "decode state (KiB)"] == pytest.approx(8.0)  # at the longest prefix
    assert t.loc["lstm", "long-range acc"] == pytest.approx(0.4)  # mean over tasks at the longest length
    assert t.loc["transformer", "long-range acc"] == pytest.approx(1.0)  # its own longest length
    assert math.isnan(t.loc["kim_cnn", "char bits/char"])  # missing stays missing
    assert list(t.index) == ["lstm", "kim_cnn", "transformer", "s4"]  # the book's architecture order


def test_sources_lists_used_records_with_provenance(records):
    s = summary.sources(records)
    # the records whose figures are in the table: not the longer runs, which are no rows of it
    assert set(s["record"]) == set(records) - {"ch7_char_long", "ch8_long_imdb_s4"}
    assert set(s["record"]) == set(summary.comparison_table(records).attrs["records"])
    assert (s["profile"] == "smoke").all() and not s["stale"].any()
    named = summary.sources(records, ["ch7_char_long", "ch4_scaling", "absent"])
    assert list(named["record"]) == ["ch4_scaling", "ch7_char_long"]


def test_empty_or_missing_directory_gives_an_empty_table(tmp_path):
    assert summary.collect(results_dir=tmp_path / "absent") == {}
    t = summary.comparison_table({})
    assert t.empty and list(t.columns) == list(summary.COLUMNS)
    assert summary.sources({}).empty


def test_a_corrupt_record_is_an_error_that_names_it(tmp_path):
    (tmp_path / "ch7_char_lstm.json").write_text("{not json")
    with pytest.raises(ValueError, match="ch7_char_lstm.json"):
        summary.collect(results_dir=tmp_path)


def _lm(tmp_path, name, val_loss, n_params, n_layers, budget):
    cfg = {"lm_data": "char_lm", "data": {"seq_len": 64}, "train": {"max_seconds": budget}}
    cfg["model"] = {"d_model": 32, "n_layers": n_layers}
    metrics = {"val_loss": val_loss, "tokens_per_s": 100.0, "n_params": n_params}
    results.record(name, metrics, config=cfg, profile="smoke", results_dir=tmp_path)


def test_the_hybrid_joins_chapter_7_columns_only_when_trained_alike(tmp_path):
    _lm(tmp_path, "ch7_char_transformer", math.log(2), 1000, 2, 7.0)
    _lm(tmp_path, "ch10_char_hybrid", 3 * math.log(2), 1050, 2, 7.0)
    t = summary.comparison_table(summary.collect(results_dir=tmp_path))
    assert t.loc["hybrid", "char bits/char"] == pytest.approx(3.0) and t.loc["hybrid", "LM tokens/s"] == 100.0
    assert "ch10_char_hybrid" in set(summary.sources(summary.collect(results_dir=tmp_path))["record"])
    for n_params, n_layers, budget in ((1200, 2, 7.0), (1000, 4, 7.0), (1000, 2, 3.0)):  # size, depth, budget
        _lm(tmp_path, "ch10_char_hybrid", 3 * math.log(2), n_params, n_layers, budget)
        assert "hybrid" not in summary.comparison_table(summary.collect(results_dir=tmp_path)).index
        assert "ch10_char_hybrid" not in set(summary.sources(summary.collect(results_dir=tmp_path))["record"])


def _classifier(tmp_path, name, acc, n_params, train_seconds, seed):
    cfg = {"data": {"max_len": 16}, "train": {"max_seconds": train_seconds}, "seeds": [0, 1]}
    cfg["model"] = {"d_model": 32, "n_layers": 2}
    metrics = {"val_accuracy": acc, "n_params": n_params}
    results.record(name, metrics, config=cfg, seed=seed, profile="smoke", results_dir=tmp_path)


def test_the_hybrid_joins_chapter_8_columns_only_when_trained_alike(tmp_path):
    for seed in (0, 1):
        _classifier(tmp_path, f"ch8_sst2_transformer_s{seed}", 0.7, 1000, 2.0, seed)
        _classifier(tmp_path, f"ch10_sst2_hybrid_s{seed}", 0.8 + 0.1 * seed, 1050, 2.0, seed)
        _classifier(tmp_path, f"ch10_sst2_transformer_s{seed}", 0.1, 1000, 2.0, seed)  # a fallback baseline
    t = summary.comparison_table(summary.collect(results_dir=tmp_path))
    assert t.loc["hybrid", "SST-2 acc"] == pytest.approx(0.85)  # the mean over seeds
    assert t.loc["transformer", "SST-2 acc"] == pytest.approx(0.7)  # chapter 10's own baselines are not used
    assert math.isnan(t.loc["hybrid", "IMDB acc"])
    for seed in (0, 1):  # another budget
        _classifier(tmp_path, f"ch10_sst2_hybrid_s{seed}", 0.8, 1050, 5.0, seed)
    assert "hybrid" not in summary.comparison_table(summary.collect(results_dir=tmp_path)).index


def test_the_hybrid_joins_the_long_range_column_only_when_swept_like_chapter_6(tmp_path):
    syn = {"tasks": ["copy", "recall"], "lengths": [32, 64]}
    sweep = pd.DataFrame(
        {
            "arch": ["mamba"] * 4,
            "task": ["copy", "recall"] * 2,
            "seq_len": [32, 32, 64, 64],
            "accuracy": [1, 1, 0.5, 0.3],
        }
    )
    results.record("ch6_length_sweep", {"runs": 4}, config=syn, history=sweep, profile="smoke", results_dir=tmp_path)
    hybrid = sweep.assign(arch="hybrid", accuracy=[1, 1, 0.9, 0.7])

    def ch10(config):
        results.record("ch10_synthetic", {}, config=config, history=hybrid, profile="smoke", results_dir=tmp_path)
        return summary.comparison_table(summary.collect(results_dir=tmp_path))

    alike = {"tasks": syn["tasks"], "lengths": [32, 64], "synthetic": syn, "source": "chapter 6's record"}
    assert ch10(alike).loc["hybrid", "long-range acc"] == pytest.approx(0.8)
    assert "hybrid" not in ch10({**alike, "lengths": [32]}).index
    assert "hybrid" not in ch10({**alike, "synthetic": {**syn, "lengths": [16]}}).index


def test_sizes_matched_to_the_same_target_within_10_percent_each(tmp_path):
    def cfg(target):
        return {
            "data": {"max_len": 16},
            "train": {"max_seconds": 2.0},
            "seeds": [0],
            "model": {"n_layers": 2, **target},
        }

    def write(name, n, target):
        results.record(
            name,
            {"val_accuracy": 0.8, "n_params": n},
            config=cfg(target),
            seed=0,
            profile="smoke",
            results_dir=tmp_path,
        )

    write("ch8_sst2_transformer_s0", 910, {"target_params": 1000})
    write("ch10_sst2_hybrid_s0", 1090, {"target_params": 1000})  # 20% apart, each within 10% of the target
    assert "hybrid" in summary.comparison_table(summary.collect(results_dir=tmp_path)).index
    write("ch10_sst2_hybrid_s0", 1090, {"target_params": 1100})  # matched to another target
    assert "hybrid" not in summary.comparison_table(summary.collect(results_dir=tmp_path)).index


def test_reading_every_record_depends_on_which_records_there_are(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLIB_RESULTS", str(tmp_path))
    monkeypatch.setattr(results, "READ", set())
    results.record("ch7_char_lstm", {"val_loss": 1.0}, profile="full")
    summary.collect(profile="full")
    deps = results.dependencies()
    assert [results.ALL_RECORDS, "full"] in deps["records"] and ["ch7_char_lstm", "full"] in deps["records"]
    results.record("ch7_char_gru", {"val_loss": 1.0}, profile="full")  # a new record: the table changes
    assert results.dependency_hash(deps) != deps["hash"]


def test_a_translation_model_of_two_mixers_has_a_row_of_its_own(tmp_path):
    def translate(arch, bleu, **model):
        cfg = {"data": {"max_len": 32}, "model": {"d_model": 32, **model}}
        results.record(f"ch9_translate_{arch}", {"test_bleu": bleu}, config=cfg, profile="smoke", results_dir=tmp_path)

    translate("lstm", 10.0)
    translate("cnn", 12.0, decoder="transformer")  # chapter 9's CNN encoder with a Transformer decoder
    translate("transformer", 14.0, decoder="transformer")
    _write(tmp_path, "ch8_sst2_cnn_s0", {"val_accuracy": 0.6})  # the CNN classifier: the CNN's own row
    t = summary.comparison_table(summary.collect(results_dir=tmp_path))
    row = "cnn_encoder_transformer_decoder"
    assert t.loc[row, "Multi30k BLEU"] == 12.0 and math.isnan(t.loc["cnn", "Multi30k BLEU"])
    assert t.loc["lstm", "Multi30k BLEU"] == 10.0 and t.loc["transformer", "Multi30k BLEU"] == 14.0
    assert list(t.index) == ["lstm", "cnn", row, "transformer"]  # after the encoder's row
    assert summary.row_label(row) == "CNN encoder + Transformer decoder"
    assert summary.row_label("lstm") == "LSTM" and summary.row_label("gru_encoder_lstm_decoder") == (
        "GRU encoder + LSTM decoder"
    )


def test_full_window_columns_compare_the_window_with_every_sequence(tmp_path):
    def rec(name, data, window=None, history=None):
        model = {"d_model": 32, **({"window": window} if window else {})}
        results.record(
            name, {"val_loss": 1.0, "val_accuracy": 0.5}, config={"data": data, "model": model},
            history=history, profile="smoke", results_dir=tmp_path,
        )  # fmt: skip

    rec("ch7_char_longformer", {"seq_len": 64})  # the default window, 64: causal, 64 tokens fit
    rec("ch7_word_longformer", {"seq_len": 128})  # 128 > 64: a band
    rec("ch8_sst2_longformer_s0", {"max_len": 65})  # bidirectional: |i - j| <= 64 spans 65 tokens
    rec("ch8_sst2_longformer_s1", {"max_len": 65})
    rec("ch8_imdb_longformer_s0", {"max_len": 32})
    rec("ch8_imdb_longformer_s1", {"max_len": 66})  # one seed longer than the window: not the same model
    sweep = pd.DataFrame({"arch": ["longformer", "longformer", "lstm"], "seq_len": [32, 48, 512], "accuracy": 0.5})
    rec("ch6_length_sweep", {}, history=sweep)  # the LSTM's longer run does not matter
    spans = summary.full_window_columns(summary.collect(results_dir=tmp_path))
    assert spans == {"char bits/char": (64, 64), "SST-2 acc": (64, 65), "long-range acc": (64, 48)}
    rec("ch7_char_longformer", {"seq_len": 64}, window=32)  # a window option in the record's model
    assert "char bits/char" not in summary.full_window_columns(summary.collect(results_dir=tmp_path))
    cfg = {"data": {"max_len": 65}, "model": {"causal": True}}  # a causal classifier sees at most 64 tokens back
    results.record("ch8_sst2_longformer_s1", {"val_accuracy": 0.5}, config=cfg, profile="smoke", results_dir=tmp_path)
    assert "SST-2 acc" not in summary.full_window_columns(summary.collect(results_dir=tmp_path))
    assert summary.full_window_columns({}) == {}


def test_ladder_verdicts_follow_chapter_6s_rule(tmp_path):
    from seqlib import longrange as lr

    tasks = ["selective_copying", "associative_recall"]
    opts = {"selective_copying": {"n_tokens": 4, "vocab_size": 10}, "associative_recall": {"n_pairs": 4}}
    rows = []
    for arch, acc in (("lstm", 0.4), ("cnn", 0.9), ("transformer", 0.95), ("longformer", 0.6), ("mamba", 0.5)):
        for task in tasks:
            for n in (64, 600):
                rows.append({"arch": arch, "task": task, "seq_len": n, "accuracy": acc})
    cfg = {"tasks": tasks, "task_options": opts, "lengths": [64, 600]}
    results.record(
        "ch6_length_sweep", {}, config=cfg, history=pd.DataFrame(rows), profile="smoke", results_dir=tmp_path
    )
    sweep = summary.collect(results_dir=tmp_path)["ch6_length_sweep"]
    verdicts = summary.ladder_verdicts(sweep)
    assert list(verdicts) == list(lr.LADDER)
    scores = lr.family_scores(sweep["history"])
    floor = lr.chance_floor(tasks, opts)
    for band in ("short (<512)", "medium (512-2K)"):  # measured: chapter 6's judge on its family scores
        assert verdicts[band] == lr.judge(scores.loc[band], lr.LADDER[band], lr.TIE_TOLERANCE, floor)
    assert verdicts["short (<512)"][0] == "confirmed"  # Transformer ≈ CNN > RNN
    for band in ("long (2K-8K)", "very long (>8K)"):  # not measured
        verdict, why = verdicts[band]
        assert verdict == "qualified" and why.startswith("not measured: the longest length is 600;")


def test_decode_state_is_read_at_the_longest_prefix_that_ran(tmp_path):
    """A prefix that ran out of memory while timing still holds its state's size: it is not the longest that ran."""
    decode = pd.DataFrame(
        {
            "arch": ["transformer"] * 3,
            "seq_len": [16, 32, 64],
            "status": ["ok", "ok", "oom"],
            "state_bytes_per_seq": [4096, 8192, 16384],
        }
    )
    _write(tmp_path, "ch5_decode_memory", {"state_exponent": {"transformer": 1.0}}, decode)
    t = summary.comparison_table(summary.collect(results_dir=tmp_path))
    assert t.loc["transformer", "decode state (KiB)"] == pytest.approx(8.0)


def test_long_range_accuracy_is_the_mean_over_tasks(tmp_path):
    sweep = pd.DataFrame(
        {
            "arch": ["lstm"] * 3,
            "task": ["copy", "recall", "induction"],
            "seq_len": [64] * 3,
            "accuracy": [1.0, 0.2, 0.3],
        }
    )
    _write(tmp_path, "ch6_length_sweep", {"runs": 3}, sweep)
    t = summary.comparison_table(summary.collect(results_dir=tmp_path))
    assert t.loc["lstm", "long-range acc"] == pytest.approx(0.5)  # not the median, 0.3


def test_the_hybrid_row_shows_its_own_throughput_and_needs_the_same_device(tmp_path):
    _lm(tmp_path, "ch7_char_transformer", math.log(2), 1000, 2, 7.0)
    _lm(tmp_path, "ch10_char_hybrid", 3 * math.log(2), 1050, 2, 7.0)
    records = summary.collect(results_dir=tmp_path)
    records["ch10_char_hybrid"]["metrics"]["tokens_per_s"] = 250.0
    assert summary.comparison_table(records).loc["hybrid", "LM tokens/s"] == 250.0
    records["ch10_char_hybrid"]["provenance"]["device"] = "another GPU"
    assert "hybrid" not in summary.comparison_table(records).index


def test_the_hybrid_needs_a_reference_within_10_percent_of_the_target_and_the_same_seeds(tmp_path):
    def write(name, n, seeds=(0,)):
        cfg = {"data": {"max_len": 16}, "train": {"max_seconds": 2.0}, "seeds": list(seeds)}
        cfg["model"] = {"n_layers": 2, "target_params": 1000}
        metrics = {"val_accuracy": 0.8, "n_params": n}
        results.record(name, metrics, config=cfg, seed=0, profile="smoke", results_dir=tmp_path)

    write("ch8_sst2_transformer_s0", 1000)
    write("ch10_sst2_hybrid_s0", 1000)
    assert "hybrid" in summary.comparison_table(summary.collect(results_dir=tmp_path)).index
    write("ch8_sst2_transformer_s0", 1200)  # the reference missed the target
    assert "hybrid" not in summary.comparison_table(summary.collect(results_dir=tmp_path)).index
    write("ch8_sst2_transformer_s0", 1000)
    write("ch10_sst2_hybrid_s0", 1000, seeds=(0, 1, 2))  # another set of seeds
    assert "hybrid" not in summary.comparison_table(summary.collect(results_dir=tmp_path)).index


def test_a_sweep_as_long_as_the_window_is_full_attention(tmp_path):
    sweep = pd.DataFrame({"arch": ["longformer", "longformer"], "seq_len": [32, 64], "accuracy": 0.5})
    # the default window, 64: causal, the longest sequence fits in it
    results.record("ch6_length_sweep", {}, config={"model": {}}, history=sweep, profile="smoke", results_dir=tmp_path)
    assert summary.full_window_columns(summary.collect(results_dir=tmp_path)) == {"long-range acc": (64, 64)}
