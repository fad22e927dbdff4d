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


def test_random_batches_avoid_special_ids_and_cover_the_classes():
    tokens, _, labels = random_classify_batch(50, 64, 9, num_classes=3)
    assert int(tokens.min()) >= 4  # ids 0-3: special tokens
    assert set(labels.tolist()) == {0, 1, 2}


class Recorder(torch.nn.Module):
    """Embedding -> linear LM with 256 x 256 matrices; records the mode of each forward."""

    def __init__(self):
        super().__init__()
        self.emb, self.head, self.modes = torch.nn.Embedding(256, 256), torch.nn.Linear(256, 256), []

    def forward(self, x):
        self.modes.append(self.training)
        return self.head(self.emb(x))


def test_step_memory_counts_the_backward_in_training_mode_even_after_a_backward():
    """Four tokens: the activations are small, the two weight gradients (256 KiB each) are most of the peak."""
    torch.manual_seed(0)
    model = Recorder().eval()
    batch = random_lm_batch(256, 1, 4)
    grads = 2 * 256 * 256 * 4
    assert train_step_memory(model, lm_loss, batch) >= grads
    assert model.modes == [True] and not model.training
    lm_loss(model, batch)[0].backward()  # gradients left by a step: cleared first, not counted as the baseline
    assert train_step_memory(model, lm_loss, batch) >= grads
    assert all(p.grad is None for p in model.parameters())
