"""pytest configuration shared by tests/ and the notebooks collected by nbmake."""

import os

import nbclient
import nbmake.nb_run

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


class _RetryingNotebookClient(nbclient.NotebookClient):
    """nbmake's notebook client, with one more try when a kernel fails to start.

    A kernel is handed free ports that it binds a moment later; with notebooks running in parallel another process
    can take one in between (``ZMQError: Address already in use``), and the kernel never answers ("Kernel didn't
    respond in 60 seconds"). That says nothing about the notebook, so a fresh kernel gets one more try.
    """

    async def async_start_new_kernel(self, **kwargs):
        self._start_kwargs = kwargs  # nbmake passes the notebook's folder as cwd
        await super().async_start_new_kernel(**kwargs)

    async def async_start_new_kernel_client(self):
        try:
            return await super().async_start_new_kernel_client()
        except RuntimeError as error:
            self.log.warning("the kernel did not start (%s): starting a fresh one", error)
            self.km = self.create_kernel_manager()
            await self.async_start_new_kernel(**self._start_kwargs)
            return await super().async_start_new_kernel_client()


nbmake.nb_run.NotebookClient = _RetryingNotebookClient
