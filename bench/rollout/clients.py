"""The clients `hey` cannot be: each checks what it gets, not only the
status (hey counts an answer whose body was cut as a success).

* `streams`: GETs of `/stream` at a fixed rate, each on a connection of its
  own (keep-alive off, as hey's); an answer counts as failed unless every
  line of its body came, in order.
* `calls`: gRPC-like unary calls over HTTP/2 (h2c, prior knowledge), at a
  fixed rate, on a few connections held for the whole run, as a gRPC channel
  does: a call fails unless it ends with status 200 and `grpc-status: 0`. A
  call the balancer refused with GOAWAY before it saw it (nginx reloading)
  is retried on a new connection, as gRPC does transparently.
* `sse`: a few long-lived Server-Sent Events streams, each reopened a second
  after it ends (as EventSource does). A stream ended by the server is
  counted apart (`long_lived_ended`), not as failed: it never finishes by
  itself; an attempt to open one that fails (5xx, refused) is failed.

One process per run: SIGUSR1 begins the rollout's phase (what starts after
it counts as the rollout's), SIGINT stops it, and it prints one JSON object
to stdout: {phase: {requests, failed, errors: {cause: n}, ...}}.

    python3 clients.py calls --url http://10.1.2.3:80/ --rate 200 --connections 4
"""

import argparse
import asyncio
import json
import signal
import sys
import urllib.parse

PHASES = ("warmup", "rollout")


class Tally:
    """Counts per phase; `phase` is the one requests begin in now."""

    def __init__(self):
        self.phase = "warmup"
        self.counts = {p: {"requests": 0, "failed": 0, "errors": {}} for p in PHASES}

    def request(self, phase):
        self.counts[phase]["requests"] += 1

    def fail(self, phase, cause):
        counts = self.counts[phase]
        counts["failed"] += 1
        counts["errors"][cause] = counts["errors"].get(cause, 0) + 1

    def add(self, phase, name, n=1):
        self.counts[phase][name] = self.counts[phase].get(name, 0) + n


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["streams", "calls", "sse"])
    parser.add_argument("--url", required=True, help="the balancer, http://HOST:PORT/")
    parser.add_argument("--rate", type=float, default=5.0, help="streams or calls per second")
    parser.add_argument("--connections", type=int, default=4, help="calls: HTTP/2 connections; sse: streams")
    parser.add_argument("--chunks", type=int, default=30, help="streams: lines in a whole body")
    parser.add_argument("--timeout", type=float, default=10.0, help="streams and calls: the longest wait")
    args = parser.parse_args()
    tally = Tally()
    # Until the event loop takes them over: a rollout that begins (or a stop
    # that comes) while this process starts is not lost.
    signal.signal(signal.SIGUSR1, lambda *_: setattr(tally, "phase", "rollout"))
    signal.signal(signal.SIGINT, lambda *_: setattr(tally, "stop_early", True))
    asyncio.run(run(args, tally))
    json.dump(tally.counts, sys.stdout)
    print()


async def run(args, tally):
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, lambda: setattr(tally, "phase", "rollout"))
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    if getattr(tally, "stop_early", False):
        stopping.set()
    url = urllib.parse.urlsplit(args.url)
    target = (url.hostname, url.port or 80)
    if args.kind == "streams":
        await paced(args.rate, stopping, lambda: one_stream(target, args, tally, tally.phase), args.timeout)
    elif args.kind == "calls":
        channel = Channel(target, args.connections)
        await paced(args.rate, stopping, lambda: channel.call(tally, tally.phase, args.timeout), args.timeout)
        channel.close()
    else:
        streams = [asyncio.create_task(long_lived(target, tally, stopping)) for _ in range(args.connections)]
        await stopping.wait()
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)


async def paced(rate, stopping, start, timeout):
    """Starts one request every 1/rate s on a fixed schedule (a slow answer
    does not delay the next), until stopped; then waits for those begun."""
    loop = asyncio.get_running_loop()
    tasks = set()
    due = loop.time()
    while not stopping.is_set():
        task = asyncio.create_task(start())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        due += 1 / rate
        try:
            await asyncio.wait_for(stopping.wait(), max(0.0, due - loop.time()))
        except asyncio.TimeoutError:
            pass
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 1)


def cause_of(error):
    """A short name for what went wrong, as the errors are tallied."""
    if isinstance(error, asyncio.TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, asyncio.IncompleteReadError):
        return "connection closed"
    if isinstance(error, StreamReset):
        return "stream reset"
    return type(error).__name__


async def read_head(reader):
    """(status, headers) of an HTTP/1.1 response."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def read_body(reader, headers):
    """The body as far as it came: by Content-Length, chunks, or to EOF."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                return body
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    return await reader.read()


async def one_stream(target, args, tally, phase):
    tally.request(phase)
    expected = b"".join(f"{i:04d}\n".encode() for i in range(args.chunks))
    writer = None
    try:
        async with asyncio.timeout(args.timeout):
            reader, writer = await asyncio.open_connection(*target)
            writer.write(f"GET /stream HTTP/1.1\r\nHost: {target[0]}\r\nConnection: close\r\n\r\n".encode())
            status, headers = await read_head(reader)
            if status != 200:
                tally.fail(phase, f"HTTP {status}")
                return
            try:
                body = await read_body(reader, headers)
            except asyncio.IncompleteReadError as e:
                body = e.partial
            except ConnectionError:
                body = b""
            if body != expected:
                tally.fail(phase, "stream cut" if expected.startswith(body) else "stream garbled")
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
        tally.fail(phase, cause_of(e))
    finally:
        if writer:
            writer.close()


async def long_lived(target, tally, stopping):
    """One SSE stream, reopened a second after it ends, until stopped."""
    while not stopping.is_set():
        phase = tally.phase
        tally.request(phase)
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*target), 5)
            writer.write(f"GET /events HTTP/1.1\r\nHost: {target[0]}\r\nAccept: text/event-stream\r\n"
                         "Connection: close\r\n\r\n".encode())
            status, _ = await asyncio.wait_for(read_head(reader), 5)
            if status != 200:
                tally.fail(phase, f"HTTP {status}")
            else:
                tally.add(phase, "long_lived_opened")
                try:
                    while await reader.read(4096):
                        pass
                except ConnectionError:
                    pass
                tally.add(tally.phase, "long_lived_ended")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            tally.fail(phase, cause_of(e))
        finally:
            if writer:
                writer.close()
        try:
            await asyncio.wait_for(stopping.wait(), 1.0)
        except asyncio.TimeoutError:
            pass


class StreamReset(Exception):
    """The balancer reset the call's stream."""


class Refused(Exception):
    """A call the server will never have seen (beyond its GOAWAY): safe to retry."""


