"""The analytic FLOP counts of seqlib.flops against PyTorch's FlopCounterMode (CPU), term by term: where the counter
sees a path whole the two agree exactly; where it misses a part (FFTs, elementwise scans) the test names that part."""

import math

import pytest
import torch

from seqlib.flops import count_flops, crossover_length, mixer_flops, mlp_flops
from seqlib.models import MIXERS

D, N = 32, 64


@pytest.mark.parametrize(
    "arch, options",
    [
        ("lstm", {"impl": "reference"}),  # the cell written out: its matmuls are visible to the counter
        ("lstm", {"impl": "reference", "causal": False}),  # two directions of d // 2
        ("gru", {}),
        ("gru", {"causal": False}),
        ("cnn", {}),
        ("cnn", {"causal": False}),  # centred kernels: the same products
        ("transformer", {"impl": "reference", "causal": False}),  # the reference computes all n x n scores
        ("cnn", {"kernel_size": 5}),
        ("linear_attention", {}),  # the chunked form: projections, the masked block in each chunk, the state
        ("linear_attention", {"chunk_size": 16}),
        ("linear_attention", {"causal": False}),  # the global sums
        # the reference writes out the scores over the memory slots and the whole segment, as the fast path's mask does
        ("recurrent_transformer", {"impl": "reference", "segment_len": 16, "memory_size": 4}),
        ("recurrent_transformer", {"impl": "reference", "segment_len": 16, "memory_size": 4, "causal": False}),
        ("recurrent_transformer", {"segment_len": 16, "memory_size": 4}),  # the fast path: one masked SDPA
        ("transformer", {"causal": False}),  # the fast path: SDPA's CPU kernel
        ("conv_transformer", {"causal": False}),  # SDPA plus the depthwise convolution
        ("conv_transformer", {"depthwise": False, "causal": False, "kernel_size": 5}),
        # the blocked fast path: each block of queries against two (three) whole key blocks, masked keys included
        ("longformer", {}),
        ("longformer", {"causal": False}),
        ("longformer", {"window": 16}),
        ("longformer", {"window": 16, "causal": False}),
    ],
)
def test_mixer_flops_match_flop_counter(arch, options):
    torch.manual_seed(0)
    mixer = MIXERS[arch](d_model=D, **options)
    counted = count_flops(mixer, torch.randn(2, N, D)) / (2 * N)
    sizes = {k: v for k, v in options.items() if k not in ("impl", "causal")}
    expected = mixer_flops(arch, N, D, causal=options.get("causal", True), **sizes)
    assert counted == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("arch", ["transformer", "conv_transformer"])
def test_causal_attention_counts_half_the_keys(arch):
    """The counter charges SDPA for every (query, key) pair; the formula, like a flash kernel, skips the future
    half: (n + 1) / 2 keys per query on average instead of n."""
    mixer = MIXERS[arch](d_model=D)
    counted = count_flops(mixer, torch.randn(2, N, D)) / (2 * N)
    assert counted - 4 * D * (N - (N + 1) / 2) == pytest.approx(mixer_flops(arch, N, D), rel=1e-6)


@pytest.mark.parametrize("causal", [True, False])
def test_s4_projection_and_kernel_match_flop_counter(causal):
    """S4's output projection and its kernel are matrix products the counter sees; its FFT convolution
    (15 log2(2n) + 8 per channel) is not. The kernel is a complex product over N/2 modes, 4N real FLOPs per
    channel and token, which the counter, blind to complex arithmetic, charges as N. Computed once per forward
    and shared by the batch, it is counted here at batch size 1, as the formula counts it."""
    mixer = MIXERS["s4"](d_model=D, causal=causal)
    counted = count_flops(mixer, torch.randn(1, N, D)) / N
    n_state, kernels = 64, 1 if causal else 2
    unseen = D * (15 * math.log2(2 * N) + 8) + kernels * 3 * n_state * D
    assert counted == pytest.approx(mixer_flops("s4", N, D, causal=causal) - unseen, rel=1e-6)


@pytest.mark.parametrize("causal", [True, False])
def test_mamba_projections_match_flop_counter(causal):
    """Mamba's matmuls and conv are counted by FlopCounterMode; its elementwise scan (5 of 7 FLOPs) is not.
    Bidirectional: a second conv, projections and scan."""
    mixer = MIXERS["mamba"](d_model=D, causal=causal)
    counted = count_flops(mixer, torch.randn(1, N, D)) / N
    E, n_state, K = 2 * D, 16, 4
    paths = 1 if causal else 2
    scan_elementwise = 5 * E * n_state
    conv_pad = 2 * K * E * (K - 1) / N  # the padded conv computes K - 1 extra outputs
    expected = mixer_flops("mamba", N, D, causal=causal) - paths * (scan_elementwise - conv_pad)
    assert counted == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("causal", [True, False])
def test_rwkv_matmuls_match_flop_counter(causal):
    """RWKV's projections and chunked WKV products are counted; its 20 elementwise FLOPs per channel are not.
    Bidirectional: a second time mix."""
    mixer = MIXERS["rwkv"](d_model=D, causal=causal)
    counted = count_flops(mixer, torch.randn(1, N, D)) / N
    expected = mixer_flops("rwkv", N, D, causal=causal) - (1 if causal else 2) * 20 * D
    assert counted == pytest.approx(expected, rel=1e-6)


def test_attention_grows_with_length_and_crossover_near_d():
    assert mixer_flops("transformer", 2 * N, D) > mixer_flops("transformer", N, D)
    assert mixer_flops("lstm", 2 * N, D) == mixer_flops("lstm", N, D)
    assert mixer_flops("mamba", 4 * N, D) == mixer_flops("mamba", N, D)
    # the smallest such length: attention costs more there and not one token before
    for causal in (True, False):
        n = crossover_length(D, causal=causal)
        assert mixer_flops("transformer", n, D, causal=causal) > mixer_flops("lstm", n, D, causal=causal)
        assert mixer_flops("transformer", n - 1, D, causal=causal) <= mixer_flops("lstm", n - 1, D, causal=causal)
    # causal: 8d^2 + 2d(n + 1) against the LSTM's 18d^2, so n = 5d
    assert crossover_length(D) == 5 * D
    assert mlp_flops(D) == 16 * D * D


def test_bad_arguments():
    with pytest.raises(ValueError):
        mixer_flops("nope", N, D)
    with pytest.raises(ValueError):
        mixer_flops("lstm", 0, D)
    with pytest.raises(ValueError, match="window"):  # an option of another mixer's formula
        mixer_flops("transformer", N, D, window=16)
