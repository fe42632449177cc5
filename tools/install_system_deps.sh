#!/usr/bin/env bash
# Install the system packages the tests use, if any is missing, with apt-get (as root):
#   gcc, make           the host build of the exported runtime and its testbench
#   clang + runtime     the sanitized builds (ASan/UBSan) and libFuzzer (tests/test_firmware_hostile.py)
#   gcc-arm-none-eabi   the Cortex-M0+/M4 cross builds, with newlib's C library
#   python3-dev         Python's headers, for the ahead-of-time step module (tests/test_aot.py)
#   python3-venv        ensurepip, for tools/test.sh's .venv (Debian's python3 comes without it)
# The last two only where python3 is the system's (a pyenv or python.org Python has both).
# Without apt-get or root it installs nothing: it prints the packages and the command that installs
# them, and exits 1, so that no test run starts half-equipped (a skipped test is never a pass).
set -euo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have_deb() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

have gcc || missing+=(gcc)
have make || missing+=(make)
have clang || missing+=(clang)
have arm-none-eabi-gcc || missing+=(gcc-arm-none-eabi)
# newlib is the C library arm-none-eabi-gcc links against; libFuzzer and the sanitizers come with
# clang's runtime package, whose name carries clang's major version (14 on Debian 12, 19 on 13).
have_deb libnewlib-arm-none-eabi || missing+=(libnewlib-arm-none-eabi)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
python3 -c 'import os, sysconfig; assert os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' \
    2>/dev/null || missing+=(python3-dev)
clang_major() { clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9][0-9]*\).*/\1/p' | head -n 1; }
if have clang; then
    rt="libclang-rt-$(clang_major)-dev"
    have_deb "$rt" || missing+=("$rt")
fi

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! have apt-get; then
    then_rt=$(have clang || echo ", then libclang-rt-N-dev for clang's major version N")
    echo "tools/install_system_deps.sh: the tests need ${missing[*]}; install them with:" \
         "sudo apt-get install -y ${missing[*]}${then_rt}" >&2
    exit 1
fi

echo "Installing what the tests use: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
if ! have_deb "libclang-rt-$(clang_major)-dev"; then  # clang was new: its runtime's name is known now
    apt-get install -y -qq "libclang-rt-$(clang_major)-dev" >/dev/null
fi
