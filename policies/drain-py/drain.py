"""`drain` in Python: the same policy as policies/drain/src/lib.rs.

Readiness goes down at once. The app is signalled when the evidence says it
is safe: no request has arrived on any connection for a quiet period (the
sign that the endpoint is gone from every load balancer), and no request is
awaiting its response; or when the deadline leaves just the time the app
needs to stop. Idle keep-alive connections do not hold it (with the host's
per-connection evidence, `sock-diag`; from `/proc/net/tcp` every open
connection counts as in flight). If the app has not exited some time after
the signal, it is killed.

The quiet period is sized from the silences between requests learned while
serving: twice their 99th percentile, within bounds. Until enough has been
learned (a pod that served only seconds, traffic too sparse for a silence to
mean anything) the drain also lasts at least `min-drain`, as a fixed
`preStop: sleep` would: never less safe than the sleep it replaces.

A request is in flight until its answer is done: answers that stream, and
those the sockets cannot tell done (calls multiplexed on HTTP/2
connections), hold the signal like any other. Where the app counts its own
work in progress (a gauge on its metrics endpoint, read by a `metrics` probe
named by `in-flight-metric`), that count stands in for what the sockets
cannot tell, and the larger of it and what the sockets do see is in flight.
Long-lived connections (WebSockets, event streams) never finish by
themselves: they are waited for `long-lived-wait` after the rest is quiet,
then the app is signalled, which closes them.

Config (same keys, defaults and errors as the Rust policy):
* `probe` -- the `connections` probe to read (default `connections`);
* `in-flight-metric` -- a `metrics` probe counting the app's work in progress
  (default none);
* `long-lived-wait` -- how long long-lived connections are waited for once
  the rest is quiet (default `3s`);
* `quiet` -- the shortest quiet period (default `150ms`: longer than the
  100 ms scheduler period a CPU-throttled balancer can stall for);
* `quiet-max` -- the longest, whatever was learned (default `5s`);
* `min-drain` -- the shortest drain until enough has been learned (default
  `5s`);
* `reserve` -- time left to the app after the signal (default `5s`, at most a
  third of the drain budget);
* `recheck` -- the longest it waits before it looks again (default `100ms`);
  sooner when the quiet period or `min-drain` would end;
* `signal` -- the stop signal (default `TERM`);
* `kill-after` -- time from the signal to KILL (default `10s`).

Built against `lameduck:policy@0.3.0` (`wit/policy.wit`). Every number the
contract carries is a `u32`; Python's integers are unbounded, so the places
where Rust saturates are written out, and so is Rust's conversion of the
app's count (an `f64`) to a `u32`.
"""

import math
from typing import List, Optional, Tuple

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import (
    Connections,
    Decision,
    Metrics,
    Next_Recheck,
    Next_WaitForExit,
    ProbeValue_Connections,
    ProbeValue_Metrics,
    Signal,
    SignalAction,
    SignalAction_Drain,
    SignalAction_Forward,
    Silences,
    Snapshot,
)

U32_MAX = 0xFFFF_FFFF

# Silences measured before the learned ones are trusted.
SILENCES_NEEDED = 50

# The characters Rust's `str::trim` removes (Unicode White_Space). Python's
# `str.strip()` removes a slightly different set.
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def ascii_upper(text: str) -> str:
    """Upper-cases ASCII letters only, like Rust's `to_ascii_uppercase`."""
    return "".join(chr(ord(c) - 32) if "a" <= c <= "z" else c for c in text)


def parse_duration_ms(text: str) -> Optional[int]:
    """Parses `250ms`, `30s`, `1.5s`, `2m`, `1h` into milliseconds."""
    text = text.strip(WHITE_SPACE)
    split = next((i for i, c in enumerate(text) if not (c.isascii() and (c.isdigit() or c == "."))), None)
    if split is None:
        return None
    try:
        number = float(text[:split])  # only digits and dots: no sign, no exponent
    except ValueError:
        return None
    scale = {"ms": 1.0, "s": 1_000.0, "m": 60_000.0, "h": 3_600_000.0}.get(text[split:].strip(WHITE_SPACE))
    if scale is None:
        return None
    ms = number * scale
    if not (math.isfinite(ms) and ms <= U32_MAX):
        return None
    # Rust rounds half away from zero; Python's round() rounds half to even.
    whole = math.floor(ms)
    return whole + 1 if ms - whole >= 0.5 else whole


def signal_from_name(text: str) -> Optional[Signal]:
    """Parses `TERM`, `SIGTERM` or `term`."""
    upper = ascii_upper(text.strip(WHITE_SPACE))
    bare = upper[3:] if upper.startswith("SIG") else upper
    return Signal.__members__.get(bare)


