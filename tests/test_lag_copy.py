"""The lag-copy task (seqlib.data.synthetic.lag_copy): layout, an oracle that scores 100%, seeding, bad
arguments, and the receptive-field cliff of a causal CNN (a stack that cannot see ``lag`` steps back has no
gradient path to the answer)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqlib.analysis import MixerStack
from seqlib.data.synthetic import IGNORE_INDEX, SYNTHETIC_TASKS, lag_copy, token_accuracy
from seqlib.models import receptive_field


@pytest.mark.parametrize("lag", [1, 3, 7])
def test_layout_and_oracle(lag):
    x, y = lag_copy(16, 20, lag=lag, vocab_size=5, seed=2)
    assert x.shape == y.shape == (16, 20) and x.dtype == y.dtype == torch.long
    assert 0 <= int(x.min()) and int(x.max()) < 5
    assert (y[:, :lag] == IGNORE_INDEX).all() and (y[:, lag:] >= 0).all()
    pred = torch.roll(x, lag, dims=1)  # the oracle: the token lag steps back
    assert token_accuracy(F.one_hot(pred, 5).float(), y) == 1.0
    shifted = torch.roll(x, lag + 1, dims=1)  # one step too far: about chance
    assert token_accuracy(F.one_hot(shifted, 5).float(), y) < 0.5


def test_registry_seeding_and_errors():
    assert SYNTHETIC_TASKS["lag_copy"] is lag_copy
    a, b, c = lag_copy(4, 12, seed=1), lag_copy(4, 12, seed=1), lag_copy(4, 12, seed=2)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert lag_copy(2, 5, lag=4)[0].shape == (2, 5)
    with pytest.raises(ValueError, match="at least 5"):
        lag_copy(2, 4, lag=4)
    with pytest.raises(ValueError, match="lag must be a positive int"):
        lag_copy(2, 10, lag=0)
    with pytest.raises(ValueError, match="vocab_size"):
        lag_copy(2, 10, vocab_size=1)


def test_answer_beyond_the_receptive_field_is_out_of_reach():
    torch.manual_seed(0)
    stack = MixerStack("cnn", 2, 8)  # kernel 3, dilations 1, 2
    rf = receptive_field(3, [1, 2])
    x = torch.randn(1, 16, 8, requires_grad=True)
    stack(x)[0, -1].sum().backward()
    g = x.grad[0].norm(dim=-1).flip(0)  # index = distance back
    assert (g[:rf] > 0).all() and (g[rf:] == 0).all()
