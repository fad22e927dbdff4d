"""Tests of seqlib.data.synthetic: shapes, seeding, validation, and an oracle per task that reads the
answer off the inputs alone (so the tasks are solvable) and scores 100% with token_accuracy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqlib.data import (
    REGRESSION_TASKS,
    SYNTHETIC_TASKS,
    adding_problem,
    associative_recall,
    copying,
    induction_heads,
    selective_copying,
    token_accuracy,
)

TOKEN_TASKS = {
    "copying": dict(n_tokens=5, vocab_size=8),
    "selective_copying": dict(n_tokens=6, vocab_size=10),
    "associative_recall": dict(n_pairs=6, vocab_size=40),
    "induction_heads": dict(vocab_size=12),
}


def one_hot_logits(pred: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Logits whose argmax is ``pred`` (-100 entries become 0)."""
    return F.one_hot(pred.clamp(min=0), vocab_size).float()


def copying_oracle(inputs, n_tokens):
    pred = torch.full_like(inputs, -100)
    pred[:, -n_tokens:] = inputs[:, :n_tokens]
    return pred


def selective_copying_oracle(inputs, n_tokens):
    pred = torch.full_like(inputs, -100)
    for b, row in enumerate(inputs):
        context = row[: len(row) - n_tokens]
        pred[b, -n_tokens:] = context[context >= 2]  # the data tokens, in order, skipping noise
    return pred


def associative_recall_oracle(inputs, n_pairs):
    pred = torch.full_like(inputs, -100)
    for b, row in enumerate(inputs.tolist()):
        table = dict(zip(row[0 : 2 * n_pairs : 2], row[1 : 2 * n_pairs : 2], strict=True))
        for t in range(2 * n_pairs, len(row)):
            if row[t] in table:  # a key in the query region: answer its value (extra ones are not scored)
                pred[b, t] = table[row[t]]
    return pred


def induction_heads_oracle(inputs, vocab_size):
    pred = torch.full_like(inputs, -100)
    for b, row in enumerate(inputs):
        first = int((row == vocab_size - 1).nonzero()[0])
        pred[b, -1] = row[first + 1]
    return pred


@pytest.mark.parametrize("seq_len", [40, 97])
def test_oracles_solve_every_task(seq_len):
    n = 64
    inputs, targets = copying(n, seq_len, **TOKEN_TASKS["copying"], seed=1)
    preds = {"copying": (inputs, targets, copying_oracle(inputs, 5), 8)}
    inputs, targets = selective_copying(n, seq_len, **TOKEN_TASKS["selective_copying"], seed=1)
    preds["selective_copying"] = (inputs, targets, selective_copying_oracle(inputs, 6), 10)
    inputs, targets = associative_recall(n, seq_len, **TOKEN_TASKS["associative_recall"], seed=1)
    preds["associative_recall"] = (inputs, targets, associative_recall_oracle(inputs, 6), 40)
    inputs, targets = induction_heads(n, seq_len, **TOKEN_TASKS["induction_heads"], seed=1)
    preds["induction_heads"] = (inputs, targets, induction_heads_oracle(inputs, 12), 12)
    for name, (inputs, targets, pred, vocab) in preds.items():
        assert inputs.shape == targets.shape == (n, seq_len) and inputs.dtype == targets.dtype == torch.long, name
        assert 0 <= int(inputs.min()) and int(inputs.max()) < vocab, name
        assert token_accuracy(one_hot_logits(pred, vocab), targets) == 1.0, name
        assert token_accuracy(one_hot_logits(pred, vocab), targets, per_sequence=True) == 1.0, name
        scored = targets != -100
        assert scored.any(dim=1).all(), name
        # a constant guess does poorly, so the oracle's 100% is not free
        assert token_accuracy(one_hot_logits(torch.full_like(pred, 2), vocab), targets) < 0.5, name


def test_layouts():
    x, y = copying(3, 20, n_tokens=4, vocab_size=6)
    assert (x[:, 4:15] == 0).all() and (x[:, 15] == 1).all() and (x[:, 16:] == 0).all() and (x[:, :4] >= 2).all()
    assert ((y != -100).sum(1) == 4).all() and (y[:, :16] == -100).all()
    x, y = selective_copying(50, 30, n_tokens=4, vocab_size=6)
    assert ((x[:, :26] >= 2).sum(1) == 4).all() and (x[:, 26:] == 1).all()
    first_data = (x[:, :26] >= 2).float().argmax(1)
    assert first_data.unique().numel() > 5  # the data really is scattered
    x, y = associative_recall(50, 40, n_pairs=5, vocab_size=30)
    keys, values = x[:, 0:10:2], x[:, 1:10:2]
    assert ((keys >= 1) & (keys < 15)).all() and ((values >= 15) & (values < 30)).all()
    assert all(row.unique().numel() == 5 for row in keys)  # distinct keys
    assert ((y != -100).sum(1) == 5).all() and (y[:, :10] == -100).all()
    query_pos = (y != -100).nonzero()[:, 1]
    assert (query_pos % 2 == 0).all()  # queries at even offsets of the query region
    x, y = induction_heads(100, 10, vocab_size=5)
    assert ((x == 4).sum(1) == 2).all() and (x[:, -1] == 4).all() and (y[:, :-1] == -100).all()
    assert (y[:, -1] != 4).all()  # the answer is the token after the first trigger, never the trigger itself


