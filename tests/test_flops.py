"""The analytic FLOP counts of seqlib.flops against PyTorch's FlopCounterMode (CPU, reference paths)."""

import pytest
import torch

from seqlib.flops import count_flops, crossover_length, mixer_flops, mlp_flops
from seqlib.models import MIXERS

D, N = 32, 64


@pytest.mark.parametrize(
    "arch, options",
    [
        ("lstm", {"impl": "reference"}),  # the cell written out: its matmuls are visible to the counter
        ("gru", {}),
        ("cnn", {}),
        ("transformer", {"impl": "reference", "causal": False}),  # the reference computes all n x n scores
    ],
)
def test_mixer_flops_match_flop_counter(arch, options):
    torch.manual_seed(0)
    mixer = MIXERS[arch](d_model=D, **options)
    counted = count_flops(mixer, torch.randn(2, N, D)) / (2 * N)
    expected = mixer_flops(arch, N, D, causal=options.get("causal", True))
    assert counted == pytest.approx(expected, rel=1e-6)


def test_mamba_projections_match_flop_counter():
    """Mamba's matmuls and conv are counted by FlopCounterMode; its elementwise scan (5 of 7 FLOPs) is not."""
    mixer = MIXERS["mamba"](d_model=D)
    counted = count_flops(mixer, torch.randn(1, N, D)) / N
    E, n_state, K = 2 * D, 16, 4
    scan_elementwise = 5 * E * n_state
    conv_pad = 2 * K * E * (K - 1) / N  # the padded conv computes K - 1 extra outputs
    assert counted == pytest.approx(mixer_flops("mamba", N, D) - scan_elementwise + conv_pad, rel=1e-6)


def test_attention_grows_with_length_and_crossover_near_d():
    assert mixer_flops("transformer", 2 * N, D) > mixer_flops("transformer", N, D)
    assert mixer_flops("lstm", 2 * N, D) == mixer_flops("lstm", N, D)
    assert mixer_flops("mamba", 4 * N, D) == mixer_flops("mamba", N, D)
    # scores alone (4 n d, bidirectional) exceed the LSTM's recurrent h*h term (8 d^2) at n = 2d
    n = crossover_length(D, causal=False)
    assert 4 * D * n + 8 * D * D > mixer_flops("lstm", n, D, causal=False)
    assert mlp_flops(D) == 16 * D * D


def test_bad_arguments():
    with pytest.raises(ValueError):
        mixer_flops("nope", N, D)
    with pytest.raises(ValueError):
        mixer_flops("lstm", 0, D)
