"""Hybrids: conv + attention, attention with a recurrent memory, and the outline's two classes, fixed."""

from __future__ import annotations

import pytest
import torch
from torch.utils._pytree import tree_leaves

from seqlib.models.base import StreamingNotSupported
from seqlib.models.hybrid import ConvTransformer, ConvTransformerMixer, RecurrentMemoryMixer, TransformerWithRecurrence

D = 16
ATOL = 1e-10


def make(cls, causal=True, **kw):
    torch.manual_seed(0)
    return cls(D, causal=causal, **kw).double()


def padded_mask(B, T, lengths):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T), True = real


def assert_fast_equals_reference(mixer, x, mask=None):
    params = list(mixer.parameters())
    g = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    out = []
    for fn in (mixer.forward_fast, mixer.forward_reference):
        xi = x.detach().clone().requires_grad_(True)
        y = fn(xi, mask)
        grads = torch.autograd.grad((y * g).sum(), [xi, *params], allow_unused=True)
        out.append((y, [torch.zeros_like(p) if gr is None else gr for gr, p in zip(grads, [xi, *params], strict=True)]))
    (yf, gf), (yr, gr) = out
    torch.testing.assert_close(yf, yr, atol=ATOL, rtol=0)
    for a, b in zip(gf, gr, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    assert gf[0].abs().sum() > 0


def run_steps(mixer, x):
    state = mixer.init_state(x.shape[0])
    ys, sizes = [], []
    for t in range(x.shape[1]):
        y, state = mixer.step(x[:, t], state)
        ys.append(y)
        sizes.append(sum(s.numel() for s in tree_leaves(state) if isinstance(s, torch.Tensor)) // x.shape[0])
    return torch.stack(ys, dim=1), sizes


MIXERS = [
    pytest.param(ConvTransformerMixer, {}, id="conv_transformer"),
    pytest.param(ConvTransformerMixer, {"kernel_size": 4, "depthwise": False}, id="conv_transformer-full-k4"),
    pytest.param(ConvTransformerMixer, {"kernel_size": 1, "rope": False}, id="conv_transformer-k1"),
    pytest.param(RecurrentMemoryMixer, {"segment_len": 4, "memory_size": 3}, id="recurrent_transformer"),
    pytest.param(RecurrentMemoryMixer, {"segment_len": 32, "memory_size": 1, "n_heads": 2}, id="recurrent-one-seg"),
]


# ---------------------------------------------------------------- both mixers
@pytest.mark.parametrize("cls, kw", MIXERS)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("with_mask", [False, True])
def test_fast_equals_reference(cls, kw, causal, with_mask):
    mixer = make(cls, causal, **kw)
    x = torch.randn(3, 11, D, dtype=torch.float64)  # 11: not a multiple of the segment length
    mask = padded_mask(3, 11, [11, 6, 1]) if with_mask else None
    assert_fast_equals_reference(mixer, x, mask)


@pytest.mark.parametrize("cls, kw", MIXERS)
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_step_equals_forward(cls, kw, impl):
    mixer = make(cls, impl=impl, **kw)
    x = torch.randn(2, 10, D, dtype=torch.float64)
    y_steps, sizes = run_steps(mixer, x)
    torch.testing.assert_close(y_steps, mixer(x), atol=ATOL, rtol=0)
    assert sizes == [mixer.state_size(t + 1) for t in range(10)]  # state_size counts what the state holds


@pytest.mark.parametrize("cls, kw", MIXERS)
def test_causal_output_ignores_the_future(cls, kw):
    mixer = make(cls, **kw)
    x = torch.randn(2, 12, D, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 6:] += torch.randn(2, 6, D, dtype=torch.float64)
    y, y2 = mixer(x), mixer(x2)
    torch.testing.assert_close(y[:, :6], y2[:, :6], atol=ATOL, rtol=0)
    assert not torch.allclose(y[:, 6:], y2[:, 6:])


@pytest.mark.parametrize("cls, kw", MIXERS)
def test_padding_invariance_bidirectional(cls, kw):
    mixer = make(cls, causal=False, **kw)
    x = torch.randn(2, 11, D, dtype=torch.float64)
    mask = padded_mask(2, 11, [11, 6])
    x2 = x.clone()
    x2[1, 6:] = 100 * torch.randn(5, D, dtype=torch.float64)
    y, y2 = mixer(x, mask), mixer(x2, mask)
    torch.testing.assert_close(y[1, :6], y2[1, :6], atol=ATOL, rtol=0)
    torch.testing.assert_close(y[1, :6], mixer(x[1:, :6])[0], atol=ATOL, rtol=0)


@pytest.mark.parametrize("cls, kw", MIXERS)
def test_float32_and_bf16_autocast(cls, kw):
    torch.manual_seed(0)
    mixer = cls(D, **kw)
    x = torch.randn(2, 9, D)
    y32 = mixer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mixer(x)
        _, state = mixer.step(x[:, 0], mixer.init_state(2))
        y_t, _ = mixer.step(x[:, 1], state)
    assert y32.dtype == torch.float32 and torch.isfinite(y).all() and torch.isfinite(y_t).all()
    torch.testing.assert_close(y.float(), y32, atol=0.1, rtol=0.1)


def test_conv_branch_is_local_and_attention_map_delegates():
    mixer = make(ConvTransformerMixer, causal=False, kernel_size=3)
    x = torch.randn(1, 9, D, dtype=torch.float64, requires_grad=True)
    mixer.conv_fast(x, None)[0, 4].sum().backward()
    assert (x.grad[0].abs().sum(-1) > 0).nonzero().flatten().tolist() == [3, 4, 5]  # "same": centred
    w = mixer.attention_map(x.detach())
    assert w.shape == (1, 4, 9, 9)


# ---------------------------------------------------------------- recurrent memory
def test_recurrent_memory_is_bounded():
    L, m = 4, 3
    mixer = make(RecurrentMemoryMixer, segment_len=L, memory_size=m)
    _, sizes = run_steps(mixer, torch.randn(2, 4 * L, D, dtype=torch.float64))
    # after each complete segment the state is back to just the memory: constant across segments
    assert sizes[L - 1 :: L] == [m * D] * 4
    assert max(sizes) == m * D + 2 * (L - 1) * D
    assert mixer.state_size(1000 * L + 2) == mixer.state_size(2)
    _, mem = mixer.forward_with_memory(torch.randn(2, 10 * L, D, dtype=torch.float64))
    assert mem.shape == (2, m, D)


def test_recurrent_gradient_stops_at_segment_boundaries():
    L = 4
    mixer = make(RecurrentMemoryMixer, segment_len=L, memory_size=2)
    x = torch.randn(2, 3 * L, D, dtype=torch.float64, requires_grad=True)
    y = mixer(x)
    y[:, 2 * L :].sum().backward()  # the loss of segment 2
    reach = x.grad.abs().sum(dim=(0, 2))
    assert (reach[: 2 * L] == 0).all()  # nothing reaches segments 0 and 1 ...
    assert (reach[2 * L :] > 0).all()
    # ... but the memory writer still learns, from the segment that reads what it wrote
    for p in (*mixer.update.parameters(), mixer.read_query):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert mixer.memory_init.grad.abs().sum() == 0  # M_0 is read by segment 0 only
    # and the memory does carry information forward: segment 2 depends on segment 0 (through values)
    x2 = x.detach().clone()
    x2[:, :L] += 1.0
    assert not torch.allclose(mixer(x2)[:, 2 * L :], y[:, 2 * L :])


def test_recurrent_bidirectional_memory_flows_forward_only():
    L = 4
    mixer = make(RecurrentMemoryMixer, causal=False, segment_len=L, memory_size=2)
    x = torch.randn(1, 3 * L, D, dtype=torch.float64)
    x2 = x.clone()
    x2[:, L + 3] += 1.0  # the last token of segment 1
    y, y2 = mixer(x), mixer(x2)
    torch.testing.assert_close(y[:, :L], y2[:, :L], atol=ATOL, rtol=0)  # segment 0: untouched
    assert not torch.allclose(y[:, L], y2[:, L])  # bidirectional within segment 1


def test_recurrent_is_batch_safe():
    mixer = make(RecurrentMemoryMixer, segment_len=4, memory_size=2)
    xa, xb = torch.randn(3, 10, D, dtype=torch.float64), torch.randn(5, 10, D, dtype=torch.float64)
    ya, yb = mixer(xa), mixer(xb)  # consecutive calls with different batch sizes
    torch.testing.assert_close(mixer(xa), ya, atol=0, rtol=0)  # nothing kept on the module between calls
    torch.testing.assert_close(mixer(xa[1:2]), ya[1:2], atol=ATOL, rtol=0)  # a sample ignores its batch mates
    torch.testing.assert_close(mixer(torch.cat([xb[:2], xa[1:2]]))[2], ya[1], atol=ATOL, rtol=0)
    assert yb.shape == (5, 10, D)


def test_recurrent_attention_map():
    m, L = 2, 4
    mixer = make(RecurrentMemoryMixer, segment_len=L, memory_size=m)
    w = mixer.attention_map(torch.randn(1, 10, D, dtype=torch.float64))
    assert w.shape == (1, 4, 10, m + 10)
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 4, 10, dtype=torch.float64))
    assert (w[:, :, 5, m + 6 :] == 0).all() and (w[:, :, 5, m : m + 4] == 0).all()  # own segment, causal
    assert (w[:, :, 5, m + 4 : m + 6] > 0).all()