def test_associative_recall_power_law():
    _, y = associative_recall(400, 200, n_pairs=4, vocab_size=20, power_a=0.01)
    near = (y[:, 8:50] != -100).sum()  # short gaps dominate
    far = (y[:, 150:] != -100).sum()
    assert near > 3 * far
    _, y = associative_recall(400, 200, n_pairs=4, vocab_size=20, power_a=1.0)
    assert (y[:, 150:] != -100).sum() > 0.15 * 1600  # uniform: the last quarter gets about a quarter


@pytest.mark.parametrize("markers", ["halves", "uniform"])
def test_adding_problem(markers):
    x, y = adding_problem(256, 50, seed=3, markers=markers)
    assert x.shape == (256, 50, 2) and y.shape == (256,) and x.dtype == y.dtype == torch.float32
    assert ((x[..., 0] >= 0) & (x[..., 0] < 1)).all() and (x[..., 1].sum(1) == 2).all()
    assert torch.allclose((x[..., 0] * x[..., 1]).sum(1), y)  # the oracle: sum the marked values
    first, last = x[..., 1].argmax(1), 49 - x[..., 1].flip(1).argmax(1)
    if markers == "halves":
        assert (first < 25).all() and (last >= 25).all()
    else:
        assert (last < 25).any() and (first >= 25).any()
    assert 0.1 < F.mse_loss(torch.ones_like(y), y) < 0.25  # baseline MSE ~1/6
    x64, _ = adding_problem(2, 50, seed=3, markers=markers, dtype=torch.float64)
    assert x64.dtype == torch.float64


@pytest.mark.parametrize("name", sorted(SYNTHETIC_TASKS))
def test_seeding(name):
    task = SYNTHETIC_TASKS[name]
    kwargs = TOKEN_TASKS.get(name, {})
    a = task(8, 48, **kwargs, seed=5)
    torch.manual_seed(123)  # the global generator plays no part
    b = task(8, 48, **kwargs, seed=5)
    c = task(8, 48, **kwargs, seed=6)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize(
    ("task", "kwargs", "match"),
    [
        (copying, dict(seq_len=10, n_tokens=5), "at least 11"),
        (selective_copying, dict(seq_len=31, n_tokens=16), "at least 32"),
        (associative_recall, dict(seq_len=31, n_pairs=8), "at least 32"),
        (associative_recall, dict(seq_len=64, n_pairs=8, vocab_size=16), "vocab_size >= 18"),
        (induction_heads, dict(seq_len=2), "at least 3"),
        (adding_problem, dict(seq_len=1), "at least 2"),
        (adding_problem, dict(seq_len=10, markers="ends"), "'halves' or 'uniform'"),
        (copying, dict(seq_len=30, vocab_size=2), "vocab_size >= 3"),
    ],
)
def test_bad_arguments(task, kwargs, match):
    with pytest.raises(ValueError, match=match):
        task(4, **kwargs)


def test_registry_and_minimum_lengths_work():
    assert {"copying", "selective_copying", "associative_recall", "induction_heads", "lag_copy"} | set(
        REGRESSION_TASKS
    ) <= set(SYNTHETIC_TASKS)
    assert copying(2, 11, n_tokens=5)[0].shape == (2, 11)
    assert selective_copying(2, 32)[0].shape == (2, 32)
    assert associative_recall(2, 32, n_pairs=8)[0].shape == (2, 32)
    assert induction_heads(2, 3)[0].shape == (2, 3)


def test_token_accuracy():
    targets = torch.tensor([[-100, 1, 2], [0, -100, -100], [-100, -100, -100]])
    pred = torch.tensor([[5, 1, 0], [0, 3, 3], [1, 1, 1]])
    logits = one_hot_logits(pred, 6)
    assert token_accuracy(logits, targets) == pytest.approx(2 / 3)
    assert token_accuracy(logits, targets, per_sequence=True) == pytest.approx(1 / 2)  # row 2 has nothing scored
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="plus a vocab dim"):
        token_accuracy(logits[:, :2], targets)
    with pytest.raises(ValueError, match="no position is scored"):
        token_accuracy(logits, torch.full_like(targets, -100))
