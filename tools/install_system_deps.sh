#!/usr/bin/env bash
# Install the system packages edgernn's scripts use, if any is missing, with apt-get (as root).
#   tools/install_system_deps.sh           what the tests use (tools/test.sh):
#     gcc, make           the host build of the exported runtime and its testbench
#     clang + runtime     the sanitized builds (ASan/UBSan) and libFuzzer (tests/test_firmware_hostile.py)
#     gcc-arm-none-eabi   the Cortex-M0+/M4 cross builds, with newlib's C library
#     python3-dev         Python's headers, for the ahead-of-time step module (tests/test_aot.py)
#     python3-venv        ensurepip, for the .venv (Debian's python3 comes without it)
#   tools/install_system_deps.sh --venv    python3-venv only (tools/demo.sh)
# The Python packages are needed only where python3 is the system's (a pyenv or python.org Python
# has both). Without apt-get or root it installs nothing: it prints the packages and the command
# that installs them, and exits 1, so that no test run starts half-equipped (a skip is never a pass).
set -euo pipefail

missing=()
clang_major() { clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9][0-9]*\).*/\1/p' | head -n 1; }
have() { command -v "$1" >/dev/null 2>&1; }
# A Debian package's presence; where there is no dpkg (not Debian), the tools' checks above decide.
have_deb() { ! have dpkg-query || dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ "${1:-}" != "--venv" ]; then
    have gcc || missing+=(gcc)
    have make || missing+=(make)
    have clang || missing+=(clang)
    have arm-none-eabi-gcc || missing+=(gcc-arm-none-eabi)
    # newlib is the C library arm-none-eabi-gcc links against; libFuzzer and the sanitizers come
    # with clang's runtime package, whose name carries clang's major version (14 on Debian 12).
    have_deb libnewlib-arm-none-eabi || missing+=(libnewlib-arm-none-eabi)
    python3 -c 'import os, sysconfig; assert os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' \
        2>/dev/null || missing+=(python3-dev)
    if have clang; then
        have_deb "libclang-rt-$(clang_major)-dev" || missing+=("libclang-rt-$(clang_major)-dev")
    fi
fi

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! have apt-get; then
    then_rt=$([[ " ${missing[*]} " != *" clang "* ]] || echo ", then libclang-rt-N-dev for clang's major version N")
    echo "tools/install_system_deps.sh: edgernn's scripts need ${missing[*]}; install them with:" \
         "sudo apt-get install -y ${missing[*]}${then_rt}" >&2
    exit 1
fi

echo "Installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
if [[ " ${missing[*]} " == *" clang "* ]]; then  # clang was new: its runtime's name is known now
    apt-get install -y -qq "libclang-rt-$(clang_major)-dev" >/dev/null
fi
