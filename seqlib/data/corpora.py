"""The course's text corpora as Hugging Face ``datasets``, from a local mirror or from the hub.

``load_corpus(name, split=None)`` returns a ``datasets.DatasetDict`` (or one ``Dataset`` for ``split``)
with the same splits and columns whichever way it was loaded:

=================  ===========================  ==========================================
name               splits                       columns
=================  ===========================  ==========================================
tiny_shakespeare   train, validation            text (one row: first 90% / last 10% of
                                                the characters, as char-rnn and nanoGPT)
wikitext2          train, validation, test      text (one row per line, tokenized v1)
sst2               train, validation, test      sentence, label (test labels are -1)
imdb               train, test                  text, label (0 = neg, 1 = pos)
multi30k           train, validation, test      en, de (test = test_2016_flickr)
=================  ===========================  ==========================================

Where the data comes from:

* ``SEQLIB_DATA`` set (a folder with the layout of ``shared/data``; a relative path is resolved against
  the current directory): the files are read from there, and the sha256 of every file used is checked
  against the folder's ``SHA256SUMS`` (once per process and file).
* ``SEQLIB_DATA`` unset: the Hugging Face hub (``Salesforce/wikitext`` ``wikitext-2-v1``,
  ``stanfordnlp/sst2``, ``stanfordnlp/imdb``, ``bentrevett/multi30k``, ``karpathy/tiny_shakespeare``
  with char-rnn's ``input.txt`` over HTTP as a fallback).

Parsed corpora are cached in the process, so a second call costs nothing.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import urllib.request
import warnings
from pathlib import Path

import datasets

CORPORA = ("tiny_shakespeare", "wikitext2", "sst2", "imdb", "multi30k")

# name -> split -> files (relative to the mirror root) that the split is read from
LOCAL_FILES: dict[str, dict[str, tuple[str, ...]]] = {
    "tiny_shakespeare": {"train": ("tiny_shakespeare/input.txt",), "validation": ("tiny_shakespeare/input.txt",)},
    "wikitext2": {
        "train": ("wikitext2/train.txt.gz",),
        "validation": ("wikitext2/valid.txt.gz",),
        "test": ("wikitext2/test.txt.gz",),
    },
    "sst2": {"train": ("sst2/train.tsv.gz",), "validation": ("sst2/dev.tsv.gz",), "test": ("sst2/test.tsv.gz",)},
    "imdb": {"train": ("imdb/imdb_train.jsonl.gz",), "test": ("imdb/imdb_test.jsonl.gz",)},
    "multi30k": {
        "train": ("multi30k/train.en.gz", "multi30k/train.de.gz"),
        "validation": ("multi30k/val.en.gz", "multi30k/val.de.gz"),
        "test": ("multi30k/test_2016_flickr.en.gz", "multi30k/test_2016_flickr.de.gz"),
    },
}
SPLITS = {name: tuple(files) for name, files in LOCAL_FILES.items()}

HUB_IDS = {
    "wikitext2": ("Salesforce/wikitext", "wikitext-2-v1"),
    "sst2": ("stanfordnlp/sst2", None),
    "imdb": ("stanfordnlp/imdb", None),
    "multi30k": ("bentrevett/multi30k", None),
    "tiny_shakespeare": ("karpathy/tiny_shakespeare", None),
}
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

SST2_FEATURES = datasets.Features(
    {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])}
)
IMDB_FEATURES = datasets.Features(
    {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
)

LAYOUT = (
    "SHA256SUMS, tiny_shakespeare/input.txt, wikitext2/{train,valid,test}.txt.gz, "
    "sst2/{train,dev,test}.tsv.gz, imdb/imdb_{train,test}.jsonl.gz, "
    "multi30k/{train,val,test_2016_flickr}.{en,de}.gz"
)


class ChecksumError(ValueError):
    """A local data file's sha256 differs from the one listed in ``SHA256SUMS``."""


class DataUnavailableError(RuntimeError):
    """Neither a local mirror (``SEQLIB_DATA`` unset) nor the Hugging Face hub could give a corpus; the message
    says how to get one."""


def cache_dir() -> Path:
    """Folder for seqlib's on-disk caches: ``$SEQLIB_CACHE``, else ``$XDG_CACHE_HOME/seqlib`` or ``~/.cache/seqlib``."""
    if os.environ.get("SEQLIB_CACHE"):
        return Path(os.environ["SEQLIB_CACHE"]).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().resolve() / "seqlib"


