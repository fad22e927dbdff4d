"""Linear attention: chunked == recurrent == quadratic == stepping, causality, padding, errors."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from seqlib.models.base import StreamingNotSupported
from seqlib.models.linear_attention import (
    LinearAttentionMixer,
    elu_feature_map,
    linear_attention_chunked,
    linear_attention_quadratic,
    linear_attention_recurrent,
)

D, T, CHUNK = 16, 37, 8  # T is not a multiple of the chunk
TOL = dict(atol=1e-10, rtol=1e-8)


def make(causal=True, **options):
    torch.manual_seed(0)
    return LinearAttentionMixer(D, causal=causal, chunk_size=CHUNK, **options).double()


def inputs(T=T, seed=1):
    torch.manual_seed(seed)
    x = torch.randn(2, T, D, dtype=torch.float64)
    mask = torch.arange(T) < torch.tensor([T, max(T // 2, 1)])[:, None]  # second sequence is right-padded
    return x, mask


def outputs_and_grads(mixer, fn, x, mask=None):
    x = x.clone().requires_grad_(True)
    y = fn(x, mask)
    weights = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    grads = torch.autograd.grad((y * weights).sum(), [x, *mixer.parameters()])
    return y.detach(), grads


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("feature_map", ["elu", "relu"])
@pytest.mark.parametrize("length", [T, 1, 5, 16])  # also T=1, T < chunk_size, a multiple of it
def test_fast_equals_reference_with_gradients(causal, feature_map, length):
    m = make(causal, feature_map=feature_map)
    x, mask = inputs(length)
    y_fast, g_fast = outputs_and_grads(m, m.forward_fast, x, mask)
    y_ref, g_ref = outputs_and_grads(m, m.forward_reference, x, mask)
    assert y_fast.shape == x.shape
    torch.testing.assert_close(y_fast, y_ref, **TOL)
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("causal", [True, False])
def test_three_forms_agree(causal):
    torch.manual_seed(2)
    q, k = (elu_feature_map(torch.randn(2, 3, T, 4, dtype=torch.float64)) for _ in range(2))
    v = torch.randn(2, 3, T, 5, dtype=torch.float64)
    mask = None if causal else inputs()[1]
    quad = linear_attention_quadratic(q, k, v, causal=causal, mask=mask)
    torch.testing.assert_close(linear_attention_recurrent(q, k, v, causal=causal, mask=mask), quad, **TOL)
    if causal:
        for chunk in (1, 8, 64):
            torch.testing.assert_close(linear_attention_chunked(q, k, v, chunk_size=chunk), quad, **TOL)


def elu_plus_one(t):
    return torch.where(t > 0, t + 1, t.exp())  # elu(t) + 1, written out


def relu(t):
    return t.clamp(min=0)


@pytest.mark.parametrize("options, phi", [({}, elu_plus_one), ({"feature_map": "relu"}, relu)])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_mixer_follows_the_module_formula(options, phi, causal, impl):
    """y_t = W_o concat_h phi(q_t).S / (phi(q_t).z + 1e-6), the sums over i <= t (causal) or all i: the default
    feature map (elu + 1), the relu one, and the default eps, written out with einsum."""
    m = make(causal, impl=impl, **options)
    x, _ = inputs(T=6)
    q, k, v = m.qkv(x).view(2, 6, 3, 4, D // 4).unbind(2)  # (B, T, H, d_head) each
    scores = torch.einsum("bthd,bshd->bhts", phi(q), phi(k))  # phi(q_t) . phi(k_s)
    if causal:
        scores = scores.tril()
    y = torch.einsum("bhts,bshd->bthd", scores, v) / (scores.sum(-1).transpose(1, 2)[..., None] + 1e-6)
    torch.testing.assert_close(m(x), m.out(y.reshape(2, 6, D)), atol=1e-12, rtol=1e-10)


def test_impl_option_dispatches():
    x, _ = inputs()
    fast, ref = make(impl="fast"), make(impl="reference")
    torch.testing.assert_close(fast(x), ref(x), **TOL)


def test_stepping_equals_forward():
    m = make()
    x, _ = inputs()
    state = m.init_state(batch_size=2)
    ys = []
    for t in range(T):
        y_t, state = m.step(x[:, t], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), m(x), **TOL)
    assert sum(s[0].numel() for s in state) == m.state_size(T) == 4 * (4 * 4 + 4)


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_causal(impl):
    m = make(impl=impl)
    x, _ = inputs()
    x2 = x.clone()
    x2[:, 20:] += torch.randn_like(x2[:, 20:])
    y, y2 = m(x), m(x2)
    torch.testing.assert_close(y[:, :20], y2[:, :20], **TOL)
    assert (y[:, 20:] - y2[:, 20:]).abs().max() > 1e-3


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_bidirectional_ignores_padding(impl):
    m = make(causal=False, impl=impl)
    x, mask = inputs()
    n = int(mask[1].sum())
    x2 = x.clone()
    x2[1, n:] = 100 * torch.randn_like(x2[1, n:])
    y, y2 = m(x, mask), m(x2, mask)
    torch.testing.assert_close(y[1, :n], y2[1, :n], **TOL)
    torch.testing.assert_close(y[1, :n], m(x[1:, :n])[0], **TOL)  # same as the unpadded sequence alone
    assert (y[1, :n] - m(x[1:])[0, :n]).abs().max() > 1e-3  # without the mask the padding does leak
    assert (y[1, 0] - m(x[1:, :1])[0, 0]).abs().max() > 1e-3  # and it sees the future


class OpDtypes(TorchDispatchMode):
    """Records (op name, output dtype) of every aten operation."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.seen += [(func.overloadpacket.__name__, t.dtype) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out


