"""The app's HTTP/2 side (h2c, prior knowledge; the `h2` package): gRPC-like
unary calls, as a balancer's `grpc_pass` forwards them.

Every POST is a call: 80 % are answered in 10-100 ms, 20 % in 100 ms-2 s
(the issue's mix: most calls quick, some slow enough to outlive a drain that
only watches TCP). An answer is what a gRPC server sends: headers, one
length-prefixed message, trailers with `grpc-status: 0`. A call is in flight
from its request's end to its trailers; the calls of one connection are
served side by side, so its TCP clocks say nothing about any one of them.
"""

import asyncio
import random

import h2.config
import h2.connection
import h2.events
import h2.exceptions

QUICK_MS, SLOW_MS, SLOW_SHARE = (10, 100), (100, 2000), 0.2
MESSAGE = b"\x00\x00\x00\x00\x05done\n"  # gRPC framing: not compressed, 5 bytes


def call_ms():
    return random.uniform(*(SLOW_MS if random.random() < SLOW_SHARE else QUICK_MS))


async def serve_h2(preface, reader, writer, work):
    """Serves one h2c connection whose first bytes, the preface, were read."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    calls = {}  # stream id -> the task answering it

    def flush():
        data = conn.data_to_send()
        if data:
            writer.write(data)

    async def call(stream_id):
        delay = call_ms() / 1000
        try:
            with work.answering("in_flight", delay):
                await asyncio.sleep(delay)
                conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
                conn.send_data(stream_id, MESSAGE)
                conn.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)
                flush()
                await writer.drain()
        except (h2.exceptions.ProtocolError, ConnectionError):
            pass  # the balancer gave up on it, or the connection is gone: not answered
        finally:
            calls.pop(stream_id, None)

    def healthz(stream_id):
        conn.send_headers(stream_id, [(":status", "200"), ("content-type", "text/plain")])
        conn.send_data(stream_id, b"ok\n", end_stream=True)

    paths = {}
    data = preface
    try:
        while data:
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    paths[event.stream_id] = dict(event.headers).get(":path", "/")
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    sid = event.stream_id
                    if paths.pop(sid, "/") == "/healthz":
                        healthz(sid)
                    else:
                        calls[sid] = asyncio.create_task(call(sid))
                elif isinstance(event, h2.events.StreamReset):
                    task = calls.pop(event.stream_id, None)
                    if task:
                        task.cancel()
                elif isinstance(event, h2.events.ConnectionTerminated):
                    flush()
                    return
            flush()
            await writer.drain()
            data = await reader.read(65536)
    finally:
        for task in list(calls.values()):
            task.cancel()
