import torch

from seqlib.analysis import MixerStack, gradient_by_distance, reach
from seqlib.models import receptive_field


def test_cnn_reach_is_its_receptive_field():
    torch.manual_seed(0)
    stack = MixerStack("cnn", 3, 16).double()  # dilations 1, 2, 4
    g = gradient_by_distance(stack, 40, 16, dtype=torch.float64)
    assert reach(g) == receptive_field(3, [1, 2, 4]) - 1


def test_attention_reaches_the_first_token():
    torch.manual_seed(0)
    g = gradient_by_distance(MixerStack("transformer", 1, 16), 50, 16)
    assert reach(g) == 49
    assert g[-1] > 1e-3 * g.max()


def test_reach_of_a_zero_gradient_tail():
    assert reach(torch.tensor([1.0, 0.5, 1e-9, 0.0])) == 1
