"""S4D and Mamba: fast (FFT / chunked scan) == reference recurrence == stepping, causality, padding, stability."""

import math

import pytest
import torch
import torch.nn.functional as F

from seqlib.models.base import StreamingNotSupported
from seqlib.models.ssm import (
    MambaMixer,
    S4DMixer,
    fft_conv,
    linear_scan,
    reverse_padded,
    s4d_kernel,
    selective_scan_chunked,
    selective_scan_ref,
)

D, T, CHUNK = 16, 37, 8  # T is not a multiple of the chunk
TOL = dict(atol=1e-10, rtol=1e-8)
MIXERS = {
    "s4": lambda causal, **kw: S4DMixer(D, causal=causal, d_state=8, **kw),
    "mamba": lambda causal, **kw: MambaMixer(D, causal=causal, chunk_size=CHUNK, **kw),
}


def make(name, causal=True, **options):
    torch.manual_seed(0)
    return MIXERS[name](causal, **options).double()


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


@pytest.mark.parametrize("name", list(MIXERS))
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("length", [T, 1, 5, 16])  # also T=1, T < chunk_size, a multiple of it
def test_fast_equals_reference_with_gradients(name, causal, length):
    m = make(name, causal)
    x, mask = inputs(length)
    y_fast, g_fast = outputs_and_grads(m, m.forward_fast, x, mask)
    y_ref, g_ref = outputs_and_grads(m, m.forward_reference, x, mask)
    assert y_fast.shape == x.shape
    torch.testing.assert_close(y_fast, y_ref, **TOL)
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("name", list(MIXERS))
def test_stepping_equals_forward(name):
    m = make(name)
    x, _ = inputs()
    state = m.init_state(batch_size=2)
    ys = []
    for t in range(T):
        y_t, state = m.step(x[:, t], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), m(x), **TOL)
    states = state if isinstance(state, tuple) else (state,)
    held = sum(s[0].numel() * (2 if s.is_complex() else 1) for s in states)  # complex = two real numbers
    assert held == m.state_size(T) == m.state_size(10 * T)


def test_state_sizes():
    assert S4DMixer(32, d_state=64).state_size(100) == 32 * 64
    assert MambaMixer(32, d_state=16, expand=2, d_conv=4).state_size(100) == 2 * 32 * (16 + 3)


@pytest.mark.parametrize("name", list(MIXERS))
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_causal(name, impl):
    m = make(name, impl=impl)
    x, _ = inputs()
    x2 = x.clone()
    x2[:, 20:] += torch.randn_like(x2[:, 20:])
    y, y2 = m(x), m(x2)
    torch.testing.assert_close(y[:, :20], y2[:, :20], **TOL)
    assert (y[:, 20:] - y2[:, 20:]).abs().max() > 1e-3


@pytest.mark.parametrize("name", list(MIXERS))
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_bidirectional_ignores_padding(name, impl):
    m = make(name, causal=False, impl=impl)
    x, mask = inputs()
    n = int(mask[1].sum())
    x2 = x.clone()
    x2[1, n:] = 100 * torch.randn_like(x2[1, n:])
    y, y2 = m(x, mask), m(x2, mask)
    torch.testing.assert_close(y[1, :n], y2[1, :n], **TOL)
    torch.testing.assert_close(y[1, :n], m(x[1:, :n])[0], **TOL)  # same as the unpadded sequence alone
    assert (y[1, :n] - m(x[1:])[0, :n]).abs().max() > 1e-3  # without the mask the padding does leak
    assert (y[1, 0] - m(x[1:, :1])[0, 0]).abs().max() > 1e-3  # and it sees the future


def test_reverse_padded():
    x = torch.arange(2 * 5, dtype=torch.float).view(2, 5, 1)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    assert reverse_padded(x, mask)[..., 0].tolist() == [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]]
    torch.testing.assert_close(reverse_padded(reverse_padded(x, mask), mask), x)
    with pytest.raises(ValueError, match="right-padded"):
        reverse_padded(x, mask.flip(1))


def test_mamba_bidirectional_rejects_left_padding():
    m = make("mamba", causal=False)
    x, mask = inputs()
    with pytest.raises(ValueError, match="right-padded"):
        m(x, mask.flip(1))


