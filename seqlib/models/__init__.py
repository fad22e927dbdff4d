"""Every architecture of the book behind one mixer contract (see ``base.py``), and the models built from them.

>>> from seqlib.models import MIXERS, build_model
>>> mixer = MIXERS["lstm"](d_model=64)                      # (B, T, 64) -> (B, T, 64)
>>> lm = build_model("mamba", "lm", vocab_size=65, d_model=128, n_layers=4)
>>> hybrid = build_model(["mamba", "mamba", "transformer"], "lm", vocab_size=65, d_model=128, n_layers=6)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from .attention import AttentionMixer, CrossAttention
from .base import IMPLS, Mixer, StreamingNotSupported, check_sequence
from .blocks import Backbone, Block, Classifier, EncoderDecoder, LanguageModel, TokenEmbedding, count_params
from .cnn import CNNMixer, CNNModel, KimCNN, receptive_field
from .decoding import beam_search, greedy_decode
from .hybrid import ConvTransformer, ConvTransformerMixer, RecurrentMemoryMixer, TransformerWithRecurrence
from .linear_attention import LinearAttentionMixer
from .local_attention import SlidingWindowMixer
from .outline import LSTMModel, TransformerModel
from .rnn import GRUMixer, LSTMMixer
from .rwkv import RWKVChannelMix, RWKVMixer
from .ssm import MambaMixer, S4DMixer

#: registry name -> mixer class, in the order the book introduces them
MIXERS: dict[str, type[Mixer]] = {
    "lstm": LSTMMixer,
    "gru": GRUMixer,
    "cnn": CNNMixer,
    "transformer": AttentionMixer,
    "conv_transformer": ConvTransformerMixer,
    "recurrent_transformer": RecurrentMemoryMixer,
    "linear_attention": LinearAttentionMixer,
    "s4": S4DMixer,
    "mamba": MambaMixer,
    "rwkv": RWKVMixer,
    "longformer": SlidingWindowMixer,
}

TASKS = ("lm", "classify", "seq2seq")

# options that configure the model around the mixers; every other keyword goes to the mixers
_MODEL_OPTIONS = ("pos_encoding", "max_len", "mlp_mult", "dropout", "impl", "causal", "n_heads", "decoder")


def _mixer_factory(arch_options: dict, shared: dict, d_model: int, causal: bool | None, impl: str, n_heads: int):
    def make(name: str, layer_idx: int) -> Mixer:
        if name not in MIXERS:
            raise ValueError(f"unknown architecture {name!r}; choose from {sorted(MIXERS)}")
        cls = MIXERS[name]
        opts = {**shared, **arch_options.get(name, {})}
        if "n_heads" in inspect.signature(cls).parameters:
            opts.setdefault("n_heads", n_heads)
        is_causal = causal if causal is not None else not cls.supports_bidirectional  # None: bidirectional if any
        try:
            return cls(d_model=d_model, causal=is_causal, impl=impl, layer_idx=layer_idx, **opts)
        except TypeError as e:
            raise TypeError(f"bad option for {name!r} ({cls.__name__}): {e}") from None

    return make


def _stack(make, arch: str | Sequence[str], n_layers: int) -> list[Mixer]:
    if isinstance(arch, str):
        names = [arch] * n_layers
    else:
        if len(arch) == 0:
            raise ValueError("arch pattern is empty")
        names = [arch[i % len(arch)] for i in range(n_layers)]
    return [make(name, i) for i, name in enumerate(names)]


def build_model(
    arch: str | Sequence[str],
    task: str,
    *,
    vocab_size: int,
    d_model: int,
    n_layers: int,
    num_classes: int | None = None,
    tgt_vocab_size: int | None = None,
    **options,
):
    """Build a whole model from a registry name (or a per-layer pattern of names, for hybrids).

    ``task="lm"``: tokens (B, T) -> logits (B, T, V). ``task="classify"``: tokens, mask -> logits (B, C).
    ``task="seq2seq"``: (src, tgt_in, src_mask) -> logits (B, T_tgt, V_tgt).

    Model options: ``pos_encoding`` (None, "learned", "sinusoidal"), ``max_len``, ``mlp_mult`` (4),
    ``dropout`` (0), ``impl`` ("fast" or "reference"), ``causal`` (lm: True; classify and the seq2seq
    encoder: bidirectional where the mixer has a bidirectional form), ``n_heads`` (4: cross-attention,
    and every mixer that takes ``n_heads``), ``decoder`` (seq2seq: the decoder's mixer, default ``arch``).
    Any other keyword is a mixer option; ``<arch name>=dict(...)`` gives options to one architecture of a pattern.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layers", n_layers)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    model_opts = {k: options.pop(k) for k in _MODEL_OPTIONS if k in options}
    arch_options = {k: options.pop(k) for k in list(options) if k in MIXERS and isinstance(options[k], dict)}
    impl = model_opts.get("impl", "fast")
    n_heads = model_opts.get("n_heads", 4)
    backbone_opts = {k: model_opts[k] for k in ("pos_encoding", "max_len", "mlp_mult", "dropout") if k in model_opts}

    if task == "lm":
        if model_opts.get("causal", True) is False:
            raise ValueError("a language model must be causal; drop causal=False")
        make = _mixer_factory(arch_options, options, d_model, True, impl, n_heads)
        return LanguageModel(Backbone(_stack(make, arch, n_layers), vocab_size, **backbone_opts))

    if task == "classify":
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"task='classify' needs num_classes >= 2, got {num_classes!r}")
        make = _mixer_factory(arch_options, options, d_model, model_opts.get("causal"), impl, n_heads)
        backbone = Backbone(_stack(make, arch, n_layers), vocab_size, **backbone_opts)
        return Classifier(backbone, num_classes, dropout=model_opts.get("dropout", 0.0))

    if not isinstance(tgt_vocab_size, int) or tgt_vocab_size <= 0:
        raise ValueError(f"task='seq2seq' needs tgt_vocab_size, got {tgt_vocab_size!r}")
    make_enc = _mixer_factory(arch_options, options, d_model, model_opts.get("causal"), impl, n_heads)
    make_dec = _mixer_factory(arch_options, options, d_model, True, impl, n_heads)
    encoder = Backbone(_stack(make_enc, arch, n_layers), vocab_size, **backbone_opts)
    decoder = _stack(make_dec, model_opts.get("decoder", arch), n_layers)
    dec_opts = {k: v for k, v in backbone_opts.items() if k != "mlp_mult"}
    return EncoderDecoder(
        encoder, decoder, tgt_vocab_size, n_heads, mlp_mult=backbone_opts.get("mlp_mult", 4), **dec_opts
    )


