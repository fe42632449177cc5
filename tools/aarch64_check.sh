#!/usr/bin/env bash
# aarch64 proof (64-bit Raspberry Pi OS class userland), without a Pi: the edgernn checkout runs
# under qemu-user on a Debian bookworm arm64 root with numba's aarch64 wheels. Three checks:
#   1. its outputs (predict and a stateful stream over the shipped trace) are compared with this
#      x86 host's (within 1e-5);
#   2. the runtime's own tests that need no TensorFlow/PyTorch run there under pytest
#      ($EDGERNN_AARCH64_TESTS; see the default below; a few minutes with a warm Numba cache);
#   3. when binfmt_misc can run aarch64 binaries (an F-flag qemu-aarch64 entry, registered here if
#      missing): in a chroot of the root, with gcc and python3.11-dev installed there, the
#      ahead-of-time step (edgernn.kernels.aot) is built, a fresh process steps the trace on it
#      without importing Numba (compared bit for bit with check 1's jitted aarch64 outputs), and
#      tests/test_aot.py runs. Without binfmt_misc it is skipped, and says so.
#
#   tools/aarch64_check.sh              # prints PASS or FAIL, exit 0 on PASS
#   tools/aarch64_check.sh --no-tests   # check 1 only
#
# Not part of CI: the first run downloads ~150 MB (~250 MB more for check 3's compiler) and Numba
# compiles slowly under emulation (the first run of the tests takes about an hour on a busy 2-core
# host; later runs reuse Numba's cache). Everything it makes lives in $EDGERNN_AARCH64_CACHE
# (default ~/.cache/edgernn-aarch64), outside the repository. Needs root for apt-get/debootstrap
# only when those tools or the root are missing, and for check 3 (binfmt_misc, chroot, mount
# --bind); network access to deb.debian.org and PyPI on the first run.
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
# (test_numba_cache, test_statefile's kill-the-writer test): these run under qemu-aarch64 -L,
# where the emulated Python cannot exec another aarch64 binary unless binfmt_misc is set up (only
# check 3 relies on it). tests/test_aot.py is check 3's. tests/test_kernels.py (hypothesis, 300
# examples a test) is left out for time; EDGERNN_AARCH64_TESTS can add it.
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
#    the first stage already unpacked libc and the other essential packages. (Check 3, when
#    binfmt_misc works, finishes the second stage in a chroot to install a compiler with apt.)
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

# Check 3 mounts host directories at their own paths inside the root (see 8). Under qemu -L an
# existing $ROOT$path shadows the host's $path, so the empty mount points are removed after use,
# and here too, should an interrupted run have left them.
AOTSITE=$CACHE/site-aot     # setuptools, which numba.pycc needs (check 3)
AOT_DIR=$CACHE/aot          # the module built by check 3 (Numba's cache stays in numba-cache)
IN_ROOT_DIRS=("$REPO" "$SITE" "$TESTSITE" "$AOTSITE" "$CACHE/numba-cache" "$AOT_DIR" "$OUT")
unshadow() {
    local d
    for d in "${IN_ROOT_DIRS[@]}"; do
        if [ -d "$ROOT$d" ] && ! mountpoint -q "$ROOT$d"; then
            rmdir -p --ignore-fail-on-non-empty "$ROOT$d" 2>/dev/null || true
        fi
    done
}
unshadow

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
# 8. Check 3, the ahead-of-time step, in a chroot of the root (binfmt_misc runs its binaries: gcc
#    starts cc1, as and ld; the fresh-process test starts a second Python). Idempotent: the
#    second stage and apt-get run only while gcc or Python.h is missing, the build only while the
#    module for these kernel sources is missing.
BINFMT=/proc/sys/fs/binfmt_misc
registered=0
mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true
    done
    mounted=()
    unshadow
    if ((registered)); then echo -1 >"$BINFMT/qemu-aarch64" || true; registered=0; fi
}
trap cleanup EXIT
# An F-flag entry: the kernel opens qemu-aarch64-static when it is registered, so the interpreter
# need not exist inside the chroot. Registered here only if no qemu-aarch64 entry exists (Debian's
# binfmt.d config has one, with F, where systemd-binfmt runs), and removed again on exit.
binfmt_usable() {
    [ -e "$BINFMT/register" ] || mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null || return 1
    if [ ! -e "$BINFMT/qemu-aarch64" ]; then
        local magic='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
        local mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
        printf ':qemu-aarch64:M::%s:%s:%s:F' "$magic" "$mask" "$(command -v qemu-aarch64-static)" \
            >"$BINFMT/register" 2>/dev/null || return 1
        registered=1
    fi
    chroot "$ROOT" /bin/true 2>/dev/null
}
# $1 (a host path) at the same path inside the root, so Numba's cache index (keyed by source
# paths) is shared with the qemu -L runs above; the mount point is removed again by cleanup.
bind_in_root() {
    mkdir -p "$ROOT$1"
    mountpoint -q "$ROOT$1" || { mount --bind "$1" "$ROOT$1" && mounted+=("$ROOT$1"); }
}
IN_ROOT=(chroot "$ROOT" /usr/bin/env -i -C "$REPO" HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8
         "PYTHONPATH=$SITE:$TESTSITE:$AOTSITE:$REPO" "NUMBA_CACHE_DIR=$CACHE/numba-cache" "EDGERNN_AOT_DIR=$AOT_DIR"
         PYTHONDONTWRITEBYTECODE=1)