def data_root() -> Path | None:
    """The local mirror named by ``SEQLIB_DATA`` (resolved against the current directory), or None when unset."""
    value = os.environ.get("SEQLIB_DATA", "").strip()
    return Path(value).expanduser().resolve() if value else None


def check_name(name: str, split: str | None = None) -> None:
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; valid names: {', '.join(CORPORA)}")
    if split is not None and split not in SPLITS[name]:
        raise ValueError(f"corpus {name!r} has no split {split!r}; valid splits: {', '.join(SPLITS[name])}")


def load_corpus(name: str, split: str | None = None) -> datasets.DatasetDict | datasets.Dataset:
    """Corpus ``name`` (see the module docstring): a ``DatasetDict``, or one ``Dataset`` for ``split``."""
    check_name(name, split)
    root = data_root()
    if root is not None:
        if split is not None:
            return _load_local_split(name, split, str(root))
        return datasets.DatasetDict({s: _load_local_split(name, s, str(root)) for s in SPLITS[name]})
    corpus = _load_hub(name)
    return corpus[split] if split is not None else corpus


# ----------------------------------------------------------------------------- local mirror


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@functools.cache
def _read_sums(sums_path: str, size: int, mtime_ns: int) -> dict[str, str]:
    sums = {}
    for line in Path(sums_path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            sums[rel.strip().lstrip("*")] = digest.lower()
    return sums


@functools.cache
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of ``path``, cached per file version (path, size, mtime): each file is hashed once per process."""
    return sha256_file(Path(path))


def local_file(root: Path, rel: str) -> Path:
    """Path of ``rel`` inside the mirror ``root``, after checking that it exists and matches ``SHA256SUMS``."""
    where = f"SEQLIB_DATA={os.environ.get('SEQLIB_DATA', '')!r} (resolved to {root})"
    if not root.is_dir():
        raise FileNotFoundError(f"{where} is not a folder. Expected a folder with the layout of shared/data: {LAYOUT}")
    sums_path = root / "SHA256SUMS"
    if not sums_path.is_file():
        raise FileNotFoundError(f"{sums_path} is missing: {where} must hold SHA256SUMS and the files {LAYOUT}")
    path = root / rel
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {where} must have the layout of shared/data ({LAYOUT})")
    st = sums_path.stat()
    expected = _read_sums(str(sums_path), st.st_size, st.st_mtime_ns).get(rel)
    if expected is None:
        raise ChecksumError(f"{rel} is not listed in {sums_path}; copy SHA256SUMS again together with the data files")
    st = path.stat()
    actual = _cached_sha256(str(path), st.st_size, st.st_mtime_ns)
    if actual != expected:
        raise ChecksumError(
            f"{path} is corrupted or was modified: its sha256 is {actual}, SHA256SUMS says {expected}. "
            "Copy the file again from the original shared/data folder, or unset SEQLIB_DATA to load from the "
            "Hugging Face hub instead."
        )
    return path


def _read_lines(path: Path) -> list[str]:
    """Lines split on '\\n' only (as iterating over the file does), without the newline."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _read_tsv(path: Path, header: tuple[str, str]) -> list[tuple[str, str]]:
    """Rows of a GLUE tsv, split on tabs with no quote handling."""
    lines = _read_lines(path)
    if tuple(lines[0].split("\t")) != header:
        raise ValueError(f"{path}: expected the header {'<TAB>'.join(header)}, got {lines[0]!r}")
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(f"{path}, line {i}: expected 2 tab-separated fields, got {len(fields)}")
        rows.append((fields[0], fields[1]))
    return rows


@functools.cache
def _load_local_split(name: str, split: str, root: str) -> datasets.Dataset:
    paths = [local_file(Path(root), rel) for rel in LOCAL_FILES[name][split]]
    if name == "tiny_shakespeare":
        text = paths[0].read_text(encoding="utf-8")
        return datasets.Dataset.from_dict({"text": [shakespeare_split(text, split)]})
    if name == "wikitext2":
        return datasets.Dataset.from_dict({"text": _read_lines(paths[0])})
    if name == "sst2":
        if split == "test":  # index<TAB>sentence, no labels
            rows = _read_tsv(paths[0], ("index", "sentence"))
            data = {"sentence": [s for _, s in rows], "label": [-1] * len(rows)}
        else:
            rows = _read_tsv(paths[0], ("sentence", "label"))
            data = {"sentence": [s for s, _ in rows], "label": [int(y) for _, y in rows]}
        return datasets.Dataset.from_dict(data, features=SST2_FEATURES)
    if name == "imdb":
        with gzip.open(paths[0], "rt", encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
        data = {"text": [r["text"] for r in records], "label": [r["label"] for r in records]}
        return datasets.Dataset.from_dict(data, features=IMDB_FEATURES)
    en, de = (_read_lines(p) for p in paths)  # multi30k
    if len(en) != len(de):
        raise ValueError(f"{paths[0]} and {paths[1]} are not aligned: {len(en)} vs {len(de)} lines")
    return datasets.Dataset.from_dict({"en": en, "de": de})


def shakespeare_split(text: str, split: str) -> str:
    """First 90% of the characters for "train", the rest for "validation" (char-rnn / nanoGPT)."""
    n = int(len(text) * 0.9)
    return text[:n] if split == "train" else text[n:]


# ----------------------------------------------------------------------------- Hugging Face hub


def _hub_load_dataset(path: str, config: str | None = None) -> datasets.DatasetDict:
    """``datasets.load_dataset`` (one place, so tests can replace it)."""
    return datasets.load_dataset(path, config)


def _http_get(url: str, timeout: float = 30.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _fix_message(errors: list[str]) -> str:
    return (
        "Could not load the data: SEQLIB_DATA is not set and the Hugging Face hub could not be reached ("
        + "; ".join(errors)
        + "). Either set SEQLIB_DATA to a folder with the layout of shared/data "
        "(e.g. `export SEQLIB_DATA=../shared/data`), or connect to the internet so that the Hugging Face hub "
        "(huggingface.co) can be reached."
    )


def _shakespeare_text() -> str:
    """The whole of char-rnn's input.txt: from the hub, else over HTTP (cached on disk)."""
    errors = []
    try:
        hub = _hub_load_dataset(*HUB_IDS["tiny_shakespeare"])
        # The hub's script keeps the first 90% as train and cuts the rest into validation and test.
        text = "".join(hub[s][0]["text"] for s in ("train", "validation", "test") if s in hub)
    except Exception as e:
        errors.append(f"hub {HUB_IDS['tiny_shakespeare'][0]}: {type(e).__name__}: {e}")
        cached = cache_dir() / "downloads" / "tiny_shakespeare_input.txt"
        if cached.is_file():
            text = cached.read_text(encoding="utf-8")
        else:
            try:
                raw = _http_get(SHAKESPEARE_URL)
            except Exception as e2:
                errors.append(f"{SHAKESPEARE_URL}: {type(e2).__name__}: {e2}")
                raise DataUnavailableError(_fix_message(errors)) from e2
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(raw)
            os.replace(tmp, cached)
            text = raw.decode("utf-8")
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != SHAKESPEARE_SHA256:
        warnings.warn("the downloaded tiny Shakespeare differs from char-rnn's input.txt (sha256)", stacklevel=3)
    return text


@functools.cache
def _load_hub(name: str) -> datasets.DatasetDict:
    if name == "tiny_shakespeare":
        text = _shakespeare_text()
        return datasets.DatasetDict(
            {s: datasets.Dataset.from_dict({"text": [shakespeare_split(text, s)]}) for s in SPLITS[name]}
        )
    path, config = HUB_IDS[name]
    try:
        hub = _hub_load_dataset(path, config)
    except Exception as e:
        raise DataUnavailableError(_fix_message([f"hub {path}: {type(e).__name__}: {e}"])) from e
    columns = {
        "wikitext2": ["text"],
        "sst2": ["sentence", "label"],
        "imdb": ["text", "label"],
        "multi30k": ["en", "de"],
    }
    out = datasets.DatasetDict({s: hub[s].select_columns(columns[name]) for s in SPLITS[name]})
    if name == "wikitext2":  # the hub keeps each line's newline; the local files are split on it
        out = out.map(lambda b: {"text": [t.rstrip("\n") for t in b["text"]]}, batched=True)
    return out
