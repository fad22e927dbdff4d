"""Every architecture of the shared char_lm experiment gets a width within 10% of its parameter target."""

import pytest

from seqlib import profiles
from seqlib.experiments import _model_size
from seqlib.models import build_model, count_params


@pytest.mark.parametrize("arch", ["lstm", "gru", "cnn", "transformer"])
def test_char_lm_smoke_matches_params(arch):
    model_cfg = profiles.get("char_lm", "smoke")["model"]
    target = model_cfg["target_params"]
    d = _model_size(arch, "lm", model_cfg, {"vocab_size": 65}, True)  # an LSTM needs the finer grid of 4 here
    assert d % 4 == 0
    n = count_params(build_model(arch, "lm", vocab_size=65, d_model=d, n_layers=model_cfg["n_layers"]))
    assert abs(n - target) <= 0.1 * target
