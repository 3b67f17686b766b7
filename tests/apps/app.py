"""The app the end-to-end tests run under lameduck.

It records every signal it gets (name and wall-clock time) to --log, serves
HTTP on an ephemeral port (written to --ready once listening), and reacts to
TERM as told:
  --on-term exit    die at once, like an app with no handler (status 143)
  --on-term drain   stop accepting, finish requests in flight, exit 0
  --on-term ignore  carry on
With --jobs MS it is a queue worker instead: it runs one job after another,
each MS long; USR1 means "take no new job"; GET /idle answers 200 when no job
is running and 503 while one is.
"""

import argparse
import http.server
import os
import signal
import socketserver
import sys
import threading
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--on-term", choices=["exit", "drain", "ignore"], default="drain")
    p.add_argument("--jobs", type=int, default=0)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()

    log_lock = threading.Lock()

    def log(line):
        with log_lock, open(args.log, "a") as f:
            f.write(f"{time.time():.6f} {line}\n")

    state = {"taking_work": True, "busy": False, "in_flight": 0}
    cond = threading.Condition()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            with cond:
                state["in_flight"] += 1
            try:
                status, body = 200, b"ok"
                if self.path.startswith("/slow"):
                    ms = int(self.path.split("ms=")[1]) if "ms=" in self.path else 1000
                    time.sleep(ms / 1000)
                    body = b"slow ok"
                elif self.path == "/idle":
                    status, body = (503, b"busy") if state["busy"] else (200, b"idle")
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
            finally:
                with cond:
                    state["in_flight"] -= 1
                    cond.notify_all()

        def log_message(self, *a):
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", args.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    stop = threading.Event()

    def on_signal(signum, _frame):
        name = signal.Signals(signum).name
        log(name)
        if signum == signal.SIGUSR1 and args.jobs:
            state["taking_work"] = False
        if signum in (signal.SIGTERM, signal.SIGINT):
            if args.on_term == "exit":
                os._exit(128 + signum)
            if args.on_term == "drain":
                stop.set()

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
        signal.signal(s, on_signal)

    with open(args.ready + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(args.ready + ".tmp", args.ready)

    if args.jobs:
        while state["taking_work"] and not stop.is_set():
            state["busy"] = True
            log("job-start")
            time.sleep(args.jobs / 1000)
            log("job-done")
            state["busy"] = False
            time.sleep(0.01)
        stop.wait()
        log("exit")
        sys.exit(0)

    stop.wait()
    # Graceful: no new connections, wait for the ones in flight.
    server.shutdown()
    server.server_close()
    with cond:
        while state["in_flight"] > 0:
            cond.wait()
    log("exit")
    sys.exit(0)


if __name__ == "__main__":
    main()
