// `drain` in JavaScript: the same policy as policies/drain/src/lib.rs.
//
// Readiness goes down at once. The app is signalled when the evidence says it
// is safe: no request has arrived on any connection for a quiet period (the
// sign that the endpoint is gone from every load balancer), and no request is
// awaiting its response; or when the deadline leaves just the time the app
// needs to stop. Idle keep-alive connections do not hold it (with the host's
// per-connection evidence, `sock-diag`; from `/proc/net/tcp` every open
// connection counts as in flight). If the app has not exited some time after
// the signal, it is killed.
//
// The quiet period is sized from the silences between requests learned while
// serving: twice their 99th percentile, within bounds. Until enough has been
// learned (a pod that served only seconds, traffic too sparse for a silence to
// mean anything) the drain also lasts at least `min-drain`, as a fixed
// `preStop: sleep` would: never less safe than the sleep it replaces.
//
// A request is in flight until its answer is done: answers that stream, and
// those the sockets cannot tell done (calls multiplexed on HTTP/2
// connections), hold the signal like any other. Where the app counts its own
// work in progress (a gauge on its metrics endpoint, read by a `metrics`
// probe named by `in-flight-metric`), that count stands in for what the
// sockets cannot tell, and the larger of it and what the sockets do see is in
// flight. Long-lived connections (WebSockets, event streams) never finish by
// themselves: they are waited for `long-lived-wait` after the rest is quiet,
// then the app is signalled, which closes them.
//
// Config (same keys, defaults and errors as the Rust policy):
// * `probe` -- the `connections` probe to read (default `connections`);
// * `in-flight-metric` -- a `metrics` probe counting the app's work in
//   progress (default none);
// * `long-lived-wait` -- how long long-lived connections are waited for once
//   the rest is quiet (default `3s`);
// * `quiet` -- the shortest quiet period (default `150ms`: longer than the
//   100 ms scheduler period a CPU-throttled balancer can stall for);
// * `quiet-max` -- the longest, whatever was learned (default `5s`);
// * `min-drain` -- the shortest drain until enough has been learned (default
//   `5s`);
// * `reserve` -- time left to the app after the signal (default `5s`, at most
//   a third of the drain budget);
// * `recheck` -- the longest it waits before it looks again (default `100ms`);
//   sooner when the quiet period or `min-drain` would end;
// * `signal` -- the stop signal (default `TERM`);
// * `kill-after` -- time from the signal to KILL (default `10s`).
//
// Built against `lameduck:policy@0.3.0` (`wit/policy.wit`). How the contract
// looks from JavaScript (ComponentizeJS): exports are the
// module's functions in camelCase; records are objects with camelCase fields;
// enums are their WIT names as strings (`"term"`); variants are
// `{ tag, val }`; an absent `option` is `undefined`; a `result` export returns
// its ok value and throws its error value (a string here). Numbers are `u32`,
// exact in a JS number; where Rust saturates, the code does too. An `f64` is
// a JS number, NaN and infinities included.

// ComponentizeJS decodes every string from the host with a default
// `TextDecoder`, which drops a leading U+FEFF as a byte order mark; Rust keeps
// it (and refuses `\u{feff}5s`). Put it back.
const decodeUtf8 = TextDecoder.prototype.decode;
TextDecoder.prototype.decode = function decode(input, options) {
  const text = decodeUtf8.call(this, input, options);
  const bom = input?.[0] === 0xef && input[1] === 0xbb && input[2] === 0xbf;
  return bom && this.encoding === 'utf-8' && !this.ignoreBOM ? `\ufeff${text}` : text;
};

const U32_MAX = 0xffffffff;

// Silences measured before the learned ones are trusted.
const SILENCES_NEEDED = 50;

// Every signal of the contract, in declaration order, by WIT name.
const SIGNALS = [
  'hup', 'int', 'quit', 'kill', 'usr1', 'usr2', 'pipe', 'alrm', 'term', 'cont', 'stop',
  'tstp', 'ttin', 'ttou', 'urg', 'xcpu', 'xfsz', 'vtalrm', 'prof', 'winch', 'io', 'pwr',
];

// The conventional name, without `SIG`: `TERM`, `USR1`.
const signalName = (signal) => signal.toUpperCase();

