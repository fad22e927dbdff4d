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


class _SwappedBackward(torch.autograd.Function):
    """The identity, with a backward that swaps the two output gradients: equal outputs, a wrong gradient that
    a probe of all ones (the gradient of a plain sum) cannot see."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g.flip(0)


def test_a_wrong_gradient_is_caught_whatever_the_output_elements_it_swaps():
    x = torch.randn(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(AssertionError, match="gradients w.r.t. 'x'"):
        same_outputs_and_grads(_SwappedBackward.apply(x), x * 1.0, {"x": x})


def test_atol_alone_means_no_relative_tolerance():
    x = torch.full((3,), 1000.0, dtype=torch.float64, requires_grad=True)
    with pytest.raises(AssertionError, match="outputs differ"):
        same_outputs_and_grads(x + 0.5, x * 1.0, {"x": x}, atol=1e-3)
    same_outputs_and_grads(x + 0.5, x * 1.0, {"x": x}, atol=1e-3, rtol=1e-3)  # 0.5 < 1e-3 + 1e-3 * 1000


def test_reported_differences_are_the_largest():
    x = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    diffs = same_outputs_and_grads(x + torch.tensor([0.0, 0.0, 0.0, 0.25]), 1.0 * x, {"x": x}, atol=0.5, rtol=0)
    assert diffs == {"output": 0.25, "grad x": 0.0}


def test_a_missing_gradient_is_named():
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(AssertionError, match="gradient w.r.t. 'y' is missing in ours"):
        same_outputs_and_grads(x + 0 * x, x + 0 * y, {"x": x, "y": y})
    with pytest.raises(AssertionError, match="gradient w.r.t. 'y' is missing in reference"):
        same_outputs_and_grads(x + 0 * y, x + 0 * x, {"x": x, "y": y})
