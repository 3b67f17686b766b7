"""An app whose answers are not one short exchange, for the end-to-end tests
of issue 20: answers that stream, calls multiplexed on one connection, and
its own count of work in progress.

HTTP on --port (0: any; the port is written to --ready):
  GET /stream?chunks=N&every=MS  a chunked answer, one chunk every MS
  GET /metrics                   Prometheus text: calls_in_progress (gauge)
Calls on --calls-port (written to --ready.calls), a line protocol that
multiplexes them the way HTTP/2 does at the TCP level: the client sends
`CALL <id> <ms>` lines on one connection, and each call is answered
`DONE <id>` after its own time, whatever the others do.

It records every signal to --log (`SIGTERM` and its wall-clock time), and
at TERM how many answers were still going (`cut N`: streams unfinished and
calls unanswered), then exits at once, as an app with no graceful drain.
"""

import argparse
import http.server
import os
import signal
import socket
import socketserver
import threading
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()

    lock = threading.Lock()
    state = {"streams": 0, "calls": 0}

    def log(line):
        with lock, open(args.log, "a") as f:
            f.write(f"{time.time():.6f} {line}\n")

    def count(key, delta):
        with lock:
            state[key] += delta

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path == "/metrics":
                body = (
                    "# TYPE calls_in_progress gauge\n"
                    f"calls_in_progress{{kind=\"call\"}} {state['calls']}\n"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            query = dict(
                kv.split("=") for kv in self.path.partition("?")[2].split("&") if "=" in kv
            )
            chunks, every = int(query.get("chunks", 10)), int(query.get("every", 100))
            count("streams", 1)
            try:
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for _ in range(chunks):
                    self.wfile.write(b"9\r\ndata: x\n\n\r\n")
                    self.wfile.flush()
                    time.sleep(every / 1000)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            finally:
                count("streams", -1)

        def log_message(self, *a):
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", args.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    calls = socket.socket()
    calls.bind(("127.0.0.1", 0))
    calls.listen()

    def serve_calls(conn):
        send = threading.Lock()

        def answer(ident, ms):
            time.sleep(ms / 1000)
            with send:
                conn.sendall(f"DONE {ident}\n".encode())
            count("calls", -1)

        for line in conn.makefile("r"):
            _, ident, ms = line.split()
            count("calls", 1)
            threading.Thread(target=answer, args=(ident, int(ms)), daemon=True).start()

    def accept_calls():
        while True:
            conn, _ = calls.accept()
            threading.Thread(target=serve_calls, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_calls, daemon=True).start()

    def on_term(signum, _frame):
        log(signal.Signals(signum).name)
        log(f"cut {state['streams'] + state['calls']}")
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    for path, value in [(args.ready + ".calls", calls.getsockname()[1]), (args.ready, server.server_address[1])]:
        with open(path + ".tmp", "w") as f:
            f.write(str(value))
        os.rename(path + ".tmp", path)
    threading.Event().wait()


if __name__ == "__main__":
    main()
