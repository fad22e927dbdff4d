import torch

from seqlib.models import build_model
from seqlib.stepmem import random_classify_batch, random_lm_batch, train_step_memory
from seqlib.train import classify_loss, lm_loss


def test_random_batches_have_the_loss_shapes():
    x, y = random_lm_batch(50, 3, 7)
    assert x.shape == y.shape == (3, 7) and int(x.max()) < 50
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the next tokens
    tokens, mask, labels = random_classify_batch(50, 4, 9, num_classes=3)
    assert tokens.shape == mask.shape == (4, 9) and mask.all() and labels.shape == (4,) and int(labels.max()) < 3


def test_step_memory_grows_with_the_batch_and_leaves_no_gradients():
    torch.manual_seed(0)
    model = build_model("transformer", "lm", vocab_size=40, d_model=32, n_layers=1).eval()
    small = train_step_memory(model, lm_loss, random_lm_batch(40, 2, 32))
    large = train_step_memory(model, lm_loss, random_lm_batch(40, 16, 32))
    assert small > 0 and large > 2 * small
    assert all(p.grad is None for p in model.parameters())
    assert not model.training  # mode restored


def test_step_memory_of_a_classifier():
    model = build_model("lstm", "classify", vocab_size=40, d_model=16, n_layers=1, num_classes=2)
    assert train_step_memory(model, classify_loss, random_classify_batch(40, 4, 16)) > 0
