"""The cost of a policy in each language, seen from `lameduck run`:

1. start-up: from launching `lameduck run --policy X -- now` to the first
   instruction of `now` (a tiny C program printing CLOCK_MONOTONIC), against
   `tini -- now`, interleaved runs, medians;
2. hot swap: from a policy file landing (rename) to the agent reporting it
   live, for a swap to C, Python and JavaScript, the first time (compiled)
   and again (from the compile cache).

    policies/build-all.sh && cargo build --release -p lameduck && python3 bench/languages.py
"""

import datetime
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAMEDUCK = os.environ.get("LAMEDUCK", os.path.join(ROOT, "target/release/lameduck"))
RUST = os.path.join(ROOT, "target/policies/wasm32-wasip2/wasm-policy/lameduck_policy_drain.wasm")
LANGS = {
    "c": os.path.join(ROOT, "policies/drain-c/drain.wasm"),
    "python": os.path.join(ROOT, "policies/drain-py/drain.wasm"),
    "javascript": os.path.join(ROOT, "policies/drain-js/drain.wasm"),
}
RUNS = int(os.environ.get("RUNS", "30"))


def start_up(tmp):
    now = os.path.join(tmp, "now")
    with open(now + ".c", "w") as f:
        f.write('#include <stdio.h>\n#include <time.h>\nint main(void){struct timespec t;'
                'clock_gettime(CLOCK_MONOTONIC,&t);printf("%lld\\n",(long long)t.tv_sec*1000000000LL+t.tv_nsec);return 0;}\n')
    subprocess.run(["cc", "-O2", "-o", now, now + ".c"], check=True)

    def once(cmd):
        t0 = time.monotonic_ns()
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        return (int(out.strip()) - t0) / 1e6

    cases = {"tini": ["tini", "--", now], "rust (builtin)": "builtin:drain"} | LANGS
    times = {name: [] for name in cases}
    for _ in range(RUNS):
        for name, what in cases.items():
            cmd = what if isinstance(what, list) else [
                LAMEDUCK, "run", "--admin", "off", "--log-format", "json", "--policy", what, "--", now]
            times[name].append(once(cmd))
    base = statistics.median(times["tini"])
    for name, values in times.items():
        m = statistics.median(values)
        print(f"  {name:15} launch -> app runs: median {m:6.2f} ms ({m - base:+.2f} ms vs tini)")


def hot_swaps(tmp):
    policy = os.path.join(tmp, "policy.wasm")
    shutil.copy(RUST, policy)
    agent = subprocess.Popen(
        [LAMEDUCK, "run", "--admin", "off", "--log-format", "json", "--cache-dir", os.path.join(tmp, "cache"),
         "--policy", policy, "--", "sleep", "600"],
        stderr=subprocess.PIPE, text=True)
    events = []

    def read():
        for line in agent.stderr:
            try:
                events.append(json.loads(line))
            except ValueError:
                pass

    threading.Thread(target=read, daemon=True).start()

    def swap(path):
        with open(path, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()[:12]
        staged = os.path.join(tmp, "next.wasm")
        shutil.copy(path, staged)
        seen, landed = len(events), time.time()
        os.rename(staged, policy)
        while True:
            for e in events[seen:]:
                if e.get("event") == "policy" and sha in e.get("message", ""):
                    live = datetime.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
                    return (live - landed) * 1000
            time.sleep(0.005)

    time.sleep(1)
    for name, path in LANGS.items():
        first = swap(path)
        swap(RUST)
        again = swap(path)
        swap(RUST)
        print(f"  {name:11} rename -> live: first time (compiled) {first:8.1f} ms, again (cached) {again:6.1f} ms")
    agent.kill()
    agent.wait()


if __name__ == "__main__":
    for path in [LAMEDUCK, RUST, *LANGS.values()]:
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: see the usage at the top of {__file__}")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"start-up, {RUNS} interleaved runs each")
        start_up(tmp)
        print("hot swap to each language")
        hot_swaps(tmp)
