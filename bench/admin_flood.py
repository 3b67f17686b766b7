#!/usr/bin/env python3
"""How fast the kubelet's probes are answered while the admin port is flooded.

Issue 23 asks that 3,000 clients that request `/status` and `/timeline.svg`
late in a drain and never read leave `/healthz` under 100 ms and the agent's
memory bounded. Tests print what they see and judge only what cannot depend
on the machine's load; this measures, against the same agent unflooded in
the same run:

  bench/admin_flood.py                      # builds target/release/lameduck
  bench/admin_flood.py --lameduck PATH      # an agent already built
  bench/admin_flood.py --clients 5000

For each of "quiet" (no flood) and "flooded": the agent runs a small HTTP
app with its defaults and the admin server on loopback, gets TERM (a drain
held 8 s by `min-drain`), and after 1 s of drain the flood, if any, opens
its connections, each sending one request and reading nothing. Meanwhile
`/healthz` and `/readyz` are asked every 20 ms on fresh connections. Prints
their latency (p50, p99, worst), failures, the agent's RSS before and at
its peak, and when the app got TERM.
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

APP = """
import http.server, signal, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\\n")
    def log_message(self, *a):
        pass
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
http.server.ThreadingHTTPServer(("127.0.0.1", 0), H).serve_forever()
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def ask(port, path):
    """(seconds, ok) of one GET on a fresh connection."""
    began = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            head = s.recv(64)
        return time.monotonic() - began, head.startswith(b"HTTP/1.1 200")
    except OSError:
        return time.monotonic() - began, False


def flood(port, clients, held):
    for i in range(clients):
        path = "/status" if i % 2 == 0 else "/timeline.svg"
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            held.append(s)
        except OSError:
            pass


def run(lameduck, clients):
    admin = free_port()
    log = tempfile.TemporaryFile()
    agent = subprocess.Popen(
        [lameduck, "run", "--admin", f"127.0.0.1:{admin}", "--log-format", "json",
         "--grace-period", "15s", "--policy-config", "min-drain=8s",
         "--", sys.executable, "-c", APP],
        stdout=log, stderr=log,
    )
    try:
        deadline = time.monotonic() + 20
        while not ask(admin, "/healthz")[1]:
            if time.monotonic() > deadline:
                raise SystemExit("the agent's admin server never answered")
            time.sleep(0.05)
        time.sleep(1)
        before = rss_kib(agent.pid)
        agent.send_signal(signal.SIGTERM)
        began = time.monotonic()
        time.sleep(1)
        held = []
        if clients:
            threading.Thread(target=flood, args=(admin, clients, held), daemon=True).start()
        latencies, failed, peak = [], 0, before
        while time.monotonic() - began < 7 and agent.poll() is None:
            for path in ("/healthz", "/readyz"):
                took, ok = ask(admin, path)
                # /readyz answers 503 while draining: only a failure to
                # answer at all counts.
                latencies.append(took)
                failed += 0 if ok or path == "/readyz" and took < 5 else 1
            peak = max(peak, rss_kib(agent.pid))
            time.sleep(0.02)
        agent.wait(timeout=30)
        drained = time.monotonic() - began
        opened = len(held)
        for s in held:
            s.close()
        latencies.sort()
        return {
            "opened": opened,
            "asked": len(latencies),
            "failed": failed,
            "p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
            "worst": latencies[-1] * 1000,
            "rss": (before, peak),
            "drained": drained,
            "status": agent.returncode,
        }
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lameduck", help="the agent (default: a release build)")
    p.add_argument("--clients", type=int, default=3000)
    args = p.parse_args()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.clients + 1024), hard))
    lameduck = args.lameduck
    if not lameduck:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "lameduck"],
                       cwd=ROOT, check=True, stdout=sys.stderr)
        lameduck = os.path.join(ROOT, "target/release/lameduck")
    print(f"cpu: {os.cpu_count()} cores; load average: {os.getloadavg()[0]:.2f}")
    rows = [("quiet", run(lameduck, 0)), (f"{args.clients} unread", run(lameduck, args.clients))]
    print(f"\n{'':<14} {'held':>6} {'asked':>6} {'failed':>6} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'worst ms':>8} {'RSS KiB':>16} {'drain s':>7} {'exit':>4}")
    for name, r in rows:
        rss = f"{r['rss'][0]}→{r['rss'][1]}"
        print(f"{name:<14} {r['opened']:>6} {r['asked']:>6} {r['failed']:>6} {r['p50']:>7.1f} "
              f"{r['p99']:>7.1f} {r['worst']:>8.1f} {rss:>16} {r['drained']:>7.2f} {r['status']:>4}")
    quiet, flooded = rows[0][1], rows[1][1]
    print(f"\nflooded / quiet: p99 x{flooded['p99'] / quiet['p99']:.1f}, "
          f"peak RSS +{flooded['rss'][1] - flooded['rss'][0]} KiB "
          f"(quiet +{quiet['rss'][1] - quiet['rss'][0]} KiB)")


if __name__ == "__main__":
    main()
