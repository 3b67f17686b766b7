"""The traffic: POSTs from `hey`, never retried, in two phases (warm-up,
then the rollout) counted apart; and, beside or instead of them, what hey
cannot check (`clients.py`): streamed answers, HTTP/2 calls, long-lived
streams.

hey talks to the balancer with keep-alive off: nginx closes idle client
connections when it reloads, and a request racing that close would be a
failure no pod caused.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

from pods import HERE, spawn


class Counts:
    """Requests and failures (5xx and connection errors) as hey saw them."""

    def __init__(self):
        self.requests = 0
        self.failed = 0
        self.errors = {}  # what failed -> how many
        self.extra = {}  # what a client counted besides, e.g. long_lived_ended -> how many

    def add_report(self, text):
        statuses = re.search(r"Status code distribution:\n((?:\s+\[\d+\].*\n)*)", text)
        for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", statuses.group(1) if statuses else ""):
            self.requests += int(n)
            if code.startswith("5"):
                self.failed += int(n)
                self.errors[f"HTTP {code}"] = self.errors.get(f"HTTP {code}", 0) + int(n)
        errors = re.search(r"Error distribution:\n((?:\s+\[\d+\].*\n?)*)", text)
        for n, what in re.findall(r"\[(\d+)\]\s+(.*)", errors.group(1) if errors else ""):
            self.requests += int(n)
            self.failed += int(n)
            # "Post "http://...": dial tcp ...: connection refused" -> the cause
            cause = what.rsplit(": ", 1)[-1]
            self.errors[cause] = self.errors.get(cause, 0) + int(n)

    def add_counts(self, counts):
        """Adds a `clients.py` phase ({requests, failed, errors, ...}) or
        another Counts."""
        if isinstance(counts, Counts):
            counts = {**counts.as_json(), **counts.extra}
        for key, value in counts.items():
            if key == "requests":
                self.requests += value
            elif key == "failed":
                self.failed += value
            elif key == "errors":
                for cause, n in value.items():
                    self.errors[cause] = self.errors.get(cause, 0) + n
            else:
                self.extra[key] = self.extra.get(key, 0) + value

    def as_json(self):
        return {"requests": self.requests, "failed": self.failed, "errors": self.errors, **self.extra}


def hey(url, *flags):
    return ["hey", "-m", "POST", "-d", "{}", "-T", "application/json", "-disable-keepalive", *flags, url]


class DenseLoad:
    """A fixed rate: `procs` hey processes whose workers each send one POST
    per tick (`-q`), started a fraction of a tick apart so that their ticks
    interleave instead of landing together. A tick (0.5 s) is longer than the
    slowest request (0.3 s), so no tick is skipped and the rate holds."""

    name = "dense"
    per_worker = 2  # requests per second

    def __init__(self, url, rps, procs=10):
        self.url = url
        self.procs = procs
        self.workers = max(1, round(rps / self.per_worker / procs))
        self.rps = self.workers * procs * self.per_worker
        self.phases = {}

    def label(self):
        return f"{self.rps} rps"

    def start(self):
        self.phases["warmup"] = self._start_phase()

    def begin_rollout(self):
        """Hands over to a new set of processes, one at a time, so the rate
        never dips or doubles; their counts are the rollout's."""
        warmup = self.phases["warmup"]
        self.phases["rollout"] = self._start_phase(hand_over=warmup)

    def _start_phase(self, hand_over=None):
        phase = []
        for i in range(self.procs):
            flags = ["-z", "1h", "-c", str(self.workers), "-q", str(self.per_worker)]
            phase.append(spawn(hey(self.url, *flags), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            if hand_over:
                hand_over[i].send_signal(signal.SIGINT)  # hey stops, finishes what it sent, reports
            time.sleep(1 / self.per_worker / self.procs)
        return phase

    def stop(self):
        """Stops it; {phase: Counts}."""
        for process in self.phases["rollout"]:
            process.send_signal(signal.SIGINT)
        result = {}
        for name, phase in self.phases.items():
            counts = result[name] = Counts()
            for process in phase:
                counts.add_report(process.communicate()[0])
        return result


class SparseLoad:
    """Bursty and sparse, as real clients are: a burst of `burst` POSTs at
    once, every 1-2 s (random, seeded)."""

    name = "sparse"

    def __init__(self, url, burst=7, every=(1.0, 2.0), seed=None):
        self.url = url
        self.burst = burst
        self.every = every
        self.random = random.Random(seed)
        self.bursts = []  # (phase, process)
        self.phase = "warmup"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def label(self):
        return f"{self.burst} per {self.every[0]:g}–{self.every[1]:g} s"

    def start(self):
        self.thread.start()

    def begin_rollout(self):
        self.phase = "rollout"

    def _run(self):
        while not self.stopping.is_set():
            flags = ["-n", str(self.burst), "-c", str(self.burst)]
            process = spawn(hey(self.url, *flags), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self.bursts.append((self.phase, process))
            self.stopping.wait(self.random.uniform(*self.every))
        # The bursts die with the thread that started them: read them here.
        self.reports = [(phase, process.communicate()[0]) for phase, process in self.bursts]

    def stop(self):
        self.stopping.set()
        self.thread.join()
        result = {"warmup": Counts(), "rollout": Counts()}
        for phase, report in self.reports:
            result[phase].add_report(report)
        return result


class Client:
    """One `clients.py` process (`streams`, `calls` or `sse`) for the whole
    run: SIGUSR1 marks the rollout's start, SIGINT stops it and it reports
    its counts per phase. One process, not one per phase: a long-lived
    stream must outlive the change of phase."""

    def __init__(self, kind, url, label, **options):
        self.kind = kind
        self.url = url
        self._label = label
        self.flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
        self.process = None

    def label(self):
        return self._label

    def start(self):
        command = [sys.executable, os.path.join(HERE, "clients.py"), self.kind, "--url", self.url, *self.flags]
        self.process = spawn(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def begin_rollout(self):
        self.process.send_signal(signal.SIGUSR1)

    def stop(self):
        """Stops it; {phase: Counts}."""
        self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=60)
        try:
            report = json.loads(out)
        except ValueError:
            raise RuntimeError(f"clients.py {self.kind} reported nothing: {err.strip()[-500:]}") from None
        result = {}
        for phase, counts in report.items():
            result[phase] = Counts()
            result[phase].add_counts(counts)
        return result


class Mixed:
    """Several loads at once (POSTs from hey beside a client's streams),
    counted together."""

    def __init__(self, *loads):
        self.loads = loads

    def label(self):
        return " + ".join(load.label() for load in self.loads)

    def start(self):
        for load in self.loads:
            load.start()

    def begin_rollout(self):
        for load in self.loads:
            load.begin_rollout()

    def stop(self):
        result = {}
        for load in self.loads:
            for phase, counts in load.stop().items():
                result.setdefault(phase, Counts()).add_counts(counts)
        return result
