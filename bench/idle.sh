#!/usr/bin/env bash
# What lameduck costs while nothing happens, and while the app serves,
# against tini in the same run (issue 21: an idle agent <= 0.2 % of a core,
# <= 1 % while serving 300 requests per second).
#
#   bench/idle.sh                         # builds target/release/lameduck
#   SECONDS_EACH=60 bench/idle.sh         # longer windows (default 20 s)
#   bench/idle.sh before=/path/to/lameduck-old   # more agents, same run
#
# Each supervisor runs a small Python HTTP/1.1 server in network and PID
# namespaces of its own (so the namespace's TCP counters are the app's
# alone, and /proc holds the pod's processes, as in a pod), with lameduck's defaults (admin server on, default policy,
# `connections` probe). After 3 s to settle, its own CPU time (utime +
# stime of the supervisor's process, not the app's) is read over the
# window: first idle, the app listening and no client; then serving, `hey`
# in the same namespace at 300 requests per second on keep-alive
# connections; then the same rate with a new connection per request.
# Prints % of one core per supervisor and window, and the ratio to tini.
#
# Needs root (ip netns), python3, hey and tini (installed with apt-get if
# missing).
set -euo pipefail

cd "$(dirname "$0")/.."
window="${SECONDS_EACH:-20}"
rate=300

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v tini >/dev/null || missing+=(tini)
command -v hey >/dev/null || missing+=(hey)
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi

agents=()
for named in "$@"; do agents+=("$named"); done
if [ ${#agents[@]} -eq 0 ] || ! printf '%s\n' "${agents[@]}" | grep -q '^lameduck='; then
    if [ -z "${LAMEDUCK:-}" ]; then
        cargo build --release --locked -p lameduck >&2
        LAMEDUCK="$PWD/target/release/lameduck"
    fi
    agents=("lameduck=$LAMEDUCK" "${agents[@]}")
fi
agents=("tini=$(command -v tini)" "${agents[@]}")

# An HTTP/1.1 app that keeps connections alive (`http.server` speaks 1.0,
# and closes each).
app='
import http.server
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", 8080), Handler).serve_forever()
'

hz=$(getconf CLK_TCK)
# CPU ticks (utime + stime) of process $1.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# % of one core process $1 uses over the window, while `$2...` runs (or
# nothing).
cpu_over_window() {
    local pid=$1
    shift
    local before after
    before=$(ticks "$pid")
    if [ $# -gt 0 ]; then
        "$@" >/dev/null 2>&1 &
        local load=$!
        sleep "$window"
        wait "$load" || true
    else
        sleep "$window"
    fi
    after=$(ticks "$pid")
    awk -v t=$((after - before)) -v hz="$hz" -v s="$window" 'BEGIN { printf "%.3f", 100 * t / hz / s }'
}

declare -A results
run() {  # $1: name, $2: supervisor
    local name=$1 bin=$2 ns="ld-idle-$$"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    local args=(-- python3 -c "$app")
    [ "$name" = tini ] || args=(run "${args[@]}")
    ip netns exec "$ns" unshare --pid --fork --mount-proc "$bin" "${args[@]}" >/dev/null 2>&1 &
    local unshare=$!
    sleep 3
    local pid
    pid=$(pgrep -P "$unshare")
    local hey=(ip netns exec "$ns" hey -z "${window}s" -c 10 -q $((rate / 10)))
    results[$name,idle]=$(cpu_over_window "$pid")
    results[$name,keepalive]=$(cpu_over_window "$pid" "${hey[@]}" http://127.0.0.1:8080/)
    results[$name,new]=$(cpu_over_window "$pid" "${hey[@]}" -disable-keepalive http://127.0.0.1:8080/)
    kill -TERM "$pid" 2>/dev/null || true
    wait "$unshare" 2>/dev/null || true
    ip netns del "$ns"
}

echo "cpu: $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); ${window} s windows; ${rate} rps"
names=()
for agent in "${agents[@]}"; do
    name=${agent%%=*}
    names+=("$name")
    run "$name" "${agent#*=}"
done

printf '\n%-12s %14s %14s %14s\n' "% of a core" "idle" "$rate rps kept" "$rate rps new"
for name in "${names[@]}"; do
    printf '%-12s' "$name"
    for w in idle keepalive new; do
        printf ' %14s' "${results[$name,$w]}"
    done
    echo
done
