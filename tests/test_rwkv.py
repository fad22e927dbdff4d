"""RWKV-4: chunked WKV == stable recurrence == stepping, causality, padding, channel mix."""

import math

import pytest
import torch

from seqlib.models import rwkv
from seqlib.models.base import StreamingNotSupported
from seqlib.models.rwkv import RWKVChannelMix, RWKVMixer, wkv_chunked, wkv_reference

D, T, CHUNK = 16, 37, 8  # T is not a multiple of the chunk
TOL = dict(atol=1e-10, rtol=1e-8)


def make(causal=True, **options):
    torch.manual_seed(0)
    return RWKVMixer(D, causal=causal, chunk_size=CHUNK, **options).double()


def inputs(T=T, seed=1):
    torch.manual_seed(seed)
    x = torch.randn(2, T, D, dtype=torch.float64)
    mask = torch.arange(T) < torch.tensor([T, max(T // 2, 1)])[:, None]  # second sequence is right-padded
    return x, mask


def outputs_and_grads(module, fn, x, *args):
    x = x.clone().requires_grad_(True)
    y = fn(x, *args)
    weights = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    params = [x, *module.parameters()]
    grads = torch.autograd.grad((y * weights).sum(), params, allow_unused=True)  # T=1: no decay is used
    return y.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def wkv_by_definition(w, u, k, v):
    """wkv_t straight from the formula (no stabilisation): fine for small keys in float64."""
    out = []
    for t in range(k.shape[1]):
        i = torch.arange(t, dtype=k.dtype)
        weights = torch.exp(-(t - 1 - i)[:, None] * w + k[:, :t])  # (B, t, D)
        now = torch.exp(u + k[:, t])
        out.append(((weights * v[:, :t]).sum(1) + now * v[:, t]) / (weights.sum(1) + now))
    return torch.stack(out, 1)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("length", [T, 1, 5, 16])  # also T=1, T < chunk_size, a multiple of it
def test_fast_equals_reference_with_gradients(causal, length):
    m = make(causal)
    x, mask = inputs(length)
    y_fast, g_fast = outputs_and_grads(m, m.forward_fast, x, mask)
    y_ref, g_ref = outputs_and_grads(m, m.forward_reference, x, mask)
    assert y_fast.shape == x.shape
    torch.testing.assert_close(y_fast, y_ref, **TOL)
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("chunk", [1, 4, 8, 64])
def test_wkv_forms_agree_with_the_formula(chunk):
    torch.manual_seed(2)
    k, v = torch.randn(2, T, 5, dtype=torch.float64), torch.randn(2, T, 5, dtype=torch.float64)
    w, u = torch.exp(torch.linspace(-5, 3, 5, dtype=torch.float64)), torch.randn(5, dtype=torch.float64)
    expected = wkv_by_definition(w, u, k, v)
    torch.testing.assert_close(wkv_reference(w, u, k, v), expected, **TOL)
    torch.testing.assert_close(wkv_chunked(w, u, k, v, chunk_size=chunk), expected, **TOL)


def test_wkv_finite_for_a_large_bonus():
    """A bonus ``u`` of 100 in float32 (``e^u`` overflows): both forms stay finite and equal the float64 result."""
    torch.manual_seed(2)
    k, v = torch.randn(2, 9, 4), torch.randn(2, 9, 4)
    w, u = torch.exp(torch.linspace(-5, 3, 4)), torch.full((4,), 100.0)
    truth = wkv_reference(*(t.double() for t in (w, u, k, v)))
    for y in (wkv_reference(w, u, k, v), wkv_chunked(w, u, k, v, chunk_size=4)):
        torch.testing.assert_close(y.double(), truth, atol=1e-6, rtol=1e-6)


def shifted(x):
    """The previous token of every position of x (B, T, D), zeros before the first."""
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)


def test_time_mix_follows_its_equations():
    """k, v, r from the token shift ``mu x_t + (1 - mu) x_{t-1}``, ``r`` through a sigmoid,
    ``out = W_o (r * wkv)`` with ``w = exp(time_decay)`` and ``u = time_first``; both paths."""
    m = make()
    tm = m.fwd
    with torch.no_grad():
        for mu in (tm.mu_k, tm.mu_v, tm.mu_r):
            mu.uniform_()  # distinct mixing weights: a swapped pair would show
        x, _ = inputs(9)
        prev = shifted(x)
        k, v, r = (
            proj(x * mu + prev * (1 - mu))
            for proj, mu in ((tm.key, tm.mu_k), (tm.value, tm.mu_v), (tm.receptance, tm.mu_r))
        )
        wkv = wkv_by_definition(torch.exp(tm.time_decay), tm.time_first, k, v)
        expected = tm.output(torch.sigmoid(r) * wkv)
        for impl in ("fast", "reference"):
            m.impl = impl
            torch.testing.assert_close(m(x), expected, **TOL)


def test_time_mix_init_follows_rwkv4():
    """``time_decay`` rises from -5 to 3 across channels, ``u = log 0.3 + 0.5 ((i + 1) % 3 - 1)``,
    ``mu_k = mu_v = i / D`` and ``mu_r = (i / D) ** 0.5``."""
    tm = make().fwd
    i = torch.arange(D, dtype=torch.float64)
    with torch.no_grad():
        assert tm.time_decay[0] == -5 and tm.time_decay[-1] == 3 and (tm.time_decay.diff() > 0).all()
        torch.testing.assert_close(tm.time_first, math.log(0.3) + 0.5 * ((i + 1) % 3 - 1))
        torch.testing.assert_close(tm.mu_k, i / D)
        torch.testing.assert_close(tm.mu_v, i / D)
        torch.testing.assert_close(tm.mu_r, (i / D) ** 0.5)


def large_keys(key_scale, dtype, T=300, seed=3):
    torch.manual_seed(seed)
    k, v = torch.randn(2, T, D, dtype=torch.float64) * key_scale, torch.randn(2, T, D, dtype=torch.float64)
    w, u = torch.exp(torch.linspace(-5, 3, D, dtype=torch.float64)), torch.randn(D, dtype=torch.float64)
    return [t.to(dtype) for t in (w, u, k, v)]


@pytest.mark.parametrize("key_scale", [10.0, 30.0, 100.0, 300.0])
def test_wkv_chunked_float32_accurate_for_keys_far_beyond_exp_range(key_scale):
    """Keys spanning hundreds inside one chunk (e^88 overflows float32): the chunked form stays as close to the
    float64 result as the float32 recurrence is."""
    truth = wkv_reference(*large_keys(key_scale, torch.float64))
    w, u, k, v = (t.requires_grad_(True) for t in large_keys(key_scale, torch.float32))
    fast, ref = wkv_chunked(w, u, k, v, chunk_size=64), wkv_reference(w, u, k, v)
    assert torch.isfinite(fast).all()
    fast_err, ref_err = (fast.double() - truth).abs().max(), (ref.double() - truth).abs().max()
    assert fast_err <= max(ref_err, 1e-5), (fast_err, ref_err)
    # 300 = 4 x 64 + 44: the padding's 20 rows decay to 0 in the fast channels (w up to e^3); no 0/0 reaches the grads
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(fast.sum(), (w, u, k, v)))


def test_rows_lost_to_underflow_are_recomputed_with_exact_gradients(monkeypatch):
    """Keys spanning ~2,000 in float64: some rows' terms all lie below e^-354 of their chunk's largest key; those
    chunks are recomputed token by token, and outputs and gradients still equal the recurrence's."""
    redone = []
    steps = rwkv._wkv_steps
    monkeypatch.setattr(rwkv, "_wkv_steps", lambda *a: redone.append(a[2].shape[0]) or steps(*a))
    w, u, k, v = (t.requires_grad_(True) for t in large_keys(300.0, torch.float64, T=T))
    weights = torch.linspace(-1, 1, k.numel(), dtype=k.dtype).view_as(k)
    fast = wkv_chunked(w, u, k, v, chunk_size=CHUNK)
    assert redone and 0 < redone[0] < k.shape[0] * -(-T // CHUNK)  # some chunks, not all
    g_fast = torch.autograd.grad((fast * weights).sum(), (w, u, k, v))
    ref = wkv_reference(w, u, k, v)
    g_ref = torch.autograd.grad((ref * weights).sum(), (w, u, k, v))
    torch.testing.assert_close(fast, ref, **TOL)
    for a, b in zip(g_fast, g_ref, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, **TOL)


def test_stepping_equals_forward():
    m = make()
    x, _ = inputs()
    state = m.init_state(batch_size=2)
    ys = []
    for t in range(T):
        y_t, state = m.step(x[:, t], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), m(x), **TOL)
    assert sum(s[0].numel() for s in state) == m.state_size(T) == 4 * D


def test_stepping_equals_forward_when_the_first_key_is_very_negative():
    """Keys below -745 at the first token (``e^{u + k}`` underflows to 0 in float64): the state from ``init_state``
    still gives the current token its full weight, as the forward pass does."""
    m = make()
    with torch.no_grad():
        m.fwd.key.weight.copy_(1000 * torch.eye(D))
    x = -torch.ones(1, 3, D, dtype=torch.float64)
    state, ys = m.init_state(1), []
    for t in range(3):
        y_t, state = m.step(x[:, t], state)
        ys.append(y_t)
    y = m(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(torch.stack(ys, 1), y, **TOL)


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
    with pytest.raises(ValueError, match="right-padded"):
        m(x, mask.flip(1))


def test_channel_mix_forward_equals_stepping():
    torch.manual_seed(0)
    ffn = RWKVChannelMix(D, hidden_mult=2).double()
    x, _ = inputs()
    prev, ys = torch.zeros(2, D, dtype=torch.float64), []
    for t in range(T):
        y_t, prev = ffn.step(x[:, t], prev)
        ys.append(y_t)
    y = ffn(x)
    torch.testing.assert_close(torch.stack(ys, 1), y, **TOL)
    assert ffn.key.out_features == 2 * D
    x2 = x.clone()
    x2[:, 20] += 1.0  # token shift: a token reaches itself and the next position only
    diff = (ffn(x2) - y).abs().amax(dim=(0, 2))
    assert diff[20] > 1e-6 and diff[21] > 1e-6 and diff[:20].max() == 0 and diff[22:].max() == 0
    with pytest.raises(ValueError, match="d_model"):
        ffn(x[:, :, :3])
    for bad in (None, torch.zeros(2, 3, dtype=torch.float64), torch.zeros(1, D, dtype=torch.float64)):
        with pytest.raises(ValueError, match="prev_x"):
            ffn.step(x[:, 0], bad)
    with pytest.raises(ValueError, match="hidden_mult"):
        RWKVChannelMix(D, hidden_mult=0)


def test_channel_mix_follows_its_equations():
    """``sigmoid(W_r x_r) * W_v relu(W_k x_k)^2`` with ``x_k``, ``x_r`` token-shifted by ``mu_k``, ``mu_r``."""
    torch.manual_seed(0)
    ffn = RWKVChannelMix(D, hidden_mult=2).double()
    with torch.no_grad():
        ffn.mu_k.uniform_()
        ffn.mu_r.uniform_()
        x, _ = inputs(6)
        prev = shifted(x)
        xk, xr = (x * mu + prev * (1 - mu) for mu in (ffn.mu_k, ffn.mu_r))
        expected = torch.sigmoid(ffn.receptance(xr)) * ffn.value(torch.relu(ffn.key(xk)) ** 2)
        torch.testing.assert_close(ffn(x), expected, **TOL)


def test_autocast_bf16():
    for causal in (True, False):
        torch.manual_seed(0)
        m = RWKVMixer(D, causal=causal, chunk_size=CHUNK)
        x = torch.randn(2, T, D)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
        assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
        ref = m(x)
        assert (y.float() - ref).norm() / ref.norm() < 0.05


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="chunk_size"):
        RWKVMixer(D, chunk_size=0)
    with pytest.raises(TypeError):
        RWKVMixer(D, n_heads=4)  # not an RWKV option
    with pytest.raises(StreamingNotSupported):
        RWKVMixer(D, causal=False).step(torch.zeros(2, D), None)
    m = make()
    with pytest.raises(ValueError, match="one token"):
        m.step(torch.zeros(2, 3, D, dtype=torch.float64), m.init_state(2))