// The characters Rust's `str::trim` removes (Unicode White_Space); JS's
// `String.prototype.trim` removes a slightly different set.
const EDGE_SPACE =
  /^[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;
const trim = (text) => text.replace(EDGE_SPACE, '');

// Upper-cases ASCII letters only, like Rust's `to_ascii_uppercase`.
const asciiUpper = (text) => text.replace(/[a-z]+/g, (m) => m.toUpperCase());

const SCALES = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

// Parses `250ms`, `30s`, `1.5s`, `2m`, `1h` into milliseconds, or `undefined`.
function parseDurationMs(text) {
  text = trim(text);
  const split = text.search(/[^0-9.]/);
  if (split < 0) return undefined;
  const digits = text.slice(0, split);
  // `Number('')` is 0 and `Number('.')` NaN; Rust refuses both.
  const number = digits === '' ? NaN : Number(digits);
  const unit = trim(text.slice(split));
  if (Number.isNaN(number) || !Object.hasOwn(SCALES, unit)) return undefined;
  const scale = SCALES[unit];
  const ms = number * scale;
  if (!(Number.isFinite(ms) && ms <= U32_MAX)) return undefined;
  // `Math.round` rounds halves up: for a non-negative number that is Rust's
  // half away from zero.
  return Math.round(ms);
}

// Parses `TERM`, `SIGTERM` or `term`, or `undefined`.
function signalFromName(text) {
  const upper = asciiUpper(trim(text));
  const bare = upper.startsWith('SIG') ? upper.slice(3) : upper;
  return SIGNALS.find((s) => signalName(s) === bare);
}

// The `policy.config` map, read with typed getters. Any key no getter asked
// for is refused by `finish`, so a typo is an error, not a default.
class Config {
  constructor(pairs) {
    this.pairs = pairs;
    this.known = [];
  }

  get(key) {
    this.known.push(key);
    const pair = this.pairs.find(([k]) => k === key);
    return pair === undefined ? undefined : pair[1];
  }

  durationMs(key, defaultMs) {
    const text = this.get(key);
    if (text === undefined) return defaultMs;
    const ms = parseDurationMs(text);
    if (ms === undefined) {
      throw `policy.config.${key}: \`${text}\` is not a duration (examples: 250ms, 30s, 2m)`;
    }
    return ms;
  }

  signal(key, fallback) {
    const text = this.get(key);
    if (text === undefined) return fallback;
    if (asciiUpper(text) === 'NONE') return undefined;
    const signal = signalFromName(text);
    if (signal === undefined) {
      throw `policy.config.${key}: \`${text}\` is not a signal name (examples: TERM, USR1, none)`;
    }
    return signal;
  }

  string(key, fallback) {
    const text = this.get(key);
    return text === undefined ? fallback : text;
  }

  finish() {
    const unknown = this.pairs.map(([k]) => k).filter((k) => !this.known.includes(k));
    if (unknown.length > 0) {
      throw `policy.config: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (known: ${this.known.join(', ')})`;
    }
  }
}

// When `signal` was first sent during this drain (ms since it began), or
// `undefined`.
function sentAt(s, signal) {
  return s.signalsSent.find((sent) => sent.signal === signal)?.atMs;
}

// The total drain budget: time spent plus time left (saturating).
const budgetMs = (s) => Math.min(s.elapsedMs + s.remainingMs, U32_MAX);

// The first probe called `name`, if it is a sampled `connections` probe.
function connections(s, name) {
  const probe = s.probes.find((p) => p.name === name);
  return probe?.value.tag === 'connections' ? probe.value.val : undefined;
}

// The first probe called `name`, if it is a sampled `metrics` probe.
function metrics(s, name) {
  const probe = s.probes.find((p) => p.name === name);
  return probe?.value.tag === 'metrics' ? probe.value.val : undefined;
}

// `value.max(0.0).ceil().min(u32::MAX as f64) as u32`, as Rust computes it:
// NaN and negatives are 0 (Rust's `f64::max` ignores a NaN; `Math.max`
// returns it), anything past `u32::MAX` is `u32::MAX`.
function countU32(value) {
  if (Number.isNaN(value) || value < 0) return 0;
  // `+ 0` turns a -0 into 0.
  return Math.min(Math.ceil(value), U32_MAX) + 0;
}

// Sample again and call `decide` after `ms` milliseconds.
const recheck = (ms, reason, { ready, signal } = {}) => ({
  ready,
  signal,
  next: { tag: 'recheck', val: ms },
  reason,
});

// Wait for the app to exit; `decide` is not called again.
const waitForExit = (reason, { signal } = {}) => ({
  ready: undefined,
  signal,
  next: { tag: 'wait-for-exit' },
  reason,
});

// Signals the app once traffic has moved away and work has drained.
class Drain {
  constructor(config) {
    this.probe = config.string('probe', 'connections');
    this.inFlightMetric = config.string('in-flight-metric', '') || undefined;
    this.longLivedWaitMs = config.durationMs('long-lived-wait', 3_000);
    this.quietMs = config.durationMs('quiet', 150);
    this.quietMaxMs = config.durationMs('quiet-max', 5_000);
    this.minDrainMs = config.durationMs('min-drain', 5_000);
    this.reserveMs = config.durationMs('reserve', 5_000);
    this.recheckMs = Math.max(config.durationMs('recheck', 100), 1);
    this.signal = config.signal('signal', 'term') ?? 'term';
    this.killAfterMs = config.durationMs('kill-after', 10_000);
    if (this.quietMaxMs < this.quietMs) {
      throw `policy.config.quiet-max (${this.quietMaxMs} ms) is shorter than quiet (${this.quietMs} ms)`;
    }
  }

  decide(s) {
    const at = sentAt(s, this.signal);
    if (at !== undefined) return this.afterSignal(s, Math.max(s.elapsedMs - at, 0));
    const reserve = Math.min(this.reserveMs, Math.floor(budgetMs(s) / 3));
    if (s.remainingMs <= reserve) {
      return this.stop(`deadline near: ${s.remainingMs} ms left, ${reserve} ms kept for the app to stop`);
    }
    // Never sleep past the moment the reserve begins.
    const recheckMs = Math.min(this.recheckMs, s.remainingMs - reserve);
    const c = connections(s, this.probe);
    if (c === undefined) {
      const floor = this.minDrainMs;
      if (s.elapsedMs >= floor) {
        return this.stop(`no traffic evidence (probe \`${this.probe}\` missing or failed); waited ${floor} ms`);
      }
      return recheck(Math.min(recheckMs, floor - s.elapsedMs), `no traffic evidence; waiting ${floor} ms`, {
        ready: false,
      });
    }
    const [quiet, learned] = this.quietPeriod(c.silences);
    // Only silence during the drain is evidence that traffic moved away.
    const silent = c.sinceLastRequestMs === undefined ? s.elapsedMs : Math.min(c.sinceLastRequestMs, s.elapsedMs);
    const floor = learned ? 0 : this.minDrainMs;
    const [inFlight, ofWhich] = this.inFlight(s, c);
    // Long-lived connections are waited for a while once all is quiet.
    const longLivedQuiet = Math.min(quiet + this.longLivedWaitMs, U32_MAX);
    // Look again when the wait could be over, and no later than `recheck`.
    let overIn, waiting;
    if (inFlight > 0) {
      overIn = recheckMs;
      waiting = `${inFlight} request(s) in flight${ofWhich}`;
    } else if (silent < quiet) {
      overIn = quiet - silent;
      waiting = `last request ${silent} ms ago, waiting for ${quiet} ms of quiet`;
    } else if (s.elapsedMs < floor) {
      overIn = floor - s.elapsedMs;
      waiting = `quiet for ${silent} ms, but too little learned to trust it: draining at least ${floor} ms`;
    } else if (c.longLived > 0 && silent < longLivedQuiet) {
      overIn = longLivedQuiet - silent;
      waiting = `quiet for ${silent} ms; ${c.longLived} long-lived connection(s) waited for up to ${overIn} ms more`;
    } else {
      const floorNote = learned ? '' : ', at least min-drain';
      const longLived = c.longLived === 0 ? '' : `; ${c.longLived} long-lived connection(s) left for the app to close`;
      return this.stop(
        `no request for ${silent} ms (quiet period ${quiet} ms${floorNote}) and none in flight${longLived}`,
      );
    }
    return recheck(Math.min(recheckMs, overIn), waiting, { ready: false });
  }

  // The requests in flight, and what they are made of, in words. With the
  // app's own count, it stands in for what the sockets cannot tell
  // (`unsure`); the larger of it and what they see wins.
  inFlight(s, c) {
    const seen = c.inFlight - Math.min(c.unsure, c.inFlight);
    const m = this.inFlightMetric === undefined ? undefined : metrics(s, this.inFlightMetric);
    const streaming = c.streaming > 0 ? [`${c.streaming} streaming`] : [];
    if (m !== undefined) {
      const count = countU32(m.sum);
      const parts = [...streaming, `the app counts ${count}`];
      return [Math.max(seen, count), ` (${parts.join(', ')})`];
    }
    const parts = [...streaming, ...(c.unsure > 0 ? [`${c.unsure} unsure`] : [])];
    return [c.inFlight, parts.length > 0 ? ` (${parts.join(', ')})` : ''];
  }

  // The quiet period, and whether it rests on enough learned silences: twice
  // their 99th percentile, within bounds. With nothing learned at all, the
  // shortest: `min-drain` stands in for the evidence then.
  quietPeriod(silences) {
    const p99 = silences.p99Ms;
    if (p99 === undefined) return [this.quietMs, false];
    const wanted = Math.max(Math.min(p99 * 2, U32_MAX), this.quietMs);
    const learned = silences.count >= SILENCES_NEEDED && wanted <= this.quietMaxMs;
    return [Math.min(wanted, this.quietMaxMs), learned];
  }

  stop(reason) {
    return recheck(Math.max(this.killAfterMs, 1), reason, { ready: false, signal: this.signal });
  }

  afterSignal(s, since) {
    if (sentAt(s, 'kill') !== undefined) {
      return waitForExit('killed; waiting for the app to exit');
    }
    if (since >= this.killAfterMs) {
      return waitForExit(`app still running ${since} ms after ${signalName(this.signal)}`, { signal: 'kill' });
    }
    return recheck(
      this.killAfterMs - since,
      `signalled; waiting up to ${this.killAfterMs - since} ms for the app to exit`,
    );
  }
}

// The policy of this instance, set by `init`.
let policy;

// `init`: an error is thrown as a string, which becomes `err(string)`.
export function init(pairs) {
  const config = new Config(pairs);
  const drain = new Drain(config);
  config.finish();
  policy = drain;
}

// `term` and `int` begin the drain; the rest are forwarded.
export function onSignal(signal, _snapshot) {
  return signal === 'term' || signal === 'int' ? { tag: 'drain' } : { tag: 'forward' };
}

export function decide(snapshot) {
  if (policy === undefined) throw new Error('`decide` called before `init`');
  return policy.decide(snapshot);
}