class Config:
    """The `policy.config` map, read with typed getters. Any key no getter
    asked for is refused by `finish`, so a typo is an error, not a default."""

    def __init__(self, pairs: List[Tuple[str, str]]):
        self.pairs = pairs
        self.known: List[str] = []

    def get(self, key: str) -> Optional[str]:
        self.known.append(key)
        return next((v for k, v in self.pairs if k == key), None)

    def duration_ms(self, key: str, default_ms: int) -> int:
        text = self.get(key)
        if text is None:
            return default_ms
        ms = parse_duration_ms(text)
        if ms is None:
            raise Err(f"policy.config.{key}: `{text}` is not a duration (examples: 250ms, 30s, 2m)")
        return ms

    def signal(self, key: str, default: Optional[Signal]) -> Optional[Signal]:
        text = self.get(key)
        if text is None:
            return default
        if ascii_upper(text) == "NONE":
            return None
        signal = signal_from_name(text)
        if signal is None:
            raise Err(f"policy.config.{key}: `{text}` is not a signal name (examples: TERM, USR1, none)")
        return signal

    def string(self, key: str, default: str) -> str:
        text = self.get(key)
        return default if text is None else text

    def finish(self) -> None:
        unknown = [k for k, _ in self.pairs if k not in self.known]
        if unknown:
            raise Err(
                f"policy.config: unknown key{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(unknown)} (known: {', '.join(self.known)})"
            )


def sent_at(s: Snapshot, signal: Signal) -> Optional[int]:
    """When `signal` was first sent during this drain (ms since it began)."""
    return next((sent.at_ms for sent in s.signals_sent if sent.signal == signal), None)


def budget_ms(s: Snapshot) -> int:
    """The total drain budget: time spent plus time left (saturating)."""
    return min(s.elapsed_ms + s.remaining_ms, U32_MAX)


def connections(s: Snapshot, name: str) -> Optional[Connections]:
    """The first probe called `name`, if it is a sampled `connections` probe."""
    probe = next((p for p in s.probes if p.name == name), None)
    if probe is not None and isinstance(probe.value, ProbeValue_Connections):
        return probe.value.value
    return None


def metrics(s: Snapshot, name: str) -> Optional[Metrics]:
    """The first probe called `name`, if it is a sampled `metrics` probe."""
    probe = next((p for p in s.probes if p.name == name), None)
    if probe is not None and isinstance(probe.value, ProbeValue_Metrics):
        return probe.value.value
    return None


def count_u32(value: float) -> int:
    """`value.max(0.0).ceil().min(u32::MAX as f64) as u32`, as Rust computes
    it: NaN and negatives are 0 (Rust's `f64::max` ignores a NaN; Python's
    `max` does not), anything past `u32::MAX` is `u32::MAX` (capped before
    `ceil`, which raises on infinity; the same, `u32::MAX` being whole)."""
    if math.isnan(value) or value < 0.0:
        return 0
    return math.ceil(min(value, float(U32_MAX)))


def recheck(ms: int, reason: str, ready: Optional[bool] = None, signal: Optional[Signal] = None) -> Decision:
    """Sample again and call `decide` after `ms` milliseconds."""
    return Decision(ready=ready, signal=signal, next=Next_Recheck(ms), reason=reason)


def wait_for_exit(reason: str, signal: Optional[Signal] = None) -> Decision:
    """Wait for the app to exit; `decide` is not called again."""
    return Decision(ready=None, signal=signal, next=Next_WaitForExit(), reason=reason)


