#!/usr/bin/env bash
# Builds (once) an arm64 Debian root in which aarch64 tridesign/TVM artifacts run under qemu-user,
# so `make test-cross` can prove a cross-compiled module works without a board.
#
# Usage: scripts/cross_root.sh [ROOT]   (default: .cross/arm64-root; cached, rebuilt only if absent)
# Needs root for apt-get, binfmt_misc and debootstrap. Installs what is missing from Debian:
# g++-aarch64-linux-gnu (to link aarch64 shared libraries), qemu-user-static, debootstrap.
set -euo pipefail

ROOT="${1:-.cross/arm64-root}"
SUITE="${CROSS_SUITE:-bookworm}"            # bookworm ships Python 3.11, matching the cp311 wheels
MIRROR="${CROSS_MIRROR:-http://deb.debian.org/debian}"
PYTHON="${PYTHON:-.venv/bin/python}"
TVM_PKGS=(apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1 numpy ml_dtypes typing_extensions)

need() { command -v "$1" >/dev/null 2>&1; }

if ! need aarch64-linux-gnu-g++ || ! need qemu-aarch64-static || ! need debootstrap; then
    echo "cross_root: installing g++-aarch64-linux-gnu qemu-user-static debootstrap (apt)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        g++-aarch64-linux-gnu qemu-user-static debootstrap binfmt-support >/dev/null
fi

# qemu-user runs aarch64 ELF files through binfmt_misc, which debootstrap's second stage needs.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64
fi

if [ ! -e "$ROOT/.debootstrap-done" ]; then
    echo "cross_root: debootstrap $SUITE arm64 into $ROOT (several minutes under qemu)" >&2
    rm -rf "$ROOT.tmp"
    mkdir -p "$(dirname "$ROOT")"
    debootstrap --arch=arm64 --variant=minbase --include=python3 "$SUITE" "$ROOT.tmp" "$MIRROR" >&2
    touch "$ROOT.tmp/.debootstrap-done"
    rm -rf "$ROOT"
    mv "$ROOT.tmp" "$ROOT"
fi

# The TVM runtime for aarch64: wheels unpacked by the host's pip into a directory of the root.
SITE="$ROOT/opt/tvm-site"
if [ ! -e "$SITE/.installed" ]; then
    echo "cross_root: installing aarch64 wheels (${TVM_PKGS[*]}) into $SITE" >&2
    rm -rf "$SITE"
    "$PYTHON" -m pip install --quiet --no-deps --only-binary=:all: \
        --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 \
        --python-version 3.11 --implementation cp --target "$SITE" "${TVM_PKGS[@]}"
    touch "$SITE/.installed"
fi
echo "$ROOT"
