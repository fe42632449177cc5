#!/usr/bin/env bash
# aarch64 proof (64-bit Raspberry Pi OS class userland), without a Pi: the edgernn checkout runs
# under qemu-user on a Debian bookworm arm64 root with numba's aarch64 wheels. Two checks:
#   1. its outputs (predict and a stateful stream over the shipped trace) are compared with this
#      x86 host's (within 1e-5);
#   2. the runtime's own tests that need no TensorFlow/PyTorch run there under pytest
#      ($EDGERNN_AARCH64_TESTS; see the default below; a few minutes with a warm Numba cache).
#
#   tools/aarch64_check.sh              # prints PASS or FAIL, exit 0 on PASS
#   tools/aarch64_check.sh --no-tests   # check 1 only
#
# Not part of CI: the first run downloads ~150 MB and Numba compiles slowly under emulation
# (the first run of the tests takes about an hour on a busy 2-core host; later runs reuse Numba's
# cache). Everything it makes lives in $EDGERNN_AARCH64_CACHE (default ~/.cache/edgernn-aarch64),
# outside the repository. Needs root for apt-get/debootstrap only when those tools or the root
# are missing, and network access to deb.debian.org and PyPI on the first run.
# Env: PYTHON (host python with edgernn and pip importable; default: python3), EDGERNN_AARCH64_CACHE,
#      EDGERNN_AARCH64_TESTS (pytest arguments, relative to the checkout).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${EDGERNN_AARCH64_CACHE:-$HOME/.cache/edgernn-aarch64}
ROOT=$CACHE/root            # the arm64 Debian userland
SITE=$CACHE/site            # aarch64 wheels installed with --target
WHEELS=$CACHE/wheels
OUT=$CACHE/out              # model.ernn, inputs and both machines' outputs (.npy)
TESTSITE=$CACHE/site-tests  # pytest, hypothesis and their dependencies (pure Python)
PY=${PYTHON:-python3}
# The runtime's tests that import only edgernn, numpy, pytest and hypothesis. Left out: the
# importer/verify/bench tests (TensorFlow, PyTorch, ONNX), the firmware and quantize tests (a C
# compiler; the C runs on the host anyway), and the tests that start a second Python
# (test_numba_cache, test_statefile's kill-the-writer test): without binfmt_misc the emulated
# Python cannot exec another aarch64 binary. tests/test_kernels.py (hypothesis, 300 examples a
# test) is left out for time; EDGERNN_AARCH64_TESTS can add it.
TESTS=${EDGERNN_AARCH64_TESTS:-"tests/test_stream.py tests/test_store.py tests/test_lstm_extras.py
    tests/test_statefile.py --deselect tests/test_statefile.py::test_killed_writer_leaves_a_whole_state"}
RUN_TESTS=1
[ "${1:-}" = "--no-tests" ] && RUN_TESTS=0
mkdir -p "$CACHE" "$OUT"

say() { echo "[aarch64_check] $*"; }

if ! "$PY" -c "import edgernn, pip" 2>/dev/null; then
    say "$PY cannot import edgernn and pip: run from the venv where edgernn is installed, or set PYTHON"
    exit 2
fi

# 1. Tools: Debian's qemu-user-static and debootstrap.
missing=()
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# 2. An arm64 bookworm root with python3.11. The foreign second stage needs binfmt_misc (often
#    absent in containers), so the downloaded python debs are unpacked with dpkg -x instead;
#    the first stage already unpacked libc and the other essential packages.
if [ ! -x "$ROOT/usr/bin/python3.11" ]; then
    if [ ! -e "$ROOT/debootstrap/debootstrap.log" ] || [ ! -d "$ROOT/var/cache/apt/archives" ]; then
        say "debootstrap --foreign arm64 bookworm into $ROOT"
        debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 bookworm "$ROOT" \
            http://deb.debian.org/debian
    fi
    say "unpacking python debs with dpkg -x"
    tmp=$(mktemp -d)
    for deb in "$ROOT"/var/cache/apt/archives/*.deb; do
        case $(basename "$deb") in python3*|libpython3*|lib*) ;; *) continue ;; esac
        dpkg -x "$deb" "$tmp"
    done
    # through tar, keeping the root's merged-/usr symlinks (lib -> usr/lib) intact
    (cd "$tmp" && tar cf - .) | (cd "$ROOT" && tar xf - --keep-directory-symlink)
    rm -rf "$tmp"
fi

# 3. edgernn's dependencies as aarch64 wheels, fetched on the host.
if [ ! -d "$SITE/numba" ]; then
    say "pip download aarch64 wheels"
    "$PY" -m pip download -q --only-binary=:all: --platform manylinux_2_28_aarch64 --python-version 3.11 \
        -d "$WHEELS" numpy numba llvmlite click h5py
    "$PY" -m pip install -q --no-deps --target "$SITE" --only-binary=:all: \
        --platform manylinux_2_28_aarch64 --python-version 3.11 "$WHEELS"/*.whl
fi

# 3b. The test runner, pure-Python wheels.
if ((RUN_TESTS)) && [ ! -d "$TESTSITE/_pytest" ]; then
    say "pip download pytest and hypothesis"
    "$PY" -m pip download -q --only-binary=:all: --platform manylinux_2_28_aarch64 --python-version 3.11 \
        -d "$WHEELS/tests" pytest hypothesis
    "$PY" -m pip install -q --no-deps --target "$TESTSITE" "$WHEELS"/tests/*.whl
fi

EMU=(qemu-aarch64-static -L "$ROOT" -E "PYTHONPATH=$SITE:$TESTSITE:$REPO" -E "NUMBA_CACHE_DIR=$CACHE/numba-cache"
     -E PYTHONDONTWRITEBYTECODE=1 "$ROOT/usr/bin/python3.11")
say "emulated: $("${EMU[@]}" -c 'import platform, sys, numpy, numba; print(platform.machine(), sys.version.split()[0], "numpy", numpy.__version__, "numba", numba.__version__)')"

# 4. Host: the model and the inputs, and x86's outputs.  5. Emulated: the same, on aarch64.
"$PY" "$REPO/tools/aarch64_check.py" make "$OUT"
start=$(date +%s)
"${EMU[@]}" "$REPO/tools/aarch64_check.py" run "$OUT"
say "emulated run took $(($(date +%s) - start)) s (timings under emulation mean nothing)"

# 6. Host: compare within 1e-5.
verdict=0
"$PY" "$REPO/tools/aarch64_check.py" compare "$OUT" || verdict=1

# 7. Emulated: the runtime's tests.
if ((RUN_TESTS)); then
    say "emulated: pytest $(echo $TESTS)"
    start=$(date +%s)
    # shellcheck disable=SC2086  # TESTS is a list of arguments
    (cd "$REPO" && "${EMU[@]}" -m pytest -p no:cacheprovider -q $TESTS) || verdict=1
    say "emulated tests took $(($(date +%s) - start)) s"
fi
if ((verdict)); then echo "FAIL"; else echo "PASS"; fi
exit $verdict