@pytest.mark.parametrize("causal", [True, False])
def test_feature_maps_and_sums_run_in_float32_under_bf16_autocast(causal):
    m = LinearAttentionMixer(D, causal=causal, chunk_size=CHUNK)
    x, mask = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16), OpDtypes() as probe:
        y = m(x.float(), mask)
    assert y.dtype == torch.bfloat16
    inner = {dtype for name, dtype in probe.seen if name in ("elu", "bmm", "cumsum", "div")}
    assert inner == {torch.float32}


def test_state_is_float32_from_the_start_for_a_bf16_mixer():
    m = LinearAttentionMixer(D).to(torch.bfloat16)
    state = m.init_state(2)
    _, stepped = m.step(torch.randn(2, D, dtype=torch.bfloat16), state)
    assert [s.dtype for s in state] == [s.dtype for s in stepped] == [torch.float32] * 2


class TrilShapes(TorchDispatchMode):
    """Records the shapes of the masked (tril) score blocks."""

    def __init__(self):
        super().__init__()
        self.shapes = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__ == "tril":
            self.shapes.add(tuple(out.shape[-2:]))
        return out


@pytest.mark.parametrize("chunk_size", [4, 16])
def test_fast_path_scores_come_in_chunk_size_blocks(chunk_size):
    """The chunked form's cost is O(T * chunk_size * d): its masked score blocks are chunk_size x chunk_size."""
    m = LinearAttentionMixer(D, chunk_size=chunk_size)
    with TrilShapes() as probe:
        m(torch.randn(1, 64, D))
    assert probe.shapes == {(chunk_size, chunk_size)}


def test_autocast_bf16():
    m = LinearAttentionMixer(D, chunk_size=CHUNK)
    x = torch.randn(2, T, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    ref = m(x)
    assert (y.float() - ref).norm() / ref.norm() < 0.05


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="divisible"):
        LinearAttentionMixer(10, n_heads=4)
    with pytest.raises(ValueError, match="feature_map"):
        LinearAttentionMixer(D, feature_map="softmax")
    with pytest.raises(ValueError, match="chunk_size"):
        LinearAttentionMixer(D, chunk_size=0)
    with pytest.raises(ValueError, match="n_heads"):
        LinearAttentionMixer(D, n_heads=True)
    for eps in (0, -1e-6):
        with pytest.raises(ValueError, match="eps"):
            LinearAttentionMixer(D, eps=eps)
    with pytest.raises(TypeError):
        LinearAttentionMixer(D, n_head=4)  # misspelt option
    with pytest.raises(StreamingNotSupported):
        LinearAttentionMixer(D, causal=False).init_state(2)
    m = make()
    with pytest.raises(ValueError, match="one token"):
        m.step(torch.zeros(2, 3, D, dtype=torch.float64), m.init_state(2))
    with pytest.raises(ValueError, match="d_model"):
        m(torch.zeros(2, 5, D + 1, dtype=torch.float64))
