#!/usr/bin/env bash
# Runs `lameduck inject` on every manifest in tests/fixtures/inject/, in both
# modes; checks that injecting the output again changes nothing; and validates
# the output as deploy/validate.sh validates deploy/ (Kubernetes schemas,
# strict, and lameduck's wiring). deploy/validate.sh runs it after deploy/.
#
# Env: LAMEDUCK (the binary; default target/debug/lameduck).
set -euo pipefail

deploy="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$deploy")"
fixtures="$root/tests/fixtures/inject"

lameduck="${LAMEDUCK:-$root/target/debug/lameduck}"
[ -x "$lameduck" ] || { echo "validate-inject: no lameduck at $lameduck: build it, or set LAMEDUCK" >&2; exit 1; }

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "validate-inject: lameduck inject on $fixtures"
for input in "$fixtures"/*.yaml; do
    case="$(basename "$input" .yaml)"
    for mode in entrypoint sidecar; do
        flags=(--mode "$mode")
        # nginx's image runs a command its manifest does not say.
        if [ "$case" = no-command ] && [ "$mode" = entrypoint ]; then
            flags+=(--command 'nginx=[/docker-entrypoint.sh, nginx, -g, "daemon off;"]')
        fi
        injected="$out/$case.$mode.yaml"
        "$lameduck" inject "${flags[@]}" -f "$input" >"$injected" 2>"$out/notes"
        if ! "$lameduck" inject "${flags[@]}" -f "$injected" 2>"$out/notes" | cmp -s - "$injected"; then
            echo "validate-inject: $case ($mode): injecting the output again changed it" >&2
            exit 1
        fi
    done
done

LAMEDUCK="$lameduck" "$deploy/validate.sh" "$out"/*.yaml
