"""A third balancer, HAProxy, for what nginx does not do: many calls at once
on one HTTP/2 connection to a pod, as Envoy (Istio's sidecars and gateways)
and gRPC's own client-side balancing do. nginx's `grpc_pass` carries one
call per upstream connection at a time, so behind it a pod's TCP clocks
still tell a pending call from an answered one; multiplexed, they cannot.

HAProxy 2.6 (Debian's): the pods are server slots of one backend, each set
and switched at run time over the admin socket (`set server ... addr`,
`state ready|maint`), as Envoy's endpoints arrive by EDS, with no reload;
connections to the pods are pooled and shared by every client
(`http-reuse always`), in HTTP/2 (`proto h2`) in the `h2` cells; nothing is
retried (`retries 0`, `retry-on none`). A pod put in maintenance gets no new
call; the calls it has keep their connection. Each request is logged, as
the nginx set-ups do, with the pod that served it.
"""

import os
import socket
import subprocess
import time

from pods import APP_PORT, spawn

SLOTS = 32  # server slots, each used once: old and new pods of a rollout of up to 16


class HAProxy:
    name = "haproxy"
    port = 80

    def __init__(self, workdir, network, grpc=False):
        self.grpc = grpc
        self.workdir = workdir
        self.namespace, self.address = network.add_namespace()
        self.conf = os.path.join(workdir, "haproxy.cfg")
        self.access_log = os.path.join(workdir, "access.log")
        self.admin = os.path.join(workdir, "haproxy.sock")
        self.url = f"http://{self.address}:{self.port}/work"
        self.slots = {}  # pod address -> slot number
        self.used = 0  # slots given so far
        self.process = None

    def start(self, addresses):
        proto = " proto h2" if self.grpc else ""
        servers = "\n".join(f"    server pod{i} 127.0.0.1:{APP_PORT} disabled{proto}" for i in range(1, SLOTS + 1))
        with open(self.conf, "w") as f:
            f.write(f"""
global
    maxconn 8000
    stats socket {self.admin} mode 600 level admin
    log stdout format raw local0
defaults
    mode http
    log global
    # As the nginx set-ups log: end time, status, the pod, the pod's status.
    log-format "%Ts.%ms %ST %si:%sp %ST"
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    retries 0
frontend clients
    bind :{self.port}{proto}
    default_backend pods
backend pods
    balance roundrobin
    http-reuse always
    retry-on none
{servers}
""")
        with open(self.access_log, "ab") as log:
            self.process = spawn(["ip", "netns", "exec", self.namespace, "haproxy", "-db", "-f", self.conf],
                                 stdout=log, stderr=subprocess.STDOUT)
        give_up = time.monotonic() + 10
        while not os.path.exists(self.admin):
            if self.process.poll() is not None or time.monotonic() > give_up:
                raise RuntimeError(f"haproxy did not start: {self.log_tail()}")
            time.sleep(0.02)
        self.apply(addresses)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def apply(self, addresses):
        """Puts removed pods in maintenance and new ones in slots never used
        before (a slot's pooled connections outlive a change of its address,
        and would carry new calls to the old pod); returns the monotonic
        time HAProxy had taken every command."""
        commands = []
        for address in [a for a in self.slots if a not in addresses]:
            commands.append(f"set server pods/pod{self.slots.pop(address)} state maint")
        for address in [a for a in addresses if a not in self.slots]:
            if self.used == SLOTS:
                raise RuntimeError(f"haproxy: all {SLOTS} server slots used")
            self.used += 1
            slot = self.slots[address] = self.used
            commands += [f"set server pods/pod{slot} addr {address} port {APP_PORT}",
                         f"set server pods/pod{slot} state ready"]
        for command in commands:
            answer = self.command(command)
            if answer.strip() and "changed" not in answer:
                raise RuntimeError(f"haproxy: {command}: {answer.strip()}")
        return time.monotonic()

    def command(self, line):
        """One command on the admin socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.admin)
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(4096):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def log_tail(self):
        try:
            with open(self.access_log, errors="replace") as f:
                return " / ".join(f.read().strip().splitlines()[-3:])
        except OSError:
            return "(no log)"

    def failures_by_pod(self):
        """{pod address: 5xx answered through it}, from the log."""
        failures = {}
        try:
            with open(self.access_log) as f:
                for line in f:
                    fields = line.split()
                    if len(fields) == 4 and fields[1].startswith("5"):
                        pod = fields[2].rsplit(":", 1)[0]
                        failures[pod] = failures.get(pod, 0) + 1
        except OSError:
            pass
        return failures
