"""pytest configuration shared by tests/ and the notebooks collected by nbmake."""

import os

from seqlib.book import absolute_data_path

# Notebook kernels run in notebooks/: a relative SEQLIB_DATA (e.g. ../shared/data) must not change meaning there.
absolute_data_path()

# Under pytest-xdist every worker (and every notebook kernel it starts, which inherits the environment) gets one
# thread: two workers with two threads each on two cores spend most of their time waiting on each other.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
