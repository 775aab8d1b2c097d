#!/usr/bin/env bash
# Installs the build with --prefix and with DESTDIR, then compiles smoke.c
# against each installed copy through pkg-config (hark.pc is relocatable via
# ${pcfiledir}, so no PKG_CONFIG_SYSROOT_DIR is needed), dynamically (run with
# LD_LIBRARY_PATH) and statically against libhark.a.
# usage: install_test.sh <build dir> <smoke.c> [cc] [extra cflags]
set -euo pipefail

build=$1
src=$2
cc=${3:-cc}
extra=${4:-}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hark-install-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "install test: FAIL: $*" >&2
    exit 1
}

# check <root of installed tree> <label>
check() {
    local root=$1 label=$2 libdir pcdir
    pcdir=$(dirname "$(find "$root" -name hark.pc -print -quit)")
    [ -f "$pcdir/hark.pc" ] || fail "$label: hark.pc not installed"
    libdir=$(cd "$pcdir/.." && pwd)
    [ -f "$root/usr/local/include/hark.h" ] || [ -f "$root/include/hark.h" ] ||
        fail "$label: hark.h not installed"
    ls "$libdir"/libhark.so* >/dev/null 2>&1 || fail "$label: libhark.so not installed"
    [ -f "$libdir/libhark.a" ] || fail "$label: libhark.a not installed"

    export PKG_CONFIG_PATH=$pcdir
    unset PKG_CONFIG_SYSROOT_DIR || true
    pkg-config --exists hark || fail "$label: pkg-config does not find hark"
    local cflags libs slibs
    cflags=$(pkg-config --cflags hark)
    libs=$(pkg-config --libs hark)
    slibs=$(pkg-config --static --libs hark)
    echo "$label: cflags=[$cflags] libs=[$libs] static=[$slibs]"
    case "$cflags $libs" in
    *"$build"*) fail "$label: pkg-config points into the build tree" ;;
    esac

    # Shared.
    # shellcheck disable=SC2086
    "$cc" $extra -o "$tmp/smoke-shared" "$src" $cflags $libs ||
        fail "$label: compiling against the shared library"
    LD_LIBRARY_PATH=$libdir "$tmp/smoke-shared" || fail "$label: shared smoke program failed"
    # Capture first: with pipefail, grep -q closing the pipe early makes ldd die
    # of SIGPIPE and the whole pipeline fail at random.
    local deps
    deps=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/smoke-shared")
    grep -q "$libdir/libhark.so" <<<"$deps" ||
        fail "$label: the shared smoke program did not load the installed libhark.so"

    # Static: libhark.a only, whatever else the system links dynamically.
    local libs_l libs_other
    libs_l=$(pkg-config --static --libs-only-l hark | sed 's/-lhark\b//')
    libs_other=$(pkg-config --static --libs-only-L hark)
    # shellcheck disable=SC2086
    "$cc" $extra -o "$tmp/smoke-static" "$src" $cflags $libs_other \
        -Wl,-Bstatic -lhark -Wl,-Bdynamic $libs_l ||
        fail "$label: compiling against the static library"
    local dyn
    dyn=$(readelf -d "$tmp/smoke-static")
    if grep -q 'libhark\.so' <<<"$dyn"; then
        fail "$label: the static smoke program still needs libhark.so"
    fi
    env -u LD_LIBRARY_PATH "$tmp/smoke-static" || fail "$label: static smoke program failed"
    rm -f "$tmp/smoke-shared" "$tmp/smoke-static"
}

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null || fail "cmake --install --prefix"
check "$tmp/prefix" prefix

DESTDIR="$tmp/destdir" cmake --install "$build" --prefix /usr/local >/dev/null ||
    fail "DESTDIR cmake --install"
[ -d "$tmp/destdir/usr/local" ] || fail "DESTDIR install did not land under DESTDIR"
check "$tmp/destdir" destdir

echo "install test: ok"
