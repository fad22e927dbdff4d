"""What the book's notebooks import: ``setup()`` (their first cell), ``glue()`` (values for the prose) and
``and_join()`` (a list as prose).

The command line that executes and checks the notebooks is here too, implemented in ``seqlib.bookexec`` (which no
notebook imports, so that a change to it leaves every notebook fresh)::

    python -m seqlib.book execute [NOTEBOOK ...] [--all] [--time-budget S]   # stale notebooks, or the ones named
    python -m seqlib.book check [--strict]                 # outputs present, no errors; a table of every notebook
    python -m seqlib.book verify-html                      # the built book in headless Chromium

Every other name of ``seqlib.bookexec`` (``execute``, ``check``, ``notebook_status``, ...) is reachable from here.
"""

from __future__ import annotations

import platform
import sys
import textwrap
import warnings
from typing import Any


# ---------------------------------------------------------------- notebook side
def setup(seed: int = 0) -> str:
    """The first cell of every notebook: report the runtime, say how to fix what is wrong, return the profile."""
    import torch

    from .device import device_name
    from .profiles import current_profile

    profile = current_profile()
    torch.manual_seed(seed)
    # without ipywidgets, tqdm's notebook bar falls back to text; its warning about that is noise in the book
    warnings.filterwarnings("ignore", message="IProgress not found")
    cuda = torch.version.cuda or "none"
    print(f"seqlib {_version()} | torch {torch.__version__} (CUDA {cuda}) | python {platform.python_version()}")
    print(f"device: {device_name()} | profile: {profile}")
    notes = []
    if torch.cuda.is_available():
        major, _ = torch.cuda.get_device_capability()
        if major < 8:
            notes.append(
                "This GPU has no bfloat16: training uses float16 with a gradient scaler, and the full "
                "profile's time budgets reach fewer steps than on the GPU the book was rendered on."
            )
    elif profile == "smoke":
        notes.append(
            "No GPU found: the smoke profile runs (small models, a few steps), so every cell works in "
            "seconds to minutes. On Colab choose Runtime > Change runtime type > T4 GPU for the full profile."
        )
    if profile == "smoke":
        notes.append(
            "Smoke profile: small models and short runs that check every cell works. Figures on this page "
            "describe this run, not the architectures at full size."
        )
    if profile == "full" and not torch.cuda.is_available():
        notes.append("Warning: SEQLIB_PROFILE=full on a CPU will take a long time.")
    for note in notes:
        print(textwrap.fill(note, width=76))
    return profile


def glue(name: str, value, display: bool = False):
    """Hand a computed value to the prose (MyST-NB's ``glue``); a no-op display where myst_nb is missing."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # e.g. on Colab: the value only matters to the rendered book
        return value
    _glue(name, value, display=display)
    return value


def and_join(items, last: str = "and") -> str:
    """Items as prose: ``a``; ``a and b``; ``a, b and c`` (``last`` in place of "and", e.g. "or")."""
    items = [str(i) for i in items]
    if not items:
        raise ValueError("nothing to join")
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """The command line above; ``prog``: how it was invoked, for its usage and messages (default
    ``python -m seqlib.book``; ``python -m seqlib book`` passes its own)."""
    from .bookexec import main as _main

    return _main(argv, prog=prog)


def __getattr__(name: str) -> Any:  # the tooling, loaded on first use (not for the import system's own probes)
    if name.startswith("__"):
        raise AttributeError(f"module 'seqlib.book' has no attribute {name!r}")
    from . import bookexec

    try:
        return getattr(bookexec, name)
    except AttributeError:
        raise AttributeError(f"module 'seqlib.book' has no attribute {name!r}") from None


if __name__ == "__main__":
    sys.exit(main())
