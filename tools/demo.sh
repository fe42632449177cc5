#!/usr/bin/env bash
# The main job on a fresh machine: install edgernn (core dependencies only: numpy, numba, click,
# h5py -- no TensorFlow), convert the shipped Keras example, describe it, and stream the shipped
# sensor trace through it, in Python and through the `edgernn run` shell pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3  # if .venv also has the test extra, keep TensorFlow's start-up log quiet
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e .
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
.venv/bin/edgernn convert edgernn/examples/basicmotions_lstm.keras -o "$out/basicmotions.ernn"
.venv/bin/edgernn info "$out/basicmotions.ernn"
echo
echo "edgernn run, last 3 output rows (class probabilities Standing, Running, Walking, Badminton):"
.venv/bin/edgernn run "$out/basicmotions.ernn" --input edgernn/examples/basicmotions_trace.csv | tail -n 3
echo
.venv/bin/python tools/demo.py
