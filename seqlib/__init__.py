"""seqlib: the library behind the sequence-modeling course.

Models (``seqlib.models``), data (``seqlib.data``), the trainer (``seqlib.train``), benchmarks
(``seqlib.bench``), results with provenance (``seqlib.results``), profiles (``seqlib.profiles``),
plots (``seqlib.plots``) and the book tooling (``seqlib.book``).
"""

__version__ = "0.1.0"
