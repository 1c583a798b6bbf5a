#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) on a machine with an NVIDIA GPU: installs spanqa with
# onnxruntime-gpu, then builds, verifies and times gpu-fp16 and gpu-trt. Fits 8 minutes of device
# time: the install, then at most --budget-s (default 420 s) of checks.
#   benchmarks/gpu_check.sh OUT_DIR [gpu_check.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: benchmarks/gpu_check.sh OUT_DIR [options]}"; shift
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none); run benchmarks/gpu_check.py --cpu-only for the CPU-side parts" >&2
  exit 2
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
pip install -q torch==2.13.0
pip uninstall -q -y onnxruntime >/dev/null 2>&1 || true   # the CPU wheel would shadow onnxruntime-gpu
pip install -q -e '.[export,gpu]' 'tensorrt-cu12' 2>/dev/null || pip install -q -e '.[export,gpu]'
python -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
exec python benchmarks/gpu_check.py --out "$out" "$@"