# ---------------------------------------------------------------- the outline's classes
def test_outline_conv_transformer():
    torch.manual_seed(0)
    layer = ConvTransformer(64, 4)
    x = torch.randn(2, 20, 64)
    assert layer(x).shape == (2, 20, 64)
    assert not layer.mixer.causal
    with torch.no_grad():  # a residual layer: zero the output projection and it is the identity
        layer.mixer.out.weight.zero_()
        layer.mixer.out.bias.zero_()
    torch.testing.assert_close(layer(x), x)
    causal = ConvTransformer(64, 4, kernel_size=5, causal=True)
    x2 = x.clone()
    x2[:, 10:] += 1.0
    torch.testing.assert_close(causal(x)[:, :10], causal(x2)[:, :10])
    assert causal.mixer.conv.groups == 1  # the outline's full D -> D convolution


def test_outline_transformer_with_recurrence():
    torch.manual_seed(0)
    layer = TransformerWithRecurrence(64, 4, memory_size=8)
    x = torch.randn(2, 20, 64)
    out, mem = layer(x)
    assert out.shape == x.shape  # the positions of x only (the outline returned the memory's too)
    assert mem.shape == (2, 8, 64) and not mem.requires_grad
    for _ in range(3):  # the memory stays memory_size slots, call after call
        out, mem = layer(torch.randn(2, 7, 64), mem)
    assert mem.shape == (2, 8, 64)
    out3, mem3 = layer(torch.randn(3, 5, 64))  # a new batch size: fine, nothing stored on the module
    assert out3.shape == (3, 5, 64) and mem3.shape == (3, 8, 64)
    y_fresh, _ = layer(x)
    y_mem, _ = layer(x, mem)
    assert not torch.allclose(y_fresh, y_mem)  # the memory is used
    with pytest.raises(ValueError, match="memory"):
        layer(x, mem3)  # memory of batch 3 for a batch of 2


