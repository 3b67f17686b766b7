#!/bin/sh
# Builds the JavaScript `drain` policy into drain.wasm, next to this script.
# Needs Node.js and `npm ci` (or `npm install`) run here once; see README.md.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
# `-d http fetch-event`: without it the component imports wasi:http, which
# the agent's sandbox does not provide. No `--aot`: it downloads a binary.
node_modules/.bin/componentize-js drain.js --wit ../../wit --world-name drain-policy \
    -d http fetch-event -o drain.wasm
