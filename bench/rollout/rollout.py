"""bench/rollout: a rolling update of real pods behind real load balancers,
under real load; the judge of the drain. See README.md.

Each case is one variant (how the pods stop) in one cell (balancer, lag,
traffic, pod age): N old pods serve the traffic, then are replaced one by one
(maxSurge 1, maxUnavailable 0), while the load keeps coming.
"""

import argparse
import datetime
import itertools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

from balancers import BALANCERS
from churn import Churn
from endpoints import Endpoints
from load import Client, DenseLoad, Mixed, SparseLoad
from pods import Bare, Lameduck, Network, Pod, Sidecar, Sleep, make_workdir, sweep_leftovers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LAGS = [0.5, 2.0, 4.0]
# What --full crosses unless --balancers, --traffic or --ages say otherwise:
# the matrix of issue 10 (96 cases, ~70 minutes); the newer values are
# crossed on demand.
FULL_BALANCERS = ["nginx", "ingress"]
TRAFFIC = ["dense", "sparse", "stream", "h2", "sse"]
AGES = ["old", "young", "aged"]
FULL_TRAFFIC = ["dense", "sparse"]
FULL_AGES = ["old", "young"]
FULL_VARIANTS = ["bare", "sleep-2", "sleep-5", "lameduck"]
# Requests (or calls) per second when --rps is not given; sse's are the POSTs
# beside the long-lived streams, stream's the POSTs beside the streams.
RATES = {"dense": 300, "stream": 100, "h2": 200, "sse": 300}

# The default subset (<= 10 minutes): the cells where today's drain is known
# to be wasteful or unsafe, next to the fix everybody copies.
DEFAULT_CELLS = [("ingress", 2.0, "dense", "old"), ("nginx", 2.0, "dense", "old"),
                 ("nginx", 4.0, "sparse", "young")]
# Issues 20 and 21: answers that outlive the lag (streamed, HTTP/2 calls on
# pooled connections: one at a time per connection behind nginx, many at
# once behind haproxy), long-lived streams that never finish, and a node
# aged by tens of thousands of sockets that are not the app's (behind nginx
# without keep-alive, and behind the ingress pool, where one pod in three
# waited 5 s after its last request, before issue 21's change and after).
NEW_CELLS = [("nginx", 2.0, "stream", "old"), ("ingress", 2.0, "stream", "old"),
             ("nginx", 2.0, "h2", "old"), ("ingress", 2.0, "h2", "old"), ("haproxy", 2.0, "h2", "old"),
             ("nginx", 2.0, "sse", "old"), ("ingress", 2.0, "sse", "old"),
             ("nginx", 2.0, "dense", "aged"), ("ingress", 2.0, "dense", "aged")]
CELL_SETS = {"default": DEFAULT_CELLS, "new": NEW_CELLS, "all": DEFAULT_CELLS + NEW_CELLS}
DEFAULT_VARIANTS = ["bare", "sleep-5", "lameduck"]
# CI's smoke cell (~1 minute): does the harness bite, does lameduck hold.
SMOKE_CELLS = [("ingress", 0.5, "dense", "young")]
SMOKE_VARIANTS = ["bare", "lameduck"]

# What the bench runs, and the Debian package each comes from.
TOOLS = {
    "ip": "iproute2",
    "setpriv": "util-linux",
    "nginx": "nginx",
    "/usr/lib/nginx/modules/ngx_http_lua_module.so": "libnginx-mod-http-lua",
    "/usr/share/lua/5.1/resty/core.lua": "lua-resty-core",
    "hey": "hey",
    "tini": "tini",
}
# What some cells need besides: the balancer haproxy.
BALANCER_TOOLS = {"haproxy": {"haproxy": "haproxy"}}
# What the HTTP/2 cells (the app, the calls client) import, and where from:
# {module: (Debian package, PyPI package)}. Debian's for Debian's python3,
# pip's for any other (pyenv, a venv).
PYTHON_MODULES = {"h2": ("python3-h2", "h2")}


