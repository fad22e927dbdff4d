"""The mixer contract, checked for every architecture in the registry (float64, CPU, tiny sizes)."""

import math

import pytest
import torch

from seqlib.bench import tensor_bytes
from seqlib.models import (
    MIXERS,
    CNNModel,
    ConvTransformer,
    LSTMModel,
    StreamingNotSupported,
    TransformerModel,
    TransformerWithRecurrence,
    beam_search,
    build_model,
    count_params,
    greedy_decode,
    match_d_model,
)

ARCHS = list(MIXERS)
D, B, T = 16, 2, 23
# small windows/segments/chunks so that T crosses their boundaries
OPTIONS = {
    "longformer": {"window": 5},
    "recurrent_transformer": {"segment_len": 8, "memory_size": 3},
    "linear_attention": {"chunk_size": 8},
    "mamba": {"chunk_size": 8},
    "rwkv": {"chunk_size": 8},
}


def make(arch, causal=True, impl="fast", layer_idx=1):
    torch.manual_seed(0)
    return MIXERS[arch](d_model=D, causal=causal, impl=impl, layer_idx=layer_idx, **OPTIONS.get(arch, {})).double()


@pytest.fixture(autouse=True)
def _float64():
    torch.manual_seed(0)


@pytest.mark.parametrize("arch", ARCHS)
def test_shape_and_dtype(arch):
    m = make(arch)
    x = torch.randn(B, T, D, dtype=torch.float64)
    y = m(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_float16_autocast_stays_close_to_float32(arch):
    """A T4 trains under float16 autocast (seqlib.device): no dtype clash, nothing lost beyond float16's rounding."""
    torch.manual_seed(0)
    m = MIXERS[arch](d_model=D, **OPTIONS.get(arch, {}))  # float32 weights, as the trainer keeps them
    x = torch.randn(B, T, D)
    y32 = m(x)
    g32 = torch.autograd.grad(y32.square().sum(), list(m.parameters()))
    with torch.autocast("cpu", dtype=torch.float16):
        y16 = m(x)
    g16 = torch.autograd.grad(y16.float().square().sum(), list(m.parameters()))
    assert y16.dtype == torch.float16
    assert (y16.float() - y32).abs().max() <= 1e-2 * y32.abs().max()  # float16 keeps ~3 significant digits
    for a, b in zip(g16, g32, strict=True):
        assert torch.isfinite(a).all() and (a - b).abs().max() <= 2e-2 * b.abs().max() + 1e-6


@pytest.mark.parametrize("arch", ARCHS)
def test_causal(arch):
    m = make(arch)
    x = torch.randn(B, T, D, dtype=torch.float64)
    y = m(x)
    for t in (0, 7, T - 2):
        x2 = x.clone()
        x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :])
        y2 = m(x2)
        torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], atol=1e-10, rtol=0)
        assert not torch.allclose(y2[:, t + 1 :], y[:, t + 1 :]), "changing the future changed nothing at all"


