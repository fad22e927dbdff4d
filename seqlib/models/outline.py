"""The outline's language models, as whole ``nn.Module`` classes with the outline's constructor arguments.

``LSTMModel(vocab_size, embed_dim, hidden_dim, num_layers)``: embedding -> stacked ``nn.LSTM`` -> linear.
The outline's version is correct; it is kept as the "textbook" LSTM language model of chapter 1.

``TransformerModel(vocab_size, d_model, num_heads, num_layers)``: the outline's version applies no causal
mask, so as a language model every position sees the token it must predict and the training loss
collapses without the model learning anything useful; and its learned position table fails with an
index error past 512 tokens. Here the causal mask is on by default (``causal=False`` reproduces the
outline's bug, which chapter 3 trains on purpose) and a sequence longer than ``max_len`` gets a clear error.
The other outline classes live with their families: ``CNNModel`` in ``cnn.py``,
``ConvTransformer`` and ``TransformerWithRecurrence`` in ``hybrid.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import check_tokens
from .rnn import run_recurrence


class LSTMModel(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_dim, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tokens(x, self.vocab_size)
        out, _ = run_recurrence(
            self.lstm, self.embed(x)
        )  # (B, T, H); as LSTMMixer: cuDNN's LSTM under autocast is fp16
        return self.fc(out)  # (B, T, V)


class TransformerModel(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        *,
        max_len: int = 512,
        causal: bool = True,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.vocab_size, self.max_len, self.causal = vocab_size, max_len, causal
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, 4 * d_model, dropout, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.fc = nn.Linear(d_model, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tokens(x, self.vocab_size)
        T = x.shape[1]
        if T > self.max_len:
            raise ValueError(
                f"sequence of length {T} exceeds the learned position table "
                f"(max_len={self.max_len}); build the model with a larger max_len"
            )
        h = self.embed(x) + self.pos(torch.arange(T, device=x.device))  # (B, T, D)
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=x.device) if self.causal else None
        return self.fc(self.transformer(h, mask=mask, is_causal=self.causal))  # (B, T, V)