def main():
    args = parse_args()
    cells, variant_names = selection(args)
    ensure_tools(install=not args.no_install, cells=None if args.install_only else cells)
    if args.install_only:
        return
    variants = [make_variant(name, args) for name in variant_names]
    # SIGTERM (and SIGHUP) clean up as Ctrl-C does.
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, interrupt)
    sweep_leftovers()
    cases = [(cell, variant) for cell in cells for variant in variants]
    estimate = sum(args.young_age if cell[3] == "young" else args.old_age for cell, _ in cases) + 20 * len(cases)
    log(f"{len(cases)} cases, about {estimate / 60:.0f} min")
    started = time.monotonic()
    results = []
    interrupted = False
    try:
        for i, (cell, variant) in enumerate(cases, 1):
            log(f"[{i}/{len(cases)}] {describe_cell(cell)} · {variant.name}")
            try:
                result = run_case(cell, variant, args)
                log(f"    {summary(result)}")
            except Exception as e:  # one broken case does not lose the others
                result = {**cell_json(cell, variant), "error": str(e)}
                log(f"    failed: {e}")
            results.append(result)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; cleaned up")
    report = {
        "command": " ".join(["bench/rollout/run", *sys.argv[1:]]),
        "machine": machine(),
        "lameduck": describe_lameduck(args.lameduck) if args.lameduck else None,
        "settings": {"pods": args.pods, "grace_s": args.grace, "rps": args.rps, "old_age_s": args.old_age,
                     "young_age_s": args.young_age, "probe_period_s": args.probe_period,
                     "stream_share": args.stream_share, "h2_connections": args.h2_connections,
                     "long_lived": args.long_lived, "churn_per_s": args.churn},
        "took_s": round(time.monotonic() - started, 1),
        "results": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print(markdown(report))
    if interrupted:
        sys.exit(130)
    if any("error" in r for r in results):
        sys.exit(1)


def interrupt(_signum, _frame):
    raise KeyboardInterrupt


def parse_args():
    parser = argparse.ArgumentParser(
        prog="bench/rollout/run",
        description="A rolling update of real pods (network namespaces) behind nginx and an "
                    "ingress-nginx-like balancer, under real load, for bare apps, preStop sleeps "
                    "and lameduck. Prints a markdown table; needs root.",
        epilog="Without --smoke or --full: the named cells, with "
               f"{', '.join(DEFAULT_VARIANTS)}: issue 10's (--cells default: "
               f"{', '.join(map(describe_cell, DEFAULT_CELLS))}; <= 10 minutes) and issues 20 and 21's "
               f"(--cells new: {', '.join(map(describe_cell, NEW_CELLS))}; ~30 minutes). With no matrix "
               "flag, issue 10's run; the matrix flags pick from all of them (e.g. --traffic stream,h2,sse; "
               "--ages aged). With --full they give the values whose cross product is run (default: "
               f"{', '.join(FULL_TRAFFIC)} x {', '.join(FULL_AGES)}).")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--smoke", action="store_true",
                       help=f"CI's cell: {describe_cell(SMOKE_CELLS[0])}, {' and '.join(SMOKE_VARIANTS)} (~1 min)")
    scope.add_argument("--full", action="store_true",
                       help="every cell: balancer x lag x traffic x age, with " + ", ".join(FULL_VARIANTS))
    parser.add_argument("--balancers", type=csv(str, BALANCERS), help="nginx (reloaded per change), ingress "
                        "(Lua, keep-alive pool), haproxy (shared pool; multiplexes HTTP/2 calls to the pods)")
    parser.add_argument("--lags", type=csv(float), help="seconds from a pod's deletion (or readiness) "
                        "to its endpoint's change on the balancer; e.g. 0.5,2,4")
    parser.add_argument("--traffic", type=csv(str, TRAFFIC),
                        help="dense (POSTs), sparse (bursts), stream (POSTs and streamed answers), "
                        "h2 (gRPC-like calls over HTTP/2), sse (POSTs and long-lived SSE streams)")
    parser.add_argument("--ages", type=csv(str, AGES), help="old, young, aged (old, on a node churning "
                        "through connections: tens of thousands of TIME_WAIT sockets not the app's)")
    parser.add_argument("--cells", choices=sorted(CELL_SETS), help="the named cells the matrix flags pick "
                        "from: default (issue 10's), new (issues 20 and 21's), all (default: default "
                        "with no matrix flag, else all)")
    parser.add_argument("--variants", type=csv(str), help="bare, sleep-N (tini + preStop sleep N), lameduck, "
                        "lameduck-sidecar (the app unchanged, lameduck beside it), "
                        "lameduck@LABEL (the binary given by --lameduck-as LABEL=PATH)")
    parser.add_argument("--json", metavar="FILE", help="also write the results, in detail, as JSON")
    parser.add_argument("--lameduck", metavar="PATH", help="the binary (default: the newest of "
                        "target/release/lameduck and target/debug/lameduck, built if neither exists)")
    parser.add_argument("--lameduck-as", metavar="LABEL=PATH", action="append", default=[],
                        help="another lameduck binary, for the variant lameduck@LABEL "
                        "(e.g. before=old/lameduck: before and after a change in one run)")
    parser.add_argument("--lameduck-arg", metavar="ARG", action="append", default=[],
                        help="an extra flag for `lameduck run`, e.g. --lameduck-arg=--policy-config=quiet=2s")
    parser.add_argument("--policy", metavar="FILE", help="the policy lameduck runs (default: its built-in drain)")
    parser.add_argument("--pods", type=int, default=3, help="replicas (default 3)")
    parser.add_argument("--grace", type=float, default=15.0, help="terminationGracePeriodSeconds (default 15)")
    parser.add_argument("--rps", type=int, help="the POSTs' rate, or the HTTP/2 calls' (default: "
                        + ", ".join(f"{k} {v}" for k, v in RATES.items()) + ")")
    parser.add_argument("--stream-share", type=float, default=0.05, help="stream: streamed answers a "
                        "second, as a share of --rps, beside the POSTs (default 0.05: 5/s at 100 rps)")
    parser.add_argument("--h2-connections", type=int, default=4,
                        help="h2: the clients' HTTP/2 connections to the balancer (default 4)")
    parser.add_argument("--long-lived", type=int, default=6,
                        help="sse: long-lived SSE streams held open (default 6)")
    parser.add_argument("--churn", type=int, default=500,
                        help="aged: connections a second opened and closed on the node (default 500)")
    parser.add_argument("--old-age", type=float, default=60.0,
                        help="seconds old pods serve before the rollout (default 60)")
    parser.add_argument("--young-age", type=float, default=3.0,
                        help="seconds young pods serve before the rollout (default 3)")
    parser.add_argument("--probe-period", type=float, default=1.0, help="readiness probe period (default 1 s)")
    parser.add_argument("--seed", type=int, default=1, help="of the sparse traffic's bursts")
    parser.add_argument("--keep", action="store_true", help="keep each case's logs (printed) instead of deleting them")
    parser.add_argument("--no-install", action="store_true", help="fail, naming the packages, if any is missing")
    parser.add_argument("--install-only", action="store_true", help="install what is missing, then exit")
    return parser.parse_args()


