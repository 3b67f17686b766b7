"""The endpoints controller and the balancer's sync, as one delay: a change
lands on the balancer `lag` after the event that caused it (a pod ready, a
pod deleted). Changes due together land in one update (one nginx reload)."""

import threading
import time


class Endpoints:
    def __init__(self, balancer, pods, lag):
        self.balancer = balancer
        self.lag = lag
        self.serving = list(pods)
        self.pending = []  # (due, "add" | "remove", pod), in order
        self.changed = threading.Condition()
        self.failure = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def add(self, pod):
        self._schedule("add", pod)

    def remove(self, pod):
        self._schedule("remove", pod)

    def _schedule(self, change, pod):
        with self.changed:
            self.pending.append((time.monotonic() + self.lag, change, pod))
            self.changed.notify()

    def settle(self):
        """Waits until every change scheduled so far has landed."""
        with self.changed:
            self.changed.wait_for(lambda: not self.pending or self.failure)
        if self.failure:
            raise self.failure

    def _run(self):
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.pending)
                due = self.pending[0][0]
                if due > time.monotonic():
                    self.changed.wait(due - time.monotonic())
                    continue
                now = time.monotonic()
                # Still pending until it has landed: settle() waits for it.
                batch = [p for p in self.pending if p[0] <= now]
            for _, change, pod in batch:
                if change == "add":
                    self.serving.append(pod)
                else:
                    self.serving.remove(pod)
            try:
                landed = self.balancer.apply([p.address for p in self.serving])
            except Exception as e:  # reported by settle(), in the main thread
                self.failure = e
                landed = None
            for _, change, pod in batch:
                pod.times["endpoint_added" if change == "add" else "endpoint_removed"] = landed
            with self.changed:
                del self.pending[:len(batch)]  # others only append
                self.changed.notify_all()
