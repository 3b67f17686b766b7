"""A small web app to watch lameduck drain.

    GET /          answers at once
    GET /slow?s=N  answers after N seconds (default 5)

On TERM it stops accepting and finishes what is in flight, as a well-behaved
app does; lameduck's job is to send that TERM only when it is safe.
"""

import http.server
import signal
import socketserver
import sys
import threading
import time
from urllib.parse import parse_qs, urlparse

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8080


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/slow":
            seconds = float(parse_qs(url.query).get("s", ["5"])[0])
            print(f"demo: slow request for {seconds}s begins", flush=True)
            time.sleep(seconds)
            print("demo: slow request done", flush=True)
        body = b"hello from the demo app\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = False
    block_on_close = True


server = Server(("0.0.0.0", PORT), Handler)


def on_term(signum, _frame):
    print(f"demo: got {signal.Signals(signum).name}, finishing requests in flight", flush=True)
    threading.Thread(target=server.shutdown).start()


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)
print(f"demo: serving on :{PORT} — try: curl localhost:{PORT}/slow?s=5", flush=True)
server.serve_forever()
server.server_close()
print("demo: bye", flush=True)