def test_s4d_discretize_gives_the_recurrence_and_kernel_of_the_layer():
    """The public parameters: the recurrence written with them, the FFT convolution with their kernel and the layer's
    own pre-output signal agree; the N // 2 complex states stand for N states in conjugate pairs (hence 2 Re)."""
    m = make("s4")
    p = m.discretize(torch.float64)
    H, N2 = D, m.d_state // 2
    assert p.dtA.shape == p.Abar.shape == p.Bbar.shape == (H, N2) and p.C.shape == (1, H, N2) and p.D.shape == (H,)
    assert p.Abar.dtype == torch.complex128 and p.D.dtype == torch.float64
    torch.testing.assert_close(p.Abar, torch.exp(p.dtA))
    assert (p.Abar.abs() < 1).all()  # Re A < 0: a stable recurrence
    dtA, Abar, Bbar, C, Dskip = p  # a tuple as well
    u = torch.randn(2, H, T, dtype=torch.float64)  # (B, H, L)
    # the system of all N states: every pair's parameters and their conjugates
    A_N, B_N, C_N = (torch.cat([z, z.conj()], -1) for z in (Abar, Bbar, C[0]))  # (H, N)
    x, x_N, ys, ys_N = torch.zeros(2, H, N2, dtype=Abar.dtype), torch.zeros(2, H, 2 * N2, dtype=Abar.dtype), [], []
    for t in range(T):
        x = Abar * x + Bbar * u[:, :, t, None]
        ys.append(2 * (C[0] * x).sum(-1).real + Dskip * u[:, :, t])
        x_N = A_N * x_N + B_N * u[:, :, t, None]
        ys_N.append((C_N * x_N).sum(-1) + Dskip * u[:, :, t])
    y_loop, y_N = torch.stack(ys, -1), torch.stack(ys_N, -1)
    torch.testing.assert_close(x_N[..., N2:], x_N[..., :N2].conj())  # the states of a pair stay conjugate
    torch.testing.assert_close(y_N.imag, torch.zeros_like(y_loop), **TOL)  # so the N-state output is real
    torch.testing.assert_close(y_N.real, y_loop, **TOL)  # and equals 2 Re over one state per pair
    y_fft = fft_conv(u, s4d_kernel(dtA, C[0] * Bbar, T)) + Dskip[:, None] * u
    torch.testing.assert_close(y_fft, y_loop, **TOL)
    with torch.no_grad():  # the layer computes the same signal before its GLU output
        torch.testing.assert_close(m(u.transpose(1, 2)), m._output(y_loop.transpose(1, 2), torch.float64), **TOL)
    g = torch.autograd.grad(m.discretize(torch.float64).Abar.real.sum(), m.log_dt)[0]
    assert torch.isfinite(g).all() and g.abs().sum() > 0  # differentiable in the parameters
    assert m.discretize().Abar.dtype == torch.complex64  # float32 by default


def test_s4d_init_is_s4d_lin_discretised_with_the_zero_order_hold():
    """``A_n = -1/2 + i pi n``, ``B = 1``, ``dt`` in ``[dt_min, dt_max]``; ``Abar = exp(dt A)`` and
    ``Bbar = (exp(dt A) - 1) / A * B``."""
    torch.manual_seed(0)
    m = S4DMixer(D, d_state=8, dt_min=0.01, dt_max=0.02).double()
    p = m.discretize(torch.float64)
    with torch.no_grad():
        dt = m.log_dt.exp()[:, None]  # (H, 1)
        A = torch.complex(-torch.exp(m.log_A_real), m.A_imag)  # (H, N2)
        B = torch.view_as_complex(m.B)
    assert ((dt >= 0.01) & (dt <= 0.02)).all()
    n = torch.arange(4, dtype=torch.float64).expand(D, 4)
    torch.testing.assert_close(A, torch.complex(torch.full_like(n, -0.5), math.pi * n), atol=0, rtol=1e-6)  # float32
    torch.testing.assert_close(B, torch.ones_like(A))
    with torch.no_grad():
        torch.testing.assert_close(p.dtA, dt * A, **TOL)
        torch.testing.assert_close(p.Abar, torch.exp(dt * A), **TOL)
        torch.testing.assert_close(p.Bbar, (torch.exp(dt * A) - 1) / A * B, **TOL)