@pytest.mark.parametrize("arch", ARCHS)
def test_reference_equals_fast_outputs_and_gradients(arch):
    fast = make(arch)
    ref = make(arch, impl="reference")
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
    y_fast = fast(x)
    (g_fast,) = torch.autograd.grad(y_fast.pow(2).sum(), x)
    y_ref = ref(x)
    (g_ref,) = torch.autograd.grad(y_ref.pow(2).sum(), x)
    torch.testing.assert_close(y_fast, y_ref, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(g_fast, g_ref, atol=1e-8, rtol=1e-6)
    pf = torch.autograd.grad(fast(x).sum(), list(fast.parameters()), allow_unused=True)
    pr = torch.autograd.grad(ref(x).sum(), list(ref.parameters()), allow_unused=True)
    for a, b in zip(pf, pr, strict=True):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_step_equals_forward(arch):
    m = make(arch)
    if not m.supports_step:
        with pytest.raises(StreamingNotSupported):
            m.init_state(B)
        return
    x = torch.randn(B, T, D, dtype=torch.float64)
    y = m(x)
    state = m.init_state(B)
    ys = []
    for t in range(T):
        y_t, state = m.step(x[:, t], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("arch", ARCHS)
def test_state_size_counts_the_numbers_the_state_really_holds(arch):
    m = make(arch)
    if not m.supports_step:
        return
    state = m.init_state(B)
    x = torch.randn(B, 20, D, dtype=torch.float64)
    for n in range(1, 21):  # across segment, window and chunk boundaries
        _, state = m.step(x[:, n - 1].clone(), state)  # a fresh tensor, as in real decoding
        held = tensor_bytes(state) / (B * x.element_size())
        assert held == m.state_size(n), (
            f"{arch} after {n} tokens: state holds {held} numbers, state_size says {m.state_size(n)}"
        )


@pytest.mark.parametrize("arch", ARCHS)
def test_bad_inputs_get_clear_errors(arch):
    m = make(arch)
    with pytest.raises(ValueError, match="batch, time"):
        m(torch.randn(T, D, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating"):
        m(torch.zeros(B, T, D, dtype=torch.long))
    with pytest.raises(ValueError, match="d_model"):
        m(torch.randn(B, T, D + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="mask"):
        m(torch.randn(B, T, D, dtype=torch.float64), torch.ones(B, T + 1, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask"):
        m(torch.randn(B, T, D, dtype=torch.float64), torch.ones(B, T))
    if m.supports_step:
        with pytest.raises(ValueError, match="step"):
            m.step(torch.randn(B, T, D, dtype=torch.float64), m.init_state(B))
    with pytest.raises(TypeError):
        MIXERS[arch](d_model=D, not_an_option=1)
    with pytest.raises(ValueError):
        MIXERS[arch](d_model=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_step_refused_in_bidirectional_form(arch):
    if not MIXERS[arch].supports_bidirectional:
        with pytest.raises(ValueError, match="bidirectional"):
            make(arch, causal=False)
        return
    m = make(arch, causal=False)
    with pytest.raises(StreamingNotSupported):
        m.init_state(B)


@pytest.mark.parametrize("arch", ARCHS)
def test_classifier_ignores_padding(arch):
    torch.manual_seed(0)
    model = (
        build_model(arch, "classify", vocab_size=11, d_model=D, n_layers=2, num_classes=3, **OPTIONS.get(arch, {}))
        .double()
        .eval()
    )
    lengths = torch.tensor([T, 9])
    tokens = torch.randint(1, 11, (B, T))
    mask = torch.arange(T) < lengths[:, None]
    out = model(tokens, mask)
    junk = torch.where(mask, tokens, torch.randint(1, 11, (B, T)))
    torch.testing.assert_close(model(junk, mask), out, atol=1e-10, rtol=0)
    alone = model(tokens[1:, :9], mask[1:, :9])  # the short sequence without any padding
    torch.testing.assert_close(alone, out[1:], atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_overfits_a_fixed_batch(arch):
    torch.manual_seed(0)
    model = build_model(arch, "lm", vocab_size=8, d_model=32, n_layers=2, **OPTIONS.get(arch, {}))
    x = torch.randint(0, 8, (4, 16))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss0 = None
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        loss0 = loss0 if loss0 is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.25 * loss0, f"{arch}: loss {loss0:.3f} -> {loss.item():.3f}"


@pytest.mark.parametrize("arch", ARCHS)
def test_every_parameter_of_every_head_is_used(arch):
    """No dead weights: a parameter the output never depends on would still count in the parameter budgets that
    the chapters match architectures at. T crosses the options' windows, segments and chunks."""
    opts = {"vocab_size": 11, "d_model": D, "n_layers": 2, **OPTIONS.get(arch, {})}
    src, tgt = torch.randint(0, 11, (B, T)), torch.randint(0, 9, (B, T - 2))
    mask = torch.arange(T) < torch.tensor([[T], [T - 6]])
    heads = {
        "lm": (build_model(arch, "lm", **opts), (src,)),
        "classify causal": (build_model(arch, "classify", num_classes=3, **opts), (src, mask)),
        "classify bidirectional": (build_model(arch, "classify", num_classes=3, causal=False, **opts), (src, mask)),
        "seq2seq": (build_model(arch, "seq2seq", tgt_vocab_size=9, **opts), (src, tgt, mask)),
    }
    for head, (model, inputs) in heads.items():
        params = dict(model.named_parameters())
        grads = torch.autograd.grad(model(*inputs).square().sum(), list(params.values()), allow_unused=True)
        dead = [name for (name, _), g in zip(params.items(), grads, strict=True) if g is None or not g.any()]
        assert not dead, f"{arch} {head}: no gradient reaches {dead}"


@pytest.mark.parametrize("arch", [a for a in ARCHS if MIXERS[a].supports_step])
def test_language_model_streaming_equals_forward(arch):
    torch.manual_seed(0)
    lm = build_model(arch, "lm", vocab_size=13, d_model=D, n_layers=2, **OPTIONS.get(arch, {})).double().eval()
    tokens = torch.randint(0, 13, (B, T))
    full = lm(tokens)
    state = lm.init_state(B)
    steps = []
    for t in range(T):
        logits, state = lm.step(tokens[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-9, rtol=1e-7)
    out = lm.generate(tokens[:, :3], 5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (B, 8) and torch.equal(out[:, :3], tokens[:, :3])


def test_hybrid_pattern_and_options_per_architecture():
    lm = build_model(
        ["mamba", "transformer"],
        "lm",
        vocab_size=10,
        d_model=D,
        n_layers=4,
        transformer={"n_heads": 2},
        mamba={"d_state": 4},
    )
    kinds = [type(b.mixer).__name__ for b in lm.backbone.blocks]
    assert kinds == ["MambaMixer", "AttentionMixer", "MambaMixer", "AttentionMixer"]
    assert lm(torch.randint(0, 10, (2, 12))).shape == (2, 12, 10)
    # each architecture's options reach its layers, and only them
    assert all(b.mixer.n_heads == 2 for b in lm.backbone.blocks[1::2])
    assert all(b.mixer.d_state == 4 for b in lm.backbone.blocks[0::2])


@pytest.mark.parametrize("arch", [a for a in ARCHS if MIXERS[a].supports_bidirectional])
def test_bidirectional_form_sees_the_future(arch):
    m = make(arch, causal=False)
    x = torch.randn(B, T, D, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 2] += 1.0  # within every window, segment and dilated tap of position 0
    assert (m(x)[:, 0] - m(x2)[:, 0]).abs().max() > 1e-6


@pytest.mark.parametrize("arch", ARCHS)
def test_classifier_and_encoder_are_bidirectional_and_the_decoder_causal(arch):
    opts = {"vocab_size": 11, "d_model": D, "n_layers": 2, **OPTIONS.get(arch, {})}
    clf = build_model(arch, "classify", num_classes=2, **opts)
    s2s = build_model(arch, "seq2seq", tgt_vocab_size=9, **opts)
    bidirectional = MIXERS[arch].supports_bidirectional
    assert all(b.mixer.causal is not bidirectional for b in clf.backbone.blocks)
    assert all(b.mixer.causal is not bidirectional for b in s2s.encoder.blocks)
    assert all(layer.self_block.mixer.causal for layer in s2s.layers)


def test_generate_feeds_back_its_samples_and_top_k_one_is_greedy():
    torch.manual_seed(0)
    lm = build_model("gru", "lm", vocab_size=13, d_model=D, n_layers=2).double().eval()
    prompt = torch.randint(0, 13, (B, 3))
    out = lm.generate(prompt, 6, top_k=1, generator=torch.Generator().manual_seed(0))
    for t in range(3, out.shape[1]):  # each token is the most likely one given every token before it
        assert torch.equal(out[:, t], lm(out[:, :t])[:, -1].argmax(-1))


class NextTokenTable(torch.nn.Module):
    """A decoder whose next-token log-probabilities depend only on the previous token (``table[prev]``)."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def encode(self, src, src_mask=None):
        return torch.zeros(src.shape[0], 1, 1)

    def decode(self, memory, ys, src_mask=None):
        return self.table[ys]  # (K, t, V)


def test_beam_search_finds_the_likelier_sequence_that_greedy_misses():
    bos, eos, a, c, b = 0, 1, 2, 3, 4
    lp = torch.full((5, 5), -1e9)
    lp[bos, a], lp[bos, b] = math.log(0.6), math.log(0.4)  # greedy takes a ...
    lp[a, eos], lp[a, c] = math.log(0.45), math.log(0.55)  # ... then c: p(a c <eos>) = 0.33
    lp[c, eos] = lp[b, eos] = lp[eos, eos] = 0.0  # while p(b <eos>) = 0.4
    model, src = NextTokenTable(lp), torch.zeros(1, 1, dtype=torch.long)
    assert greedy_decode(model, src, None, bos_id=bos, eos_id=eos, max_len=4)[0].tolist() == [a, c, eos]
    assert beam_search(model, src, None, bos_id=bos, eos_id=eos, beam_size=2, max_len=4, length_penalty=0.0)[0] == [b]
    # a length penalty that favours longer outputs enough flips the choice: log p / ((5 + |y|) / 6) ** alpha
    assert beam_search(model, src, None, bos_id=bos, eos_id=eos, beam_size=2, max_len=4, length_penalty=5.0)[0] == [
        a,
        c,
    ]


def test_beam_search_with_a_beam_wider_than_the_vocabulary():
    bos, eos, a, c, b = 0, 1, 2, 3, 4
    lp = torch.full((5, 5), -1e9)
    lp[bos, a], lp[bos, b] = math.log(0.6), math.log(0.4)
    lp[a, eos], lp[a, c] = math.log(0.45), math.log(0.55)
    lp[c, eos] = lp[b, eos] = lp[eos, eos] = 0.0
    model, src = NextTokenTable(lp), torch.zeros(1, 1, dtype=torch.long)
    # 8 beams over 5 tokens: the first step has only 5 candidates, and the answer is the narrower beam's
    wide = beam_search(model, src, None, bos_id=bos, eos_id=eos, beam_size=8, max_len=4, length_penalty=0.0)
    assert wide == beam_search(model, src, None, bos_id=bos, eos_id=eos, beam_size=2, max_len=4, length_penalty=0.0)


def test_build_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("lstmm", "lm", vocab_size=10, d_model=D, n_layers=1)
    with pytest.raises(ValueError, match="unknown task"):
        build_model("lstm", "translate", vocab_size=10, d_model=D, n_layers=1)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("lstm", "classify", vocab_size=10, d_model=D, n_layers=1)
    with pytest.raises(ValueError, match="causal"):
        build_model("lstm", "lm", vocab_size=10, d_model=D, n_layers=1, causal=False)
    with pytest.raises(TypeError, match="bad option"):
        build_model("lstm", "lm", vocab_size=10, d_model=D, n_layers=1, n_kernels=3)


def test_token_and_position_errors():
    lm = build_model(
        "transformer", "lm", vocab_size=10, d_model=D, n_layers=1, pos_encoding="learned", max_len=16, rope=False
    )
    with pytest.raises(ValueError, match="outside the vocabulary"):
        lm(torch.tensor([[1, 2, 10]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        lm(torch.tensor([[-1, 2]]))
    with pytest.raises(TypeError, match="integer"):
        lm(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"sequence of length 17 exceeds the learned position table \(max_len=16\)"):
        lm(torch.zeros(1, 17, dtype=torch.long))
    assert lm(torch.zeros(1, 16, dtype=torch.long)).shape == (1, 16, 10)


@pytest.mark.parametrize("pos", ["learned", "sinusoidal"])
def test_absolute_positions_stream(pos):
    torch.manual_seed(0)
    lm = build_model(
        "transformer", "lm", vocab_size=10, d_model=D, n_layers=2, pos_encoding=pos, max_len=32, rope=False
    ).double()
    tokens = torch.randint(0, 10, (B, 12))
    state = lm.init_state(B)
    logits = []
    for t in range(12):
        out, state = lm.step(tokens[:, t], state)
        logits.append(out)
    torch.testing.assert_close(torch.stack(logits, 1), lm(tokens), atol=1e-9, rtol=1e-7)


def test_classifier_mask_must_be_right_padding():
    model = build_model("lstm", "classify", vocab_size=10, d_model=D, n_layers=1, num_classes=2)
    tokens = torch.randint(0, 10, (2, 5))
    with pytest.raises(ValueError, match="right"):
        model(tokens, torch.tensor([[False, True, True, True, True]] * 2))


@pytest.mark.parametrize("arch", ["transformer", "lstm", "cnn"])
def test_seq2seq_shapes_and_decoding(arch):
    torch.manual_seed(0)
    model = build_model(arch, "seq2seq", vocab_size=12, tgt_vocab_size=9, d_model=D, n_layers=2).eval()
    src = torch.randint(3, 12, (B, 7))
    src_mask = torch.arange(7) < torch.tensor([[7], [4]])
    tgt_in = torch.randint(0, 9, (B, 5))
    assert model(src, tgt_in, src_mask).shape == (B, 5, 9)
    greedy = greedy_decode(model, src, src_mask, bos_id=1, eos_id=2, max_len=6)
    assert greedy.shape[0] == B and greedy.shape[1] <= 6
    beams = beam_search(model, src, src_mask, bos_id=1, eos_id=2, beam_size=3, max_len=6)
    assert len(beams) == B and all(len(b) <= 6 for b in beams)
    # beam size 1 is greedy search
    one = beam_search(model, src, src_mask, bos_id=1, eos_id=2, beam_size=1, max_len=6)
    for b in range(B):
        g = greedy[b].tolist()
        g = g[: g.index(2)] if 2 in g else g
        assert one[b] == g


def test_seq2seq_padding_of_the_source_is_ignored():
    torch.manual_seed(0)
    model = build_model("transformer", "seq2seq", vocab_size=12, tgt_vocab_size=9, d_model=D, n_layers=1).double()
    src = torch.randint(3, 12, (1, 7))
    tgt_in = torch.randint(0, 9, (1, 4))
    short = model(src[:, :4], tgt_in)
    padded = model(src, tgt_in, torch.arange(7)[None] < 4)
    torch.testing.assert_close(padded, short, atol=1e-10, rtol=0)


@pytest.mark.parametrize("pair", [("lstm", "transformer"), ("cnn", "mamba"), ("rwkv", "s4")])
def test_match_d_model_lands_within_ten_percent(pair):
    target = 200_000
    for arch in pair:
        d = match_d_model(arch, "lm", target, vocab_size=65, n_layers=2)
        n = count_params(build_model(arch, "lm", vocab_size=65, d_model=d, n_layers=2))
        assert abs(n - target) / target <= 0.10, (arch, d, n)
    with pytest.raises(ValueError, match="within"):
        match_d_model("lstm", "lm", 50, vocab_size=65, n_layers=2)


def test_match_d_model_finds_the_closest_width():
    """The search (doubling, then bisection) picks what trying every width would."""
    target, arch = 150_000, "transformer"

    def n(d):
        return count_params(build_model(arch, "lm", vocab_size=65, d_model=d, n_layers=2))

    d = match_d_model(arch, "lm", target, vocab_size=65, n_layers=2)
    assert d == min(range(8, 2 * d, 8), key=lambda w: abs(n(w) - target))


def test_match_d_model_tolerance():
    """10% by default: a target 30% below the narrowest model is refused, and accepted with tolerance=0.5; with
    tolerance=0 only an exact hit is accepted."""
    kw = {"vocab_size": 20, "n_layers": 1}
    n8, n16 = (count_params(build_model("gru", "lm", d_model=d, **kw)) for d in (8, 16))
    with pytest.raises(ValueError, match="within 10%"):
        match_d_model("gru", "lm", n8 / 1.3, **kw)
    assert match_d_model("gru", "lm", n8 / 1.3, tolerance=0.5, **kw) == 8
    assert match_d_model("gru", "lm", n16, tolerance=0, **kw) == 16


def test_model_options_and_per_architecture_options():
    """dropout configures the blocks, whatever the mixer; <arch>=dict(...) beats the same option given to all."""
    lm = build_model("gru", "lm", vocab_size=10, d_model=D, n_layers=2, dropout=0.25)
    assert [b.dropout.p for b in lm.backbone.blocks] == [0.25, 0.25]
    lm = build_model("longformer", "lm", vocab_size=10, d_model=D, n_layers=2, window=8, longformer={"window": 5})
    assert [b.mixer.window for b in lm.backbone.blocks] == [5, 5]


def test_outline_classes_run_with_the_outline_arguments():
    tokens = torch.randint(0, 100, (2, 20))
    assert LSTMModel(100, 32, 48, 2)(tokens).shape == (2, 20, 100)
    assert CNNModel(100, 32, 16, [3, 4, 5])(tokens).shape == (2, 2)  # fixed: classes, not vocab_size
    tm = TransformerModel(100, 32, 4, 2).eval()
    assert tm(tokens).shape == (2, 20, 100)
    # fixed: causal by default, so the future cannot leak into the past
    t2 = tokens.clone()
    t2[:, 10:] = (t2[:, 10:] + 1) % 100
    torch.testing.assert_close(tm(t2)[:, :10], tm(tokens)[:, :10])
    leaky = TransformerModel(100, 32, 4, 2, causal=False).eval()  # the outline's bug, kept for chapter 3
    assert not torch.allclose(leaky(t2)[:, :10], leaky(tokens)[:, :10])
    # the same wording as the book's own models (blocks.TokenEmbedding)
    with pytest.raises(ValueError, match=r"sequence of length 513 exceeds the learned position table \(max_len=512\)"):
        tm(torch.zeros(1, 513, dtype=torch.long))
    x = torch.randn(2, 20, 32)
    assert ConvTransformer(32, 4)(x).shape == (2, 20, 32)
    twr = TransformerWithRecurrence(32, 4, memory_size=8)
    out, memory = twr(x)
    assert out.shape == (2, 20, 32)  # fixed: only the positions of x come back
    out2, memory2 = twr(torch.randn(3, 20, 32), None)  # fixed: a new batch size works
    assert out2.shape == (3, 20, 32)
    out3, memory3 = twr(x, memory)
    assert memory3.shape == memory.shape  # fixed: bounded memory
    assert not memory3.requires_grad or memory3.grad_fn is None  # fixed: detached between calls


def test_outline_transformer_takes_sequences_up_to_max_len():
    tm = TransformerModel(20, 16, 4, 1, max_len=8).eval()
    assert tm(torch.randint(0, 20, (2, 8))).shape == (2, 8, 20)
    with pytest.raises(ValueError, match=r"length 9 exceeds .*max_len=8"):
        tm(torch.randint(0, 20, (2, 9)))


def test_outline_lstm_reads_each_sequence_left_to_right():
    """Batch first: a sequence's outputs are the same alone or in a batch, and never depend on later tokens."""
    torch.manual_seed(0)
    lm = LSTMModel(20, 8, 12, 2)
    tokens = torch.randint(0, 20, (3, 10))
    y = lm(tokens)
    torch.testing.assert_close(lm(tokens[1:2]), y[1:2])
    later = tokens.clone()
    later[:, 6:] = (later[:, 6:] + 1) % 20
    torch.testing.assert_close(lm(later)[:, :6], y[:, :6])


@pytest.mark.parametrize("cls, args", [(LSTMModel, (20, 8, 12, 1)), (TransformerModel, (20, 16, 4, 1))])
def test_outline_models_reject_ids_outside_the_vocabulary(cls, args):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        cls(*args)(torch.tensor([[1, 2, 20]]))


class PerSourceTable(torch.nn.Module):
    """A decoder whose next-token log-probabilities depend on the source id and the previous token."""

    def __init__(self, tables):
        super().__init__()
        self.tables = tables  # (S, V, V)

    def encode(self, src, src_mask=None):
        return src  # (B, 1): the source id is the memory

    def decode(self, memory, ys, src_mask=None):
        return self.tables[memory[:, :1], ys]  # (B, t, V)


def test_greedy_pads_with_eos_after_a_sequence_ends():
    bos, eos, a, c = 0, 1, 2, 3
    tables = torch.full((2, 4, 4), -1e9)
    tables[0, bos, eos] = tables[0, eos, a] = 0.0  # source 0 ends at once; its model would go on after EOS
    tables[1, bos, a] = tables[1, a, c] = tables[1, c, eos] = tables[1, eos, eos] = 0.0
    out = greedy_decode(PerSourceTable(tables), torch.tensor([[0], [1]]), None, bos_id=bos, eos_id=eos, max_len=5)
    assert out.tolist() == [[eos, eos, eos], [a, c, eos]]


def test_beam_search_length_penalty_counts_the_tokens_after_bos():
    # GNMT: score = log p(y) / ((5 + |y|) / 6) ** alpha, |y| counting EOS but not BOS. With alpha = 1,
    # [b <eos>] (log p = -1, |y| = 2) and [a c <eos>] (log p = -1.135, |y| = 3): -1 / (7/6) < -1.135 / (8/6),
    # so the longer one wins; counting the BOS too (8/6 and 9/6) would pick the shorter one.
    bos, eos, a, c, b, d = 0, 1, 2, 3, 4, 5
    lp = torch.full((6, 6), -1e9)
    lp[bos, b], lp[bos, a] = -1.0, -1.135
    lp[bos, d] = math.log(1 - math.exp(-1.0) - math.exp(-1.135))  # third: outside a beam of two
    lp[b, eos] = lp[a, c] = lp[c, eos] = lp[d, eos] = lp[eos, eos] = 0.0
    model, src = NextTokenTable(lp), torch.zeros(1, 1, dtype=torch.long)
    got = beam_search(model, src, None, bos_id=bos, eos_id=eos, beam_size=2, max_len=5, length_penalty=1.0)
    assert got == [[a, c]]


class LastSourceToken(torch.nn.Module):
    """A decoder that says the last real source token, then EOS: it reads the source mask to find that token."""

    def __init__(self, vocab_size, eos_id):
        super().__init__()
        self.vocab_size, self.eos_id = vocab_size, eos_id

    def encode(self, src, src_mask=None):
        return src[..., None].double()  # (B, S, 1)

    def decode(self, memory, ys, src_mask=None):
        K, t = ys.shape
        n = torch.full((K,), memory.shape[1]) if src_mask is None else src_mask.sum(1)
        nxt = memory[torch.arange(K), n - 1, 0].long() if t == 1 else torch.full((K,), self.eos_id)
        return 10.0 * torch.nn.functional.one_hot(nxt, self.vocab_size)[:, None].expand(K, t, -1).double()


def test_beam_search_reads_the_source_mask():
    model = LastSourceToken(9, eos_id=2)
    src = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    assert beam_search(model, src, mask, bos_id=1, eos_id=2, beam_size=3, max_len=5) == [[6], [8]]
    assert greedy_decode(model, src, mask, bos_id=1, eos_id=2, max_len=5).tolist() == [[6, 2], [8, 2]]


def test_sinusoidal_positions_follow_vaswani():
    from seqlib.models.blocks import sinusoidal_positions

    pe = sinusoidal_positions(5, 6)
    for p in range(5):
        for i in range(3):
            angle = p / 10000 ** (2 * i / 6)
            assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-12)
            assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-12)


def _fixed_logits_lm(logits):
    """A language model whose next-token logits are always ``logits`` (V,), whatever came before."""
    lm = build_model("gru", "lm", vocab_size=len(logits), d_model=D, n_layers=1).eval()
    lm.step = lambda token_t, state: (logits.expand(token_t.shape[0], -1), state)
    return lm


def test_generate_top_k_keeps_the_k_likeliest_tokens():
    lm = _fixed_logits_lm(torch.tensor([2.0, 1.9, 1.8, 0.0, -1.0]))
    out = lm.generate(torch.zeros(64, 1, dtype=torch.long), 4, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(out[:, 1:].unique().tolist()) == {0, 1}


def test_generate_low_temperature_is_greedy():
    lm = _fixed_logits_lm(torch.tensor([0.0, 0.5, 0.0, 0.0, 0.0]))
    out = lm.generate(
        torch.zeros(32, 1, dtype=torch.long), 4, temperature=1e-3, generator=torch.Generator().manual_seed(0)
    )
    assert (out[:, 1:] == 1).all()
    hot = lm.generate(
        torch.zeros(32, 1, dtype=torch.long), 4, temperature=100.0, generator=torch.Generator().manual_seed(0)
    )
    assert len(hot[:, 1:].unique()) == 5  # nearly uniform
