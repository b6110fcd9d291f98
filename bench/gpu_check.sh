#!/usr/bin/env bash
# The GPU check, as one short command for a machine with a CUDA GPU (a few minutes on one H100/H200):
# sets up lr0fm with Ray, then runs bench/gpu_check.py (5,000 generated JPEGs, random-init ViT-B-16 in bf16,
# a 5-resolution sweep in-process and on Ray, against pure forwards; GPU utilisation from nvidia-smi).
# Results go to $OUT (default ./gpu-check): gpu_check.md (the table for bench/RESULTS.md) and gpu_check.json.
# Extra arguments go to bench/gpu_check.py, e.g. --images 2000 for a shorter run.
set -euo pipefail
cd "$(dirname "$0")/.."
export OUT=${OUT:-gpu-check}
if [ ! -x .venv/bin/python ]; then
    bash scripts/setup.sh
fi
.venv/bin/python -m pip install -q -e ".[ray]"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec .venv/bin/python bench/gpu_check.py --out "$OUT" "$@"
