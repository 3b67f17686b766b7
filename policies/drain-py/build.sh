#!/bin/sh
# Builds the Python `drain` policy into drain.wasm, next to this script.
# Needs componentize-py 0.25.1: in .venv here (what build-all.sh and the
# README set up), or on PATH.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
componentize_py=componentize-py
if [ -x .venv/bin/componentize-py ]; then
    componentize_py=.venv/bin/componentize-py
fi
# The bindings (the `wit_world` package) are generated into the build from the
# contract in wit/; they are not kept in the tree.
"$componentize_py" -d ../../wit -w drain-policy componentize drain -o drain.wasm
