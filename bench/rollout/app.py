"""The app of the rollout benchmark: a plain HTTP/1.1 server that does not
handle SIGTERM.

* `POST` anything: sleeps a random 10-300 ms, answers 200.
* `GET /healthz`: 200 at once (the readiness probe; not counted as work).
* Keep-alive as HTTP/1.1 says (HTTP/1.0 only if asked), with no idle timeout
  of its own: the balancer's pool decides when a connection ends.
* At SIGTERM it dies at once, like the Node server of seed 002, with the
  requests it was serving. Just before, it writes one JSON line to
  `--record`: the monotonic time of the signal, the requests then in flight,
  when the last one finished, how many it served. CLOCK_MONOTONIC is
  system-wide, so these times compare with the harness's.

    python3 app.py --port 8080 --record /tmp/pod.json
"""

import argparse
import asyncio
import json
import os
import random
import signal
import time


class Work:
    """What the app has served: read by the SIGTERM handler."""

    def __init__(self):
        self.in_flight = 0
        self.served = 0
        self.last_done = None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--record", required=True, help="where to write what SIGTERM found")
    parser.add_argument("--min-ms", type=int, default=10)
    parser.add_argument("--max-ms", type=int, default=300)
    args = parser.parse_args()
    work = Work()

    def on_term(signum, _frame):
        record = {
            "sigterm": time.monotonic(),
            "in_flight": work.in_flight,
            "last_done": work.last_done,
            "served": work.served,
        }
        with open(args.record, "w") as f:
            f.write(json.dumps(record) + "\n")
        # Die of the signal itself, as an app without a handler does.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    # A plain handler, not the event loop's: it runs as soon as the signal
    # interrupts the loop's wait, whatever is queued on the loop.
    signal.signal(signal.SIGTERM, on_term)
    asyncio.run(serve(args, work))


async def serve(args, work):
    async def connection(reader, writer):
        try:
            while await one_request(reader, writer, args, work):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "0.0.0.0", args.port, backlog=1024)
    async with server:
        await server.serve_forever()


async def one_request(reader, writer, args, work):
    """Serves one request; returns whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip().lower()
    await reader.readexactly(int(headers.get("content-length", "0")))
    connection = headers.get("connection", "")
    keep_alive = connection == "keep-alive" if version == "HTTP/1.0" else connection != "close"

    if method == "POST":
        # In flight from the moment it is read until its answer is written.
        work.in_flight += 1
        try:
            await asyncio.sleep(random.uniform(args.min_ms, args.max_ms) / 1000)
            await answer(writer, "200 OK", b"done\n", keep_alive)
        finally:
            work.in_flight -= 1
        work.served += 1
        work.last_done = time.monotonic()
    elif path == "/healthz":
        await answer(writer, "200 OK", b"ok\n", keep_alive)
    else:
        await answer(writer, "404 Not Found", b"not found\n", keep_alive)
    return keep_alive


async def answer(writer, status, body, keep_alive):
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n".encode() + body
    )
    await writer.drain()


if __name__ == "__main__":
    main()
