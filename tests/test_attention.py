"""Self-attention, cross-attention and sliding-window attention: fast == reference, step == forward, masks."""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from seqlib.models.attention import AttentionMixer, CrossAttention, apply_rope, attention
from seqlib.models.base import StreamingNotSupported
from seqlib.models.local_attention import SlidingWindowMixer, band_mask, sliding_window_attention

D = 16
ATOL = 1e-10


def make(cls, causal=True, **kw):
    torch.manual_seed(0)
    return cls(D, causal=causal, **kw).double()


def padded_mask(B, T, lengths):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T), True = real


def fast_and_reference(mixer, x, mask=None):
    """Outputs and gradients (w.r.t. x and every parameter) of both implementations."""
    params = list(mixer.parameters())
    g = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    results = []
    for fn in (mixer.forward_fast, mixer.forward_reference):
        xi = x.detach().clone().requires_grad_(True)
        y = fn(xi, mask)
        grads = torch.autograd.grad((y * g).sum(), [xi, *params], allow_unused=True)
        grads = [torch.zeros_like(p) if gr is None else gr for gr, p in zip(grads, [xi, *params], strict=True)]
        results.append((y.detach(), grads))
    return results


def assert_fast_equals_reference(mixer, x, mask=None):
    (yf, gf), (yr, gr) = fast_and_reference(mixer, x, mask)
    torch.testing.assert_close(yf, yr, atol=ATOL, rtol=0)
    for a, b in zip(gf, gr, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    assert gf[0].abs().sum() > 0


def run_steps(mixer, x):
    state = mixer.init_state(x.shape[0])
    ys = []
    for t in range(x.shape[1]):
        y, state = mixer.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, dim=1), state


def state_numbers(state) -> int:
    return sum(t.numel() for t in tree_leaves(state) if isinstance(t, torch.Tensor))


MIXERS = [
    pytest.param(AttentionMixer, {}, id="transformer"),
    pytest.param(AttentionMixer, {"rope": False, "n_heads": 2}, id="transformer-norope"),
    pytest.param(SlidingWindowMixer, {"window": 4}, id="longformer-w4"),
    pytest.param(SlidingWindowMixer, {"window": 64}, id="longformer-w64"),
]


# ---------------------------------------------------------------- building blocks
def test_attention_function_equals_sdpa():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, dtype=torch.float64) for _ in range(3))
    key_mask = padded_mask(2, 7, [7, 4])
    for causal in (True, False):
        y, w = attention(q, k, v, causal=causal, key_mask=key_mask)
        allowed = torch.ones(7, 7, dtype=torch.bool).tril() if causal else torch.ones(7, 7, dtype=torch.bool)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed & key_mask[:, None, None, :])
        torch.testing.assert_close(y, ref, atol=ATOL, rtol=0)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 7, dtype=torch.float64))
        assert (w[1, :, :, 4:] == 0).all()  # padded keys get no weight
        if causal:
            assert (w.triu(diagonal=1) == 0).all()


