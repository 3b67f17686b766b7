// `drain` in JavaScript: the same policy as policies/drain/src/lib.rs.
//
// Readiness goes down at once. The app is signalled when the evidence says it
// is safe: no new connection on its ports for a quiet period and no connection
// in flight, or when the deadline leaves just the time the app needs to stop.
// If it has not exited some time after the signal, it is killed.
//
// Config (same keys, defaults and errors as the Rust policy):
// * `probe` -- the `connections` probe to read (default `connections`);
// * `quiet` -- the shortest quiet period (default `1s`);
// * `quiet-max` -- the longest, whatever was learned (default `5s`);
// * `reserve` -- time left to the app after the signal (default `5s`, at most
//   a third of the drain budget);
// * `recheck` -- how often to look again while waiting (default `100ms`);
// * `signal` -- the stop signal (default `TERM`);
// * `kill-after` -- time from the signal to KILL (default `10s`).
//
// How the contract looks from JavaScript (ComponentizeJS): exports are the
// module's functions in camelCase; records are objects with camelCase fields;
// enums are their WIT names as strings (`"term"`); variants are
// `{ tag, val }`; an absent `option` is `undefined`; a `result` export returns
// its ok value and throws its error value (a string here). Numbers are `u32`,
// exact in a JS number; where Rust saturates, the code does too.

const U32_MAX = 0xffffffff;

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

// When `signal` was first sent during this drain, or `undefined`.
function sentAt(s, signal) {
  return s.signalsSent.find((sent) => sent.signal === signal)?.atMs;
}

// The first probe called `name`, if it is a sampled `connections` probe.
function connections(s, name) {
  const probe = s.probes.find((p) => p.name === name);
  return probe?.value.tag === 'connections' ? probe.value.val : undefined;
}

const recheck = (ms) => ({ tag: 'recheck', val: ms });
const waitForExit = { tag: 'wait-for-exit' };

// Readiness down, look again in `ms`.
const waiting = (ms, reason) => ({ ready: false, signal: undefined, next: recheck(ms), reason });

// Signals the app once traffic has moved away and work has drained.
class Drain {
  constructor(config) {
    this.probe = config.string('probe', 'connections');
    this.quietMs = config.durationMs('quiet', 1_000);
    this.quietMaxMs = config.durationMs('quiet-max', 5_000);
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
    const budget = Math.min(s.elapsedMs + s.remainingMs, U32_MAX);
    const reserve = Math.min(this.reserveMs, Math.floor(budget / 3));
    if (s.remainingMs <= reserve) {
      return this.stop(`deadline near: ${s.remainingMs} ms left, ${reserve} ms kept for the app to stop`);
    }
    // Never sleep past the moment the reserve begins.
    const every = Math.min(this.recheckMs, s.remainingMs - reserve);
    const c = connections(s, this.probe);
    if (c === undefined) {
      const quiet = this.quietMaxMs;
      if (s.elapsedMs >= quiet) {
        return this.stop(`no connection evidence (probe \`${this.probe}\` missing or failed); waited ${quiet} ms`);
      }
      return waiting(every, `no connection evidence; waiting ${quiet} ms`);
    }
    const quiet = this.quietPeriod(c);
    const silent = c.sinceLastAcceptMs === undefined ? s.elapsedMs : Math.min(c.sinceLastAcceptMs, s.elapsedMs);
    const n = c.established;
    if (silent >= quiet && n === 0) {
      return this.stop(`no new connection for ${silent} ms (quiet period ${quiet} ms) and none in flight`);
    }
    if (silent >= quiet) return waiting(every, `${n} connection(s) in flight`);
    return waiting(every, `last new connection ${silent} ms ago, waiting for ${quiet} ms of quiet; ${n} in flight`);
  }

  // A learned long gap, with half again as margin, within bounds.
  quietPeriod(c) {
    const gap = c.typicalGapMs;
    const learned = gap === undefined ? this.quietMs : Math.min(gap + Math.floor(gap / 2), U32_MAX);
    return Math.min(Math.max(learned, this.quietMs), this.quietMaxMs);
  }

  stop(reason) {
    return { ready: false, signal: this.signal, next: recheck(Math.max(this.killAfterMs, 1)), reason };
  }

  afterSignal(s, since) {
    if (sentAt(s, 'kill') !== undefined) {
      return { ready: undefined, signal: undefined, next: waitForExit, reason: 'killed; waiting for the app to exit' };
    }
    if (since >= this.killAfterMs) {
      return {
        ready: undefined,
        signal: 'kill',
        next: waitForExit,
        reason: `app still running ${since} ms after ${signalName(this.signal)}`,
      };
    }
    const left = this.killAfterMs - since;
    return {
      ready: undefined,
      signal: undefined,
      next: recheck(left),
      reason: `signalled; waiting up to ${left} ms for the app to exit`,
    };
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
