"""The two nginx load balancers in front of the pods (and, from
`haproxy.py`, a third).

Neither retries anything (`proxy_next_upstream off`): a POST is never
retried, and a connection refused by a pod still in the endpoints fails, as
behind kube-proxy. Every request is logged with the pod that served it, so a
failure can be traced to the pod that caused it.

With `grpc`, each speaks HTTP/2 on both sides, as ingress-nginx does for
`backend-protocol: GRPC`: clients' h2c on the balancer's port, `grpc_pass`
(h2c) to the pods, through ingress-nginx's default upstream keep-alive pool
(`keepalive 320; keepalive_timeout 60s; keepalive_requests 10000;`), never
retried (`grpc_next_upstream off`). nginx's upstream side carries one call
per connection at a time; the pool holds as many as the calls in flight.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.request

from haproxy import HAProxy
from pods import APP_PORT, HERE, spawn

# Per request: the time it ended (wall clock), its status, the pod and what
# the pod answered.
LOG_FORMAT = "'$msec $status $upstream_addr $upstream_status'"


class Balancer:
    """An nginx of its own, in a network namespace of its own on the pods'
    bridge (as a balancer is another host), with its prefix, logs and temp
    files in `workdir`."""

    port = 80

    def __init__(self, workdir, network, grpc=False):
        self.grpc = grpc
        self.workdir = workdir
        self.namespace, self.address = network.add_namespace()
        self.conf = os.path.join(workdir, "nginx.conf")
        self.access_log = os.path.join(workdir, "access.log")
        self.process = None
        self.url = f"http://{self.address}:{self.port}/work"
        self.listen = f"{self.port} http2" if grpc else str(self.port)

    def start(self, addresses):
        self.write_conf(addresses)
        self.process = spawn(["ip", "netns", "exec", self.namespace, "nginx", "-p", self.workdir,
                              "-c", self.conf, "-e", os.path.join(self.workdir, "error.log")])
        give_up = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.address, self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > give_up:
                    raise RuntimeError(f"nginx did not start: {self.error_tail()}")
                time.sleep(0.02)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def write_conf(self, addresses):
        temp = {kind: os.path.join(self.workdir, kind)
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
        with open(self.conf, "w") as f:
            f.write(f"""
