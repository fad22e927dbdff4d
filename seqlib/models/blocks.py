"""Blocks, the backbone and the task heads shared by every architecture.

A block is the pre-norm residual pair used by GPT-2 and its successors::

    x = x + mixer(norm(x))        # the architecture-specific part: attention, LSTM, convolution, SSM, ...
    x = x + mlp(norm(x))          # the same two-layer MLP for every architecture

so two architectures differ only in their mixer. The backbone embeds tokens (plus optional
absolute positions), runs the blocks and a final norm. The heads turn it into a language model,
a classifier or an encoder-decoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import CrossAttention
from .base import IMPLS, Mixer, StreamingNotSupported, check_positive_int, check_right_padding


class MLP(nn.Module):
    """Two-layer feed-forward network, ``D -> mult*D -> D`` with GELU."""

    def __init__(self, d_model: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        mult = check_positive_int("mlp_mult", mult)
        self.fc = nn.Linear(d_model, mult * d_model)
        self.proj = nn.Linear(mult * d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """``x + mixer(norm(x))``, then ``x + mlp(norm(x))``; streams when its mixer does.

    ``mlp_mult``: the MLP's hidden width in multiples of ``d_model`` (an int >= 1), or None for no MLP (the
    decoder's self-mixing sub-block, followed by cross-attention and an MLP of its own).
    """

    def __init__(self, mixer: Mixer, mlp_mult: int | None = 4, dropout: float = 0.0):
        super().__init__()
        d = mixer.d_model
        self.norm1 = nn.LayerNorm(d)
        self.mixer = mixer
        self.norm2 = None if mlp_mult is None else nn.LayerNorm(d)  # no MLP, no norm before it (no unused weights)
        self.mlp = None if mlp_mult is None else MLP(d, mlp_mult, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.mixer(self.norm1(x), mask))
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x

    def step(self, x_t: torch.Tensor, state):
        y, state = self.mixer.step(self.norm1(x_t), state)
        x_t = x_t + y
        if self.mlp is not None:
            x_t = x_t + self.mlp(self.norm2(x_t))
        return x_t, state


def sinusoidal_positions(n: int, d_model: int) -> torch.Tensor:
    """The fixed encoding of Vaswani et al. (2017): sin/cos at geometrically spaced frequencies. (n, D)"""
    pos = torch.arange(n, dtype=torch.float64).unsqueeze(1)  # (n, 1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(n, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d_model // 2]
    return pe


POS_ENCODINGS = (None, "learned", "sinusoidal")


def check_tokens(tokens: torch.Tensor, vocab_size: int, what: str = "tokens") -> None:
    """Token ids must be an integer (B, T) tensor with values in [0, vocab_size)."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"{what} must be a (batch, time) tensor of token ids, got {shape}")
    if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{what} must hold integer token ids, got dtype {tokens.dtype}")
    if tokens.numel() == 0 or torch.compiler.is_compiling():
        return
    lo, hi = torch.stack(torch.aminmax(tokens)).tolist()  # one wait for the GPU, not two
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"{what} contain ids in [{lo}, {hi}], outside the vocabulary [0, {vocab_size})")


class TokenEmbedding(nn.Module):
    """Token ids (B, T) -> vectors (B, T, D), plus absolute positions when asked (learned or sinusoidal)."""

    def __init__(
        self, vocab_size: int, d_model: int, pos_encoding: str | None = None, max_len: int = 1024, dropout: float = 0.0
    ):
        super().__init__()
        if pos_encoding not in POS_ENCODINGS:
            raise ValueError(f"pos_encoding must be one of {POS_ENCODINGS}, got {pos_encoding!r}")
        self.vocab_size, self.d_model, self.pos_encoding, self.max_len = vocab_size, d_model, pos_encoding, max_len
        self.embed = nn.Embedding(vocab_size, d_model)
        # N(0, 0.02) as in GPT-2: with the output layer tied to this table, PyTorch's N(0, 1) default would start
        # a language model at a loss far above ln(vocab_size), confidently predicting its own input token.
        nn.init.normal_(self.embed.weight, std=0.02)
        if pos_encoding == "learned":
            self.pos = nn.Embedding(max_len, d_model)
            nn.init.normal_(self.pos.weight, std=0.02)
        elif pos_encoding == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_positions(max_len, d_model).float(), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, start: int = 0, what: str = "tokens") -> torch.Tensor:
        check_tokens(tokens, self.vocab_size, what)
        x = self.embed(tokens)  # (B, T, D)
        if self.pos_encoding is not None:
            end = start + tokens.shape[1]
            if end > self.max_len:
                raise ValueError(
                    f"sequence of length {end} exceeds the {self.pos_encoding} position table "
                    f"(max_len={self.max_len}); build the model with a larger max_len or use RoPE"
                )
            if self.pos_encoding == "learned":
                pos = self.pos(torch.arange(start, end, device=tokens.device))
            else:
                pos = self.pos_table[start:end]
            x = x + pos.to(x.dtype)
        return self.dropout(x)


