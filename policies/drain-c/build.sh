#!/bin/sh
# Builds the C `drain` policy into drain.wasm, next to this script.
# Needs clang, lld, wasi-libc and libclang-rt-dev-wasm32 (Debian), wit-bindgen
# (`cargo install wit-bindgen-cli@0.61.1 --locked`) and cargo; see README.md.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
out=target/build
mkdir -p "$out"

# 1. The bindings: C types and the glue for the world, from the contract.
wit-bindgen c ../../wit --world drain-policy --out-dir "$out/bindings" >/dev/null

# 2. A core module against WASI preview 1, as a reactor (no `main`: the agent
#    calls its exports). The object file carries the world's type.
clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror \
    -I "$out/bindings" -o "$out/drain.core.wasm" \
    drain.c "$out/bindings/drain_policy.c" "$out/bindings/drain_policy_component_type.o"

# 3. The component: the core module plus the WASI preview 1 adapter
#    (`wasm-tools component new --adapt` would do the same).
cargo build --quiet --release --locked --manifest-path componentize/Cargo.toml --target-dir target
target/release/componentize "$out/drain.core.wasm" drain.wasm
