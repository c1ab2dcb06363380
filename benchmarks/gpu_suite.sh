#!/usr/bin/env bash
# The benchmark suite on a lent GPU machine, as one command (it installs nothing: that machine
# has no internet). From the repository root:
#
#     bash benchmarks/gpu_suite.sh          # results in $OUT/gpu/ if OUT is set, else
#                                           # benchmarks/results/gpu/
#
# 1. Stops unless JAX sees a GPU (jax[cuda] may be missing from the carried venv).
# 2. The quick suite: every script's --smoke, each a subprocess (13 min on a shared 2-core
#    CPU machine, 8 of them scaling.py's; cut at 7 min here).
# 3. The full runs that fit the 10-minute command limit: beamline_vs_cheetah and
#    muography_vs_tomopt (Cheetah stays on the CPU; TomOpt's venv is absent there, so its
#    column reads "peer unavailable"). ring_vs_pyat, xpcs_vs_homodyne, ares_* and scaling in
#    full take longer than one command allows.
# Precision: float64 only. diffdesign turns jax_enable_x64 on when imported and no script has
# a float32 switch yet; the summary records jax_enable_x64 as each run saw it.
# Each step has its own time limit, so the whole stays under ~9.5 minutes.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
DEST=${OUT:-benchmarks/results}/gpu
mkdir -p "$DEST"

if ! "$PY" -c "import jax; print(jax.devices('gpu'))" >"$DEST/devices.txt" 2>&1; then
    echo "no GPU visible to JAX (is jax[cuda12] installed in $PY's environment?); nothing run:"
    tail -n 3 "$DEST/devices.txt"
    exit 2
fi
cat "$DEST/devices.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$DEST/devices.txt" 2>&1

# (a `timeout` ends the runner and the benchmark it is running; summary.* keep the rest)
timeout 420 "$PY" -m benchmarks --device gpu --quick --out "$DEST/quick"
echo "quick suite: exit $?"
timeout 150 "$PY" -m benchmarks --device gpu --timeout 140 --out "$DEST" \
    --only beamline_vs_cheetah,muography_vs_tomopt
echo "full subset: exit $?"
