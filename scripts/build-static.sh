#!/usr/bin/env bash
# Builds the static, stripped x86_64-unknown-linux-musl `lameduck` (the
# Dockerfile's build stage runs this very script), checks that it is static,
# prints its size and runs it once. Idempotent: installs only what is missing.
#
#   scripts/build-static.sh            # -> target/musl/x86_64-unknown-linux-musl/dist/lameduck
#
# Env: CARGO_TARGET_DIR (default target/musl, apart from the usual target/ so
# the two builds do not wait on each other's lock; host/build.rs still builds
# the wasm policies in target/policies, shared and briefly locked);
# SKIP_SMOKE=1 to only build.
set -euo pipefail

cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-musl
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/musl}"
BIN="$CARGO_TARGET_DIR/$TARGET/dist/lameduck"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- toolchain: the two targets, musl-gcc (for C code in dependencies), file ---
installed="$(rustup target list --installed)"
for t in wasm32-wasip2 "$TARGET"; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
packages=()
command -v musl-gcc >/dev/null || packages+=(musl-tools)
command -v file >/dev/null || packages+=(file)
if [ ${#packages[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y --no-install-recommends "${packages[@]}" \
        || { as_root apt-get update && as_root apt-get install -y --no-install-recommends "${packages[@]}"; }
fi

# --- build ---
cargo build --locked --profile dist --target "$TARGET" -p lameduck

# --- verify: static, stripped ---
desc="$(file -b "$BIN")"
echo "file: $desc"
case "$desc" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) echo "FAIL: $BIN is not static" >&2; exit 1 ;;
esac
case "$desc" in
    *", stripped"*) ;;
    *) echo "FAIL: $BIN is not stripped" >&2; exit 1 ;;
esac
# ldd exits non-zero on a static binary; what matters is that it lists no libraries.
ldd_out="$(ldd "$BIN" 2>&1 || true)"
echo "ldd: $ldd_out"
if grep -q '=>' <<<"$ldd_out"; then
    echo "FAIL: ldd lists shared libraries" >&2; exit 1
fi

bytes="$(stat -c %s "$BIN")"
mib="$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')"
echo "size: $mib MiB ($bytes bytes) $BIN"
if [ "$bytes" -gt $((15 * 1024 * 1024)) ]; then
    echo "WARN: over the 15 MiB goal" >&2
fi

[ "${SKIP_SMOKE:-0}" = 1 ] && exit 0

# --- run it once: the built-in policy loads, and it supervises a child ---
# A throwaway cache dir so the check compiles the policy rather than reading
# a cache written by another build.
cache="$(mktemp -d)"
trap 'rm -rf "$cache"' EXIT
"$BIN" --version
"$BIN" check --cache-dir "$cache"
# Port 0: the admin server gets a free port, so this never collides with a test.
"$BIN" run --admin 127.0.0.1:0 --cache-dir "$cache" -- /bin/true
set +e
"$BIN" run --admin off --cache-dir "$cache" -- /bin/sh -c 'exit 7'
code=$?
set -e
if [ "$code" -ne 7 ]; then
    echo "FAIL: exit status not propagated (wanted 7, got $code)" >&2; exit 1
fi
echo "OK: static binary builds, loads its policy and supervises a child"