class Backbone(nn.Module):
    """Token embedding (+ optional absolute positions) -> blocks -> final norm. (B, T) -> (B, T, D)."""

    def __init__(
        self,
        mixers: Sequence[Mixer],
        vocab_size: int,
        *,
        pos_encoding: str | None = None,
        max_len: int = 1024,  # size of the learned/sinusoidal position table; longer inputs are an error
        mlp_mult: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        d = mixers[0].d_model
        self.d_model, self.vocab_size = d, vocab_size
        self.embedding = TokenEmbedding(vocab_size, d, pos_encoding, max_len, dropout)
        self.blocks = nn.ModuleList(Block(m, mlp_mult, dropout) for m in mixers)
        self.norm = nn.LayerNorm(d)

    @property
    def embed(self) -> nn.Embedding:
        return self.embedding.embed

    @property
    def causal(self) -> bool:
        return all(b.mixer.causal for b in self.blocks)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embedding(tokens)  # (B, T, D)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)

    # -------------------------------------------------------------- streaming
    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        return {"pos": 0, "layers": [b.mixer.init_state(batch_size, device, dtype) for b in self.blocks]}

    def step(self, token_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """One token id per sequence, (B,) -> hidden (B, D) and the new state."""
        if not isinstance(token_t, torch.Tensor) or token_t.dim() != 1:
            raise ValueError("step expects one token id per sequence, a (batch,) tensor")
        if (
            not isinstance(state, dict)
            or not isinstance(state.get("pos"), int)
            or not isinstance(state.get("layers"), list)
            or len(state["layers"]) != len(self.blocks)
        ):
            got = "None" if state is None else type(state).__name__
            raise ValueError(
                f"step got a state ({got}) that is not one from this model: pass the state returned by "
                "init_state() or the previous step()"
            )
        x = self.embedding(token_t.unsqueeze(1), start=state["pos"], what="token_t")[:, 0]  # (B, D)
        layers = []
        for block, s in zip(self.blocks, state["layers"], strict=True):
            x, s = block.step(x, s)
            layers.append(s)
        return self.norm(x), {"pos": state["pos"] + 1, "layers": layers}

    def state_size(self, seq_len: int) -> int:
        return sum(b.mixer.state_size(seq_len) for b in self.blocks)


class LanguageModel(nn.Module):
    """Next-token prediction: tokens (B, T) -> logits (B, T, V). The output layer shares the embedding."""

    task = "lm"

    def __init__(self, backbone: Backbone):
        super().__init__()
        if not backbone.causal:
            raise ValueError("a language model needs causal mixers (causal=True)")
        self.backbone = backbone
        self.head = nn.Linear(backbone.d_model, backbone.vocab_size, bias=False)
        self.head.weight = backbone.embed.weight  # weight tying (Press & Wolf, 2017)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(tokens))

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        return self.backbone.init_state(batch_size, device, dtype)

    def step(self, token_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        h, state = self.backbone.step(token_t, state)
        return self.head(h), state

    @torch.no_grad()
    def generate(
        self,
        prompt: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample a continuation of ``prompt`` (B, T0) token by token with the streaming state.

        Every architecture decodes through ``step``, so a KV cache, a recurrent state or a
        convolution buffer is what carries the context.
        """
        check_tokens(prompt, self.backbone.vocab_size, "prompt")
        if prompt.shape[1] == 0:
            raise ValueError("prompt must hold at least one token")
        state = self.init_state(prompt.shape[0], prompt.device)
        for t in range(prompt.shape[1]):
            logits, state = self.step(prompt[:, t], state)
        out = [prompt]
        for _ in range(max_new_tokens):
            logits = logits.float() / max(temperature, 1e-8)
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)  # (B, 1)
            out.append(nxt)
            logits, state = self.step(nxt[:, 0], state)
        return torch.cat(out, dim=1)


def masked_mean(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over real positions only: (B, T, D), (B, T) -> (B, D)."""
    if mask is None:
        return h.mean(dim=1)
    w = mask.unsqueeze(-1).to(h.dtype)
    return (h * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


class Classifier(nn.Module):
    """tokens (B, T) and padding mask (B, T) -> class logits (B, C), mean-pooled over real tokens."""

    task = "classify"

    def __init__(self, backbone: Backbone, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.d_model, num_classes)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
                got = f"dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
                raise TypeError(
                    f"mask must be a torch.bool tensor of shape {tuple(tokens.shape)}, True = real token; got {got} "
                    "(for a 0/1 tensor: mask.bool())"
                )
            if not isinstance(tokens, torch.Tensor) or mask.shape != tokens.shape:
                shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else "that of the tokens"
                raise ValueError(f"mask must have the tokens' shape {shape}, got {tuple(mask.shape)}")
            if tokens.numel():  # empty tokens: the mixers say what is wrong
                check_right_padding(mask, nonempty=True)  # one wait for the GPU; the mixers then skip their check
        h = self.backbone(tokens, mask)  # (B, T, D)
        return self.head(self.dropout(masked_mean(h, mask)))


class DecoderBlock(nn.Module):
    """Causal self-mixing, cross-attention to the encoder, MLP; each pre-norm with a residual.

    With an attention mixer this is the Transformer decoder layer; with an LSTM or GRU mixer it is a
    recurrent decoder with (Luong-style) attention over the encoder states.
    """

    def __init__(self, mixer: Mixer, n_heads: int, mlp_mult: int = 4, dropout: float = 0.0, impl: str = "fast"):
        super().__init__()
        d = mixer.d_model
        self.self_block = Block(mixer, mlp_mult=None, dropout=dropout)
        self.norm = nn.LayerNorm(d)
        self.cross = CrossAttention(d, n_heads, impl=impl)
        self.norm_mlp = nn.LayerNorm(d)
        self.mlp = MLP(d, mlp_mult, dropout)

    def forward(self, x, memory, memory_mask=None):
        x = self.self_block(x)
        x = x + self.cross(self.norm(x), memory, memory_mask)
        return x + self.mlp(self.norm_mlp(x))


class EncoderDecoder(nn.Module):
    """(src (B, S), tgt_in (B, T)) -> logits (B, T, V_tgt). Any mixer encodes; the decoder is causal.

    ``impl`` ("fast" or "reference") picks the cross-attention's implementation, as it does the mixers'.
    """

    task = "seq2seq"

    def __init__(
        self,
        encoder: Backbone,
        decoder_mixers: Sequence[Mixer],
        tgt_vocab_size: int,
        n_heads: int,
        *,
        pos_encoding: str | None = None,
        max_len: int = 1024,
        mlp_mult: int = 4,
        dropout: float = 0.0,
        impl: str = "fast",
    ):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        d = encoder.d_model
        self.encoder = encoder
        self.tgt_embedding = TokenEmbedding(tgt_vocab_size, d, pos_encoding, max_len, dropout)
        self.layers = nn.ModuleList(DecoderBlock(m, n_heads, mlp_mult, dropout, impl) for m in decoder_mixers)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, tgt_vocab_size, bias=False)
        self.head.weight = self.tgt_embedding.embed.weight

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(src, src_mask)

    def decode(self, memory, tgt_in, src_mask=None) -> torch.Tensor:
        x = self.tgt_embedding(tgt_in, what="tgt_in")  # (B, T, D)
        for layer in self.layers:
            x = layer(x, memory, src_mask)
        return self.head(self.norm(x))

    def forward(self, src, tgt_in, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(src, src_mask), tgt_in, src_mask)


def count_params(model: nn.Module) -> int:
    """Trainable parameters, counting tied weights once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


__all__ = [
    "MLP",
    "Block",
    "Backbone",
    "TokenEmbedding",
    "LanguageModel",
    "Classifier",
    "DecoderBlock",
    "EncoderDecoder",
    "StreamingNotSupported",
    "check_tokens",
    "count_params",
    "masked_mean",
    "sinusoidal_positions",
]
