"""Dilated CNN mixer (conv1d == sum over taps, streaming, receptive field) and the Kim CNN classifier."""

import pytest
import torch

from seqlib.models.base import StreamingNotSupported
from seqlib.models.cnn import CNNMixer, CNNModel, KimCNN, receptive_field

D = 5


def make(causal=True, seed=0, **options):
    torch.manual_seed(seed)
    return CNNMixer(D, causal=causal, **options).double()


def right_mask(lengths, T):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)


def run_both(mixer, x, mask):
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


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("kernel_size,layer_idx", [(3, 0), (3, 2), (4, 1), (1, 0)])
def test_reference_equals_fast(causal, with_mask, kernel_size, layer_idx):
    mixer = make(causal, kernel_size=kernel_size, layer_idx=layer_idx)
    x = torch.randn(3, 9, D, dtype=torch.float64)
    mask = right_mask([9, 5, 1], 9) if with_mask else None
    (y1, gx1, gp1), (y2, gx2, gp2) = run_both(mixer, x, mask)
    assert y1.shape == (3, 9, D)
    torch.testing.assert_close(y1, y2, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(gx1, gx2, atol=1e-12, rtol=1e-10)
    for a, b in zip(gp1, gp2, strict=True):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kernel_size,dilation", [(3, 2), (2, 1), (4, 1), (2, 3)])  # even and odd spans
def test_mixer_follows_the_documented_equation(causal, kernel_size, dilation):
    """``u_t = b + sum_j W_j x_{t + j d - left}`` (zeros outside the sequence), ``left = (k-1) d`` when causal and
    ``(k-1) d // 2`` when centred, then ``y_t = W_out (a_t * sigmoid(g_t))`` with ``(a_t, g_t)`` the halves of u_t."""
    mixer = make(causal, kernel_size=kernel_size, dilation=dilation)
    T = 7
    x = torch.randn(2, T, D, dtype=torch.float64)
    span = (kernel_size - 1) * dilation
    left = span if causal else span // 2
    W, b = mixer.conv.weight, mixer.conv.bias  # (2D, D, k), (2D,)
    with torch.no_grad():
        expected = torch.empty(2, T, D, dtype=torch.float64)
        for t in range(T):
            u = b.expand(2, 2 * D)
            for j in range(kernel_size):
                s = t + j * dilation - left
                if 0 <= s < T:
                    u = u + x[:, s] @ W[:, :, j].T
            expected[:, t] = mixer.out_proj(u[:, :D] * torch.sigmoid(u[:, D:]))
        for impl in ("fast", "reference"):
            mixer.impl = impl
            torch.testing.assert_close(mixer(x), expected, atol=1e-12, rtol=0)


def test_dilation_schedule():
    assert [CNNMixer(4, layer_idx=i).dilation for i in range(10)] == [1, 2, 4, 8, 16, 32, 64, 128, 1, 2]
    assert [CNNMixer(4, layer_idx=i, dilation_cycle=3).dilation for i in range(4)] == [1, 2, 4, 1]
    assert CNNMixer(4, layer_idx=5, dilation=3).dilation == 3


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_causality(impl):
    mixer = make(impl=impl, layer_idx=1)
    x = torch.randn(2, 10, D, dtype=torch.float64)
    y = mixer(x)
    t = 4
    x2 = x.clone()
    x2[:, t + 1 :] += torch.randn_like(x2[:, t + 1 :])
    y2 = mixer(x2)
    torch.testing.assert_close(y[:, : t + 1], y2[:, : t + 1], atol=0, rtol=0)
    assert (y[:, t + 1] - y2[:, t + 1]).abs().max() > 1e-6


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("kernel_size", [3, 4])
def test_padding_invariance_bidirectional(impl, kernel_size):
    mixer = make(causal=False, impl=impl, kernel_size=kernel_size, layer_idx=1)
    lengths, T = [9, 6, 2], 9
    x = torch.randn(3, T, D, dtype=torch.float64)
    mask = right_mask(lengths, T)
    x2 = torch.where(mask[..., None], x, torch.randn_like(x) * 10)
    y, y2 = mixer(x, mask), mixer(x2, mask)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(y[b, :n], y2[b, :n], atol=1e-12, rtol=0)
        torch.testing.assert_close(y[b, :n], mixer(x[b : b + 1, :n])[0], atol=1e-12, rtol=0)
    # without the mask the padding does leak into the last real outputs of the short sequences
    assert (mixer(x)[1, :6] - mixer(x2)[1, :6]).abs().max() > 1e-6


@pytest.mark.parametrize("kernel_size,layer_idx", [(3, 0), (3, 2), (2, 1), (1, 0)])
def test_step_equals_forward(kernel_size, layer_idx):
    mixer = make(kernel_size=kernel_size, layer_idx=layer_idx)
    x = torch.randn(2, 11, D, dtype=torch.float64)
    y = mixer(x)
    state = mixer.init_state(2)
    assert state.numel() == 2 * mixer.state_size(11) == 2 * (kernel_size - 1) * mixer.dilation * D
    ys = []
    for t in range(x.shape[1]):
        y_t, state = mixer.step(x[:, t], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y, atol=1e-12, rtol=0)
    assert mixer.state_size(10) == mixer.state_size(10_000)


def test_receptive_field_formula():
    assert receptive_field(3, [1, 2, 4, 8]) == 31
    assert receptive_field(2, []) == 1
    assert receptive_field(5, [1]) == 5
    with pytest.raises(ValueError):
        receptive_field(0, [1])
    with pytest.raises(ValueError):
        receptive_field(3, [0])


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kernel_size,n_layers,cycle", [(3, 3, 8), (2, 4, 8), (3, 4, 2)])
def test_receptive_field_equals_gradient_reach(causal, kernel_size, n_layers, cycle):
    torch.manual_seed(0)
    stack = [
        CNNMixer(D, causal=causal, layer_idx=i, kernel_size=kernel_size, dilation_cycle=cycle).double()
        for i in range(n_layers)
    ]
    rf = receptive_field(kernel_size, [m.dilation for m in stack])
    assert 1 + sum(m.receptive_field - 1 for m in stack) == rf  # each layer's own reach adds up
    T = rf + 6
    x = torch.randn(1, T, D, dtype=torch.float64, requires_grad=True)
    y = x
    for m in stack:
        y = m(y)
    t_out = T - 1 if causal else T // 2
    y[0, t_out].sum().backward()
    reach = (x.grad[0].abs().sum(-1) > 0).nonzero().flatten().tolist()
    assert len(reach) == rf
    assert reach == list(range(reach[0], reach[0] + rf))  # contiguous
    if causal:
        assert reach[-1] == t_out


def test_cnn_mixer_errors():
    with pytest.raises(ValueError, match="kernel_size"):
        CNNMixer(D, kernel_size=0)
    with pytest.raises(ValueError, match="dilation"):
        CNNMixer(D, dilation=0)
    with pytest.raises(ValueError, match="dilation_cycle"):
        CNNMixer(D, dilation_cycle=0)
    with pytest.raises(TypeError):
        CNNMixer(D, bogus=1)
    m = make()
    with pytest.raises(ValueError, match="state"):
        m.step(torch.randn(2, D, dtype=torch.float64), torch.zeros(2, 1, D))
    with pytest.raises(StreamingNotSupported):
        make(causal=False).init_state(2)


def test_cnn_mixer_bf16_autocast_runs():
    torch.manual_seed(0)
    for causal in (True, False):
        m = CNNMixer(D, causal=causal, layer_idx=1)
        x = torch.randn(2, 7, D)
        for impl in ("fast", "reference"):
            m.impl = impl
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = m(x, right_mask([7, 4], 7))
            assert y.shape == (2, 7, D) and torch.isfinite(y).all()
    m = CNNMixer(D, layer_idx=1)
    state = m.init_state(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for t in range(3):
            y_t, state = m.step(x[:, t], state)
    assert y_t.shape == (2, D) and state.shape == (2, 4, D) and torch.isfinite(y_t).all()


# ------------------------------------------------------------------------------------------ KimCNN
def test_kim_cnn_shape_and_padding_invariance():
    torch.manual_seed(0)
    model = KimCNN(50, 8, 4, [2, 3, 5], num_classes=3, dropout=0.5).double().eval()
    lengths, T = [10, 6, 1], 10
    mask = right_mask(lengths, T)
    tokens = torch.randint(1, 50, (3, T))
    out = model(tokens, mask)
    assert out.shape == (3, 3)
    other = torch.where(mask, tokens, torch.randint(0, 50, (3, T)))  # different padding tokens
    torch.testing.assert_close(model(other, mask), out, atol=1e-12, rtol=0)
    for b, n in enumerate(lengths):  # equals the unpadded sequence alone (also shorter than the widest kernel)
        torch.testing.assert_close(model(tokens[b : b + 1, :n])[0], out[b], atol=1e-12, rtol=0)
    # without the mask, padding changes the result of the short sequences
    assert (model(other)[1:] - model(tokens)[1:]).abs().max() > 1e-8


def test_kim_cnn_gradients_and_train_mode():
    model = KimCNN(20, 6, 3, [3, 4])
    tokens = torch.randint(0, 20, (4, 7))
    out = model(tokens, right_mask([7, 7, 3, 2], 7))
    out.sum().backward()
    assert torch.isfinite(out).all() and model.embed.weight.grad.abs().sum() > 0


def test_kim_cnn_bad_input():
    model = KimCNN(20, 6, 3, [3, 4])
    with pytest.raises(ValueError, match=r"\[0, 20\)"):
        model(torch.tensor([[1, 2, 20]]))
    with pytest.raises(ValueError, match=r"\[0, 20\)"):
        model(torch.tensor([[1, -1, 2]]))
    with pytest.raises(ValueError, match="int64"):
        model(torch.tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="int64"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="mask"):
        model(torch.tensor([[1, 2, 3]]), torch.tensor([[1, 1, 0]]))
    with pytest.raises(ValueError, match="right-padded"):
        model(torch.tensor([[1, 2, 3]]), torch.tensor([[True, False, True]]))
    with pytest.raises(ValueError, match="at least one real token"):
        model(torch.tensor([[1, 2, 3]]), torch.tensor([[False, False, False]]))
    with pytest.raises(ValueError, match="kernel_sizes"):
        KimCNN(20, 6, 3, [])


def test_outline_cnn_model_runs_with_outline_args():
    model = CNNModel(1000, 64, 32, [3, 4, 5])
    assert model.fc.out_features == 2  # the outline had vocab_size (1000) outputs
    assert isinstance(model, KimCNN)
    out = model(torch.randint(0, 1000, (2, 12)))
    assert out.shape == (2, 2)