def csv(kind, allowed=None):
    def parse(text):
        values = [kind(v) for v in text.split(",") if v]
        bad = [v for v in values if allowed is not None and v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{', '.join(map(str, bad))}: not one of {', '.join(allowed)}")
        return values
    return parse


def selection(args):
    """The cells and the variants to run."""
    if args.smoke:
        return SMOKE_CELLS, args.variants or SMOKE_VARIANTS
    if args.full:
        cells = itertools.product(args.balancers or FULL_BALANCERS, args.lags or LAGS,
                                  args.traffic or FULL_TRAFFIC, args.ages or FULL_AGES)
        return list(cells), args.variants or FULL_VARIANTS
    wanted = (args.balancers, args.lags, args.traffic, args.ages)
    named = CELL_SETS[args.cells or ("default" if all(w is None for w in wanted) else "all")]
    cells = [c for c in named if all(w is None or v in w for v, w in zip(c, wanted))]
    if not cells:
        sys.exit("no named cell matches; add --full to run other cells")
    return cells, args.variants or DEFAULT_VARIANTS


def make_variant(name, args):
    if name == "bare":
        return Bare()
    if name.startswith("sleep"):
        try:
            return Sleep(float(name[len("sleep"):].lstrip("-: ")))
        except ValueError:
            pass
    if name in ("lameduck", "lameduck-sidecar"):
        args.lameduck = args.lameduck or find_lameduck()
        extra = list(args.lameduck_arg)
        if args.policy:
            extra += ["--policy", os.path.abspath(args.policy)]
        kind = Sidecar if name == "lameduck-sidecar" else Lameduck
        return kind(os.path.abspath(args.lameduck), args.grace, extra)
    if name.startswith("lameduck@"):
        # Another build of lameduck, e.g. the one before a change, side by side.
        label = name.split("@", 1)[1]
        binary = dict(pair.split("=", 1) for pair in args.lameduck_as).get(label)
        if not binary:
            sys.exit(f"variant {name!r}: give its binary with --lameduck-as {label}=PATH")
        return Lameduck(os.path.abspath(binary), args.grace, list(args.lameduck_arg), name=f"lameduck {label}")
    sys.exit(f"unknown variant {name!r}: bare, sleep-N, lameduck, lameduck-sidecar, lameduck@LABEL")


def find_lameduck():
    built = [os.path.join(ROOT, "target", profile, "lameduck") for profile in ("release", "debug")]
    built = [b for b in built if os.path.exists(b)]
    if not built:
        log("no lameduck built: cargo build -p lameduck")
        subprocess.run(["cargo", "build", "-p", "lameduck"], cwd=ROOT, check=True)
        return os.path.join(ROOT, "target", "debug", "lameduck")
    return max(built, key=os.path.getmtime)


def ensure_tools(install, cells):
    """The tools every cell runs, and what only some cells need (haproxy; the
    Python modules of the HTTP/2 cells): for these `cells`, or all of them
    if None. CI's smoke cell needs nothing more than it did."""
    if os.geteuid() != 0:
        sys.exit("bench/rollout needs root: it makes network namespaces, veth pairs and a bridge")
    tools = dict(TOOLS)
    for balancer, needs in BALANCER_TOOLS.items():
        if cells is None or any(c[0] == balancer for c in cells):
            tools.update(needs)
    wanted = PYTHON_MODULES if cells is None or any(c[2] == "h2" for c in cells) else {}
    missing = sorted({package for tool, package in tools.items() if not have(tool)})
    debian_python = os.path.realpath(sys.executable).startswith("/usr/bin/")
    missing_modules = [m for m in wanted if not have_module(m)]
    if debian_python:
        missing += [wanted[m][0] for m in missing_modules]
    if missing and install:
        log(f"installing {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        apt = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        if subprocess.run(apt, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL)
            subprocess.run(apt, env=env, stdout=subprocess.DEVNULL)
    if not debian_python and missing_modules and install:
        pip_install([wanted[m][1] for m in missing_modules])
    missing = sorted({package for tool, package in tools.items() if not have(tool)})
    missing_modules = [m for m in wanted if not have_module(m)]
    needs = []
    if missing:
        needs.append(f"apt-get install {' '.join(missing)}")
    if missing_modules:
        packages = [wanted[m][0 if debian_python else 1] for m in missing_modules]
        needs.append(f"apt-get install {' '.join(packages)}" if debian_python
                     else f"{sys.executable} -m pip install {' '.join(packages)}")
    if needs:
        sys.exit(f"bench/rollout needs: {'; '.join(needs)}")


def have(tool):
    return os.path.exists(tool) if tool.startswith("/") else shutil.which(tool) is not None


def have_module(name):
    """Whether this interpreter (the apps' and clients' too) can import it."""
    return subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True).returncode == 0


def pip_install(packages):
    log(f"installing {' '.join(packages)} (pip)")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", *packages]
    if subprocess.run(pip, capture_output=True).returncode != 0:
        # An interpreter marked externally managed (PEP 668) refuses without this.
        subprocess.run([*pip, "--break-system-packages"], capture_output=True)


def run_case(cell, variant, args):
    """One variant in one cell, on a network, balancer and pods of its own."""
    balancer_name, lag, traffic, age = cell
    workdir = make_workdir()
    network = balancer = load = churn = None
    try:
        network = Network()
        if age == "aged":
            # First, so its TIME_WAIT sockets have piled up by the rollout.
            churn = Churn(network, workdir, args.churn)
            churn.start()
        balancer = BALANCERS[balancer_name](workdir, network, grpc=traffic == "h2")
        old = [Pod(network, variant, workdir) for _ in range(args.pods)]
        for pod in old:
            pod.wait_ready(args.probe_period)
        balancer.start([p.address for p in old])
        load = make_load(traffic, balancer, args)
        load.start()
        time.sleep(args.young_age if age == "young" else args.old_age)
        sockets = network.sockets()
        load.begin_rollout()
        began = time.monotonic()
        endpoints = Endpoints(balancer, old, lag)
        new = rollout(old, lambda: Pod(network, variant, workdir), endpoints, args)
        ended = max([p.times["exited"] for p in old] + [p.times["endpoint_added"] for p in new])
        time.sleep(1)  # the last requests of the rollout finish
        counts, label = load.stop(), load.label()
        load = None
        result = figures(cell, variant, label, old, new, counts, balancer, ended - began)
        result["sockets_at_rollout"] = sockets
        return result
    finally:
        if load:
            load.stop()
        if churn:
            churn.stop()
        if balancer:
            balancer.stop()
        if network:
            network.delete()
        if args.keep:
            log(f"    logs: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def make_load(traffic, balancer, args):
    """The traffic of a cell, sent to the balancer."""
    rps = args.rps or RATES.get(traffic)
    base = balancer.url.rsplit("/", 1)[0] + "/"
    if traffic == "dense":
        return DenseLoad(balancer.url, rps)
    if traffic == "sparse":
        return SparseLoad(balancer.url, seed=args.seed)
    if traffic == "stream":
        rate = round(rps * args.stream_share, 2)
        streams = Client("streams", base, f"{rate:g} streams/s of 3 s", rate=rate)
        return Mixed(DenseLoad(balancer.url, rps), streams)
    if traffic == "h2":
        return Client("calls", base, f"{rps} h2 calls/s on {args.h2_connections} conns", rate=rps,
                      connections=args.h2_connections)
    sse = Client("sse", base, f"{args.long_lived} SSE", connections=args.long_lived)
    return Mixed(DenseLoad(balancer.url, rps), sse)


def rollout(old, new_pod, endpoints, args):
    """maxSurge 1, maxUnavailable 0: a new pod; once it is ready, an old one
    is deleted (its endpoint removal and its termination begin together) and
    the next new pod is created. Returns the new pods once every old one has
    exited and every change has reached the balancer."""
    new, terminations = [], []
    for pod in old:
        fresh = new_pod()
        new.append(fresh)
        fresh.wait_ready(args.probe_period)
        endpoints.add(fresh)
        endpoints.remove(pod)
        terminations.append(pod.terminate_in_background(args.grace))
    for termination in terminations:
        termination.join()
    endpoints.settle()
    return new


def figures(cell, variant, traffic_label, old, new, counts, balancer, rollout_s):
    """What a case measured; per old pod, the waste: SIGTERM to the app minus
    the moment it became safe (endpoint removed, its last answer done, and
    those it was still giving due to finish: negative if any was cut),
    and the answers cut at the app: begun and not finished at SIGTERM
    (requests, HTTP/2 calls, streamed answers; long-lived streams, which
    never finish by themselves, apart)."""
    pods = []
    for pod in old:
        record = pod.app_record()
        removed = pod.times.get("endpoint_removed")
        entry = {
            "namespace": pod.namespace,
            "address": pod.address,
            "times": {k: round(v - pod.times["created"], 3) for k, v in pod.times.items()},
            "killed": pod.killed,
            "app": record,
        }
        if record:
            # Safe once out of the endpoints with every answer done: the last
            # one finished, and any cut at SIGTERM due to finish.
            safe = max(removed, record["last_done"] or removed, record.get("busy_until") or removed)
            entry["waste_s"] = round(record["sigterm"] - safe, 3)
            entry["cut_at_app"] = record["in_flight"] + record.get("streams", 0)
            entry["in_flight_at_term"] = entry["cut_at_app"]  # its name before streams were counted
            entry["long_lived_at_term"] = record.get("long_lived", 0)
            entry["term_after_deletion_s"] = round(record["sigterm"] - pod.times["deleted"], 3)
        if isinstance(variant, Lameduck):
            entry["term_reason"] = pod.term_reason()
            quiet = re.search(r"quiet period (\d+) ms", entry["term_reason"] or "")
            entry["quiet_ms"] = int(quiet.group(1)) if quiet else None
        pods.append(entry)
    wastes = [p["waste_s"] for p in pods if "waste_s" in p]
    quiet = [p["quiet_ms"] for p in pods if p.get("quiet_ms") is not None]
    return {
        **cell_json(cell, variant),
        "traffic_shape": traffic_label,
        "requests": counts["rollout"].requests,
        "failed": counts["rollout"].failed,
        "errors": counts["rollout"].errors,
        # What clients.py counted besides: long-lived streams opened and
        # ended, calls retried after a GOAWAY.
        "client": counts["rollout"].extra,
        "warmup": counts["warmup"].as_json(),
        "failed_by_pod": balancer.failures_by_pod(),
        "cut_at_app": sum(p.get("cut_at_app", 0) for p in pods),
        "in_flight_at_term": sum(p.get("cut_at_app", 0) for p in pods),
        "long_lived_at_term": sum(p.get("long_lived_at_term", 0) for p in pods) if cell[2] == "sse" else None,
        "quiet_ms": quiet or None,
        "waste_p50_s": round(statistics.median(wastes), 3) if wastes else None,
        "waste_min_s": min(wastes, default=None),
        "waste_max_s": max(wastes, default=None),
        "rollout_s": round(rollout_s, 2),
        "killed": sum(p["killed"] for p in pods),
        "pods": pods,
        "new_pods_ready_s": [round(p.times["ready"] - p.times["created"], 3) for p in new],
    }


def cell_json(cell, variant):
    balancer, lag, traffic, age = cell
    return {"balancer": balancer, "lag_s": lag, "traffic": traffic, "age": age, "variant": variant.name}


def describe_cell(cell):
    balancer, lag, traffic, age = cell
    return f"{balancer} lag {lag:g} s {traffic} {age}"


def summary(r):
    waste = "" if r["waste_p50_s"] is None else f", waste p50 {r['waste_p50_s']:.2f} s"
    long_lived = "" if r["long_lived_at_term"] is None else f", {r['long_lived_at_term']} long-lived at TERM"
    quiet = "" if not r["quiet_ms"] else f", quiet {span_of(r['quiet_ms'], 'ms')}"
    sockets = r.get("sockets_at_rollout") if r["age"] == "aged" else None
    node = "" if not sockets else f", node: {sockets['inuse']} sockets in use, {sockets['tw']} in TIME_WAIT"
    return (f"{r['failed']} / {r['requests']} failed, {r['cut_at_app']} cut at app{long_lived}{waste}{quiet}, "
            f"rollout {r['rollout_s']:.1f} s, {r['killed']} killed{node}")


def span_of(values, unit):
    low, high = min(values), max(values)
    return f"{low} {unit}" if low == high else f"{low} … {high} {unit}"


def markdown(report):
    results = [r for r in report["results"] if "error" not in r]
    # Columns only some cells have: shown when a row has them.
    long_lived = any(r.get("long_lived_at_term") is not None for r in results)
    quiet = any(r.get("quiet_ms") for r in results)
    lines = [
        "| balancer | lag | traffic | pods | variant | requests | failed | cut at app "
        + ("| long-lived at TERM " if long_lived else "")
        + "| waste p50 | waste min … max " + ("| quiet " if quiet else "") + "| rollout | SIGKILLed |",
        "|---|--:|---|---|---|--:|--:|--:|" + ("--:|" if long_lived else "") + "--:|--:|"
        + ("--:|" if quiet else "") + "--:|--:|",
    ]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['balancer']} | {r['lag_s']:g} s | {r['traffic']} | {r['age']} | {r['variant']} "
                         f"| failed: {r['error']} |")
            continue
        p50 = "—" if r["waste_p50_s"] is None else f"{r['waste_p50_s']:.2f} s"
        span = "—" if r["waste_min_s"] is None else f"{r['waste_min_s']:.2f} … {r['waste_max_s']:.2f} s"
        held = "—" if r.get("long_lived_at_term") is None else str(r["long_lived_at_term"])
        learned = span_of(r["quiet_ms"], "ms") if r.get("quiet_ms") else "—"
        lines.append(
            f"| {r['balancer']} | {r['lag_s']:g} s | {r['traffic_shape']} | {r['age']} | {r['variant']} "
            f"| {r['requests']} | {r['failed']} | {r['cut_at_app']} " + (f"| {held} " if long_lived else "")
            + f"| {p50} | {span} " + (f"| {learned} " if quiet else "")
            + f"| {r['rollout_s']:.1f} s | {r['killed']} |")
    m = report["machine"]
    lines.append("")
    load = " / ".join(map(str, m["load_average"]))
    lameduck = f"; lameduck: `{report['lameduck']['binary']}`" if report["lameduck"] else ""
    lines.append(f"{m['date']}, {m['nproc']} cores, Linux {m['kernel']}, load average {load} at the end, "
                 f"{report['took_s'] / 60:.1f} min{lameduck}; `{report['command']}`")
    return "\n".join(lines)


def machine():
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        # Other work on the machine shows in the rollout times, first.
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip(),
    }


def describe_lameduck(binary):
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    path = os.path.abspath(binary)
    if path.startswith(ROOT + os.sep):
        path = os.path.relpath(path, ROOT)
    return {"binary": path, "version": version}


def log(message):
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
