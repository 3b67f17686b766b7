// `drain` in C: the same policy as policies/drain/src/lib.rs.
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
// Built against `lameduck:policy@0.3.0` (`wit/policy.wit`). Numbers are
// `uint32_t`, as in Rust; where Rust saturates, the code does too.
//
// Memory, as wit-bindgen's C bindings define it: an export owns its arguments
// and frees them; the strings it returns are freed by the bindings after the
// call (`cabi_post_*`), so they are always heap copies, never literals.

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drain_policy.h"

typedef drain_policy_string_t string_t;
typedef lameduck_policy_types_signal_t signal_t;
typedef lameduck_policy_types_snapshot_t snapshot_t;
typedef lameduck_policy_types_decision_t decision_t;
typedef lameduck_policy_types_connections_t connections_t;
typedef lameduck_policy_types_metrics_t metrics_t;
typedef lameduck_policy_types_probe_value_t probe_value_t;
typedef lameduck_policy_types_silences_t silences_t;

// The conventional names, without `SIG`, in the contract's order.
static const char *const SIGNAL_NAMES[] = {
    "HUP",  "INT",  "QUIT", "KILL", "USR1", "USR2", "PIPE", "ALRM",
    "TERM", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",  "XCPU",
    "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR",
};
#define SIGNAL_COUNT (sizeof SIGNAL_NAMES / sizeof SIGNAL_NAMES[0])

// ---------------------------------------------------------------------------
// Small helpers

// Text built piece by piece on the heap, to become a component string (which
// the bindings free). Strings from the host are copied byte for byte: they
// may hold NULs, where `%.*s` would stop.
typedef struct {
  char *ptr;
  size_t len, cap;
} text_t;

// Makes room for `more` bytes and a NUL.
static void reserve(text_t *t, size_t more) {
  if (t->len + more + 1 <= t->cap) return;
  t->cap = (t->len + more + 1) * 2;
  t->ptr = realloc(t->ptr, t->cap);
  if (t->ptr == NULL) abort();
}

static void put_string(text_t *t, string_t s) {
  reserve(t, s.len);
  memcpy(t->ptr + t->len, s.ptr, s.len);
  t->len += s.len;
}

static void vputf(text_t *t, const char *fmt, va_list args) {
  va_list again;
  va_copy(again, args);
  int len = vsnprintf(NULL, 0, fmt, args);
  reserve(t, (size_t)len);
  vsnprintf(t->ptr + t->len, (size_t)len + 1, fmt, again);
  va_end(again);
  t->len += (size_t)len;
}

static void putf(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(text_t *t, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vputf(t, fmt, args);
  va_end(args);
}

static string_t done(text_t *t) { return (string_t){(uint8_t *)t->ptr, t->len}; }

// A formatted component string.
static string_t format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static string_t format(const char *fmt, ...) {
  text_t t = {0};
  va_list args;
  va_start(args, fmt);
  vputf(&t, fmt, args);
  va_end(args);
  return done(&t);
}

static bool string_is(const string_t *s, const char *text) {
  size_t len = strlen(text);
  return s->len == len && memcmp(s->ptr, text, len) == 0;
}

static uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }
static uint32_t max_u32(uint32_t a, uint32_t b) { return a > b ? a : b; }
static uint32_t add_u32(uint32_t a, uint32_t b) { return a > UINT32_MAX - b ? UINT32_MAX : a + b; }  // saturating

// Whether the UTF-8 sequence at `p` (of at most `n` bytes, `n` > 0) is a
// Unicode White_Space character, the set Rust's `str::trim` removes; its
// length goes to `*len`.
static bool white_space_at(const uint8_t *p, size_t n, size_t *len) {
  uint32_t c;
  if (p[0] < 0x80) {
    *len = 1;
    c = p[0];
  } else if ((p[0] & 0xe0) == 0xc0 && n >= 2) {
    *len = 2;
    c = (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
  } else if ((p[0] & 0xf0) == 0xe0 && n >= 3) {
    *len = 3;
    c = (uint32_t)(p[0] & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
  } else {
    return false;  // four-byte characters are never white space
  }
  return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
         c == 0x202f || c == 0x205f || c == 0x3000;
}

// `text` without leading and trailing white space, as Rust's `str::trim`.
static string_t trim(string_t text) {
  size_t len;
  while (text.len > 0 && white_space_at(text.ptr, text.len, &len)) {
    text.ptr += len;
    text.len -= len;
  }
  while (text.len > 0) {
    // Step back to the start of the last character.
    size_t start = text.len - 1;
    while (start > 0 && (text.ptr[start] & 0xc0) == 0x80) start--;
    if (!white_space_at(text.ptr + start, text.len - start, &len) || start + len != text.len) break;
    text.len = start;
  }
  return text;
}

// Whether `text`, upper-cased in ASCII only (as Rust's `to_ascii_uppercase`),
// equals `upper`.
static bool equals_ignore_ascii_case(string_t text, const char *upper) {
  size_t len = strlen(upper);
  if (text.len != len) return false;
  for (size_t i = 0; i < len; i++) {
    uint8_t c = text.ptr[i];
    if (c >= 'a' && c <= 'z') c -= 'a' - 'A';
    if (c != (uint8_t)upper[i]) return false;
  }
  return true;
}

// Parses `250ms`, `30s`, `1.5s`, `2m`, `1h` into milliseconds.
static bool parse_duration_ms(string_t text, uint32_t *ms_out) {
  text = trim(text);
  size_t split = 0;
  while (split < text.len && ((text.ptr[split] >= '0' && text.ptr[split] <= '9') || text.ptr[split] == '.'))
    split++;
  if (split == text.len) return false;  // no unit
  if (split == 0) return false;  // no number
  // Only digits and dots: `strtod` must take all of them (Rust refuses `.`
  // and `1.2.3`), and it rounds correctly, as Rust does.
  char *digits = malloc(split + 1);
  if (digits == NULL) abort();
  memcpy(digits, text.ptr, split);
  digits[split] = '\0';
  char *end;
  double number = strtod(digits, &end);
  bool whole = end == digits + split;
  free(digits);
  if (!whole) return false;
  string_t unit = trim((string_t){text.ptr + split, text.len - split});
  double scale;
  if (string_is(&unit, "ms")) scale = 1.0;
  else if (string_is(&unit, "s")) scale = 1000.0;
  else if (string_is(&unit, "m")) scale = 60000.0;
  else if (string_is(&unit, "h")) scale = 3600000.0;
  else return false;
  double ms = number * scale;
  if (!(isfinite(ms) && ms <= (double)UINT32_MAX)) return false;
  *ms_out = (uint32_t)round(ms);  // half away from zero, as Rust's `round`
  return true;
}

// Parses `TERM`, `SIGTERM` or `term`.
static bool signal_from_name(string_t text, signal_t *out) {
  text = trim(text);
  if (text.len >= 3 && equals_ignore_ascii_case((string_t){text.ptr, 3}, "SIG")) {
    text.ptr += 3;
    text.len -= 3;
  }
  for (size_t i = 0; i < SIGNAL_COUNT; i++) {
    if (equals_ignore_ascii_case(text, SIGNAL_NAMES[i])) {
      *out = (signal_t)i;
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------
// The `policy.config` map, read with typed getters. Any key no getter asked
// for is refused by `config_finish`, so a typo is an error, not a default.

#define MAX_KNOWN 16

typedef struct {
  const drain_policy_list_tuple2_string_string_t *pairs;
  const char *known[MAX_KNOWN];
  size_t known_len;
} config_t;

// The raw value of `key`, if set; records `key` as known.
static const string_t *config_get(config_t *config, const char *key) {
  if (config->known_len < MAX_KNOWN) config->known[config->known_len++] = key;
  for (size_t i = 0; i < config->pairs->len; i++) {
    if (string_is(&config->pairs->ptr[i].f0, key)) return &config->pairs->ptr[i].f1;
  }
  return NULL;
}

static bool config_duration_ms(config_t *config, const char *key, uint32_t default_ms, uint32_t *out,
                               string_t *err) {
  const string_t *text = config_get(config, key);
  if (text == NULL) {
    *out = default_ms;
    return true;
  }
  if (parse_duration_ms(*text, out)) return true;
  text_t t = {0};
  putf(&t, "policy.config.%s: `", key);
  put_string(&t, *text);
  putf(&t, "` is not a duration (examples: 250ms, 30s, 2m)");
  *err = done(&t);
  return false;
}

// A signal name such as `TERM`, `SIGUSR1` or `usr1`; `none` clears `*is_some`.
static bool config_signal(config_t *config, const char *key, signal_t fallback, bool *is_some, signal_t *out,
                          string_t *err) {
  const string_t *text = config_get(config, key);
  *is_some = true;
  if (text == NULL) {
    *out = fallback;
    return true;
  }
  if (equals_ignore_ascii_case(*text, "NONE")) {
    *is_some = false;
    return true;
  }
  if (signal_from_name(*text, out)) return true;
  text_t t = {0};
  putf(&t, "policy.config.%s: `", key);
  put_string(&t, *text);
  putf(&t, "` is not a signal name (examples: TERM, USR1, none)");
  *err = done(&t);
  return false;
}

static bool config_known(const config_t *config, const string_t *key) {
  for (size_t k = 0; k < config->known_len; k++) {
    if (string_is(key, config->known[k])) return true;
  }
  return false;
}

static bool config_finish(const config_t *config, string_t *err) {
  size_t unknown = 0;
  for (size_t i = 0; i < config->pairs->len; i++) unknown += !config_known(config, &config->pairs->ptr[i].f0);
  if (unknown == 0) return true;
  text_t t = {0};
  putf(&t, "policy.config: unknown key%s ", unknown > 1 ? "s" : "");
  const char *sep = "";
  for (size_t i = 0; i < config->pairs->len; i++) {
    if (config_known(config, &config->pairs->ptr[i].f0)) continue;
    putf(&t, "%s", sep);
    put_string(&t, config->pairs->ptr[i].f0);
    sep = ", ";
  }
  putf(&t, " (known: ");
  for (size_t k = 0; k < config->known_len; k++) putf(&t, "%s%s", k > 0 ? ", " : "", config->known[k]);
  putf(&t, ")");
  *err = done(&t);
  return false;
}

// ---------------------------------------------------------------------------
// Look-ups into a snapshot, and decisions that read like the Rust SDK's.

// When `signal` was first sent during this drain (ms since it began).
static bool sent_at(const snapshot_t *s, signal_t signal, uint32_t *at) {
  for (size_t i = 0; i < s->signals_sent.len; i++) {
    if (s->signals_sent.ptr[i].signal == signal) {
      *at = s->signals_sent.ptr[i].at_ms;
      return true;
    }
  }
  return false;
}

// The total drain budget: time spent plus time left (saturating).
static uint32_t budget_ms(const snapshot_t *s) {
  uint64_t sum = (uint64_t)s->elapsed_ms + s->remaining_ms;
  return sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
}

// The value of the first probe called `name`, if there is one.
static const probe_value_t *probe(const snapshot_t *s, const string_t *name) {
  for (size_t i = 0; i < s->probes.len; i++) {
    const lameduck_policy_types_probe_t *p = &s->probes.ptr[i];
    if (p->name.len == name->len && memcmp(p->name.ptr, name->ptr, name->len) == 0) return &p->value;
  }
  return NULL;
}

// The first probe called `name`, if it is a sampled `connections` probe.
static const connections_t *connections(const snapshot_t *s, const string_t *name) {
  const probe_value_t *v = probe(s, name);
  return v != NULL && v->tag == LAMEDUCK_POLICY_TYPES_PROBE_VALUE_CONNECTIONS ? &v->val.connections : NULL;
}

// The first probe called `name`, if it is a sampled `metrics` probe.
static const metrics_t *metrics(const snapshot_t *s, const string_t *name) {
  const probe_value_t *v = probe(s, name);
  return v != NULL && v->tag == LAMEDUCK_POLICY_TYPES_PROBE_VALUE_METRICS ? &v->val.metrics : NULL;
}

// `value.max(0.0).ceil().min(u32::MAX as f64) as u32`, as Rust computes it:
// NaN and negatives are 0 (Rust's `f64::max` ignores a NaN), anything past
// `u32::MAX` is `u32::MAX` (a C cast of it would be undefined).
static uint32_t count_u32(double value) {
  if (isnan(value) || value < 0.0) return 0;
  double up = ceil(value);
  return up >= (double)UINT32_MAX ? UINT32_MAX : (uint32_t)up;
}

// Sample again and call `decide` after `ms` milliseconds.
static decision_t recheck(uint32_t ms, string_t reason) {
  decision_t d = {.next = {.tag = LAMEDUCK_POLICY_TYPES_NEXT_RECHECK, .val.recheck = ms}, .reason = reason};
  return d;
}

// Wait for the app to exit; `decide` is not called again.
static decision_t wait_for_exit(string_t reason) {
  decision_t d = {.next = {.tag = LAMEDUCK_POLICY_TYPES_NEXT_WAIT_FOR_EXIT}, .reason = reason};
  return d;
}

// Also set the readiness flag.
static decision_t with_ready(decision_t d, bool ready) {
  d.ready = (drain_policy_option_bool_t){true, ready};
  return d;
}

// Also send the app a signal.
static decision_t with_signal(decision_t d, signal_t signal) {
  d.signal = (lameduck_policy_types_option_signal_t){true, signal};
  return d;
}

// ---------------------------------------------------------------------------
// The policy

// Silences measured before the learned ones are trusted.
#define SILENCES_NEEDED 50

// Signals the app once traffic has moved away and work has drained.
typedef struct {
  string_t probe;  // owned copy
  bool has_in_flight_metric;
  string_t in_flight_metric;  // owned copy, if `has_in_flight_metric`
  uint32_t long_lived_wait_ms;
  uint32_t quiet_ms, quiet_max_ms, min_drain_ms, reserve_ms, recheck_ms;
  signal_t signal;
  uint32_t kill_after_ms;
} drain_t;

// The policy of this instance, set by `init`.
static drain_t POLICY;
static bool INITIALISED = false;

// Declared ahead, so that the definitions below follow the Rust source's order.
static bool quiet_period(const drain_t *d, const silences_t *silences, uint32_t *quiet);
static decision_t stop(const drain_t *d, string_t reason);
static decision_t after_signal(const drain_t *d, const snapshot_t *s, uint32_t since);
static uint32_t in_flight(const drain_t *d, const snapshot_t *s, const connections_t *c, text_t *of_which);

// Frees what `drain_init` copied.
static void drain_free(drain_t *d) {
  drain_policy_string_free(&d->probe);
  if (d->has_in_flight_metric) drain_policy_string_free(&d->in_flight_metric);
}

static bool drain_init(config_t *config, drain_t *d, string_t *err) {
  const string_t *probe = config_get(config, "probe");
  if (probe != NULL) drain_policy_string_dup_n(&d->probe, (const char *)probe->ptr, probe->len);
  else drain_policy_string_dup(&d->probe, "connections");
  // An empty name is none.
  const string_t *metric = config_get(config, "in-flight-metric");
  d->has_in_flight_metric = metric != NULL && metric->len > 0;
  if (d->has_in_flight_metric)
    drain_policy_string_dup_n(&d->in_flight_metric, (const char *)metric->ptr, metric->len);
  bool has_signal;
  if (!config_duration_ms(config, "long-lived-wait", 3000, &d->long_lived_wait_ms, err) ||
      !config_duration_ms(config, "quiet", 150, &d->quiet_ms, err) ||
      !config_duration_ms(config, "quiet-max", 5000, &d->quiet_max_ms, err) ||
      !config_duration_ms(config, "min-drain", 5000, &d->min_drain_ms, err) ||
      !config_duration_ms(config, "reserve", 5000, &d->reserve_ms, err) ||
      !config_duration_ms(config, "recheck", 100, &d->recheck_ms, err) ||
      !config_signal(config, "signal", LAMEDUCK_POLICY_TYPES_SIGNAL_TERM, &has_signal, &d->signal, err) ||
      !config_duration_ms(config, "kill-after", 10000, &d->kill_after_ms, err)) {
    drain_free(d);
    return false;
  }
  d->recheck_ms = max_u32(d->recheck_ms, 1);
  if (!has_signal) d->signal = LAMEDUCK_POLICY_TYPES_SIGNAL_TERM;
  if (d->quiet_max_ms < d->quiet_ms) {
    *err = format("policy.config.quiet-max (%u ms) is shorter than quiet (%u ms)", d->quiet_max_ms, d->quiet_ms);
    drain_free(d);
    return false;
  }
  return true;
}

static decision_t drain_decide(const drain_t *d, const snapshot_t *s) {
  uint32_t at;
  if (sent_at(s, d->signal, &at)) return after_signal(d, s, s->elapsed_ms > at ? s->elapsed_ms - at : 0);
  uint32_t reserve = min_u32(d->reserve_ms, budget_ms(s) / 3);
  if (s->remaining_ms <= reserve) {
    return stop(d, format("deadline near: %u ms left, %u ms kept for the app to stop", s->remaining_ms, reserve));
  }
  // Never sleep past the moment the reserve begins.
  uint32_t recheck_ms = min_u32(d->recheck_ms, s->remaining_ms - reserve);
  const connections_t *c = connections(s, &d->probe);
  if (c == NULL) {
    uint32_t floor = d->min_drain_ms;
    if (s->elapsed_ms >= floor) {
      text_t t = {0};
      putf(&t, "no traffic evidence (probe `");
      put_string(&t, d->probe);
      putf(&t, "` missing or failed); waited %u ms", floor);
      return stop(d, done(&t));
    }
    return with_ready(
        recheck(min_u32(recheck_ms, floor - s->elapsed_ms), format("no traffic evidence; waiting %u ms", floor)),
        false);
  }
  uint32_t quiet;
  bool learned = quiet_period(d, &c->silences, &quiet);
  // Only silence during the drain is evidence that traffic moved away.
  uint32_t silent = c->since_last_request_ms.is_some ? min_u32(c->since_last_request_ms.val, s->elapsed_ms)
                                                     : s->elapsed_ms;
  uint32_t floor = learned ? 0 : d->min_drain_ms;
  text_t of_which = {0};
  uint32_t flying = in_flight(d, s, c, &of_which);
  // Long-lived connections are waited for a while once all is quiet.
  uint32_t long_lived_quiet = add_u32(quiet, d->long_lived_wait_ms);
  // Look again when the wait could be over, and no later than `recheck`.
  uint32_t over_in;
  string_t waiting;
  if (flying > 0) {
    over_in = recheck_ms;
    waiting = format("%u request(s) in flight%s", flying, of_which.len > 0 ? of_which.ptr : "");
  } else if (silent < quiet) {
    over_in = quiet - silent;
    waiting = format("last request %u ms ago, waiting for %u ms of quiet", silent, quiet);
  } else if (s->elapsed_ms < floor) {
    over_in = floor - s->elapsed_ms;
    waiting = format("quiet for %u ms, but too little learned to trust it: draining at least %u ms", silent, floor);
  } else if (c->long_lived > 0 && silent < long_lived_quiet) {
    over_in = long_lived_quiet - silent;
    waiting = format("quiet for %u ms; %u long-lived connection(s) waited for up to %u ms more", silent,
                     c->long_lived, over_in);
  } else {
    free(of_which.ptr);
    text_t t = {0};
    putf(&t, "no request for %u ms (quiet period %u ms%s) and none in flight", silent, quiet,
         learned ? "" : ", at least min-drain");
    if (c->long_lived > 0) putf(&t, "; %u long-lived connection(s) left for the app to close", c->long_lived);
    return stop(d, done(&t));
  }
  free(of_which.ptr);
  return with_ready(recheck(min_u32(recheck_ms, over_in), waiting), false);
}

// The requests in flight, and what they are made of, in words (appended to
// `*of_which`). With the app's own count, it stands in for what the sockets
// cannot tell (`unsure`); the larger of it and what they see wins.
static uint32_t in_flight(const drain_t *d, const snapshot_t *s, const connections_t *c, text_t *of_which) {
  uint32_t seen = c->in_flight - min_u32(c->unsure, c->in_flight);
  const metrics_t *m = d->has_in_flight_metric ? metrics(s, &d->in_flight_metric) : NULL;
  if (m != NULL) {
    uint32_t count = count_u32(m->sum);
    putf(of_which, " (");
    if (c->streaming > 0) putf(of_which, "%u streaming, ", c->streaming);
    putf(of_which, "the app counts %u)", count);
    return max_u32(seen, count);
  }
  if (c->streaming > 0 && c->unsure > 0) putf(of_which, " (%u streaming, %u unsure)", c->streaming, c->unsure);
  else if (c->streaming > 0) putf(of_which, " (%u streaming)", c->streaming);
  else if (c->unsure > 0) putf(of_which, " (%u unsure)", c->unsure);
  return c->in_flight;
}

// The quiet period (into `*quiet`), and whether it rests on enough learned
// silences: twice their 99th percentile, within bounds. With nothing learned
// at all, the shortest: `min-drain` stands in for the evidence then.
static bool quiet_period(const drain_t *d, const silences_t *silences, uint32_t *quiet) {
  if (!silences->p99_ms.is_some) {
    *quiet = d->quiet_ms;
    return false;
  }
  uint32_t p99 = silences->p99_ms.val;
  uint32_t doubled = p99 > UINT32_MAX / 2 ? UINT32_MAX : p99 * 2;  // saturating
  uint32_t wanted = max_u32(doubled, d->quiet_ms);
  *quiet = min_u32(wanted, d->quiet_max_ms);
  return silences->count >= SILENCES_NEEDED && wanted <= d->quiet_max_ms;
}

static decision_t stop(const drain_t *d, string_t reason) {
  return with_signal(with_ready(recheck(max_u32(d->kill_after_ms, 1), reason), false), d->signal);
}

static decision_t after_signal(const drain_t *d, const snapshot_t *s, uint32_t since) {
  uint32_t at;
  if (sent_at(s, LAMEDUCK_POLICY_TYPES_SIGNAL_KILL, &at)) {
    return wait_for_exit(format("killed; waiting for the app to exit"));
  }
  if (since >= d->kill_after_ms) {
    return with_signal(wait_for_exit(format("app still running %u ms after %s", since, SIGNAL_NAMES[d->signal])),
                       LAMEDUCK_POLICY_TYPES_SIGNAL_KILL);
  }
  return recheck(d->kill_after_ms - since,
                 format("signalled; waiting up to %u ms for the app to exit", d->kill_after_ms - since));
}

// ---------------------------------------------------------------------------
// The exports

bool exports_drain_policy_init(drain_policy_list_tuple2_string_string_t *pairs, string_t *err) {
  config_t config = {.pairs = pairs, .known_len = 0};
  drain_t drain;
  bool ok = drain_init(&config, &drain, err);
  if (ok && !config_finish(&config, err)) {
    drain_free(&drain);
    ok = false;
  }
  if (ok) {
    if (INITIALISED) drain_free(&POLICY);
    POLICY = drain;
    INITIALISED = true;
  }
  drain_policy_list_tuple2_string_string_free(pairs);
  return ok;
}

// `term` and `int` begin the drain; the rest are forwarded.
void exports_drain_policy_on_signal(drain_policy_signal_t signal, drain_policy_snapshot_t *snapshot,
                                    drain_policy_signal_action_t *ret) {
  bool drain = signal == LAMEDUCK_POLICY_TYPES_SIGNAL_TERM || signal == LAMEDUCK_POLICY_TYPES_SIGNAL_INT;
  ret->tag = drain ? LAMEDUCK_POLICY_TYPES_SIGNAL_ACTION_DRAIN : LAMEDUCK_POLICY_TYPES_SIGNAL_ACTION_FORWARD;
  drain_policy_snapshot_free(snapshot);
}

void exports_drain_policy_decide(drain_policy_snapshot_t *snapshot, drain_policy_decision_t *ret) {
  if (!INITIALISED) abort();  // `decide` called before `init`: a trap, as in Rust
  *ret = drain_decide(&POLICY, snapshot);
  drain_policy_snapshot_free(snapshot);
}
