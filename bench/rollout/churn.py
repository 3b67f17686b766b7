"""An aged node: other pods' traffic, opening and closing connections at
several hundred a second, so the kernel's TCP table holds tens of thousands
of sockets that are not the app's (each closed connection leaves a TIME_WAIT
socket for 60 s).

The table is one for the whole node (`net.ipv4.tcp_child_ehash_entries` is 0
unless set): a pod's `sock_diag` dump walks every namespace's sockets, and
filters its own out. This is the load that makes looking cost more.

A tiny nginx (`return 204`) and `hey` with keep-alive off, both in a
namespace of their own on the pods' bridge, talking over its loopback: the
server closes first, so the TIME_WAIT sockets are its own. On several ports,
one `hey` each: a client's new connection whose ports match a TIME_WAIT
socket takes it over, and one server port's 28,000 client ports would cap
the pile well below rate x 60 s.
"""

import os
import subprocess

from pods import spawn


PORTS = range(8001, 8011)


class Churn:
    """`rate` connections a second, opened, used once and closed, until
    stopped (or the namespace deleted)."""

    def __init__(self, network, workdir, rate):
        self.rate = rate
        self.workdir = os.path.join(workdir, "churn")
        os.makedirs(self.workdir, exist_ok=True)
        self.namespace, _ = network.add_namespace()
        self.processes = []

    def start(self):
        conf = os.path.join(self.workdir, "nginx.conf")
        temp = " ".join(f"{kind}_temp_path {self.workdir}/{kind};"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
worker_processes 1;
pid {self.workdir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    error_log {self.workdir}/error.log warn;
    {temp}
    server {{
        {" ".join(f"listen 127.0.0.1:{port} backlog=4096;" for port in PORTS)}
        location / {{ return 204; }}
    }}
}}
""")
        inside = ["ip", "netns", "exec", self.namespace]
        self.processes.append(spawn([*inside, "nginx", "-p", self.workdir, "-c", conf,
                                     "-e", os.path.join(self.workdir, "error.log")]))
        # hey's workers each send `per_worker` a second, one connection each.
        per_worker = 10
        workers = max(1, round(self.rate / per_worker / len(PORTS)))
        for port in PORTS:
            self.processes.append(spawn([*inside, "hey", "-z", "1h", "-c", str(workers), "-q", str(per_worker),
                                         "-disable-keepalive", f"http://127.0.0.1:{port}/"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                process.kill()
                process.wait()
