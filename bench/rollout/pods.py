"""Pods as on a pod network: each in a network namespace of its own, with a
veth pair to a bridge in the root namespace and an address of its own; and
what the kubelet does to them (readiness probes, preStop, TERM, KILL).

Every name (bridge, namespaces, veths) carries this process's pid, so runs in
parallel never collide, and the leftovers of a run that was killed are
recognised and swept by the next one. Whatever the run starts, except the load
generator, runs in one of these namespaces (the balancer too), so deleting
them stops it all.
"""

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PREFIX = "ldr"
WORKDIR_PREFIX = "lameduck-rollout-"  # then the pid
APP_PORT = 8080
ADMIN_PORT = 9911  # lameduck's admin server, inside the pod
HERE = os.path.dirname(os.path.abspath(__file__))


def sh(*cmd):
    """Runs a command that must succeed (ip, mostly)."""
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def spawn(cmd, **kwargs):
    """Starts a process that dies with this one (`setpriv --pdeathsig`): a
    harness killed by SIGKILL leaves no load generator or balancer behind.
    Call it from a thread that outlives the process: the signal follows the
    thread that forked."""
    return subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", *cmd], **kwargs)


def make_workdir():
    """A temporary directory for one case's files."""
    return tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")


def sweep_leftovers():
    """Removes the namespaces, bridges, veths and temporary directories of
    runs whose process is gone (or whose pid this run now has)."""
    def left_behind(pid):
        return pid == os.getpid() or not alive(pid)

    def stale(name):
        match = re.match(rf"^{PREFIX}([0-9a-f]+)(?:-\d+|b|v\d+)$", name)
        return match is not None and left_behind(int(match.group(1), 16))

    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for name in (line.split()[0] for line in namespaces.splitlines() if line.strip()):
        if stale(name):
            delete_namespace(name)
    # A veth outlives its namespace while something still holds the latter.
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for name in re.findall(r"^\d+: ([^:@]+)", links, re.M):
        if stale(name):
            subprocess.run(["ip", "link", "del", name], stderr=subprocess.DEVNULL)
    for entry in os.scandir(tempfile.gettempdir()):
        match = re.match(rf"^{WORKDIR_PREFIX}(\d+)-", entry.name)
        if match and left_behind(int(match.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)


def alive(pid):
    """Whether a process runs (a zombie, killed and not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def delete_namespace(name):
    """Kills what runs in a namespace (as the runtime does to a pod's
    containers), then deletes it, which deletes its end of the veth pair and
    so the other end."""
    kill_namespace(name)
    subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)


def kill_namespace(name):
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    for pid in pids.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


class Network:
    """A bridge with a /24 of its own; each namespace (a pod, the balancer)
    gets the next free address.

    One per case: deleting it between cases forgets every neighbour entry,
    and addresses are never reused within it."""

    def __init__(self):
        self.bridge = f"{PREFIX}{os.getpid():x}b"
        self.subnet = free_subnet()
        self.gateway = str(self.subnet.network_address + 1)
        self.namespaces = []
        self.veths = []
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def add_namespace(self):
        """A new namespace wired to the bridge: (name, address)."""
        index = len(self.namespaces)
        name = f"{PREFIX}{os.getpid():x}-{index}"
        veth = f"{PREFIX}{os.getpid():x}v{index}"
        address = str(self.subnet.network_address + 2 + index)
        self.namespaces.append(name)
        self.veths.append(veth)
        sh("ip", "netns", "add", name)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        sh("ip", "link", "set", veth, "master", self.bridge, "up")
        inside = ["ip", "-n", name]
        sh(*inside, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        sh(*inside, "link", "set", "eth0", "up")
        sh(*inside, "link", "set", "lo", "up")
        return name, address

    def sockets(self):
        """TCP sockets in use and in TIME_WAIT, in the root namespace and in
        each of this network's ({"inuse": n, "tw": n, "by_namespace": ...}):
        the node's table that every `sock_diag` dump walks."""
        by_namespace = {"root": sockstat()}
        for name in self.namespaces:
            by_namespace[name] = sockstat(name)
        known = [v for v in by_namespace.values() if v]
        return {"inuse": sum(v.get("inuse", 0) for v in known), "tw": sum(v.get("tw", 0) for v in known),
                "by_namespace": by_namespace}

    def delete(self):
        for name in self.namespaces:
            delete_namespace(name)
        for link in [*self.veths, self.bridge]:
            subprocess.run(["ip", "link", "del", link], stderr=subprocess.DEVNULL)


def sockstat(namespace=None):
    """The TCP line of a network namespace's /proc/net/sockstat (the root
    namespace's without one): {"inuse": n, "orphan": n, "tw": n, ...}."""
    command = ["cat", "/proc/net/sockstat"]
    if namespace:
        command = ["ip", "netns", "exec", namespace, *command]
    text = subprocess.run(command, capture_output=True, text=True).stdout
    for line in text.splitlines():
        if line.startswith("TCP:"):
            fields = line.split()[1:]
            return {k: int(v) for k, v in zip(fields[::2], fields[1::2])}
    return None


def free_subnet():
    """A 10.x.y.0/24 that no route on this machine overlaps, chosen from the
    pid so that parallel runs start from different ones."""
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"],
                            capture_output=True, text=True).stdout
    used = [ipaddress.ip_network(w, strict=False) for w in re.findall(r"\b\d+\.\d+\.\d+\.\d+/\d+\b", routes)]
    start = os.getpid() % 50000
    for i in range(50000):
        n = (start + i) % 50000 + 10000  # 10.39.16.0 .. 10.234.79.0
        subnet = ipaddress.ip_network(f"10.{n >> 8}.{n & 255}.0/24")
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise RuntimeError("no free 10.x.y.0/24 for the pod network")


