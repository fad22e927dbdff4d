#!/usr/bin/env bash
# Prepares, on a connected Linux x86-64 machine, what tools/execute-offline-gpu.sh needs on an offline GPU machine
# whose python3 (3.12 by default) already has PyTorch, numpy, pandas, pyarrow, matplotlib, seaborn, tokenizers,
# sacrebleu and tqdm: a folder of the wheels it lacks and a copy of the data. Both go inside the repository (ignored
# by git) so that they travel with the working tree. Run it from the repository root:
#
#   tools/offline-kit.sh DATA_SOURCE [WHEELS] [DATA]      (defaults: .whl and data)
#
#   DATA_SOURCE   the data laid out like shared/data (what SEQLIB_DATA points to)
#   PYTHON_VERSION, in the environment: the GPU machine's Python version (default 3.12)
# Then, on the GPU machine: tools/execute-offline-gpu.sh WHEELS DATA OUT [SECONDS]
set -euo pipefail
src=${1:?usage: tools/offline-kit.sh DATA_SOURCE [WHEELS] [DATA]}
wheels=${2:-.whl}
data=${3:-data}
py=${PYTHON_VERSION:-3.12}
[ -d "$src" ] || { echo "no data folder at $src" >&2; exit 1; }
for dir in "$wheels" "$data"; do  # both are emptied first: only a folder of their own inside the repository
  case "$dir" in
    "" | . | .. | /* | *..* | .git* | seqlib* | notebooks* | results* | tests* | book* | tools*)
      echo "WHEELS and DATA must be folders of their own inside the repository, not '$dir'" >&2
      exit 1
      ;;
  esac
done
exclude=.git/info/exclude
for path in "/$wheels/" "/$data/"; do
  grep -qxF "$path" "$exclude" 2>/dev/null || echo "$path" >>"$exclude"
done
rm -rf "$wheels" && mkdir -p "$wheels"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 any
do
  platforms+=(--platform "$p")
done
# `datasets` and a Jupyter kernel with what they need ...
python3 -m pip download -q --only-binary=:all: --python-version "$py" --implementation cp "${platforms[@]}" \
  -d "$wheels" datasets nbclient nbformat ipykernel
# ... less what such a machine has already (two versions of one package stop the offline install) ...
for p in numpy pandas pyarrow psutil pyyaml pygments tqdm packaging filelock fsspec attrs typing_extensions idna \
         python_dateutil tzdata click anyio h11 hf_xet xxhash requests urllib3 certifi charset_normalizer; do
  rm -f "$wheels/$p"-*.whl
done
# ... and myst-nb for its `glue` alone, which imports IPython and docutils but not Sphinx.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
  --platform any -d "$wheels" myst-nb docutils
rm -rf "$data" && cp -r "$src" "$data"
echo "wheels: $(ls "$wheels" | wc -l) files, $(du -sh "$wheels" | cut -f1); data: $(du -sh "$data" | cut -f1)"
