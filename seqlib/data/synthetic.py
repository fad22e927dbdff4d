"""Synthetic sequence tasks that probe memory and recall, generated on the fly.

Every generator takes ``n`` (examples), ``seq_len`` (length of the returned sequences), task options and
``seed``, draws from its own ``torch.Generator`` (the same seed gives the same data, whatever else ran) and
returns ``(inputs, targets)``. For the token tasks both are LongTensors of shape (n, seq_len), and
``targets[b, t]`` is what a causal model should output at position t after reading ``inputs[b, :t+1]``;
positions that are not scored hold -100, so ``F.cross_entropy(logits.flatten(0, 1), targets.flatten(),
ignore_index=-100)`` trains on exactly the answers and ``token_accuracy`` scores them. ``vocab_size``
always counts every id that can appear, special ids included, so it is the model's vocabulary size.

=====================  ==================================================================  ===============
task                   layout (k = n_tokens / n_pairs)                                     minimum seq_len
=====================  ==================================================================  ===============
copying                k data tokens, blanks, a delimiter, then k blanks where the data    2k + 1
                       must be written out in order
selective_copying      k data tokens at random places among noise, then k markers where    2k
                       the data must be written out in order
associative_recall     k key-value pairs, then the keys again at random places (among      4k
                       random tokens): at each, output the key's value
induction_heads        random tokens; a trigger then some token; at the end the trigger    3
                       again: output the token that followed it
adding_problem         (n, T, 2) floats: values in [0, 1) and a marker channel with two    2
                       ones; the target (n,) is the sum of the two marked values
lag_copy               random tokens; at every position t >= lag output the token seen     lag + 1
                       exactly ``lag`` steps earlier, inputs[t - lag]
=====================  ==================================================================  ===============

References: copying: Hochreiter & Schmidhuber 1997, Arjovsky et al. 2016, Bai et al. 2018 (TCN, "copy
memory"). Selective copying: Gu & Dao 2023 (Mamba), Sec. 3.1 and E.1. Multi-query associative recall
(MQAR): Arora et al. 2023 (Zoology), as in zoology's ``multiquery_ar``. Induction heads: Olsson et al.
2022; Fu et al. 2023 (H3) as a synthetic task; Gu & Dao 2023. Adding problem: Hochreiter & Schmidhuber
1997, Le et al. 2015, Bai et al. 2018 (predicting 1 always gives MSE ~0.167).
Lag copy: a fixed-delay recall probe in the spirit of the copy-memory task; a causal convolution solves it
exactly when ``lag`` is smaller than its receptive field and is at chance (1 / vocab_size) beyond it.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100
BLANK, MARKER = 0, 1  # special ids of copying / selective_copying; data tokens are 2 .. vocab_size-1


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _check(n: int, seq_len: int, minimum: int, why: str) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n (number of examples) must be a positive int, got {n!r}")
    if not isinstance(seq_len, int) or seq_len < minimum:
        raise ValueError(f"seq_len={seq_len!r} is too short: it must be at least {minimum} ({why})")


def _random_subset(n: int, population: int, k: int, g: torch.Generator) -> torch.Tensor:
    """(n, k) indices drawn without replacement from range(population), in random order, per row."""
    return torch.rand(n, population, generator=g).topk(k, dim=1).indices


def copying(n: int, seq_len: int, n_tokens: int = 10, vocab_size: int = 10, seed: int = 0):
    """Copy memory: remember ``n_tokens`` tokens across a delay of blanks and write them out after a delimiter.

    inputs:  d_1 .. d_k  0 0 ... 0  1  0 ... 0     (blank = 0, delimiter = 1, data d_i in 2 .. vocab_size-1)
    targets: -100 everywhere except the last k positions, which hold d_1 .. d_k.
    The delay (number of blanks before the delimiter) is ``seq_len - 2 * n_tokens - 1``.
    """
    _check(n, seq_len, 2 * n_tokens + 1, f"{n_tokens} tokens, a delimiter and {n_tokens} answer slots")
    if n_tokens < 1 or vocab_size < 3:
        raise ValueError(
            f"need n_tokens >= 1 and vocab_size >= 3 (blank, delimiter, data), got {n_tokens}, {vocab_size}"
        )
    g = _generator(seed)
    data = torch.randint(2, vocab_size, (n, n_tokens), generator=g)  # (n, k)
    inputs = torch.full((n, seq_len), BLANK, dtype=torch.long)
    inputs[:, :n_tokens] = data
    inputs[:, seq_len - n_tokens - 1] = MARKER
    targets = torch.full((n, seq_len), IGNORE_INDEX, dtype=torch.long)
    targets[:, seq_len - n_tokens :] = data
    return inputs, targets


def selective_copying(n: int, seq_len: int, n_tokens: int = 16, vocab_size: int = 18, seed: int = 0):
    """Selective copying (Mamba): ``n_tokens`` data tokens scattered among noise, reproduced in order at the end.

    inputs:  first ``seq_len - k`` positions are noise (0) except k random positions holding data tokens
             (2 .. vocab_size-1); the last k positions are markers (1).
    targets: the k data tokens, in order of appearance, at the k marker positions; -100 elsewhere.
    Unlike ``copying``, where the data sits is random, so a fixed delay (a convolution) cannot solve it.
    """
    _check(n, seq_len, 2 * n_tokens, f"{n_tokens} tokens to place and {n_tokens} answer slots")
    if n_tokens < 1 or vocab_size < 3:
        raise ValueError(f"need n_tokens >= 1 and vocab_size >= 3 (noise, marker, data), got {n_tokens}, {vocab_size}")
    g = _generator(seed)
    context = seq_len - n_tokens
    positions = _random_subset(n, context, n_tokens, g).sort(dim=1).values  # (n, k), increasing
    data = torch.randint(2, vocab_size, (n, n_tokens), generator=g)  # (n, k)
    inputs = torch.full((n, seq_len), BLANK, dtype=torch.long)
    inputs.scatter_(1, positions, data)
    inputs[:, context:] = MARKER
    targets = torch.full((n, seq_len), IGNORE_INDEX, dtype=torch.long)
    targets[:, context:] = data
    return inputs, targets


def associative_recall(
    n: int, seq_len: int, n_pairs: int = 8, vocab_size: int = 64, seed: int = 0, power_a: float = 0.01
):
    """Multi-query associative recall (MQAR, Zoology): key-value pairs, then every key queried once.

    inputs:  k1 v1 k2 v2 ... kK vK, then a query region where each key appears once, at even offsets
             chosen at random (offset 2j with probability proportional to (j+1)^(power_a - 1): small gaps
             are more likely, as in zoology; ``power_a=1`` is uniform); all other query-region positions
             are random tokens. Keys are distinct, drawn from 1 .. vocab_size//2 - 1; values are distinct,
             drawn from vocab_size//2 .. vocab_size-1.
    targets: at each query position, the value paired with the key there; -100 elsewhere.
    """
    _check(n, seq_len, 4 * n_pairs, f"{n_pairs} pairs take {2 * n_pairs} positions and {n_pairs} queries need 2 each")
    half = vocab_size // 2
    if n_pairs < 1 or half - 1 < n_pairs or vocab_size - half < n_pairs:
        raise ValueError(
            f"vocab_size={vocab_size} is too small for {n_pairs} distinct keys (ids 1..vocab_size//2-1) and "
            f"values (ids vocab_size//2..vocab_size-1): use vocab_size >= {2 * n_pairs + 2}"
        )
    if not power_a > 0:
        raise ValueError(f"power_a must be > 0, got {power_a}")
    g = _generator(seed)
    keys = _random_subset(n, half - 1, n_pairs, g) + 1  # (n, K)
    values = _random_subset(n, vocab_size - half, n_pairs, g) + half  # (n, K)
    context = 2 * n_pairs
    inputs = torch.randint(0, vocab_size, (n, seq_len), generator=g)  # random tokens everywhere to start
    inputs[:, 0:context:2] = keys
    inputs[:, 1:context:2] = values
    slots = (seq_len - context) // 2
    p = torch.arange(1, slots + 1, dtype=torch.float64) ** (power_a - 1)  # (slots,)
    gaps = torch.multinomial(p.expand(n, slots), n_pairs, replacement=False, generator=g)  # (n, K)
    query_pos = context + 2 * gaps  # (n, K)
    inputs.scatter_(1, query_pos, keys)
    targets = torch.full((n, seq_len), IGNORE_INDEX, dtype=torch.long)
    targets.scatter_(1, query_pos, values)
    return inputs, targets


def induction_heads(n: int, seq_len: int, vocab_size: int = 16, seed: int = 0):
    """Induction heads: after ``trigger x ... trigger``, output ``x``.

    inputs:  random tokens from 0 .. vocab_size-2; the trigger (vocab_size-1) once at a random position p
             (0 <= p <= seq_len-3) and again at the last position.
    targets: ``inputs[p + 1]`` at the last position; -100 elsewhere.
    """
    _check(n, seq_len, 3, "a trigger, the token after it, and the trigger again")
    if vocab_size < 3:
        raise ValueError(f"vocab_size must be >= 3 (a trigger and at least two other tokens), got {vocab_size}")
    g = _generator(seed)
    trigger = vocab_size - 1
    inputs = torch.randint(0, trigger, (n, seq_len), generator=g)  # (n, T), never the trigger
    p = torch.randint(0, seq_len - 2, (n, 1), generator=g)  # (n, 1)
    inputs.scatter_(1, p, trigger)
    inputs[:, -1] = trigger
    targets = torch.full((n, seq_len), IGNORE_INDEX, dtype=torch.long)
    targets[:, -1] = inputs.gather(1, p + 1).squeeze(1)
    return inputs, targets


def adding_problem(n: int, seq_len: int, seed: int = 0, markers: str = "halves", dtype=torch.float32):
    """The adding problem: add the two marked numbers of a long sequence (a regression task).

    inputs:  (n, T, 2): channel 0 uniform in [0, 1), channel 1 zero except two ones (the markers).
             ``markers="halves"``: one marker in each half of the sequence (Le et al. 2015), so the
             dependency always spans a long range; ``"uniform"``: any two distinct positions (TCN's code).
    targets: (n,) the sum of the two marked values.
    """
    _check(n, seq_len, 2, "two marked positions")
    g = _generator(seed)
    values = torch.rand(n, seq_len, generator=g, dtype=torch.float64)  # (n, T)
    if markers == "halves":
        half = seq_len // 2
        first = torch.randint(0, half, (n, 1), generator=g)
        second = torch.randint(half, seq_len, (n, 1), generator=g)
        pos = torch.cat([first, second], dim=1)  # (n, 2)
    elif markers == "uniform":
        pos = _random_subset(n, seq_len, 2, g)
    else:
        raise ValueError(f"markers must be 'halves' or 'uniform', got {markers!r}")
    marks = torch.zeros(n, seq_len, dtype=torch.float64).scatter_(1, pos, 1.0)
    targets = values.gather(1, pos).sum(dim=1)  # (n,)
    return torch.stack([values, marks], dim=-1).to(dtype), targets.to(dtype)


def lag_copy(n: int, seq_len: int, lag: int = 4, vocab_size: int = 8, seed: int = 0):
    """Lag copy: output the input token seen exactly ``lag`` steps ago.

    inputs:  uniform random tokens in 0 .. vocab_size-1, (n, seq_len).
    targets: ``inputs[:, t - lag]`` at every position t >= lag; -100 at the first ``lag`` positions.
    A causal model that sees only its last R inputs (a CNN with receptive field R) can answer iff lag < R;
    beyond that the answer is independent of what it sees and its accuracy is chance, 1 / vocab_size.
    """
    if not isinstance(lag, int) or isinstance(lag, bool) or lag < 1:
        raise ValueError(f"lag must be a positive int, got {lag!r}")
    _check(n, seq_len, lag + 1, f"a lag of {lag} needs at least one scored position")
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    g = _generator(seed)
    inputs = torch.randint(0, vocab_size, (n, seq_len), generator=g)  # (n, T)
    targets = torch.full((n, seq_len), IGNORE_INDEX, dtype=torch.long)
    targets[:, lag:] = inputs[:, :-lag]
    return inputs, targets


SYNTHETIC_TASKS = {
    "copying": copying,
    "selective_copying": selective_copying,
    "associative_recall": associative_recall,
    "induction_heads": induction_heads,
    "adding_problem": adding_problem,
    "lag_copy": lag_copy,
}
REGRESSION_TASKS = ("adding_problem",)  # the others are token classification scored with token_accuracy


def token_accuracy(
    logits: torch.Tensor, targets: torch.Tensor, per_sequence: bool = False, ignore_index: int = IGNORE_INDEX
) -> float:
    """Fraction of scored positions (targets != ignore_index) where ``logits.argmax(-1)`` is the target.

    logits: (..., V), targets: (...) with the same leading shape. ``per_sequence=True`` (targets (B, T)):
    the fraction of sequences, among those with a scored position, whose scored positions are all right.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} must be targets {tuple(targets.shape)} plus a vocab dim")
    scored = targets != ignore_index
    if not scored.any():
        raise ValueError(f"no position is scored: every target equals ignore_index={ignore_index}")
    correct = (logits.argmax(dim=-1) == targets) | ~scored
    if not per_sequence:
        return (correct & scored).sum().item() / scored.sum().item()
    if targets.dim() != 2:
        raise ValueError(f"per_sequence=True expects targets of shape (B, T), got {tuple(targets.shape)}")
    has_answer = scored.any(dim=1)  # (B,)
    return (correct.all(dim=1) & has_answer).sum().item() / has_answer.sum().item()
