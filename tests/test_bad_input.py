"""Bad input gets a clear error, never a silent wrong answer: masks, dtypes, empty input, streaming state, and the
arguments of build_model / match_d_model. Tiny sizes on the CPU."""

import pytest
import torch

from seqlib.models import MIXERS, Block, build_model, match_d_model
from seqlib.models import base as base_module
from seqlib.models.base import RIGHT_PADDED_MESSAGE, StreamingNotSupported, check_right_padding

D, B, T = 16, 2, 9
OPTIONS = {
    "longformer": {"window": 3},
    "recurrent_transformer": {"segment_len": 4, "memory_size": 2},
    "linear_attention": {"chunk_size": 4},
    "mamba": {"chunk_size": 4},
    "rwkv": {"chunk_size": 4},
}
FORMS = [(a, c) for a in MIXERS for c in (True, False) if c or MIXERS[a].supports_bidirectional]
STREAMING = [a for a in MIXERS if MIXERS[a].supports_step]


def make(arch, causal=True, dtype=torch.float64):
    torch.manual_seed(0)
    return MIXERS[arch](d_model=D, causal=causal, **OPTIONS.get(arch, {})).to(dtype)


def right_padded(lengths, t=T):
    return torch.arange(t) < torch.tensor(lengths)[:, None]  # (B, T)


def not_right_padded():
    """Masks that a right-padded batch never has: left padding, a hole, a row starting with padding."""
    left = right_padded([T, 5]).flip(1)
    hole = right_padded([T, 7])
    hole[1, 3] = False
    late = right_padded([T, T])
    late[0, :4] = False
    return {"left": left, "hole": hole, "late_start": late}


# ------------------------------------------------------------------------------------------ padding masks
@pytest.mark.parametrize("arch,causal", FORMS)
def test_mask_not_right_padded_is_rejected_by_every_mixer(arch, causal):
    m = make(arch, causal)
    x = torch.randn(B, T, D, dtype=torch.float64)
    for kind, mask in not_right_padded().items():
        with pytest.raises(ValueError, match="right-padded") as err:
            m(x, mask)
        assert str(err.value) == RIGHT_PADDED_MESSAGE, (arch, causal, kind)


@pytest.mark.parametrize("arch,causal", FORMS)
def test_right_padded_mask_equals_the_truncated_sequence(arch, causal):
    m = make(arch, causal)
    x = torch.randn(B, T, D, dtype=torch.float64)
    n = 5
    y = m(x, right_padded([T, n]))
    torch.testing.assert_close(y[1, :n], m(x[1:, :n])[0], atol=1e-9, rtol=1e-7)


@pytest.fixture
def mask_cache_on_cpu(monkeypatch):
    """The mask cache serves GPU masks only; these tests run it on CPU masks."""
    monkeypatch.setattr(base_module, "_cacheable", lambda mask: True)


def test_a_mask_changed_in_place_is_checked_again(mask_cache_on_cpu):
    """The mask check runs once per mask tensor: an in-place change (even through a view) is still caught."""
    m = make("s4")
    x = torch.randn(B, T, D, dtype=torch.float64)
    mask = right_padded([T, 5])
    m(x, mask)
    m(x, mask)  # the same, unchanged mask: fine
    mask[1, 0] = False  # now padding before real tokens
    with pytest.raises(ValueError, match="right-padded"):
        m(x, mask)
    mask[1, 0] = True
    m(x, mask)
    view = mask[1:]
    view[0, 2] = False
    with pytest.raises(ValueError, match="right-padded"):
        m(x, mask)


def test_mask_check_is_skipped_while_compiling(monkeypatch):
    bad = not_right_padded()["left"]
    with pytest.raises(ValueError, match="right-padded"):
        check_right_padding(bad)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    check_right_padding(bad)  # nothing checked (as check_tokens): no host-device sync inside a compiled graph


def test_mask_check_waits_for_the_device_once(monkeypatch):
    """One host-device sync (a single .tolist() or bool()) per check, two conditions at once for the Classifier."""
    calls = []
    real_tolist, real_bool = torch.Tensor.tolist, torch.Tensor.__bool__
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: calls.append("tolist") or real_tolist(self))
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self: calls.append("bool") or real_bool(self))
    check_right_padding(right_padded([T, 4]))
    assert len(calls) == 1
    calls.clear()
    check_right_padding(right_padded([T, 4]), nonempty=True)
    assert len(calls) == 1


