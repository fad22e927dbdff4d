"""Check that two implementations compute the same thing: outputs and gradients.

The book builds each architecture from its equations and then checks it against the fast implementation
(cuDNN ``nn.LSTM``, ``scaled_dot_product_attention``, a chunked scan...). Equal outputs are not enough:
training uses the gradients, so those are compared too.

>>> y_ours = my_lstm(x); y_ref, _ = nn_lstm(x)
>>> same_outputs_and_grads(y_ours, y_ref, {"x": x, "W": nn_lstm.weight_ih_l0})
{'output': 1.1e-16, 'grad x': 2.2e-16, 'grad W': 4.4e-16}
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["same_outputs_and_grads"]


def same_outputs_and_grads(
    ours: torch.Tensor,
    reference: torch.Tensor,
    wrt: Mapping[str, torch.Tensor],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Assert that ``ours`` equals ``reference`` and so do their gradients w.r.t. each tensor of ``wrt``.

    The gradients are those of ``<ours, p>`` and ``<reference, p>`` for one random projection ``p`` (the same
    for both), so every output element contributes. Both graphs are kept (``retain_graph``). ``atol``/``rtol``
    default to ``torch.testing.assert_close``'s for the dtype. Returns the largest absolute difference of the
    output and of each gradient (``"grad <name>"``); raises ``AssertionError`` naming what differs.
    """
    if ours.shape != reference.shape:
        raise AssertionError(f"output shapes differ: {tuple(ours.shape)} vs {tuple(reference.shape)}")
    if not wrt:
        raise ValueError("wrt is empty: name at least one tensor to differentiate with respect to")
    for name, t in wrt.items():
        if not t.requires_grad:
            raise ValueError(f"{name!r} does not require grad; call .requires_grad_() before computing the outputs")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    probe = torch.randn(ours.shape, generator=gen, dtype=torch.float64).to(ours.device)
    tensors = list(wrt.values())
    g_ours = torch.autograd.grad((ours * probe.to(ours.dtype)).sum(), tensors, retain_graph=True, allow_unused=True)
    g_ref = torch.autograd.grad(
        (reference * probe.to(reference.dtype)).sum(), tensors, retain_graph=True, allow_unused=True
    )
    tol = {} if atol is None and rtol is None else {"atol": atol or 0.0, "rtol": rtol or 0.0}
    diffs = {"output": (ours.detach() - reference.detach()).abs().max().item()}
    torch.testing.assert_close(ours, reference, **tol, msg=lambda m: f"outputs differ: {m}")
    for name, a, b in zip(wrt, g_ours, g_ref, strict=True):
        if a is None or b is None:
            raise AssertionError(f"the gradient w.r.t. {name!r} is missing in {'ours' if a is None else 'reference'}")
        diffs[f"grad {name}"] = (a - b).abs().max().item()
        torch.testing.assert_close(a, b, **tol, msg=lambda m, name=name: f"gradients w.r.t. {name!r} differ: {m}")
    return diffs