daemon off;
worker_processes auto;
pid {self.workdir}/nginx.pid;
{self.modules()}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    error_log {self.workdir}/error.log warn;
    client_body_temp_path {temp['client_body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    log_format rollout {LOG_FORMAT};
    proxy_next_upstream off;
    proxy_connect_timeout 5s;
{self.upstream_and_servers(addresses)}
}}
""")

    def error_tail(self):
        try:
            with open(os.path.join(self.workdir, "error.log"), errors="replace") as f:
                return " / ".join(f.read().strip().splitlines()[-3:])
        except OSError:
            return "(no error.log)"

    def failures_by_pod(self):
        """{pod address: 5xx answered through it}, from the access log."""
        failures = {}
        try:
            with open(self.access_log) as f:
                for line in f:
                    _, status, upstream, _ = line.split(" ", 3)
                    if status.startswith("5"):
                        pod = upstream.rsplit(":", 1)[0]
                        failures[pod] = failures.get(pod, 0) + 1
        except OSError:
            pass
        return failures

    def modules(self):
        return ""

    def location(self, upstream):
        """What proxies a request to the pods: HTTP/1.x (`proxy_pass`, set
        up by the caller) or HTTP/2 (`grpc_pass`)."""
        if self.grpc:
            return f"""grpc_pass grpc://{upstream};
            grpc_next_upstream off;
            grpc_connect_timeout 5s;"""
        return f"proxy_pass http://{upstream};"

    def client_keepalive(self):
        # The clients' HTTP/2 connections last the whole run, as a gRPC
        # channel's do (nginx's default closes them after 1000 requests).
        return "keepalive_requests 1000000;" if self.grpc else ""


# ingress-nginx's default upstream keep-alive pool.
KEEPALIVE_POOL = """keepalive 320;
        keepalive_timeout 60s;
        keepalive_requests 10000;"""


class ReloadedNginx(Balancer):
    """nginx with the endpoints in a static upstream, rewritten and reloaded
    (`nginx -s reload`, i.e. SIGHUP to the master) on every change; no
    upstream keep-alive, so each request is a new connection to the pod
    (with `grpc`, the keep-alive pool: HTTP/2 to the pods is pooled)."""

    name = "nginx"
    generation_port = 81  # with `grpc`: the HTTP/2 port speaks nothing else

    def __init__(self, workdir, network, grpc=False):
        super().__init__(workdir, network, grpc)
        self.generation = 0

    def upstream_and_servers(self, addresses):
        self.generation += 1
        # max_fails=0: no passive health checks, which kube-proxy does not
        # have either (nginx would mark a pod down and fail requests to the
        # others with "no live upstreams").
        servers = "\n".join(f"        server {a}:{APP_PORT} max_fails=0;" for a in addresses)
        pool = KEEPALIVE_POOL if self.grpc else ""
        # Which configuration the workers accepting connections run.
        generation = f'location = /generation {{ return 200 "{self.generation}"; }}'
        control = ""
        if self.grpc:  # the HTTP/2 port speaks nothing else
            control = f"""
    server {{
        listen {self.generation_port};
        {generation}
    }}"""
            generation = ""
        return f"""
    upstream pods {{
{servers}
        {pool}
    }}
    server {{
        listen {self.listen} backlog=4096;
        {self.client_keepalive()}
        location / {{
            access_log {self.access_log} rollout;
            {self.location("pods")}
        }}
        {generation}
    }}{control}"""

    def apply(self, addresses):
        """Reloads with these endpoints; returns the monotonic time the new
        configuration first answered (new connections go to new workers)."""
        self.write_conf(addresses)
        # What `nginx -s reload` sends; the master is the process setpriv and
        # `ip netns exec` exec'd.
        os.kill(self.process.pid, signal.SIGHUP)
        give_up = time.monotonic() + 10
        while time.monotonic() < give_up:
            try:
                port = self.generation_port if self.grpc else self.port
                with urllib.request.urlopen(f"http://{self.address}:{port}/generation", timeout=1) as r:
                    if r.read().decode() == str(self.generation):
                        return time.monotonic()
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"nginx did not reload: {self.error_tail()}")


class IngressNginx(Balancer):
    """nginx + Lua as ingress-nginx runs it: one upstream whose peer is
    picked per request by `balancer_by_lua`, the endpoints changed at run time
    without a reload, and ingress-nginx's default upstream keep-alive pool."""

    name = "ingress"
    config_port = 10246  # ingress-nginx's

    def modules(self):
        return ("load_module /usr/lib/nginx/modules/ndk_http_module.so;\n"
                "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;")

    def upstream_and_servers(self, addresses):
        return f"""
    lua_package_path "{HERE}/?.lua;;";
    lua_shared_dict endpoints 1m;
    upstream upstream_balancer {{
        server 0.0.0.1;  # a placeholder: balancer_by_lua picks the peer
        balancer_by_lua_block {{ require("balancer").balance() }}
        {KEEPALIVE_POOL}
    }}
    server {{
        listen {self.listen} backlog=4096;
        {self.client_keepalive()}
        location / {{
            access_log {self.access_log} rollout;
            {self.location("upstream_balancer")}
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen {self.config_port};
        location = /configuration/backends {{
            content_by_lua_block {{ require("balancer").configure() }}
        }}
    }}"""

    def start(self, addresses):
        super().start(addresses)
        self.apply(addresses)

    def apply(self, addresses):
        """Posts the endpoints; every worker uses them from its next request."""
        body = " ".join(f"{a}:{APP_PORT}" for a in addresses).encode()
        request = urllib.request.Request(f"http://{self.address}:{self.config_port}/configuration/backends",
                                         data=body, method="POST")
        with urllib.request.urlopen(request, timeout=5) as r:
            r.read()
        return time.monotonic()


BALANCERS = {b.name: b for b in (ReloadedNginx, IngressNginx, HAProxy)}