def test_classifier_and_seq2seq_reject_the_same_masks():
    clf = build_model("transformer", "classify", vocab_size=10, d_model=D, n_layers=1, num_classes=2)
    s2s = build_model("lstm", "seq2seq", vocab_size=10, tgt_vocab_size=7, d_model=D, n_layers=1)
    tokens = torch.randint(0, 10, (B, T))
    tgt_in = torch.randint(0, 7, (B, 4))
    for mask in not_right_padded().values():
        with pytest.raises(ValueError) as err:
            clf(tokens, mask)
        assert str(err.value) == RIGHT_PADDED_MESSAGE
        with pytest.raises(ValueError) as err:
            s2s(tokens, tgt_in, mask)
        assert str(err.value) == RIGHT_PADDED_MESSAGE
        with pytest.raises(ValueError) as err:
            s2s.decode(torch.randn(B, T, D), tgt_in, mask)  # the cross-attention's memory mask
        assert str(err.value) == RIGHT_PADDED_MESSAGE
    assert s2s(tokens, tgt_in, right_padded([T, 3])).shape == (B, 4, 7)


def test_classifier_mask_errors_say_what_is_wrong():
    clf = build_model("lstm", "classify", vocab_size=10, d_model=D, n_layers=1, num_classes=2)
    tokens = torch.randint(0, 10, (2, 8))
    with pytest.raises(TypeError, match=r"torch\.bool.*got dtype torch\.float32"):
        clf(tokens, torch.ones(2, 8))
    with pytest.raises(ValueError, match=r"shape \(2, 8\), got \(2, 7\)"):
        clf(tokens, torch.ones(2, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one real token"):
        clf(tokens, right_padded([8, 0], 8))


# ------------------------------------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("arch", list(MIXERS))
def test_input_dtype_must_match_the_parameters_outside_autocast(arch):
    m = make(arch, dtype=torch.float32)
    x = torch.randn(B, T, D)
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=rf"dtype {dtype}.*parameters are torch.float32.*model\.to"):
            m(x.to(dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed dtypes are what autocast is for
        assert m(x.bfloat16()).shape == x.shape
    if m.supports_step:
        with pytest.raises(TypeError, match=r"x_t has dtype torch.float64.*model\.to"):
            m.step(x[:, 0].double(), m.init_state(B))
        with pytest.raises(TypeError, match="floating-point x_t"):
            m.step(torch.zeros(B, D, dtype=torch.long), m.init_state(B))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, _ = m.step(x[:, 0].bfloat16(), m.init_state(B))
        assert y.shape == (B, D)


def test_cross_attention_checks_the_dtype_too():
    s2s = build_model("cnn", "seq2seq", vocab_size=10, tgt_vocab_size=7, d_model=D, n_layers=1)
    with pytest.raises(TypeError, match="parameters are torch.float32"):
        s2s.decode(torch.randn(B, T, D, dtype=torch.float64), torch.randint(0, 7, (B, 4)))


# ----------------------------------------------------------------------------------------------- empty input
@pytest.mark.parametrize("arch,causal", FORMS)
def test_empty_input_is_rejected(arch, causal):
    m = make(arch, causal)
    for shape in ((B, 0, D), (0, T, D), (0, 0, D)):
        with pytest.raises(ValueError, match=r"at least one sequence \(batch >= 1\) and at least one token"):
            m(torch.zeros(shape, dtype=torch.float64))
    if m.supports_step and causal:
        with pytest.raises(ValueError, match="at least one sequence"):
            m.step(torch.zeros(0, D, dtype=torch.float64), m.init_state(1))


def test_empty_tokens_are_rejected_by_the_models():
    lm = build_model("s4", "lm", vocab_size=10, d_model=D, n_layers=1)
    with pytest.raises(ValueError, match="at least one token"):
        lm(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one sequence"):
        lm(torch.zeros(0, 5, dtype=torch.long))


# --------------------------------------------------------------------------------------------- streaming state
@pytest.mark.parametrize("arch", STREAMING)
def test_step_state_errors(arch):
    m = make(arch)
    x_t = torch.randn(3, D, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"state=None: pass the state returned by init_state\(\) or the previous step"):
        m.step(x_t, None)
    with pytest.raises(ValueError, match=r"state is for batch size 2 .*got x_t with batch 3"):
        m.step(x_t, m.init_state(2))
    _, state = m.step(x_t[:2], m.init_state(2))  # a state after a step is checked the same way
    with pytest.raises(ValueError, match=r"state is for batch size 2 .*got x_t with batch 3"):
        m.step(x_t, state)
    wrong = {} if isinstance(state, tuple | torch.Tensor) else (state,)
    with pytest.raises(ValueError, match="init_state"):
        m.step(x_t, wrong)  # the state of some other kind of mixer


@pytest.mark.parametrize("arch", STREAMING)
def test_init_state_and_state_size_arguments(arch):
    m = make(arch)
    for bad in (-1, 0, True, 2.0, None):
        with pytest.raises(ValueError, match=rf"batch_size must be a positive int, got {bad!r}"):
            m.init_state(bad)
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match=rf"seq_len must be a non-negative int .*got {bad!r}"):
            m.state_size(bad)
    assert m.state_size(0) >= 0


def test_model_step_state_errors():
    lm = build_model("gru", "lm", vocab_size=10, d_model=D, n_layers=2)
    tokens = torch.randint(0, 10, (3,))
    with pytest.raises(ValueError, match=r"pass the state returned by init_state\(\)"):
        lm.step(tokens, None)
    with pytest.raises(ValueError, match="batch size 2"):
        lm.step(tokens, lm.init_state(2))
    with pytest.raises(ValueError, match="batch_size"):
        lm.init_state(0)


# ----------------------------------------------------------------------------------------- match_d_model
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"target_params": 0}, "target_params must be a positive"),
        ({"target_params": -5}, "target_params must be a positive"),
        ({"target_params": float("inf")}, "target_params must be finite"),
        ({"multiple": 0}, "multiple must be a positive int"),
        ({"multiple": True}, "multiple must be a positive int"),
        ({"tolerance": -1}, "tolerance must be a non-negative"),
        ({"arch": "transformer", "multiple": 6}, r"multiple of n_heads=4.*e\.g\. multiple=24"),
        ({"arch": "lstm", "task": "seq2seq", "multiple": 6, "tgt_vocab_size": 9}, "multiple of n_heads=4"),
    ],
)
def test_match_d_model_validates_its_arguments(kwargs, match):
    args = {"arch": "lstm", "task": "lm", "target_params": 10_000, "vocab_size": 20, "n_layers": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        match_d_model(args.pop("arch"), args.pop("task"), args.pop("target_params"), **args)


# -------------------------------------------------------------------------------------------- build_model
def test_build_model_argument_errors():
    common = {"vocab_size": 10, "d_model": D, "n_layers": 2}
    with pytest.raises(ValueError, match=r"multiple of 3 \(3, 6, \.\.\.\); got n_layers=2.*never use \['cnn'\]"):
        build_model(["lstm", "gru", "cnn"], "lm", **common)
    with pytest.raises(ValueError, match=r"multiple of 2 .* got n_layers=3"):
        build_model(["lstm", "gru"], "lm", **{**common, "n_layers": 3})
    with pytest.raises(ValueError, match="decoder pattern"):
        build_model("lstm", "seq2seq", tgt_vocab_size=5, decoder=["gru", "lstm", "cnn"], **common)
    kinds = [
        type(b.mixer).__name__ for b in build_model(["lstm", "cnn"], "lm", **{**common, "n_layers": 4}).backbone.blocks
    ]
    assert kinds == ["LSTMMixer", "CNNMixer"] * 2
    for mult in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="mlp_mult must be a positive int"):
            build_model("lstm", "lm", mlp_mult=mult, **common)
    with pytest.raises(ValueError, match="mlp_mult"):
        Block(MIXERS["lstm"](D), mlp_mult=0)
    assert Block(MIXERS["lstm"](D), mlp_mult=None).mlp is None  # no MLP, said explicitly
    for name in ("d_model", "vocab_size", "n_layers"):
        with pytest.raises(ValueError, match=f"{name} must be a positive int, got True"):
            build_model("lstm", "lm", **{**common, name: True})
    with pytest.raises(ValueError, match=r"cross-attention.*default n_heads=4.*pass n_heads=.*divisible by 4"):
        build_model("lstm", "seq2seq", vocab_size=10, tgt_vocab_size=9, d_model=30, n_layers=1)
    with pytest.raises(ValueError, match=r"cross-attention.*n_heads=4 does not divide"):
        build_model("lstm", "seq2seq", vocab_size=10, tgt_vocab_size=9, d_model=30, n_layers=1, n_heads=4)
    assert build_model("lstm", "seq2seq", vocab_size=10, tgt_vocab_size=9, d_model=30, n_layers=1, n_heads=3)


