"""The root conftest gives a notebook whose kernel failed to start one more try under nbmake."""

import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

FLAKY_START = f"""
import importlib.util

spec = importlib.util.spec_from_file_location("seqlib_root_conftest", {str(ROOT / "conftest.py")!r})
spec.loader.exec_module(importlib.util.module_from_spec(spec))  # installs the retrying client

from jupyter_client.asynchronous import AsyncKernelClient

wait_for_ready, starts = AsyncKernelClient.wait_for_ready, []


async def first_start_fails(self, timeout=None):
    starts.append(1)
    if len(starts) == 1:
        raise RuntimeError("Kernel didn't respond in 60 seconds")
    return await wait_for_ready(self, timeout=timeout)


AsyncKernelClient.wait_for_ready = first_start_fails
"""


def test_a_kernel_that_fails_to_start_gets_one_more_try_in_the_notebooks_folder(tmp_path):
    (tmp_path / "conftest.py").write_text(FLAKY_START)
    (tmp_path / "chapter").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os\nassert os.path.basename(os.getcwd()) == 'chapter'")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "chapter" / "one.ipynb")
    cmd = [sys.executable, "-m", "pytest", "--nbmake", "-p", "no:cacheprovider", "-p", "no:xdist", "chapter"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout
