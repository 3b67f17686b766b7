"""The app of the rollout benchmark: a plain HTTP/1.1 server that does not
handle SIGTERM.

* `POST` anything: sleeps a random 10-300 ms, answers 200.
* `GET /stream`: a streamed answer (a paced download, an SSE burst, a gRPC
  server stream): the head at once, then one 5-byte line every 100 ms, 30 of
  them (3 s); a Content-Length, so a client (through any balancer) can tell a
  body cut short from a whole one.
* `GET /events`: a long-lived Server-Sent Events stream: an event at once,
  then a heartbeat comment every 15 s, until the connection or the app ends.
* `GET /healthz`: 200 at once (the readiness probe; not counted as work).
* `GET /metrics`: Prometheus text: `app_requests_in_flight` (answers begun
  and not finished: requests, streamed answers, HTTP/2 calls),
  `app_long_lived_connections` (`/events` streams open), `app_requests_total`.
* HTTP/2 without TLS (h2c, prior knowledge), told apart by the connection
  preface on the same port: gRPC-like unary calls (`app_h2.py`).
* Keep-alive as HTTP/1.1 says (HTTP/1.0 only if asked), with no idle timeout
  of its own: the balancer's pool decides when a connection ends.
* At SIGTERM it dies at once, like the Node server of seed 002, with the
  requests it was serving. Just before, it writes one JSON line to
  `--record`: the monotonic time of the signal, the answers then in
  progress (`in_flight`: requests and HTTP/2 calls; `streams`: streamed
  answers; `long_lived`: `/events` streams), when the last of those in
  progress was due to finish (`busy_until`: the app chose their delays),
  when the last request or streamed answer finished, how many it served,
  and the TCP sockets of its network namespace (`/proc/net/sockstat`). CLOCK_MONOTONIC is system-wide,
  so these times compare with the harness's.

    python3 app.py --port 8080 --record /tmp/pod.json
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import time

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Work:
    """What the app has served: read by the SIGTERM handler and /metrics."""

    def __init__(self):
        self.in_flight = 0  # requests and HTTP/2 calls being answered
        self.streams = 0  # streamed answers being sent
        self.long_lived = 0  # /events streams open
        self.served = 0
        self.last_done = None
        self.due = {}  # answer in progress -> when it is due to finish (monotonic)

    @contextlib.contextmanager
    def answering(self, kind, seconds):
        """An answer in progress, counted in `kind` (in_flight or streams)
        and due to finish `seconds` from now; done if it was."""
        token = object()
        self.due[token] = time.monotonic() + seconds
        setattr(self, kind, getattr(self, kind) + 1)
        try:
            yield
        finally:
            setattr(self, kind, getattr(self, kind) - 1)
            del self.due[token]
        self.served += 1
        self.last_done = time.monotonic()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--record", required=True, help="where to write what SIGTERM found")
    parser.add_argument("--min-ms", type=int, default=10)
    parser.add_argument("--max-ms", type=int, default=300)
    parser.add_argument("--stream-chunks", type=int, default=30, help="lines in a streamed answer")
    parser.add_argument("--stream-every-ms", type=int, default=100, help="between two lines of it")
    parser.add_argument("--heartbeat-s", type=float, default=15.0, help="between two /events heartbeats")
    args = parser.parse_args()
    work = Work()

    def on_term(signum, _frame):
        record = {
            "sigterm": time.monotonic(),
            "in_flight": work.in_flight,
            "streams": work.streams,
            "long_lived": work.long_lived,
            "busy_until": max(work.due.values(), default=None),
            "last_done": work.last_done,
            "served": work.served,
            "sockstat": sockstat(),
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


def sockstat():
    """The TCP line of this network namespace's /proc/net/sockstat, e.g.
    {"inuse": 9, "orphan": 0, "tw": 6123, "alloc": 12, "mem": 3}."""
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    fields = line.split()[1:]
                    return {k: int(v) for k, v in zip(fields[::2], fields[1::2])}
    except (OSError, ValueError):
        pass
    return None


async def serve(args, work):
    async def connection(reader, writer):
        try:
            # HTTP/2 with prior knowledge starts with "PRI"; HTTP/1.1 never does.
            first = await reader.readexactly(3)
            if first == H2_PREFACE[:3]:
                from app_h2 import serve_h2  # only this path needs the `h2` package
                await serve_h2(first + await reader.readexactly(len(H2_PREFACE) - 3), reader, writer, work)
                return
            while await one_request(reader, writer, args, work, first):
                first = b""
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "0.0.0.0", args.port, backlog=1024)
    async with server:
        await server.serve_forever()


async def one_request(reader, writer, args, work, first=b""):
    """Serves one request; returns whether the connection stays open."""
    head = first + await reader.readuntil(b"\r\n\r\n")
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
        delay = random.uniform(args.min_ms, args.max_ms) / 1000
        with work.answering("in_flight", delay):
            await asyncio.sleep(delay)
            await answer(writer, "200 OK", b"done\n", keep_alive)
    elif path == "/stream":
        await stream(writer, args, work, keep_alive)
    elif path == "/events":
        await events(reader, writer, args, work, chunked=version != "HTTP/1.0")
        return False
    elif path == "/healthz":
        await answer(writer, "200 OK", b"ok\n", keep_alive)
    elif path == "/metrics":
        await answer(writer, "200 OK", metrics(work), keep_alive, "text/plain; version=0.0.4")
    else:
        await answer(writer, "404 Not Found", b"not found\n", keep_alive)
    return keep_alive


async def answer(writer, status, body, keep_alive, content_type="text/plain"):
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n".encode() + body
    )
    await writer.drain()


def stream_line(i):
    """Line i of a streamed answer; the stream client checks every one."""
    return f"{i:04d}\n".encode()


async def stream(writer, args, work, keep_alive):
    """A streamed answer: in flight from the moment it is read until its last
    line is written. Paced on the clock (line i at (i + 1) x 100 ms), so a
    busy machine does not stretch it. `X-Accel-Buffering: no` makes nginx
    pass each line on as it comes, as SSE and gRPC set-ups do."""
    every = args.stream_every_ms / 1000
    with work.answering("streams", args.stream_chunks * every):
        length = sum(len(stream_line(i)) for i in range(args.stream_chunks))
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\n"
            f"X-Accel-Buffering: no\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n".encode())
        begun = time.monotonic()
        for i in range(args.stream_chunks):
            await asyncio.sleep(max(0.0, begun + (i + 1) * every - time.monotonic()))
            writer.write(stream_line(i))
            await writer.drain()


async def events(reader, writer, args, work, chunked):
    """A long-lived SSE stream: never finishes by itself, but ends as soon
    as its client goes (so the gauge and the record count only open ones).
    Chunked to an HTTP/1.1 client; to HTTP/1.0 (nginx's default upstream
    protocol) it ends with the connection."""
    def send(text):
        data = text.encode()
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data)

    encoding = "Transfer-Encoding: chunked\r\n" if chunked else ""
    work.long_lived += 1
    try:
        writer.write(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            f"X-Accel-Buffering: no\r\n{encoding}Connection: close\r\n\r\n".encode())
        send("event: hello\ndata: open\n\n")
        await writer.drain()
        while True:
            try:
                if not await asyncio.wait_for(reader.read(4096), args.heartbeat_s):
                    return  # the client is gone
            except asyncio.TimeoutError:
                send(": heartbeat\n\n")
                await writer.drain()
    finally:
        work.long_lived -= 1


def metrics(work):
    """What a `metrics` probe would read: the answers in progress, as a gauge."""
    return (
        "# HELP app_requests_in_flight Answers begun and not finished: requests, streamed answers, HTTP/2 calls.\n"
        "# TYPE app_requests_in_flight gauge\n"
        f"app_requests_in_flight {work.in_flight + work.streams}\n"
        "# HELP app_long_lived_connections Long-lived /events streams open.\n"
        "# TYPE app_long_lived_connections gauge\n"
        f"app_long_lived_connections {work.long_lived}\n"
        "# HELP app_requests_total Answers finished.\n"
        "# TYPE app_requests_total counter\n"
        f"app_requests_total {work.served}\n"
    ).encode()


if __name__ == "__main__":
    main()