def test_attention_fully_masked_row_is_zero_not_nan():
    q, k, v = (torch.randn(1, 1, 3, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    key_mask = torch.zeros(1, 3, dtype=torch.bool)
    y, w = attention(q, k, v, key_mask=key_mask)
    assert torch.equal(y, torch.zeros_like(y)) and torch.equal(w, torch.zeros_like(w))
    y.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_rope_is_relative_and_norm_preserving():
    torch.manual_seed(0)
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)

    def score(i, j):
        qi = apply_rope(q[None], torch.tensor([i]))[0]
        kj = apply_rope(k[None], torch.tensor([j]))[0]
        return qi @ kj

    torch.testing.assert_close(score(3, 1), score(12, 10))  # depends on i - j only
    assert not torch.allclose(score(3, 1), score(3, 2))
    x = torch.randn(5, 8, dtype=torch.float64)
    torch.testing.assert_close(apply_rope(x, torch.arange(5)).norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(apply_rope(x, torch.zeros(5)), x)  # position 0: identity
    with pytest.raises(ValueError, match="even"):
        apply_rope(torch.randn(5, 7), torch.arange(5))


def rope_by_hand(x: torch.Tensor, positions: list[int], base: float) -> torch.Tensor:
    """The module docstring's rotation, one channel pair at a time: (c, c + d/2) turns by pos * base^(-2c/d)."""
    d = x.shape[-1]
    out = torch.empty_like(x)
    for t, pos in enumerate(positions):
        for c in range(d // 2):
            angle = pos * base ** (-2 * c / d)
            x1, x2 = x[t, c].item(), x[t, c + d // 2].item()
            out[t, c] = x1 * math.cos(angle) - x2 * math.sin(angle)
            out[t, c + d // 2] = x1 * math.sin(angle) + x2 * math.cos(angle)
    return out


def test_rope_turns_each_channel_pair_by_its_documented_angle():
    torch.manual_seed(0)
    x = torch.randn(4, 8, dtype=torch.float64)
    positions = [0, 1, 5, 300]
    torch.testing.assert_close(apply_rope(x, torch.tensor(positions)), rope_by_hand(x, positions, 10000.0))
    torch.testing.assert_close(apply_rope(x, torch.tensor(positions), 100.0), rope_by_hand(x, positions, 100.0))


def test_rope_angles_stay_exact_for_bf16_inputs():
    """bf16 activations (autocast) are rotated by float32 angles: bf16 cannot even hold the position 1001."""
    torch.manual_seed(0)
    x = torch.randn(3, 8, dtype=torch.float64)
    positions = torch.tensor([5, 777, 1001])
    got = apply_rope(x.to(torch.bfloat16), positions)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.double(), apply_rope(x, positions), atol=0.03, rtol=0.02)


@pytest.mark.parametrize("cls, kw", MIXERS[:1] + MIXERS[2:3])
def test_mixer_rotates_queries_and_keys_so_scores_depend_on_the_offset(cls, kw):
    """Shifting every position by the same amount leaves every score q_i . k_j unchanged; values are not rotated."""
    mixer = make(cls, **kw)
    x = torch.randn(2, 6, D, dtype=torch.float64)
    q0, k0, v0 = mixer.project(x, torch.arange(6))
    q5, k5, v5 = mixer.project(x, torch.arange(6) + 5)
    torch.testing.assert_close(q0 @ k0.transpose(-2, -1), q5 @ k5.transpose(-2, -1), atol=ATOL, rtol=0)
    torch.testing.assert_close(v0, v5, atol=0, rtol=0)
    assert not torch.allclose(q0, q5) and not torch.allclose(k0, k5)


# ---------------------------------------------------------------- mixers
@pytest.mark.parametrize("cls, kw", MIXERS)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("with_mask", [False, True])
def test_fast_equals_reference(cls, kw, causal, with_mask):
    mixer = make(cls, causal, **kw)
    x = torch.randn(3, 13, D, dtype=torch.float64)
    mask = padded_mask(3, 13, [13, 9, 1]) if with_mask else None
    assert_fast_equals_reference(mixer, x, mask)


@pytest.mark.parametrize("cls, kw", MIXERS)
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_step_equals_forward(cls, kw, impl):
    mixer = make(cls, impl=impl, **kw)
    x = torch.randn(2, 11, D, dtype=torch.float64)
    y_steps, state = run_steps(mixer, x)
    torch.testing.assert_close(y_steps, mixer(x), atol=ATOL, rtol=0)
    assert state_numbers(state) == 2 * mixer.state_size(11)  # the KV cache, per sequence


@pytest.mark.parametrize("cls, kw", MIXERS)
def test_causal_output_ignores_the_future(cls, kw):
    mixer = make(cls, **kw)
    x = torch.randn(2, 12, D, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 7:] += torch.randn(2, 5, D, dtype=torch.float64)
    y, y2 = mixer(x), mixer(x2)
    torch.testing.assert_close(y[:, :7], y2[:, :7], atol=ATOL, rtol=0)
    assert not torch.allclose(y[:, 7:], y2[:, 7:])


@pytest.mark.parametrize("cls, kw", MIXERS)
def test_padding_invariance_bidirectional(cls, kw):
    mixer = make(cls, causal=False, **kw)
    x = torch.randn(2, 10, D, dtype=torch.float64)
    mask = padded_mask(2, 10, [10, 6])
    x2 = x.clone()
    x2[1, 6:] = 100 * torch.randn(4, D, dtype=torch.float64)  # garbage in the padding
    y, y2 = mixer(x, mask), mixer(x2, mask)
    torch.testing.assert_close(y[1, :6], y2[1, :6], atol=ATOL, rtol=0)
    torch.testing.assert_close(y[1, :6], mixer(x[1:, :6])[0], atol=ATOL, rtol=0)  # same as the unpadded sequence
    assert not torch.allclose(mixer(x)[1, :6], y[1, :6])  # without the mask the padding does leak


def test_rope_false_is_permutation_equivariant_and_rope_true_is_not():
    x = torch.randn(1, 9, D, dtype=torch.float64)
    perm = torch.randperm(9)
    plain, rotary = make(AttentionMixer, causal=False, rope=False), make(AttentionMixer, causal=False)
    torch.testing.assert_close(plain(x)[:, perm], plain(x[:, perm]), atol=ATOL, rtol=0)
    assert not torch.allclose(rotary(x)[:, perm], rotary(x[:, perm]))


def test_attention_map():
    x = torch.randn(2, 9, D, dtype=torch.float64)
    w = make(AttentionMixer).attention_map(x)
    assert w.shape == (2, 4, 9, 9)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 9, dtype=torch.float64))
    assert (w.triu(diagonal=1) == 0).all()
    wb = make(SlidingWindowMixer, causal=False, window=2).attention_map(x)
    assert (wb[..., ~band_mask(9, 2, causal=False)] == 0).all() and (wb[..., band_mask(9, 2, False)] > 0).all()


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_dropout_only_in_training(impl):
    mixer = make(AttentionMixer, impl=impl, dropout=0.5)
    x = torch.randn(2, 8, D, dtype=torch.float64)
    assert not torch.allclose(mixer(x), mixer(x))
    mixer.eval()
    torch.testing.assert_close(mixer(x), mixer(x), atol=0, rtol=0)


@pytest.mark.parametrize("cls, kw", MIXERS)
def test_float32_and_bf16_autocast(cls, kw):
    torch.manual_seed(0)
    mixer = cls(D, **kw)
    x = torch.randn(2, 10, D)
    assert mixer(x).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mixer(x, padded_mask(2, 10, [10, 4]))
        y_t, _ = mixer.step(x[:, 0], mixer.init_state(2))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all() and torch.isfinite(y_t).all()
    torch.testing.assert_close(y.float(), mixer(x, padded_mask(2, 10, [10, 4])), atol=0.1, rtol=0.1)


# ---------------------------------------------------------------- sliding window
@pytest.mark.parametrize("T, window", [(1, 4), (5, 8), (7, 7), (16, 4), (17, 4), (33, 32), (30, 1), (40, 6)])
@pytest.mark.parametrize("causal", [True, False])
def test_sliding_window_equals_band_masked_attention(T, window, causal):
    torch.manual_seed(T + window)
    q, k, v = (torch.randn(2, 2, T, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    key_mask = padded_mask(2, T, [T, max(1, T // 2)])
    for km in (None, key_mask):
        allowed = band_mask(T, window, causal)
        if km is not None:
            allowed = allowed & km[:, None, None, :]
        y_ref, _ = attention(q, k, v, allowed=allowed)
        y = sliding_window_attention(q, k, v, window, causal, km)
        torch.testing.assert_close(y, y_ref, atol=ATOL, rtol=0)
        g = torch.randn_like(y)
        grads = torch.autograd.grad((y * g).sum(), (q, k, v))
        grads_ref = torch.autograd.grad((y_ref * g).sum(), (q, k, v))
        for a, b in zip(grads, grads_ref, strict=True):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_sliding_window_is_local():
    window = 3
    for causal in (True, False):
        mixer = make(SlidingWindowMixer, causal=causal, window=window)
        x = torch.randn(1, 20, D, dtype=torch.float64, requires_grad=True)
        mixer(x)[0, 10].sum().backward()
        reach = (x.grad[0].abs().sum(-1) > 0).nonzero().flatten().tolist()
        assert reach == (list(range(8, 11)) if causal else list(range(7, 14)))


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten operation produces."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sizes = [t.numel() for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        self.numel = max([self.numel, *sizes])
        return out


def largest_intermediate(mixer, x) -> int:
    with LargestTensor() as probe:
        mixer(x, torch.ones(x.shape[:2], dtype=torch.bool)).sum().backward()
    return probe.numel


@pytest.mark.parametrize("causal", [True, False])
def test_sliding_window_fast_path_is_linear_in_length(causal):
    T, window, H = 4096, 32, 4
    mixer = SlidingWindowMixer(D, causal=causal, window=window, n_heads=H)
    start = time.perf_counter()
    big = largest_intermediate(mixer, torch.randn(1, T, D, requires_grad=True))
    assert time.perf_counter() - start < 5.0
    assert big <= 3 * T * 3 * window * H  # scores/masks of size T x (2 or 3) window, never T x T
    assert big < T * T / 16
    small = largest_intermediate(mixer, torch.randn(1, T // 4, D, requires_grad=True))
    assert big <= 4.5 * small  # 4x longer: 4x the memory, not 16x
    # the probe does catch a T x T matrix: the dense reference makes one
    mixer.impl = "reference"
    assert largest_intermediate(mixer, torch.randn(1, 256, D, requires_grad=True)) >= 256 * 256 * H


@pytest.mark.parametrize("kw", [{"rope": False}, {"rope_base": 100.0}, {"n_heads": 2}])
@pytest.mark.parametrize("causal", [True, False])
def test_sliding_window_wider_than_the_sequence_is_full_attention(kw, causal):
    """With window >= T the band covers everything: the same mixer as AttentionMixer, options included."""
    x = torch.randn(2, 7, D, dtype=torch.float64)
    mask = padded_mask(2, 7, [7, 4])
    full = make(AttentionMixer, causal, **kw)
    for impl in ("fast", "reference"):
        local = make(SlidingWindowMixer, causal, impl=impl, window=7, **kw)
        torch.testing.assert_close(local(x, mask), full(x, mask), atol=ATOL, rtol=0)


def test_sliding_window_default_is_64_tokens():
    x = torch.randn(1, 70, D, dtype=torch.float64)
    w = make(SlidingWindowMixer).attention_map(x)
    assert torch.equal(w[0, 0] > 0, band_mask(70, 64, causal=True))


def test_sliding_window_cache_is_bounded():
    mixer = make(SlidingWindowMixer, window=5)
    _, state = run_steps(mixer, torch.randn(2, 23, D, dtype=torch.float64))
    assert state["k"].shape == (2, 4, 5, D // 4)
    assert mixer.state_size(3) == 2 * 3 * D and mixer.state_size(23) == mixer.state_size(1000) == 2 * 5 * D


# ---------------------------------------------------------------- cross-attention
@pytest.mark.parametrize("with_mask", [False, True])
def test_cross_attention_fast_equals_reference(with_mask):
    torch.manual_seed(0)
    fast = CrossAttention(D, 4).double()
    ref = CrossAttention(D, 4, impl="reference").double()
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(2, 5, D, dtype=torch.float64, requires_grad=True)
    mem = torch.randn(2, 7, D, dtype=torch.float64, requires_grad=True)
    mask = padded_mask(2, 7, [7, 3]) if with_mask else None
    ys = [m(x, mem, mask) for m in (fast, ref)]
    torch.testing.assert_close(ys[0], ys[1], atol=ATOL, rtol=0)
    g = torch.randn_like(ys[0])
    gf = torch.autograd.grad((ys[0] * g).sum(), [x, mem, *fast.parameters()])
    gr = torch.autograd.grad((ys[1] * g).sum(), [x, mem, *ref.parameters()])
    for a, b in zip(gf, gr, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    if with_mask:
        assert (gf[1][1, 3:] == 0).all()  # padded memory gets no gradient: it is not read
        w = fast.attention_map(x, mem, mask)
        assert w.shape == (2, 4, 5, 7) and (w[1, ..., 3:] == 0).all()


def test_cross_attention_bad_inputs():
    cross = CrossAttention(D, 4)
    with pytest.raises(ValueError, match="batch"):
        cross(torch.randn(2, 5, D), torch.randn(3, 7, D))
    with pytest.raises(ValueError, match="mask"):
        cross(torch.randn(2, 5, D), torch.randn(2, 7, D), torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="n_heads"):
        CrossAttention(D, 3)


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="n_heads"):
        AttentionMixer(D, n_heads=3)
    with pytest.raises(ValueError, match="even head dimension"):
        AttentionMixer(12, n_heads=4)  # d_head = 3
    AttentionMixer(12, n_heads=4, rope=False)  # fine without RoPE
    with pytest.raises(ValueError, match="window"):
        SlidingWindowMixer(D, window=0)
    with pytest.raises(TypeError):
        AttentionMixer(D, heads=4)  # unknown option
    for dropout in (1.5, 1.0, -0.1):
        with pytest.raises(ValueError, match="dropout"):
            AttentionMixer(D, dropout=dropout)
    for base in (0, -10000.0):
        with pytest.raises(ValueError, match="rope_base"):
            AttentionMixer(D, rope_base=base)
    mixer = AttentionMixer(D)
    with pytest.raises(ValueError, match="rank"):
        mixer(torch.randn(10, D))
    with pytest.raises(ValueError, match="d_model"):
        mixer(torch.randn(2, 10, D + 1))
    with pytest.raises(TypeError, match="bool"):
        mixer(torch.randn(2, 10, D), torch.ones(2, 10))
    with pytest.raises(ValueError, match="one token"):
        mixer.step(torch.randn(2, 3, D), mixer.init_state(2))
    with pytest.raises(ValueError, match="batch size"):
        mixer.step(torch.randn(3, D), mixer.init_state(2))
    with pytest.raises(StreamingNotSupported):
        AttentionMixer(D, causal=False).init_state(2)
    with pytest.raises(StreamingNotSupported):
        SlidingWindowMixer(D, causal=False).step(torch.randn(2, D), {})