def test_outline_transformer_with_recurrence_trains_across_calls():
    torch.manual_seed(0)
    layer = TransformerWithRecurrence(16, 2, memory_size=4, segment_len=4).double()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    mem = None
    for _ in range(3):  # a truncated-BPTT loop: the carried memory never drags the old graph along
        x = torch.randn(2, 8, 16, dtype=torch.float64, requires_grad=True)
        out, mem = layer(x, mem)
        opt.zero_grad()
        out.pow(2).mean().backward()
        opt.step()
    assert layer.mixer.update.weight_ih.grad.abs().sum() > 0  # the GRU writer learns within a call


def test_outline_transformer_with_recurrence_padding_does_not_reach_memory():
    torch.manual_seed(0)
    layer = TransformerWithRecurrence(16, 2, memory_size=3, segment_len=4).double()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    mask = padded_mask(2, 11, [11, 6])
    x[1, 6:] = 50.0
    out, mem = layer(x, mask=mask)
    out_alone, mem_alone = layer(x[1:, :6])
    torch.testing.assert_close(out[1, :6], out_alone[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(mem[1], mem_alone[0], atol=ATOL, rtol=0)


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="kernel_size"):
        ConvTransformerMixer(D, kernel_size=0)
    with pytest.raises(ValueError, match="segment_len"):
        RecurrentMemoryMixer(D, segment_len=0)
    with pytest.raises(ValueError, match="memory_size"):
        RecurrentMemoryMixer(D, memory_size=0)
    with pytest.raises(ValueError, match="segment_len"):
        TransformerWithRecurrence(D, 4, memory_size=2, segment_len=-1)
    with pytest.raises(ValueError, match="n_heads"):
        ConvTransformer(D, 5)
    with pytest.raises(TypeError):
        RecurrentMemoryMixer(D, memory=4)  # unknown option
    mixer = RecurrentMemoryMixer(D, memory_size=2)
    with pytest.raises(ValueError, match=r"memory must have shape"):
        mixer.forward_with_memory(torch.randn(2, 5, D), torch.randn(2, 3, D))
    with pytest.raises(ValueError, match="rank"):
        mixer(torch.randn(5, D))
    with pytest.raises(ValueError, match="at least one token"):
        mixer(torch.randn(2, 0, D))
    with pytest.raises(ValueError, match="one token"):
        mixer.step(torch.randn(2, 1, D), mixer.init_state(2))
    with pytest.raises(StreamingNotSupported):
        ConvTransformerMixer(D, causal=False).init_state(2)
    with pytest.raises(StreamingNotSupported):
        RecurrentMemoryMixer(D, causal=False).step(torch.randn(2, D), {})


@pytest.mark.parametrize("cls", [ConvTransformer, TransformerWithRecurrence])
def test_outline_layers_are_pre_norm_residual(cls):
    torch.manual_seed(0)
    layer = cls(D, 4, 3).double() if cls is ConvTransformer else cls(D, 4, memory_size=2, segment_len=3).double()
    x = torch.randn(2, 7, D, dtype=torch.float64)

    def update(x):
        y = layer(x)
        return (y[0] if isinstance(y, tuple) else y) - x

    # LayerNorm first: scaling the input leaves the update unchanged (up to the norm's eps, made negligible)
    layer.norm.eps = 1e-12
    torch.testing.assert_close(update(5.0 * x), update(x), atol=1e-9, rtol=0)
    with torch.no_grad():  # a mixer that outputs zeros leaves x as it was: the residual
        layer.mixer.out.weight.zero_()
        layer.mixer.out.bias.zero_()
    y = layer(x)
    torch.testing.assert_close(y[0] if isinstance(y, tuple) else y, x, atol=0, rtol=0)


def test_outline_transformer_with_recurrence_without_segment_len_is_one_segment_per_call():
    torch.manual_seed(0)
    whole = TransformerWithRecurrence(8, 2, memory_size=2).double()  # segment_len None: the mixer's default is 64
    torch.manual_seed(0)
    one = TransformerWithRecurrence(8, 2, memory_size=2, segment_len=70).double()
    one.load_state_dict(whole.state_dict())
    x = torch.randn(1, 70, 8, dtype=torch.float64)
    for a, b in zip(whole(x), one(x), strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_conv_transformer_centred_convolution_is_torch_same_padding():
    # an even kernel puts the extra tap on the right, as Conv1d(padding="same") does
    for k in (2, 4, 5):
        mixer = make(ConvTransformerMixer, causal=False, kernel_size=k, depthwise=False)
        x = torch.randn(2, 9, D, dtype=torch.float64)
        expected = torch.nn.functional.conv1d(x.transpose(1, 2), mixer.conv.weight, mixer.conv.bias, padding="same")
        torch.testing.assert_close(mixer.conv_fast(x, None), expected.transpose(1, 2), atol=ATOL, rtol=0)