# The ways a pod can run the app: how it is started, how the kubelet probes
# its readiness, and its preStop hook.

class Bare:
    """The app is the container's PID 1; no preStop."""

    name = "bare"

    def command(self, app):
        return app

    def readiness_url(self, address):
        return f"http://{address}:{APP_PORT}/healthz"

    def pre_stop(self, pod, until):
        pass


class Sleep(Bare):
    """tini runs the app; `preStop: exec sleep N` (the seeds' fix)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.name = f"sleep {seconds:g}"

    def command(self, app):
        return ["tini", "-s", "--", *app]

    def pre_stop(self, pod, until):
        time.sleep(max(0.0, min(self.seconds, until - time.monotonic())))


class Lameduck:
    """`lameduck run -- app`; readiness is lameduck's `/readyz` (which also
    asks the app's own health URL); `preStop: httpGet /prestop`, which holds
    until lameduck has signalled the app."""

    def __init__(self, binary, grace, extra_args, name="lameduck"):
        self.binary = binary
        self.grace = grace
        self.extra_args = extra_args
        self.name = name

    def agent(self, subcommand):
        return [self.binary, subcommand, "--log-format", "json", "--grace-period", f"{self.grace:g}s",
                "--readiness-url", f"http://127.0.0.1:{APP_PORT}/healthz", *self.extra_args]

    def command(self, app):
        return [*self.agent("run"), "--", *app]

    def readiness_url(self, address):
        return f"http://{address}:{ADMIN_PORT}/readyz"

    def pre_stop(self, pod, until):
        try:
            http_get(f"http://{pod.address}:{ADMIN_PORT}/prestop", max(0.1, until - time.monotonic()))
        except OSError:
            pass  # the kubelet goes on to TERM whatever the hook did


class Sidecar(Lameduck):
    """The app is its container's PID 1, unchanged; `lameduck sidecar` runs
    beside it in the pod (a native sidecar), and the app's `preStop:
    httpGet /prestop` is served by the sidecar. The kubelet TERMs the
    sidecar once the app has exited."""

    def __init__(self, binary, grace, extra_args):
        super().__init__(binary, grace, extra_args, name="lameduck sidecar")

    def command(self, app):
        return app

    def sidecar(self):
        return self.agent("sidecar")


def http_get(url, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status


class Pod:
    """One pod: its namespace, its process, and the moments (monotonic
    seconds) of its life that the figures are computed from."""

    def __init__(self, network, variant, workdir):
        self.namespace, self.address = network.add_namespace()
        self.variant = variant
        self.record_path = os.path.join(workdir, f"{self.namespace}.json")
        self.log_path = os.path.join(workdir, f"{self.namespace}.log")
        # The harness's own interpreter: the one `ensure_tools` gave `h2`.
        app = [sys.executable, os.path.join(HERE, "app.py"), "--port", str(APP_PORT),
               "--record", self.record_path]
        with open(self.log_path, "ab") as log:
            # A session of its own: Ctrl-C on the terminal is the harness's
            # to handle, not the pods'.
            self.process = spawn(["ip", "netns", "exec", self.namespace, *variant.command(app)],
                                 stdout=log, stderr=log, start_new_session=True)
            sidecar = getattr(variant, "sidecar", None)
            self.sidecar = sidecar and spawn(["ip", "netns", "exec", self.namespace, *sidecar()],
                                             stdout=log, stderr=log, start_new_session=True)
        self.times = {"created": time.monotonic()}
        self.killed = False

    def wait_ready(self, period, limit=30.0):
        """Probes readiness as a kubelet does (at once, then every `period`)."""
        url = self.variant.readiness_url(self.address)
        give_up = time.monotonic() + limit
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise RuntimeError(f"pod {self.namespace} exited before it was ready: {self.log_tail()}")
            probed = time.monotonic()
            try:
                if http_get(url, timeout=1) == 200:
                    self.times["ready"] = time.monotonic()
                    return
            except OSError:
                pass
            time.sleep(max(0.0, probed + period - time.monotonic()))
        raise RuntimeError(f"pod {self.namespace} not ready within {limit:g} s: {self.log_tail()}")

    def log_tail(self):
        """The end of what the pod wrote, for an error message (the case's
        files are deleted with it unless --keep)."""
        with open(self.log_path, errors="replace") as f:
            return " / ".join(f.read().strip().splitlines()[-3:]) or "(no output)"

    def terminate(self, grace):
        """The kubelet's part of a pod deletion: preStop, TERM to PID 1, KILL
        to everything in the pod at the end of the grace period, counted from
        the start of preStop. As the kubelet does, TERM is given at least 2 s
        however long preStop took."""
        deleted = self.times["deleted"] = time.monotonic()
        kill_at = deleted + grace
        self.variant.pre_stop(self, kill_at)
        self.times["prestop_done"] = time.monotonic()
        kill_at = max(kill_at, time.monotonic() + 2)
        self.process.send_signal(signal.SIGTERM)
        self.times["term_sent"] = time.monotonic()
        # A native sidecar gets its TERM once the app has exited.
        for process in filter(None, [self.process, self.sidecar]):
            if process is self.sidecar:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=max(0.0, kill_at - time.monotonic()))
            except subprocess.TimeoutExpired:
                kill_namespace(self.namespace)
                self.killed = True
                process.wait()
        self.times["exited"] = time.monotonic()

    def app_record(self):
        """What the app wrote at SIGTERM (None if it never had one)."""
        try:
            with open(self.record_path) as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return None

    def term_reason(self):
        """Why lameduck signalled the app: the reason of its decision."""
        reason = None
        try:
            with open(self.log_path) as f:
                for line in f:
                    entry = json.loads(line) if line.startswith("{") else {}
                    if entry.get("event") == "decision":
                        reason = entry.get("message")
                    elif entry.get("event") == "sent":
                        return reason
        except (OSError, ValueError):
            pass
        return None

    def terminate_in_background(self, grace):
        thread = threading.Thread(target=self.terminate, args=(grace,), daemon=True)
        thread.start()
        return thread

