"""Every architecture of the book behind one mixer contract (see ``base.py``), and the models built from them.

>>> from seqlib.models import MIXERS, build_model
>>> mixer = MIXERS["lstm"](d_model=64)                      # (B, T, 64) -> (B, T, 64)
>>> lm = build_model("mamba", "lm", vocab_size=65, d_model=128, n_layers=4)
>>> hybrid = build_model(["mamba", "mamba", "transformer"], "lm", vocab_size=65, d_model=128, n_layers=6)
"""

from __future__ import annotations

import inspect
import math
import numbers
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


def _stack(make, arch: str | Sequence[str], n_layers: int, what: str = "arch") -> list[Mixer]:
    """One mixer per layer: ``arch`` everywhere, or a pattern of names repeated over the layers (whole times)."""
    if isinstance(arch, str):
        names = [arch] * n_layers
    else:
        arch = list(arch)
        if len(arch) == 0:
            raise ValueError(f"{what} pattern is empty")
        if n_layers % len(arch):
            unused = [a for a in arch[n_layers:] if a not in arch[:n_layers]]
            raise ValueError(
                f"the {what} pattern {arch} repeats over the layers, so it needs n_layers to be a multiple of "
                f"{len(arch)} ({len(arch)}, {2 * len(arch)}, ...); got n_layers={n_layers}, which would cut the pattern"
                + (f" and never use {sorted(set(unused))}" if unused else "")
            )
        names = arch * (n_layers // len(arch))
    return [make(name, i) for i, name in enumerate(names)]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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

    Model options: ``pos_encoding`` (None, "learned", "sinusoidal"), ``max_len``, ``mlp_mult`` (4, an int >= 1),
    ``dropout`` (0), ``impl`` ("fast" or "reference"; seq2seq: the cross-attention's too), ``causal`` (lm: True;
    classify and the seq2seq encoder: bidirectional where the mixer has a bidirectional form), ``n_heads``
    (4: cross-attention, and every mixer that takes ``n_heads``), ``decoder`` (seq2seq: the decoder's mixer,
    default ``arch``).
    Any other keyword is a mixer option; ``<arch name>=dict(...)`` gives options to one architecture of a pattern.
    A pattern repeats over the layers: ``n_layers`` must be a multiple of its length.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layers", n_layers)):
        if not _is_int(value) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    model_opts = {k: options.pop(k) for k in _MODEL_OPTIONS if k in options}
    if "mlp_mult" in model_opts and (not _is_int(model_opts["mlp_mult"]) or model_opts["mlp_mult"] <= 0):
        raise ValueError(
            f"mlp_mult must be a positive int (each block's MLP is d_model -> mlp_mult * d_model -> d_model), "
            f"got {model_opts['mlp_mult']!r}"
        )
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
        if not _is_int(num_classes) or num_classes < 2:
            raise ValueError(f"task='classify' needs num_classes >= 2, got {num_classes!r}")
        make = _mixer_factory(arch_options, options, d_model, model_opts.get("causal"), impl, n_heads)
        backbone = Backbone(_stack(make, arch, n_layers), vocab_size, **backbone_opts)
        return Classifier(backbone, num_classes, dropout=model_opts.get("dropout", 0.0))

    if not _is_int(tgt_vocab_size) or tgt_vocab_size <= 0:
        raise ValueError(f"task='seq2seq' needs tgt_vocab_size, a positive int, got {tgt_vocab_size!r}")
    if not _is_int(n_heads) or n_heads <= 0 or d_model % n_heads:
        given = f"n_heads={n_heads!r}" if "n_heads" in model_opts else f"the default n_heads={n_heads}"
        fix = f" or pick a d_model divisible by {n_heads}" if _is_int(n_heads) and n_heads > 0 else ""
        raise ValueError(
            f"task='seq2seq': the decoder's cross-attention splits d_model={d_model} into heads, and {given} "
            f"does not divide it; pass n_heads=... (a divisor of {d_model}){fix}"
        )
    make_enc = _mixer_factory(arch_options, options, d_model, model_opts.get("causal"), impl, n_heads)
    make_dec = _mixer_factory(arch_options, options, d_model, True, impl, n_heads)
    encoder = Backbone(_stack(make_enc, arch, n_layers), vocab_size, **backbone_opts)
    decoder = _stack(make_dec, model_opts.get("decoder", arch), n_layers, "decoder")
    dec_opts = {k: v for k, v in backbone_opts.items() if k != "mlp_mult"}
    return EncoderDecoder(
        encoder, decoder, tgt_vocab_size, n_heads, mlp_mult=backbone_opts.get("mlp_mult", 4), impl=impl, **dec_opts
    )


def match_d_model(
    arch, task: str, target_params: int, *, multiple: int = 8, tolerance: float = 0.10, **build_kwargs
) -> int:
    """The ``d_model`` (a multiple of ``multiple``) whose model lands closest to ``target_params``.

    Architectures differ in parameters per width (an LSTM mixer holds about 9·D² weights, attention 4·D², Mamba
    about 6·D²), so the book compares them at matched parameter counts. Raises if no width lands within
    ``tolerance`` of the target.
    """
    if isinstance(target_params, bool) or not isinstance(target_params, numbers.Real) or not target_params > 0:
        raise ValueError(f"target_params must be a positive number of parameters, got {target_params!r}")
    if not math.isfinite(target_params):
        raise ValueError(f"target_params must be finite, got {target_params!r}")
    if not _is_int(multiple) or multiple <= 0:
        raise ValueError(f"multiple must be a positive int (d_model is searched among its multiples), got {multiple!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not 0 <= tolerance < math.inf:
        raise ValueError(f"tolerance must be a non-negative fraction of target_params (0.1 = 10%), got {tolerance!r}")

    counted: dict[int, int] = {}

    def n_params(d: int) -> int:
        if d not in counted:
            try:
                model = build_model(arch, task, d_model=d, **build_kwargs)
            except ValueError as e:
                if d != multiple or not ("n_heads" in str(e) or "head dimension" in str(e)):
                    raise
                heads = build_kwargs.get("n_heads", 4)
                hint = f", e.g. multiple={math.lcm(multiple, 2 * heads)}" if _is_int(heads) and heads > 0 else ""
                raise ValueError(
                    f"match_d_model tries d_model = multiple, 2 * multiple, ... and the narrowest, d_model={d}, cannot "
                    f"be built: {e}. Choose a multiple that is a multiple of n_heads={heads!r} (of 2 * n_heads for "
                    f"attention with RoPE, which needs an even head dimension){hint}"
                ) from None
            counted[d] = count_params(model)
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