if ((RUN_TESTS)) && ! binfmt_usable; then
    say "check 3 (ahead-of-time step) skipped: binfmt_misc cannot run aarch64 binaries here"
elif ((RUN_TESTS)); then
    if [ ! -x "$ROOT/usr/bin/gcc" ] || [ ! -f "$ROOT/usr/include/python3.11/Python.h" ]; then
        # /debootstrap is removed when the second stage (configuring the first stage's packages
        # with dpkg, so that apt works; about 6 minutes emulated) has completed.
        if [ -d "$ROOT/debootstrap" ]; then
            say "debootstrap --second-stage in the chroot (log: $CACHE/second-stage.log)"
            if ! chroot "$ROOT" /debootstrap/debootstrap --second-stage >"$CACHE/second-stage.log" 2>&1; then
                tail -5 "$CACHE/second-stage.log"
                say "the second stage failed"
                echo "FAIL"
                exit 1
            fi
        fi
        mountpoint -q "$ROOT/proc" || { mount -t proc proc "$ROOT/proc" && mounted+=("$ROOT/proc"); }
        cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
        say "apt-get install gcc python3.11-dev in the chroot (log: $CACHE/apt.log)"
        if ! { chroot "$ROOT" apt-get update -q &&
               chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                   gcc python3.11-dev && chroot "$ROOT" apt-get clean; } >"$CACHE/apt.log" 2>&1; then
            tail -5 "$CACHE/apt.log"
            say "installing the compiler in the chroot failed"
            echo "FAIL"
            exit 1
        fi
    fi
    # numba.pycc imports setuptools (numba does not depend on it; Python >= 3.12 venvs lack it)
    if [ ! -d "$AOTSITE/setuptools" ]; then
        say "pip install setuptools (for numba.pycc)"
        "$PY" -m pip install -q --no-deps --target "$AOTSITE" --only-binary=:all: \
            --platform manylinux_2_28_aarch64 --python-version 3.11 setuptools
    fi
    # /proc: the module's key hashes /proc/cpuinfo (qemu-user shows the host's)
    mountpoint -q "$ROOT/proc" || { mount -t proc proc "$ROOT/proc" && mounted+=("$ROOT/proc"); }
    for d in "${IN_ROOT_DIRS[@]}"; do
        mkdir -p "$d"
        bind_in_root "$d"
    done
    say "chroot: $("${IN_ROOT[@]}" gcc --version | head -1)"
    start=$(date +%s)
    if "${IN_ROOT[@]}" /usr/bin/python3.11 -c 'from edgernn.kernels import aot; print(aot.build_step())'; then
        say "ahead-of-time step ready ($(($(date +%s) - start)) s)"
        # A fresh process steps the trace on it, without Numba: equal bit for bit to check 1's
        # aarch64 stream (Numba's kernel, jitted under qemu -L).
        "${IN_ROOT[@]}" /usr/bin/python3.11 "$REPO/tools/aarch64_check.py" aot "$OUT" || verdict=1
    else
        verdict=1
    fi
    say "emulated (chroot): pytest tests/test_aot.py"
    start=$(date +%s)
    "${IN_ROOT[@]}" /usr/bin/python3.11 -m pytest -p no:cacheprovider -q tests/test_aot.py || verdict=1
    say "emulated test_aot took $(($(date +%s) - start)) s"
    cleanup
fi
if ((verdict)); then echo "FAIL"; else echo "PASS"; fi
exit $verdict