def test_mamba_init():
    """S4D-Real ``A_n = -n``, ``D = 1`` and ``dt = softplus(bias)`` in ``[1e-3, 1e-1]``, in both directions."""
    torch.manual_seed(0)
    m = MambaMixer(D, causal=False, d_state=4).double()
    for ssm in (m.fwd, m.bwd):
        with torch.no_grad():
            A = -torch.exp(ssm.A_log)
            expected = -torch.arange(1.0, 5.0, dtype=torch.float64).expand(m.d_inner, 4)
            torch.testing.assert_close(A, expected, atol=0, rtol=1e-6)  # log(n) rounded to float32
            torch.testing.assert_close(ssm.D, torch.ones(m.d_inner, dtype=torch.float64))
            dt = F.softplus(ssm.dt_proj.bias)
        assert ((dt >= 1e-3 * (1 - 1e-9)) & (dt <= 1e-1 * (1 + 1e-9))).all()


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_mamba_follows_its_equations(impl):
    """``(x, z) = W_in u``; x through the causal depthwise conv and SiLU; ``dt = softplus(W_dt (W_x x))`` and B, C
    from ``W_x x``; ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t``, ``y_t = C_t . h_t + D x_t``;
    ``out = W_out (y * SiLU(z))``."""
    m = make("mamba", impl=impl)
    L = 11
    x, _ = inputs(L)
    f, Di, K = m.fwd, m.d_inner, m.d_conv
    with torch.no_grad():
        xs, z = m.in_proj(x).chunk(2, dim=-1)  # (B, L, Di)
        xp = F.pad(xs, (0, 0, K - 1, 0))  # zeros before the first token
        conv = torch.stack([(xp[:, t : t + K] * f.conv.weight[:, 0].T).sum(1) for t in range(L)], 1)
        u = F.silu(conv + f.conv.bias)
        dt_in, Bt, Ct = f.x_proj(u).split([f.dt_rank, f.d_state, f.d_state], dim=-1)
        dt = F.softplus(f.dt_proj(dt_in))  # (B, L, Di)
        A = -torch.exp(f.A_log)  # (Di, N)
        h, ys = torch.zeros(2, Di, f.d_state, dtype=torch.float64), []
        for t in range(L):
            h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * u[:, t])[..., None] * Bt[:, t, None, :]
            ys.append((h * Ct[:, t, None, :]).sum(-1) + f.D * u[:, t])
        expected = m.out_proj(torch.stack(ys, 1) * F.silu(z))
        torch.testing.assert_close(m(x), expected, **TOL)


def test_fft_conv_matches_direct_convolution():
    torch.manual_seed(3)
    u, k = torch.randn(2, 3, 11, dtype=torch.float64), torch.randn(3, 11, dtype=torch.float64)
    direct = torch.stack([sum(k[:, t - s] * u[..., s] for s in range(t + 1)) for t in range(11)], -1)
    torch.testing.assert_close(fft_conv(u, k), direct, **TOL)


@pytest.mark.parametrize("length", [1, 8, 13])  # a power of 2 and not
def test_linear_scan_matches_loop_with_gradients(length):
    torch.manual_seed(4)
    a = torch.rand(3, length, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, length, 2, dtype=torch.float64, requires_grad=True)
    h, hs = torch.zeros(3, 2, dtype=torch.float64), []
    for t in range(length):
        h = a[:, t] * h + b[:, t]
        hs.append(h)
    loop, scan = torch.stack(hs, 1), linear_scan(a, b)
    torch.testing.assert_close(scan, loop, **TOL)
    w = torch.randn_like(loop)
    grads_scan = torch.autograd.grad((scan * w).sum(), [a, b])
    grads_loop = torch.autograd.grad((loop * w).sum(), [a, b])
    for g_scan, g_loop in zip(grads_scan, grads_loop, strict=True):
        torch.testing.assert_close(g_scan, g_loop, **TOL)
    assert torch.autograd.gradcheck(linear_scan, (a, b))


def _scan_inputs(T, dt_scale, A_scale, seed=5, dtype=torch.float32):
    torch.manual_seed(seed)
    Di, N = 6, 16
    u = torch.randn(2, Di, T, dtype=dtype)
    delta = torch.nn.functional.softplus(torch.randn(2, Di, T, dtype=dtype) * 3) * dt_scale
    A = -torch.arange(1, N + 1, dtype=dtype).repeat(Di, 1) * A_scale
    B, C = torch.randn(2, N, T, dtype=dtype), torch.randn(2, N, T, dtype=dtype)
    return u, delta, A, B, C, torch.ones(Di, dtype=dtype)


