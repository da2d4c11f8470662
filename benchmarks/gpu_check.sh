#!/usr/bin/env bash
# The one-command GPU check (docs/benchmarks.md, "GPU check"): needs torch only; at most 8 minutes.
#   bash benchmarks/gpu_check.sh [--device auto|cuda|cpu] [--quick] [--train DIR] [--set5 DIR]
# One JSON line on stdout, progress on stderr. PYTHON picks the interpreter (default: python).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export GPU_CHECK_T0="$(date +%s.%N)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "${PYTHON:-python}" "$root/benchmarks/gpu_check.py" "$@"