@pytest.mark.parametrize("arch", ["transformer", "gru"])
def test_seq2seq_reference_equals_fast(arch):
    """impl="reference" reaches the decoder's cross-attention, and the two implementations agree."""
    opts = {"vocab_size": 12, "tgt_vocab_size": 9, "d_model": D, "n_layers": 2}
    torch.manual_seed(0)
    fast = build_model(arch, "seq2seq", **opts).double()
    ref = build_model(arch, "seq2seq", impl="reference", **opts).double()
    ref.load_state_dict(fast.state_dict())
    assert all(layer.cross.impl == "reference" for layer in ref.layers)
    assert all(layer.cross.impl == "fast" for layer in fast.layers)
    src, tgt_in = torch.randint(0, 12, (B, 7)), torch.randint(0, 9, (B, 5))
    src_mask = right_padded([7, 4], 7)
    outs = []
    for model in (fast, ref):
        y = model(src, tgt_in, src_mask)
        # every parameter reaches the output (autograd.grad raises on an unused one)
        outs.append((y, torch.autograd.grad(y.square().sum(), list(model.parameters()))))
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=1e-10, rtol=1e-8)
    for a, b in zip(outs[0][1], outs[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_cpu_masks_are_checked_every_time_and_inference_masks_by_identity(monkeypatch):
    """On the CPU a check costs no sync, and a numpy view can change a mask without bumping its version: no cache.
    An inference tensor has no version counter: where the cache applies, it is known by identity."""
    m = make("s4")
    x = torch.randn(B, T, D, dtype=torch.float64)
    mask = right_padded([T, 5])
    m(x, mask)
    mask.numpy()[1, 0] = False  # a write the version counter does not see
    with pytest.raises(ValueError, match="right-padded"):
        m(x, mask)
    monkeypatch.setattr(base_module, "_cacheable", lambda mask: True)
    calls = []
    real_bool = torch.Tensor.__bool__
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self: calls.append(1) or real_bool(self))
    with torch.inference_mode():
        frozen = right_padded([T, 5])
        check_right_padding(frozen)
        check_right_padding(frozen)
    assert len(calls) == 1


def test_no_state_left_behind_by_the_mask_cache(mask_cache_on_cpu):
    """The cache of the last checked mask holds a weak reference: it keeps no mask alive."""
    m = make("cnn")
    mask = right_padded([T, 4])
    m(torch.randn(B, T, D, dtype=torch.float64), mask)
    ref = base_module._last_right_padded[0]
    assert ref() is mask
    del mask
    assert ref() is None


def test_a_mixer_without_parameters_still_runs():
    """The dtype check compares with the parameters' dtype; a mixer that has none (a running mean) skips it."""

    class MeanSoFar(base_module.Mixer):
        def forward_fast(self, x, mask=None):
            return x.cumsum(1) / torch.arange(1, x.shape[1] + 1, dtype=x.dtype).view(1, -1, 1)

        forward_reference = forward_fast

    y = MeanSoFar(d_model=D)(torch.randn(B, T, D, dtype=torch.float64))
    assert y.shape == (B, T, D)
    with pytest.raises(ValueError, match="no parameters"):
        MeanSoFar(d_model=D)._device_dtype(None, None)


def test_a_mixer_that_cannot_stream_says_so():
    """``supports_step = False``: its state and its step raise StreamingNotSupported, in a block too."""

    class Shuffle(base_module.Mixer):
        supports_step = False

        def __init__(self, d_model, causal=True, impl="fast", layer_idx=0):
            super().__init__(d_model, causal, impl)
            self.proj = torch.nn.Linear(d_model, d_model)

        def forward_fast(self, x, mask=None):
            return self.proj(x)

        forward_reference = forward_fast

    m = Shuffle(d_model=D)
    with pytest.raises(StreamingNotSupported, match="supports_step=False"):
        m.init_state(B)
    with pytest.raises(StreamingNotSupported, match="supports_step=False"):
        m.step(torch.randn(B, D), None)
    with pytest.raises(StreamingNotSupported, match="supports_step=False"):
        Block(m).step(torch.randn(B, D), None)


def test_a_cached_mask_is_still_checked_for_empty_rows(mask_cache_on_cpu):
    mask = torch.tensor([[True, False], [False, False]])  # right-padded, but the second row is empty
    check_right_padding(mask)  # fine for a mixer: cached as right-padded
    with pytest.raises(ValueError, match="at least one real token"):
        check_right_padding(mask, nonempty=True)


@pytest.mark.parametrize("arch", ["lstm", "transformer", "mamba"])
def test_init_state_takes_the_dtype_and_device_asked_for(arch):
    m = make(arch, dtype=torch.float32)
    tensors = [t for t in base_module._state_tensors(m.init_state(B, device="cpu", dtype=torch.float64))]
    assert tensors and all(t.dtype == torch.float64 for t in tensors if t.is_floating_point())
    tensors = [t for t in base_module._state_tensors(m.init_state(B))]  # default: the parameters' dtype
    assert all(t.dtype == torch.float32 for t in tensors if t.is_floating_point())
