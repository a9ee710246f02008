#!/usr/bin/env bash
# The inference benchmark pinned to the first N cores of a bigger machine, so that its figures compare with a
# 2-core one:   bench/inference_pinned.sh MODEL_DIR CONLL_TEST_FILE [N=2] [extra bench/inference.py options]
# Exports MODEL_DIR on this machine first (the int8 kernels ONNX Runtime picks depend on the CPU).
set -euo pipefail
model=${1:?MODEL_DIR}; data=${2:?CONLL_TEST_FILE}; n=${3:-2}; shift $(( $# < 3 ? $# : 3 ))
cores=$(seq -s, 0 $((n - 1)))
export OMP_NUM_THREADS=$n TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
fast=$(mktemp -d)
trap 'rm -rf "$fast"' EXIT
here=$(cd "$(dirname "$0")/.." && pwd)
grep -o -E 'avx512_vnni|avx512_bf16|amx_int8|amx_bf16|avx_vnni' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
taskset -c "$cores" python3 -c "import sys; sys.path.insert(0, '$here'); from nerkit.export import export; print(export('$model', '$fast', copy_weights=False))"
taskset -c "$cores" python3 "$here/bench/inference.py" "$model" --data "$data" --fast "$fast" "$@"
