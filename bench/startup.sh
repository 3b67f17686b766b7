#!/usr/bin/env bash
# lameduck's start-up cost against Debian's tini, and its peak memory while
# serving with the default policy loaded (DESIGN.md, "Quality bars": within
# 2 ms of tini; <= 12 MiB RSS).
#
#   bench/startup.sh            # builds target/release/lameduck if needed
#   RUNS=600 bench/startup.sh   # more runs (default 300 per command)
#   LAMEDUCK=path/to/lameduck bench/startup.sh
#
# 1. Wall time of `lameduck run -- /bin/true` and `tini -- /bin/true`, with
#    hyperfine (no shell, warm-up runs, alternating rounds), or, without
#    hyperfine, an interleaved loop; medians, difference and ratio.
# 2. Time to exec: from launching each supervisor to the first instruction of
#    its child (a tiny C program that prints CLOCK_MONOTONIC), interleaved
#    runs, medians. This is the quality bar itself ("the child is exec'd
#    within 2 ms of what tini takes"); (1) also counts the exit.
# 3. Peak RSS of lameduck serving an app (python3 -m http.server) with the
#    default policy loaded and the admin server on, through requests and a
#    TERM drain; cold (the policy compiled) and warm (from the compile cache).
#    `/usr/bin/time -v` reports ru_maxrss of what wait4() returns, which on
#    Linux is the max of the process and of every descendant it reaped: here
#    the Python child, larger than lameduck. So lameduck's own peak is read
#    from VmHWM in /proc/PID/status until it exits; both are printed.
#
# Installs tini, time and hyperfine with apt-get when missing.
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS="${RUNS:-300}"
WARMUP="${WARMUP:-20}"
tmp="$(mktemp -d)"
cleanup() {
    for pid in $(jobs -p); do kill "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y --no-install-recommends "$@" >/dev/null \
        || { as_root apt-get update >/dev/null && as_root apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

missing=()
command -v tini >/dev/null || missing+=(tini)
[ -x /usr/bin/time ] || missing+=(time)
command -v hyperfine >/dev/null || missing+=(hyperfine)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt_install tini time || { echo "tini and time are required" >&2; exit 1; }
    command -v hyperfine >/dev/null || apt_install hyperfine \
        || echo "hyperfine is not available: falling back to the interleaved loop"
fi
TINI="$(command -v tini)"

if [ -z "${LAMEDUCK:-}" ]; then
    cargo build --release --locked -p lameduck
    LAMEDUCK="$PWD/target/release/lameduck"
fi
LAMEDUCK="$(realpath "$LAMEDUCK")"

echo "== machine"
echo "cpu: $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "lameduck: $LAMEDUCK ($("$LAMEDUCK" --version))"
echo "tini: $TINI ($("$TINI" --version 2>&1 | head -1))"
echo "(admin server on 127.0.0.1:0: the default's work, without colliding on 9911)"

# ---------------------------------------------------------------- 1. wall time
echo
echo "== 1. wall time of a supervised /bin/true ($RUNS runs each)"
L_RUN=("$LAMEDUCK" run --admin 127.0.0.1:0 -- /bin/true)
L_OFF=("$LAMEDUCK" run --admin off -- /bin/true)
T_RUN=("$TINI" -- /bin/true)
"${L_RUN[@]}" 2>/dev/null  # populate the compile cache once, as a restart would find it

if command -v hyperfine >/dev/null; then
    # Rounds alternate the commands, so a burst of load on a shared machine
    # falls on all of them rather than on whichever hyperfine was running.
    ROUNDS="${ROUNDS:-6}"
    per_round=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
    echo "(hyperfine $(hyperfine --version | cut -d' ' -f2), no shell; $ROUNDS alternating rounds of" \
        "$per_round runs per command, each after 5 warm-up runs)"
    for round in $(seq "$ROUNDS"); do
        hyperfine -N --warmup 5 --runs "$per_round" --style none \
            --export-json "$tmp/wall-$round.json" \
            -n tini "${T_RUN[*]}" \
            -n lameduck "${L_RUN[*]}" \
            -n "lameduck --admin off" "${L_OFF[*]}" >/dev/null 2>&1
    done
    python3 - "$tmp"/wall-*.json <<'PY'
import json, statistics, sys
times = {}
for path in sys.argv[1:]:
    for x in json.load(open(path))["results"]:
        times.setdefault(x["command"], []).extend(x["times"])
t = statistics.median(times["tini"]) * 1e3
print(f"{'':22}{'median':>10}{'p90':>10}{'min':>10}{'vs tini':>12}{'ratio':>8}")
for name, s in times.items():
    m = statistics.median(s) * 1e3
    p90 = statistics.quantiles(s, n=10)[-1] * 1e3
    print(f"{name:22}{m:9.3f}ms{p90:9.3f}ms{min(s)*1e3:9.3f}ms{m - t:+10.3f}ms{m / t:7.2f}x")
PY
else
    python3 - "$RUNS" "$WARMUP" "${T_RUN[*]}" "${L_RUN[*]}" "${L_OFF[*]}" <<'PY'
import statistics, subprocess, sys, time
runs, warmup = int(sys.argv[1]), int(sys.argv[2])
cmds = {"tini": sys.argv[3].split(), "lameduck": sys.argv[4].split(), "lameduck --admin off": sys.argv[5].split()}
samples = {k: [] for k in cmds}
for i in range(warmup + runs):
    for name, argv in cmds.items():  # interleaved: load drifts hit all alike
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        if i >= warmup:
            samples[name].append(time.perf_counter() - t0)
t = statistics.median(samples["tini"]) * 1e3
print(f"(interleaved loop, {warmup} warm-up rounds)")
print(f"{'':22}{'median':>10}{'min':>10}{'vs tini':>12}{'ratio':>8}")
for name, s in samples.items():
    m = statistics.median(s) * 1e3
    print(f"{name:22}{m:9.3f}ms{min(s)*1e3:9.3f}ms{m - t:+10.3f}ms{m / t:7.2f}x")
PY
fi

# ------------------------------------------------------------- 2. time to exec
echo
echo "== 2. time from launch to the child's first instruction ($RUNS interleaved runs each)"
cat >"$tmp/stamp.c" <<'C'
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    printf("%lld\n", (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
    return 0;
}
C
cc -O2 -static -o "$tmp/stamp" "$tmp/stamp.c" 2>/dev/null || cc -O2 -o "$tmp/stamp" "$tmp/stamp.c"
python3 - "$RUNS" "$WARMUP" "$TINI" "$LAMEDUCK" "$tmp/stamp" <<'PY'
import os, statistics, subprocess, sys, time
runs, warmup, tini, lameduck, stamp = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:]
cmds = {
    "tini": [tini, "--", stamp],
    "lameduck": [lameduck, "run", "--admin", "127.0.0.1:0", "--", stamp],
    "lameduck --admin off": [lameduck, "run", "--admin", "off", "--", stamp],
}
to_exec = {k: [] for k in cmds}
for i in range(warmup + runs):
    for name, argv in cmds.items():
        r, w = os.pipe()
        t0 = time.monotonic_ns()  # CLOCK_MONOTONIC, the clock the stamp reads
        p = subprocess.Popen(argv, stdout=w, stderr=subprocess.DEVNULL)
        os.close(w)
        with os.fdopen(r) as out:
            t1 = int(out.read())
        p.wait()
        if i >= warmup:
            to_exec[name].append((t1 - t0) / 1e6)
t = statistics.median(to_exec["tini"])
print(f"{'':22}{'median':>10}{'p90':>10}{'vs tini':>12}{'ratio':>8}")
for name, s in to_exec.items():
    m = statistics.median(s)
    p90 = statistics.quantiles(s, n=10)[-1]
    print(f"{name:22}{m:9.3f}ms{p90:9.3f}ms{m - t:+10.3f}ms{m / t:7.2f}x")
verdict = "within" if statistics.median(to_exec["lameduck"]) - t <= 2.0 else "NOT within"
print(f"goal: child exec'd within 2 ms of tini -> {verdict}")
PY

# -------------------------------------------------------------- 3. peak RSS
echo
echo "== 3. peak RSS while serving (default policy, admin server on, python3 -m http.server child)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
vm() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status" 2>/dev/null; }
cache="$tmp/cache"
mkdir -p "$cache" "$tmp/www"
echo "hello" >"$tmp/www/index.html"

measure_rss() {  # $1: label
    local label="$1" app_port admin_port log="$tmp/rss-$1.log" tpid pid child hwm=0 h
    app_port="$(free_port)"
    admin_port="$(free_port)"
    (cd "$tmp/www" && exec /usr/bin/time -v -o "$tmp/time-$label.txt" \
        "$LAMEDUCK" run --admin "127.0.0.1:$admin_port" --cache-dir "$cache" --log-format json \
        -- python3 -m http.server "$app_port" --bind 127.0.0.1 >"$log" 2>&1) &
    tpid=$!
    pid=""
    for _ in $(seq 200); do
        pid="$(pgrep -P "$tpid" | head -1 || true)"
        [ -n "$pid" ] && break
        sleep 0.01
    done
    [ -n "$pid" ] || { echo "lameduck did not start" >&2; cat "$log" >&2; exit 1; }
    for _ in $(seq 600); do  # the policy loaded (compiled or from the cache)
        grep -q '"event":"policy"' "$log" && break
        sleep 0.05
    done
    grep -q '"event":"policy"' "$log" || { echo "the policy did not load" >&2; cat "$log" >&2; exit 1; }
    python3 - "$app_port" "$admin_port" <<'PY'
import sys, time, urllib.request
app, admin = sys.argv[1], sys.argv[2]
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{app}/", timeout=2).read()
        break
    except OSError:
        time.sleep(0.05)
for _ in range(300):
    urllib.request.urlopen(f"http://127.0.0.1:{app}/", timeout=2).read()
for path in ("/healthz", "/readyz", "/metrics", "/status"):  # if the admin server answers
    for _ in range(20):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{admin}{path}", timeout=2).read()
        except OSError:
            pass
PY
    child="$(pgrep -P "$pid" | head -1 || true)"
    echo "$label: while serving: lameduck VmRSS $(vm "$pid" VmRSS) kB, VmHWM $(vm "$pid" VmHWM) kB;" \
        "python child VmHWM $(vm "$child" VmHWM) kB"
    kill -TERM "$pid"
    # VmHWM only grows: the last value read before the exit is the peak, drain included.
    while h="$(vm "$pid" VmHWM)" && [ -n "$h" ]; do
        hwm="$h"
        sleep 0.005
    done
    wait "$tpid" || true
    local maxrss
    maxrss="$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tmp/time-$label.txt")"
    awk -v l="$label" -v h="$hwm" -v m="$maxrss" 'BEGIN {
        printf "%s: lameduck peak (VmHWM at exit)   %6d kB = %5.2f MiB  goal <= 12 MiB: %s\n", l, h, h/1024, (h <= 12*1024 ? "met" : "NOT met")
        printf "%s: /usr/bin/time -v max RSS         %6d kB = %5.2f MiB  (max of lameduck and its reaped child)\n", l, m, m/1024
    }'
    grep -o '"event":"drain"[^}]*\|"event":"exit"[^}]*' "$log" | sed "s/^/$label: log: /" | head -3
}

measure_rss cold   # empty cache: the policy is compiled
measure_rss warm   # the same cache: loaded from disk, as after a container restart

echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (on a shared machine, rerun if it was high)"
