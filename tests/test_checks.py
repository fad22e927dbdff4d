import pytest
import torch
from torch import nn

from seqlib.checks import same_outputs_and_grads


def test_equal_implementations_pass_and_report_differences():
    torch.manual_seed(0)
    lin = nn.Linear(3, 4).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    ours = x @ lin.weight.T + lin.bias
    diffs = same_outputs_and_grads(ours, lin(x), {"x": x, "weight": lin.weight, "bias": lin.bias})
    assert set(diffs) == {"output", "grad x", "grad weight", "grad bias"}
    assert all(v < 1e-12 for v in diffs.values())


def test_a_wrong_gradient_fails_even_when_outputs_agree():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    ours = torch.relu(x)
    wrong = x.clamp(min=0).detach() + 0 * x  # same values, zero gradient
    with pytest.raises(AssertionError, match="gradients w.r.t. 'x'"):
        same_outputs_and_grads(ours, wrong, {"x": x})


def test_different_outputs_fail():
    x = torch.randn(5, requires_grad=True)
    with pytest.raises(AssertionError, match="outputs differ"):
        same_outputs_and_grads(x * 2, x * 2.01, {"x": x})
    with pytest.raises(AssertionError, match="shapes"):
        same_outputs_and_grads(x, x[:4], {"x": x})


def test_bad_wrt():
    x = torch.randn(3)
    with pytest.raises(ValueError, match="require grad"):
        same_outputs_and_grads(x, x, {"x": x})
    with pytest.raises(ValueError, match="empty"):
        same_outputs_and_grads(x, x, {})
