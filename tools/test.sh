#!/usr/bin/env bash
# Run the test suite on a fresh machine: install the system packages the tests use if any is missing
# (C compilers, Python's headers: tools/install_system_deps.sh), install edgernn with its test extra
# (TensorFlow/Keras, PyTorch, onnxruntime, LiteRT, pytest) into .venv, then run every test against
# the live frameworks. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_system_deps.sh
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test]"
# tf2onnx writes the ONNX files of tests/test_onnx_tf2onnx.py; --no-deps because its protobuf pin is
# stale (it would downgrade TensorFlow's), and what it needs is already there from the test extra.
.venv/bin/python -m pip install -q --no-deps "tf2onnx==1.17.0"
# Every test must run: a skip (a framework or compiler missing) fails the run (tests/conftest.py).
EDGERNN_NO_SKIPS=1 exec .venv/bin/python -m pytest -q -rs --durations=15 "$@"