@pytest.mark.parametrize("dt_scale, A_scale", [(1.0, 100.0), (1e-3, 1.0), (1.0, 1.0)])
def test_chunked_scan_stable_long_sequences(dt_scale, A_scale):
    """T=2048 in float32 with strong decays (exp(dt*A) underflows to 0), weak ones, and mixed: no inf/nan."""
    args = [t.requires_grad_(t.dtype.is_floating_point) for t in _scan_inputs(2048, dt_scale, A_scale)]
    y = selective_scan_chunked(*args, chunk_size=64)
    grads = torch.autograd.grad(y.square().sum(), args)
    assert torch.isfinite(y).all() and all(torch.isfinite(g).all() for g in grads)
    torch.testing.assert_close(y, selective_scan_ref(*args), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("T, block_len, chunk", [(50, 16, 8), (64, 32, 8), (37, 8, 16), (20, 64, 8)])
def test_blocked_scan_equals_reference_outputs_and_gradients(T, block_len, chunk):
    """Time cut into blocks recomputed in the backward pass: same outputs and gradients as one step at a time."""
    args = [t.requires_grad_() for t in _scan_inputs(T, 1.0, 1.0, dtype=torch.float64)]
    y = selective_scan_chunked(*args, chunk_size=chunk, block_len=block_len)
    y_ref = selective_scan_ref(*args)
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=1e-10)
    w = torch.randn_like(y)
    grads = torch.autograd.grad((y * w).sum(), args)
    grads_ref = torch.autograd.grad((y_ref * w).sum(), args)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-10, rtol=1e-10)


def test_scan_cuts_time_into_blocks_only_past_the_size_limit(monkeypatch):
    from seqlib.models import ssm

    args = [t.requires_grad_() for t in _scan_inputs(40, 1.0, 1.0, dtype=torch.float64)]
    calls = []
    real = ssm._scan_block
    monkeypatch.setattr(ssm, "_scan_block", lambda *a: calls.append(a[0].shape[-1]) or real(*a))
    y_whole = selective_scan_chunked(*args, chunk_size=8)
    assert calls == [40]  # 2 x 6 x 40 x 16 numbers: far below the limit, one block
    calls.clear()
    monkeypatch.setattr(ssm, "SCAN_BLOCK_ELEMENTS", 2 * 6 * 16 * 16)  # 16 steps' states fit
    y_blocks = selective_scan_chunked(*args, chunk_size=8)
    assert calls == [16, 16, 8]
    torch.testing.assert_close(y_blocks, y_whole, atol=1e-12, rtol=1e-12)
    calls.clear()
    with torch.no_grad():  # no backward pass: blocks too (the states of one block at a time), nothing recomputed
        y_eval = selective_scan_chunked(*args, chunk_size=8)
    assert calls == [16, 16, 8]
    torch.testing.assert_close(y_eval, y_whole, atol=1e-12, rtol=1e-12)
    with pytest.raises(ValueError, match="block_len"):
        selective_scan_chunked(*args, block_len=0)


def test_mamba_long_sequence_with_strong_decays():
    m = MambaMixer(D, chunk_size=64)
    with torch.no_grad():
        m.fwd.A_log.add_(math.log(100.0))  # A 100x stronger
        m.fwd.dt_proj.bias.fill_(5.0)  # dt ~ 5
    x = torch.randn(1, 2048, D, requires_grad=True)
    y = m(x)
    (g,) = torch.autograd.grad(y.square().sum(), [x])
    assert torch.isfinite(y).all() and torch.isfinite(g).all()


@pytest.mark.parametrize("name", list(MIXERS))
@pytest.mark.parametrize("causal", [True, False])
def test_autocast_bf16(name, causal):
    torch.manual_seed(0)
    m = MIXERS[name](causal)
    x = torch.randn(2, T, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    ref = m(x)
    assert (y.float() - ref).norm() / ref.norm() < 0.05


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="even"):
        S4DMixer(D, d_state=7)
    with pytest.raises(ValueError, match="dt_min"):
        S4DMixer(D, dt_min=0.1, dt_max=0.01)
    with pytest.raises(ValueError, match="d_conv"):
        MambaMixer(D, d_conv=0)
    with pytest.raises(ValueError, match="dt_rank"):
        MambaMixer(D, dt_rank=0)
    with pytest.raises(TypeError):
        MambaMixer(D, n_heads=4)  # not a Mamba option
    with pytest.raises(TypeError):
        S4DMixer(D, d_conv=4)
    for name in MIXERS:
        with pytest.raises(StreamingNotSupported):
            make(name, causal=False).init_state(2)
        m = make(name)
        with pytest.raises(ValueError, match="one token"):
            m.step(torch.zeros(2, D + 1, dtype=torch.float64), m.init_state(2))
