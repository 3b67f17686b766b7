#!/bin/sh
# Installs what is missing and builds the `drain` policy in Python, JavaScript
# and C: policies/drain-{py,js,c}/drain.wasm, which tests/all/conformance.rs
# checks against the Rust `drain`.
#
# Idempotent: tools already at the right version are not reinstalled, and a
# component newer than everything it is built from is not rebuilt. Any tool
# that cannot be installed fails the script: nothing is skipped.
#
# Needs Debian (apt-get, as root or through sudo, only when a package is
# missing), Rust with cargo, and Node.js 20.19 or newer.
set -eu

COMPONENTIZE_PY=0.25.1
WIT_BINDGEN=0.61.1

policies=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$policies")

say() { printf 'build-all: %s\n' "$*"; }
fail() {
    printf 'build-all: %s\n' "$*" >&2
    exit 1
}

# --- Debian packages -------------------------------------------------------

missing=""
command -v clang >/dev/null || missing="$missing clang"
command -v wasm-ld >/dev/null || missing="$missing lld"
[ -f /usr/lib/wasm32-wasi/libc.a ] || missing="$missing wasi-libc"
# compiler-rt's builtins for wasm32 (printf's long double needs them).
if ! command -v clang >/dev/null || [ ! -f "$(clang --target=wasm32-wasi -print-libgcc-file-name)" ]; then
    missing="$missing libclang-rt-dev-wasm32"
fi
python3 -m venv --help >/dev/null 2>&1 || missing="$missing python3-venv"
command -v node >/dev/null || missing="$missing nodejs"
command -v npm >/dev/null || missing="$missing npm"
if [ -n "$missing" ]; then
    say "installing Debian packages:$missing"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    # shellcheck disable=SC2086 # one word per package
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null ||
        fail "could not install:$missing"
fi

# What componentize-js's dependencies declare (`engines`).
node -e 'const [major, minor] = process.versions.node.split(".").map(Number);
         process.exit(major > 20 || (major === 20 && minor >= 19) ? 0 : 1)' ||
    fail "Node.js $(node --version) is too old: componentize-js needs 20.19 or newer"

# --- Python: componentize-py in a virtualenv -------------------------------

venv="$policies/drain-py/.venv"
if [ "$("$venv/bin/componentize-py" --version 2>/dev/null)" != "componentize-py $COMPONENTIZE_PY" ]; then
    say "installing componentize-py $COMPONENTIZE_PY"
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY"
fi

# --- JavaScript: componentize-js, at the versions of package-lock.json -----
# (`npm ci` refuses this tree: some optional per-platform packages it lists
# were never published.)

js="$policies/drain-js"
if [ ! -x "$js/node_modules/.bin/componentize-js" ] ||
    [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
    say "installing componentize-js (npm install, from package-lock.json)"
    (cd "$js" && npm install --no-audit --no-fund --loglevel=error)
fi

# --- C: wit-bindgen's C generator ------------------------------------------

# `cargo install` puts it here, which may not be on PATH.
PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH
if [ "$(wit-bindgen --version 2>/dev/null)" != "wit-bindgen-cli $WIT_BINDGEN" ]; then
    say "installing wit-bindgen-cli $WIT_BINDGEN (a few minutes)"
    cargo install --quiet --locked "wit-bindgen-cli@$WIT_BINDGEN"
fi

# --- Build -----------------------------------------------------------------

# build DIR INPUT...: runs DIR/build.sh unless DIR/drain.wasm is newer than
# every input (files or directories, searched recursively).
build() {
    dir="$policies/$1"
    shift
    if [ -f "$dir/drain.wasm" ] &&
        [ -z "$(find "$root/wit" "$dir/build.sh" "$@" -newer "$dir/drain.wasm" -print -quit)" ]; then
        say "$(basename "$dir")/drain.wasm is up to date"
        return
    fi
    say "building $(basename "$dir")/drain.wasm"
    "$dir/build.sh"
}

build drain-py "$policies/drain-py/drain.py" "$venv/bin/componentize-py"
build drain-js "$js/drain.js" "$js/node_modules/.package-lock.json"
build drain-c "$policies/drain-c/drain.c" "$policies/drain-c/componentize/src" \
    "$policies/drain-c/componentize/Cargo.toml" "$policies/drain-c/componentize/Cargo.lock" \
    "$(command -v wit-bindgen)"
