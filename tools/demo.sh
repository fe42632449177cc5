#!/usr/bin/env bash
# The main job on a fresh machine: install edgernn (core dependencies only: numpy, numba, click,
# h5py -- no TensorFlow), convert the shipped Keras example, describe it, and stream the shipped
# sensor trace through it, in Python and through the `edgernn run` shell pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3  # if .venv also has the test extra, keep TensorFlow's start-up log quiet
bash tools/install_system_deps.sh --venv  # Debian's python3 needs python3-venv for the next line
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e .
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
.venv/bin/edgernn convert edgernn/examples/basicmotions_lstm.keras -o "$out/basicmotions.ernn"
.venv/bin/edgernn info "$out/basicmotions.ernn"
echo
# What a device does once at install or boot: Numba's on-disk cache, and the one-step kernel built
# ahead of time for this CPU (needs a C compiler and Python's headers; without them it says why).
# Both persist (Numba's beside the kernels, the module in ~/.cache/edgernn): a second demo reuses them.
.venv/bin/edgernn warmup "$out/basicmotions.ernn"
echo
echo "edgernn run, a fresh process after warmup; last 3 output rows (Standing, Running, Walking, Badminton):"
start=$(date +%s%N)
.venv/bin/edgernn run "$out/basicmotions.ernn" --input edgernn/examples/basicmotions_trace.csv | tail -n 3
echo "($(( ($(date +%s%N) - start) / 1000000 )) ms for the whole process: start, load, 400 steps, exit)"
echo
.venv/bin/python tools/demo.py
