"""Data for the course: corpora, tokenizers, synthetic tasks and batching.

* ``corpora``: ``load_corpus(name, split=None)`` gives tiny Shakespeare, WikiText-2, SST-2, IMDB and
  Multi30k as Hugging Face datasets, read from the local mirror named by ``SEQLIB_DATA`` (checked against
  its ``SHA256SUMS``: ``ChecksumError``) or from the hub when it is unset (``DataUnavailableError`` when neither
  can give it).
* ``tokenizers``: ``CharTokenizer``, ``WordTokenizer``, ``train_bpe`` (byte-level BPE, cached on disk).
* ``synthetic``: the tasks of ``SYNTHETIC_TASKS``, ``copying``, ``selective_copying``, ``associative_recall``,
  ``induction_heads``, ``adding_problem`` (the regression task: ``REGRESSION_TASKS``) and ``lag_copy``; and
  ``token_accuracy``.
* ``batching``: ``lm_batches``, ``lm_eval_batches``, ``truncate``, ``classification_batches``, ``seq2seq_batches``.
* ``loaders``: ``load_char_lm``, ``load_word_lm``, ``load_classification``, ``load_translation``.
"""

from .batching import (
    TRUNCATIONS,
    classification_batches,
    lm_batches,
    lm_eval_batches,
    pad_right,
    seq2seq_batches,
    truncate,
)
from .corpora import CORPORA, SPLITS, ChecksumError, DataUnavailableError, cache_dir, data_root, load_corpus
from .loaders import (
    ClassificationSplit,
    TranslationSplit,
    load_char_lm,
    load_classification,
    load_translation,
    load_word_lm,
)
from .synthetic import (
    IGNORE_INDEX,
    REGRESSION_TASKS,
    SYNTHETIC_TASKS,
    adding_problem,
    associative_recall,
    copying,
    induction_heads,
    lag_copy,
    selective_copying,
    token_accuracy,
)
from .tokenizers import SPECIAL_TOKENS, BPETokenizer, CharTokenizer, WordTokenizer, train_bpe

__all__ = [
    "CORPORA",
    "IGNORE_INDEX",
    "REGRESSION_TASKS",
    "SPECIAL_TOKENS",
    "SPLITS",
    "SYNTHETIC_TASKS",
    "BPETokenizer",
    "CharTokenizer",
    "ChecksumError",
    "DataUnavailableError",
    "ClassificationSplit",
    "TranslationSplit",
    "WordTokenizer",
    "adding_problem",
    "associative_recall",
    "cache_dir",
    "classification_batches",
    "copying",
    "data_root",
    "induction_heads",
    "lag_copy",
    "lm_batches",
    "lm_eval_batches",
    "load_char_lm",
    "load_classification",
    "load_corpus",
    "load_translation",
    "load_word_lm",
    "pad_right",
    "selective_copying",
    "seq2seq_batches",
    "truncate",
    "TRUNCATIONS",
    "token_accuracy",
    "train_bpe",
]
