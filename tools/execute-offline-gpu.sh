#!/usr/bin/env bash
# Executes the book in the full profile on a GPU machine without internet access, within a time budget, and packs
# what it produced. Run it from the repository root; run it again (with the notebooks and results it packed put
# back) to execute the notebooks that did not fit: `execute` skips every notebook that is already fresh.
#
#   tools/execute-offline-gpu.sh WHEELS DATA OUT [SECONDS]
#
#   WHEELS   a folder of wheels for what the machine's Python lacks, or - for none. For a machine whose python3
#            has PyTorch, numpy, pandas, matplotlib, seaborn, tokenizers, sacrebleu and tqdm: `datasets`, a Jupyter
#            kernel and `myst-nb` (only its `glue`: IPython and docutils, no Sphinx). tools/offline-kit.sh builds
#            this folder and the copy of the data on a connected machine.
#   DATA     a copy of the data laid out like shared/data (SEQLIB_DATA)
#   OUT      a folder for book.tar.gz (notebooks/ and results/) and the logs
#   SECONDS  the budget for the whole script (default 540): no notebook starts that would not finish within it,
#            by its last recorded time (or, before its first full-profile run, by seqlib.bookexec's guess); give
#            the command running this script a minute more than SECONDS: a notebook that overruns its guess is
#            stopped at most 25 s past SECONDS, and the check and the packing take a few seconds more
set -uo pipefail
wheels=${1:?usage: tools/execute-offline-gpu.sh WHEELS DATA OUT [SECONDS]}
data=${2:?usage: tools/execute-offline-gpu.sh WHEELS DATA OUT [SECONDS]}
out=${3:?usage: tools/execute-offline-gpu.sh WHEELS DATA OUT [SECONDS]}
budget=${4:-540}
start=$SECONDS
mkdir -p "$out"
export PYTHONUNBUFFERED=1 SEQLIB_PROFILE=${SEQLIB_PROFILE:-full} SEQLIB_DATA
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1  # nothing is reachable: never try
SEQLIB_DATA=$(realpath "$data") || exit 1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ "$wheels" != - ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/seqlib-site \
    "$wheels"/*.whl || exit 1
  export PYTHONPATH=/tmp/seqlib-site:$PYTHONPATH
fi
python3 - <<'PY' || exit 1
import torch, datasets, nbclient, ipykernel  # everything `execute` and the notebooks import
from myst_nb.ext.glue import glue  # what seqlib.book.glue calls (it imports docutils)
from seqlib import profiles
from seqlib.device import device_name

print(f"torch {torch.__version__} on {device_name()}, profile {profiles.current_profile()}")
if profiles.current_profile() == "full" and not torch.cuda.is_available():
    raise SystemExit("the full profile is meant for a GPU, and torch sees none")
PY

# Every architecture and task head for a few steps on this device first: a failure here costs a minute, not a
# notebook's five, and leaves the rest of the machine's time for a fix and another call.
# Skipped where it passed on this device with the current code already (its record says so).
if python3 -c "import sys; from seqlib import results; from seqlib.device import device_name
r = results.load('preflight'); sys.exit(results.is_stale(r) or r['provenance']['device'] != device_name())" 2>/dev/null
then
  echo "preflight: passed on this device with the current code, skipped"
else
  timeout -s INT -k 10 240 python3 -m seqlib preflight --record preflight 2>&1 | tee "$out/preflight.log"
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    echo "preflight FAILED (log: $out/preflight.log): nothing else was run"
    exit 1
  fi
fi

# The library's benchmarks, unless a record made with the current code is there already.
status=0
for bench in mfu mixers; do
  if python3 -c "import sys; from seqlib import results; r = results.load('bench_$bench')
sys.exit(results.is_stale(r) or (r['config'] or {}).get('complete') is False)" 2>/dev/null; then
    echo "bench $bench: recorded with the current code, skipped"
    continue
  fi
  left=$((budget - (SECONDS - start)))
  if [ "$left" -lt 60 ]; then
    echo "bench $bench: no time left in the budget: run again"
    status=1
    continue
  fi
  # Bounded by the budget like the notebooks, so that the packing below always happens. `bench mixers` records
  # after each architecture and starts none that would end past its own budget; run again, it measures the rest.
  extra=()
  [ "$bench" = mixers ] && extra=(--time-budget $((left - 30)))
  timeout -s INT -k 20 "$left" python3 -m seqlib bench "$bench" --profile "$SEQLIB_PROFILE" --record "bench_$bench" \
    "${extra[@]}" 2>&1 | tee "$out/bench_$bench.log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 3 ] || { [ "$rc" -eq 124 ] && [ "$bench" = mixers ]; }; then
    echo "bench $bench: stopped at the time budget, the architectures it finished are recorded: run again"
    status=1
  elif [ "$rc" -eq 124 ]; then
    echo "bench $bench: stopped at the time budget, nothing recorded: run again"
    status=1
  elif [ "$rc" -ne 0 ]; then
    echo "bench $bench FAILED (log: $out/bench_$bench.log)"
    status=1
  fi
done

left=$((budget - (SECONDS - start)))
if [ "$left" -gt 0 ]; then
  # A notebook that outlives its guessed time is interrupted 15 s past the budget (and killed 10 s later), so
  # that the ones finished before it are still packed below (each is saved as soon as it ends).
  timeout -s INT -k 10 $((left + 15)) python3 -m seqlib.book execute --time-budget "$left" 2>&1 \
    | tee "$out/execute.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
else
  echo "no time left for the notebooks after the benchmarks: run again"
  status=1
fi
python3 -m seqlib.book check 2>&1 | tee "$out/check.log"
tar czf "$out/book.tar.gz" --exclude="$out" notebooks results
echo "packed $(du -h "$out/book.tar.gz" | cut -f1) in $out/book.tar.gz after $((SECONDS - start)) s"
exit "$status"