class Drain:
    """Signals the app once traffic has moved away and work has drained."""

    def __init__(self, config: Config):
        self.probe = config.string("probe", "connections")
        in_flight_metric = config.string("in-flight-metric", "")
        self.in_flight_metric = in_flight_metric if in_flight_metric != "" else None
        self.long_lived_wait_ms = config.duration_ms("long-lived-wait", 3_000)
        self.quiet_ms = config.duration_ms("quiet", 150)
        self.quiet_max_ms = config.duration_ms("quiet-max", 5_000)
        self.min_drain_ms = config.duration_ms("min-drain", 5_000)
        self.reserve_ms = config.duration_ms("reserve", 5_000)
        self.recheck_ms = max(config.duration_ms("recheck", 100), 1)
        signal = config.signal("signal", Signal.TERM)
        self.signal = Signal.TERM if signal is None else signal
        self.kill_after_ms = config.duration_ms("kill-after", 10_000)
        if self.quiet_max_ms < self.quiet_ms:
            raise Err(
                f"policy.config.quiet-max ({self.quiet_max_ms} ms) is shorter than quiet ({self.quiet_ms} ms)"
            )

    def decide(self, s: Snapshot) -> Decision:
        at = sent_at(s, self.signal)
        if at is not None:
            return self.after_signal(s, max(s.elapsed_ms - at, 0))
        reserve = min(self.reserve_ms, budget_ms(s) // 3)
        if s.remaining_ms <= reserve:
            return self.stop(f"deadline near: {s.remaining_ms} ms left, {reserve} ms kept for the app to stop")
        # Never sleep past the moment the reserve begins.
        recheck_ms = min(self.recheck_ms, s.remaining_ms - reserve)
        c = connections(s, self.probe)
        if c is None:
            floor = self.min_drain_ms
            if s.elapsed_ms >= floor:
                return self.stop(
                    f"no traffic evidence (probe `{self.probe}` missing or failed); waited {floor} ms"
                )
            return recheck(min(recheck_ms, floor - s.elapsed_ms), f"no traffic evidence; waiting {floor} ms", ready=False)
        quiet, learned = self.quiet_period(c.silences)
        # Only silence during the drain is evidence that traffic moved away.
        since = c.since_last_request_ms
        silent = s.elapsed_ms if since is None else min(since, s.elapsed_ms)
        floor = 0 if learned else self.min_drain_ms
        in_flight, of_which = self.in_flight(s, c)
        # Long-lived connections are waited for a while once all is quiet.
        long_lived_quiet = min(quiet + self.long_lived_wait_ms, U32_MAX)
        # Look again when the wait could be over, and no later than `recheck`.
        if in_flight > 0:
            over_in = recheck_ms
            waiting = f"{in_flight} request(s) in flight{of_which}"
        elif silent < quiet:
            over_in = quiet - silent
            waiting = f"last request {silent} ms ago, waiting for {quiet} ms of quiet"
        elif s.elapsed_ms < floor:
            over_in = floor - s.elapsed_ms
            waiting = (
                f"quiet for {silent} ms, but too little learned to trust it: draining at least {floor} ms"
            )
        elif c.long_lived > 0 and silent < long_lived_quiet:
            over_in = long_lived_quiet - silent
            waiting = (
                f"quiet for {silent} ms; {c.long_lived} long-lived connection(s) "
                f"waited for up to {long_lived_quiet - silent} ms more"
            )
        else:
            long_lived = (
                "" if c.long_lived == 0 else f"; {c.long_lived} long-lived connection(s) left for the app to close"
            )
            return self.stop(
                f"no request for {silent} ms (quiet period {quiet} ms"
                f"{'' if learned else ', at least min-drain'}) and none in flight{long_lived}"
            )
        return recheck(min(recheck_ms, over_in), waiting, ready=False)

    def in_flight(self, s: Snapshot, c: Connections) -> Tuple[int, str]:
        """The requests in flight, and what they are made of, in words. With
        the app's own count, it stands in for what the sockets cannot tell
        (`unsure`); the larger of it and what they see wins."""
        seen = c.in_flight - min(c.unsure, c.in_flight)
        m = None if self.in_flight_metric is None else metrics(s, self.in_flight_metric)
        streaming = [f"{c.streaming} streaming"] if c.streaming > 0 else []
        if m is not None:
            count = count_u32(m.sum)
            parts = streaming + [f"the app counts {count}"]
            return max(seen, count), f" ({', '.join(parts)})"
        parts = streaming + ([f"{c.unsure} unsure"] if c.unsure > 0 else [])
        return c.in_flight, f" ({', '.join(parts)})" if parts else ""

    def quiet_period(self, silences: Silences) -> Tuple[int, bool]:
        """The quiet period, and whether it rests on enough learned silences:
        twice their 99th percentile, within bounds. With nothing learned at
        all, the shortest: `min-drain` stands in for the evidence then."""
        p99 = silences.p99_ms
        if p99 is None:
            return self.quiet_ms, False
        wanted = max(min(p99 * 2, U32_MAX), self.quiet_ms)
        learned = silences.count >= SILENCES_NEEDED and wanted <= self.quiet_max_ms
        return min(wanted, self.quiet_max_ms), learned

    def stop(self, reason: str) -> Decision:
        return recheck(max(self.kill_after_ms, 1), reason, ready=False, signal=self.signal)

    def after_signal(self, s: Snapshot, since: int) -> Decision:
        if sent_at(s, Signal.KILL) is not None:
            return wait_for_exit("killed; waiting for the app to exit")
        if since >= self.kill_after_ms:
            return wait_for_exit(f"app still running {since} ms after {self.signal.name}", signal=Signal.KILL)
        return recheck(
            self.kill_after_ms - since,
            f"signalled; waiting up to {self.kill_after_ms - since} ms for the app to exit",
        )


# The policy of this instance, set by `init`.
POLICY: Optional[Drain] = None


class WitWorld(wit_world.WitWorld):
    """The component's exports."""

    def init(self, config: List[Tuple[str, str]]) -> None:
        global POLICY
        reader = Config(config)
        policy = Drain(reader)
        reader.finish()
        POLICY = policy

    def on_signal(self, signal: Signal, snapshot: Snapshot) -> SignalAction:
        # `term` and `int` begin the drain; the rest are forwarded.
        if signal in (Signal.TERM, Signal.INT):
            return SignalAction_Drain()
        return SignalAction_Forward()

    def decide(self, snapshot: Snapshot) -> Decision:
        if POLICY is None:
            raise RuntimeError("`decide` called before `init`")
        return POLICY.decide(snapshot)