def match_d_model(
    arch, task: str, target_params: int, *, multiple: int = 8, tolerance: float = 0.10, **build_kwargs
) -> int:
    """The ``d_model`` (a multiple of ``multiple``) whose model lands closest to ``target_params``.

    Architectures differ in parameters per width (an LSTM mixer holds about 9·D² weights, attention 4·D², Mamba
    about 6·D²), so the book compares them at matched parameter counts. Raises if no width lands within
    ``tolerance`` of the target.
    """

    counted: dict[int, int] = {}

    def n_params(d: int) -> int:
        if d not in counted:
            counted[d] = count_params(build_model(arch, task, d_model=d, **build_kwargs))
        return counted[d]

    # Parameters grow with width: find the smallest width at or above the target (up to 4096), doubling from the
    # narrowest first, so that no model much wider than the answer is ever built (building one costs seconds).
    cap, lo, hi = 4096 // multiple, 1, 1
    while n_params(hi * multiple) < target_params and hi < cap:
        lo, hi = hi + 1, min(2 * hi, cap)
    while lo < hi:
        mid = (lo + hi) // 2
        if n_params(mid * multiple) < target_params:
            lo = mid + 1
        else:
            hi = mid
    candidates = [m * multiple for m in (lo - 1, lo) if m >= 1]
    best = min(candidates, key=lambda d: abs(n_params(d) - target_params))
    err = abs(n_params(best) - target_params) / target_params
    if err > tolerance:
        raise ValueError(
            f"{arch!r}: no d_model (multiple of {multiple}) within {tolerance:.0%} of {target_params:,} parameters "
            f"(closest: d_model={best}, {n_params(best):,}); change n_layers or multiple"
        )
    return best


__all__ = [
    "IMPLS",
    "MIXERS",
    "TASKS",
    "AttentionMixer",
    "Backbone",
    "Block",
    "CNNMixer",
    "CNNModel",
    "Classifier",
    "ConvTransformer",
    "ConvTransformerMixer",
    "CrossAttention",
    "EncoderDecoder",
    "GRUMixer",
    "KimCNN",
    "LSTMMixer",
    "LSTMModel",
    "LanguageModel",
    "LinearAttentionMixer",
    "MambaMixer",
    "Mixer",
    "RWKVChannelMix",
    "RWKVMixer",
    "RecurrentMemoryMixer",
    "S4DMixer",
    "SlidingWindowMixer",
    "StreamingNotSupported",
    "TokenEmbedding",
    "TransformerModel",
    "TransformerWithRecurrence",
    "beam_search",
    "build_model",
    "check_sequence",
    "count_params",
    "greedy_decode",
    "match_d_model",
    "receptive_field",
]
