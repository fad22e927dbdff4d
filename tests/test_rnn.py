"""LSTM and GRU mixers: cell from the equations == cuDNN-style nn.LSTM/nn.GRU, streaming, masks."""

import pytest
import torch
from torch import nn

from seqlib.models.base import StreamingNotSupported
from seqlib.models.rnn import GRUMixer, LSTMMixer, gru_cell, lstm_cell

D = 6
MIXER_CLASSES = [LSTMMixer, GRUMixer]


def make(cls, causal=True, seed=0, **options):
    torch.manual_seed(seed)
    return cls(D, causal=causal, **options).double()


def right_mask(lengths, T):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)


def run_both(mixer, x, mask):
    """Outputs and gradients (input and every parameter) of the fast and the reference path."""
    results = []
    g = torch.randn(x.shape[0], x.shape[1], D, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    for impl in ("fast", "reference"):
        mixer.impl = impl
        mixer.zero_grad()
        xi = x.clone().requires_grad_(True)
        y = mixer(xi, mask)
        (y * g).sum().backward()
        results.append((y.detach(), xi.grad, [p.grad.clone() for p in mixer.parameters()]))
    mixer.impl = "fast"
    return results


@pytest.mark.parametrize("cls", MIXER_CLASSES)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("with_mask", [False, True])
def test_reference_equals_fast(cls, causal, with_mask):
    mixer = make(cls, causal)
    x = torch.randn(3, 7, D, dtype=torch.float64)
    mask = right_mask([7, 4, 1], 7) if with_mask else None
    (y1, gx1, gp1), (y2, gx2, gp2) = run_both(mixer, x, mask)
    assert y1.shape == (3, 7, D)
    torch.testing.assert_close(y1, y2, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(gx1, gx2, atol=1e-10, rtol=1e-9)
    assert len(gp1) == len(list(mixer.parameters())) >= 5
    for a, b in zip(gp1, gp2, strict=True):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


def test_cells_match_torch_cells():
    torch.manual_seed(0)
    x, h, c = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5)
    c = c.double()
    cell = nn.LSTMCell(4, 5).double()
    h1, c1 = lstm_cell(x, h, c, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    h2, c2 = cell(x, (h, c))
    torch.testing.assert_close(h1, h2, atol=1e-12, rtol=0)
    torch.testing.assert_close(c1, c2, atol=1e-12, rtol=0)
    gcell = nn.GRUCell(4, 5).double()
    h3 = gru_cell(x, h, gcell.weight_ih, gcell.weight_hh, gcell.bias_ih, gcell.bias_hh)
    torch.testing.assert_close(h3, gcell(x, h), atol=1e-12, rtol=0)


@pytest.mark.parametrize("cls", MIXER_CLASSES)
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_causality(cls, impl):
    mixer = make(cls, impl=impl)
    x = torch.randn(2, 8, D, dtype=torch.float64)
    y = mixer(x)
    t = 3
    x2 = x.clone()
    x2[:, t + 1 :] += torch.randn_like(x2[:, t + 1 :])
    y2 = mixer(x2)
    torch.testing.assert_close(y[:, : t + 1], y2[:, : t + 1], atol=0, rtol=0)
    assert (y[:, t + 1 :] - y2[:, t + 1 :]).abs().max() > 1e-6


@pytest.mark.parametrize("cls", MIXER_CLASSES)
def test_bidirectional_sees_the_future(cls):
    mixer = make(cls, causal=False)
    x = torch.randn(2, 8, D, dtype=torch.float64)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert (mixer(x)[:, 0] - mixer(x2)[:, 0]).abs().max() > 1e-8


@pytest.mark.parametrize("cls", MIXER_CLASSES)
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_padding_invariance_bidirectional(cls, impl):
    mixer = make(cls, causal=False, impl=impl)
    lengths, T = [8, 5, 2], 8
    x = torch.randn(3, T, D, dtype=torch.float64)
    mask = right_mask(lengths, T)
    x2 = torch.where(mask[..., None], x, torch.randn_like(x) * 10)  # different padding contents
    y, y2 = mixer(x, mask), mixer(x2, mask)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(y[b, :n], y2[b, :n], atol=1e-12, rtol=0)
        # equal to running the unpadded sequence alone
        torch.testing.assert_close(y[b, :n], mixer(x[b : b + 1, :n])[0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("cls", MIXER_CLASSES)
def test_bidirectional_sequence_without_real_tokens(cls):
    """A mask row with no real token: both paths give ``W_out 0 + b_out`` there and the other rows are unchanged."""
    mixer = make(cls, causal=False)
    x = torch.randn(2, 5, D, dtype=torch.float64)
    mask = right_mask([5, 0], 5)
    for impl in ("fast", "reference"):
        mixer.impl = impl
        y = mixer(x, mask)
        torch.testing.assert_close(y[1], mixer.out_proj.bias.expand(5, D), atol=1e-12, rtol=0)
        torch.testing.assert_close(y[0], mixer(x[:1])[0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("cls", MIXER_CLASSES)
def test_step_equals_forward(cls):
    mixer = make(cls)
    x = torch.randn(2, 6, D, dtype=torch.float64)
    y = mixer(x)
    state = mixer.init_state(2)
    ys = []
    for t in range(x.shape[1]):
        y_t, state = mixer.step(x[:, t], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y, atol=1e-12, rtol=0)


def test_state_size_and_state_shapes():
    lstm, gru = make(LSTMMixer), make(GRUMixer, hidden_size=9)
    assert lstm.state_size(1) == lstm.state_size(10_000) == 2 * D
    assert gru.state_size(5) == 9
    h, c = lstm.init_state(3)
    assert h.shape == c.shape == (3, D) and h.dtype == torch.float64
    assert gru.init_state(3).shape == (3, 9)
    assert sum(s.numel() for s in lstm.init_state(1)) == lstm.state_size(100)
    bi = make(LSTMMixer, causal=False)
    assert bi.hidden_size == D // 2 and bi.out_proj.in_features == D


def test_bad_input_errors():
    lstm = make(LSTMMixer)
    with pytest.raises(ValueError, match="hidden_size"):
        LSTMMixer(D, hidden_size=0)
    with pytest.raises(TypeError):
        LSTMMixer(D, bogus=1)
    with pytest.raises(ValueError, match="d_model"):
        lstm(torch.randn(2, 3, D + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="right-padded"):
        lstm(torch.randn(1, 3, D, dtype=torch.float64), torch.tensor([[False, True, True]]))
    with pytest.raises(ValueError, match="step expects"):
        lstm.step(torch.randn(2, 3, D, dtype=torch.float64), lstm.init_state(2))
    with pytest.raises(ValueError, match="tuple"):
        lstm.step(torch.randn(2, D, dtype=torch.float64), torch.zeros(2, D))
    with pytest.raises(ValueError, match="shape"):
        make(GRUMixer).step(torch.randn(2, D, dtype=torch.float64), torch.zeros(3, D))
    with pytest.raises(StreamingNotSupported):
        make(GRUMixer, causal=False).init_state(2)


def test_float32_and_bf16_autocast_run():
    torch.manual_seed(0)
    for cls in MIXER_CLASSES:
        for causal in (True, False):
            mixer = cls(D, causal=causal)
            x = torch.randn(2, 5, D)
            mask = right_mask([5, 3], 5)
            for impl in ("fast", "reference"):
                mixer.impl = impl
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    y = mixer(x, mask)
                assert y.shape == (2, 5, D) and torch.isfinite(y).all()
            mixer.impl = "fast"
            y32 = mixer(x, mask)
            mixer.impl = "reference"
            torch.testing.assert_close(mixer(x, mask), y32, atol=1e-5, rtol=1e-4)


def test_library_recurrence_leaves_autocast_unless_float16_on_a_gpu(monkeypatch):
    from seqlib.models import rnn

    assert not rnn._recurrence_outside_autocast("cpu")  # autocast off: nothing to leave
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert rnn._recurrence_outside_autocast("cpu")
    # On a GPU (simulated): bf16 autocast would give cuDNN's RNN float16 without loss scaling; fp16 is the trainer's
    # scaled mode and stays
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda device_type=None: device_type == "cuda")
    for dtype, leaves in ((torch.bfloat16, True), (torch.float16, False)):
        monkeypatch.setattr(torch, "get_autocast_dtype", lambda device_type, dtype=dtype: dtype)
        assert rnn._recurrence_outside_autocast("cuda") is leaves
