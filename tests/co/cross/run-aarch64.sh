#!/bin/sh
# ctest co_ctx_aarch64_qemu: builds ctx_check.c with src/co/ctx.c and src/co/switch_aarch64.S
# using the aarch64 cross compiler, and runs it under qemu-user, at -O0 and -O2.
# Usage: run-aarch64.sh <source dir> <output dir>
# Exit 77 (ctest SKIP_RETURN_CODE) when the cross compiler, its C library or qemu-aarch64
# is missing: scripts/deps installs gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user.
set -eu
src=$1
out=$2
cc=${HK_AARCH64_CC:-aarch64-linux-gnu-gcc}
qemu=${HK_QEMU_AARCH64:-qemu-aarch64}
sysroot=${HK_AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}

skip() {
    echo "co_ctx_aarch64_qemu: skipped: $1 (scripts/deps installs it)"
    exit 77
}
command -v "$cc" >/dev/null 2>&1 || skip "no $cc"
command -v "$qemu" >/dev/null 2>&1 || skip "no $qemu"
[ -e "$sysroot/lib/libc.so.6" ] || skip "no aarch64 C library in $sysroot"

mkdir -p "$out"
for opt in -O0 -O2; do
    bin="$out/ctx_check$opt"
    "$cc" -std=gnu11 $opt -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
        -Wmissing-prototypes -D_GNU_SOURCE -I"$src/include" -I"$src/src" \
        "$src/tests/co/cross/ctx_check.c" "$src/src/co/ctx.c" "$src/src/co/switch_aarch64.S" \
        -o "$bin" -lm
    echo "$bin:"
    "$qemu" -L "$sysroot" "$bin"
done