class H2:
    """One h2c connection to the balancer, with its calls in progress."""

    def __init__(self, reader, writer):
        import h2.config
        import h2.connection
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                          header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.pending = {}  # stream id -> future of (status, grpc-status)
        self.answers = {}  # stream id -> headers so far
        self.usable = True
        self.task = asyncio.create_task(self.read())

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    async def call(self, authority, timeout):
        import h2.exceptions
        if not self.usable:
            raise Refused()
        try:
            sid = self.conn.get_next_available_stream_id()
            self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":authority", authority),
                                         (":path", "/bench.Work/Call"), ("content-type", "application/grpc"),
                                         ("te", "trailers")])
            self.conn.send_data(sid, b"\x00\x00\x00\x00\x05work\n", end_stream=True)
        except h2.exceptions.ProtocolError:  # closing, or at its stream limit: not sent
            raise Refused() from None
        future = self.pending[sid] = asyncio.get_running_loop().create_future()
        self.answers[sid] = {}
        self.flush()
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop(sid, None)
            self.answers.pop(sid, None)

    async def read(self):
        import h2.events
        error = ConnectionResetError("connection closed")
        frames = Frames()
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                data, goaway = frames.split(data)
                if goaway is not None:
                    self.goaway(goaway)
                for event in self.conn.receive_data(data):
                    sid = getattr(event, "stream_id", None)
                    if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                        self.answers.get(sid, {}).update(dict(event.headers))
                    elif isinstance(event, h2.events.DataReceived):
                        self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
                    elif isinstance(event, h2.events.StreamEnded):
                        answer = self.answers.get(sid, {})
                        self.settle(sid, result=(answer.get(":status"), answer.get("grpc-status")))
                    elif isinstance(event, h2.events.StreamReset):
                        self.settle(sid, error=StreamReset())
                self.flush()
        except Exception as e:  # noqa: BLE001 - any failure ends the connection
            error = e
        finally:
            self.usable = False
            for sid in list(self.pending):
                self.settle(sid, error=error)
            self.writer.close()

    def goaway(self, last_stream_id):
        """The balancer is closing this connection once the calls up to
        `last_stream_id` are answered; the calls above it it never saw."""
        self.usable = False
        for refused in [s for s in self.pending if s > last_stream_id]:
            self.settle(refused, error=Refused())

    def settle(self, sid, result=None, error=None):
        future = self.pending.get(sid)
        if future and not future.done():
            if error:
                future.set_exception(error)
            else:
                future.set_result(result)

    def close(self):
        self.task.cancel()
        self.writer.close()


class Frames:
    """Takes GOAWAY frames out of what a connection receives, before `h2`
    sees them: `h2` closes the connection at a GOAWAY and refuses the
    answers that follow, while a graceful GOAWAY (nginx reloading) means
    the calls below its last stream will still be answered, as gRPC's
    clients expect."""

    GOAWAY = 0x7

    def __init__(self):
        self.partial = b""

    def split(self, data):
        """(the bytes for `h2`, the last stream id of a GOAWAY or None)."""
        buffer, kept, goaway = self.partial + data, [], None
        at = 0
        while len(buffer) - at >= 9:
            length = int.from_bytes(buffer[at:at + 3], "big")
            end = at + 9 + length
            if end > len(buffer):
                break
            if buffer[at + 3] == self.GOAWAY:
                goaway = int.from_bytes(buffer[at + 9:at + 13], "big") & 0x7FFFFFFF
            else:
                kept.append(buffer[at:end])
            at = end
        self.partial = buffer[at:]
        return b"".join(kept), goaway


class Channel:
    """A few HTTP/2 connections, used in turn; one that got GOAWAY or broke
    is replaced at its next turn."""

    def __init__(self, target, connections):
        self.target = target
        self.authority = f"{target[0]}:{target[1]}"
        self.slots = [None] * connections
        self.locks = [asyncio.Lock() for _ in range(connections)]
        self.turn = 0

    async def connection(self):
        i = self.turn = (self.turn + 1) % len(self.slots)
        async with self.locks[i]:
            if self.slots[i] is None or not self.slots[i].usable:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
                self.slots[i] = H2(reader, writer)
            return self.slots[i]

    async def call(self, tally, phase, timeout):
        tally.request(phase)
        for attempt in range(2):
            try:
                status, grpc_status = await (await self.connection()).call(self.authority, timeout)
                if status != "200":
                    tally.fail(phase, f"HTTP {status}")
                elif grpc_status != "0":
                    tally.fail(phase, f"grpc-status {grpc_status}")
                return
            except Refused:
                if attempt:
                    tally.fail(phase, "refused twice (GOAWAY)")
                    return
                tally.add(phase, "retried_after_goaway")
            except Exception as e:  # noqa: BLE001 - every failure is counted, by cause
                tally.fail(phase, cause_of(e))
                return

    def close(self):
        for slot in self.slots:
            if slot:
                slot.close()


if __name__ == "__main__":
    main()
