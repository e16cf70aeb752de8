#!/bin/sh
# Stack-capture cost: ns per malloc+free pair at depths 10, 30 and 60, plain
# and under the shim, for code built without and with frame pointers.
# usage: bench/unwind.sh [path/to/libmemshim.so]   (build it first:
#        cargo build --release -p memshim)
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHIM=${1:-$ROOT/target/release/libmemshim.so}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cc -O2 -fomit-frame-pointer -o "$TMP/unwind-nofp" "$ROOT/bench/unwind.c"
cc -O2 -fno-omit-frame-pointer -o "$TMP/unwind-fp" "$ROOT/bench/unwind.c"
printf '%-6s %-7s %10s %10s\n' build depth plain shim
for build in nofp fp; do
    for depth in 10 30 60; do
        plain=$("$TMP/unwind-$build" "$depth" | sed 's/.*ns_per_pair=//')
        shim=$(MEMSHIM_STACK_DEPTH=128 MEMSHIM_SOCKET=/nonexistent \
            MEMSHIM_OUTPUT="$TMP/trace.%p.mst" LD_PRELOAD="$SHIM" \
            "$TMP/unwind-$build" "$depth" 1000000 | sed 's/.*ns_per_pair=//')
        rm -f "$TMP"/trace.*.mst
        printf '%-6s %-7s %10s %10s\n' "$build" "$depth" "$plain" "$shim"
    done
done
