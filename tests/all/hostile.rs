//! Hostile input to the commands around the agent: every attack of issue 23
//! on the readers of untrusted text (configs, manifests, scenarios,
//! recordings), on `simulate`'s and `replay`'s work, on the terminal, and
//! on the configs `inject` writes — each run against the real binary with
//! the input that broke it.
//!
//! Time and memory are not asserted as timings: each attack must end as the
//! fix makes it end (exit 2 naming the bound it passed, or its output), with
//! a peak RSS (the child's `ru_maxrss`, which on Linux includes the test
//! process's own peak: a bound from above) far under what the attack
//! reached without the fix. Every figure is printed. A run still going at its time
//! limit is killed and fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{lameduck, root, scratch, status_kib, with_wasi};

/// What no attack's run may reach: the smallest of them reached 1.3 GB
/// without the fix; the commands themselves take a few tens of MiB. The
/// figure counts the test process's own peak too (Linux carries it over
/// the spawn: hundreds of MiB when the whole suite runs in it), so the
/// bound is this or that peak, whichever is higher, and a margin.
const PEAK_KIB: u64 = 512 << 10;
const MARGIN_KIB: u64 = 64 << 10;

/// A limit on each run, to fail rather than hang: the quadratic attacks
/// took 32 s to minutes without the fix, a few seconds with it.
const LIMIT: Duration = Duration::from_secs(60);

/// How a run of the binary ended.
struct Ran {
    code: i32,
    out: String,
    err: String,
    /// The child's peak resident memory, as `ru_maxrss` counts it.
    peak_kib: u64,
    /// The test process's own peak when the child ended, which
    /// `ru_maxrss` may stand for.
    ours_kib: u64,
    took: Duration,
}

impl Ran {
    /// Ended with exit 2 and `message` on stderr, within [`PEAK_KIB`].
    fn refused(&self, message: &str) -> &Self {
        assert_eq!(self.code, 2, "{}{}", self.out, self.err);
        assert!(
            self.err.contains(message),
            "`{message}` not in: {}",
            self.err
        );
        self.within_memory()
    }

    fn within_memory(&self) -> &Self {
        let bound = PEAK_KIB.max(self.ours_kib) + MARGIN_KIB;
        assert!(
            self.peak_kib < bound,
            "peak RSS {} KiB, over {bound} KiB (the test's own peak: {} KiB)",
            self.peak_kib,
            self.ours_kib
        );
        self
    }
}

/// Where standard input comes from.
enum Input<'a> {
    Nothing,
    File(&'a Path),
}

/// Runs `lameduck ARGS`; `what` names the attack in the figures printed.
fn run(what: &str, args: &[&str], input: Input<'_>) -> Ran {
    let mut command = Command::new(lameduck());
    command
        .args(args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.stdin(match input {
        Input::Nothing => Stdio::null(),
        Input::File(path) => Stdio::from(std::fs::File::open(path).unwrap()),
    });
    let start = Instant::now();
    #[allow(
        clippy::zombie_processes,
        reason = "reaped by wait4 below, for its usage"
    )]
    let mut child = command.spawn().unwrap();
    let pid = child.id() as i32;
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    // Reaped here, with its resource usage: the peak RSS, however briefly
    // it was held (Linux counts the test's own at the fork too: a bound
    // from above).
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid one to be filled.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: our own child, not yet reaped; the pointers are valid.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            break (status, usage);
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = start.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    let ran = Ran {
        code,
        out: out.join().unwrap(),
        err: err.join().unwrap(),
        peak_kib: usage.ru_maxrss as u64,
        ours_kib: status_kib("self", "VmHWM:").unwrap_or(0),
        took,
    };
    println!(
        "{what}: exit {}, {:.2} s, peak RSS {} MiB",
        ran.code,
        ran.took.as_secs_f64(),
        ran.peak_kib >> 10
    );
    ran
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn fifo(dir: &Path) -> PathBuf {
    let path = dir.join("fifo");
    let name = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; a FIFO in the test's scratch directory.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    path
}

/// Keys `a`, an anchor of `strings` strings, and `b`, aliasing it
/// `aliases` times, at `indent`: the wide bomb serde_yaml's repetition
/// limit (which counts aliases, not what they repeat) lets through.
fn wide_bomb(indent: &str, strings: usize, aliases: usize) -> String {
    format!(
        "{indent}a: &a [{}]\n{indent}b: [{}]\n",
        vec!["xxxxxxxxxxxxxxxxx"; strings].join(", "),
        vec!["*a"; aliases].join(", ")
    )
}

/// `[[[…]]]`, `levels` deep.
fn deep(levels: usize) -> String {
    format!("{}{}", "[".repeat(levels), "]".repeat(levels))
}

// The config: `check` and `run` load it the same way.

#[test]
fn a_config_alias_bomb_is_refused_at_its_bound() {
    // 633 KB: 30,000 strings aliased 1,000 times. Without the bound, past
    // 30 s and 1.3 GB in a debug build.
    let dir = scratch("hostile-config-bomb");
    let bomb = |name: &str, strings: usize| {
        let text = format!("policy:\n  config:\n{}", wide_bomb("    ", strings, 1_000));
        write(&dir, name, &text).to_str().unwrap().to_string()
    };
    let config = bomb("bomb.yaml", 30_000);
    let ran = run(
        "check --config (alias bomb)",
        &["check", "--config", &config],
        Input::Nothing,
    );
    ran.refused("bomb.yaml:3:").refused(
        "more than 10000 nodes, each alias counted as the nodes it repeats: more than a config has",
    );
    let ran = run(
        "run --config (alias bomb)",
        &["run", "--config", &config, "--", "/bin/true"],
        Input::Nothing,
    );
    ran.refused("more than 10000 nodes");
    // A thousand strings pass; the ninth alias of them does not.
    let config = bomb("smaller.yaml", 1_000);
    run(
        "check --config (smaller bomb)",
        &["check", "--config", &config],
        Input::Nothing,
    )
    .refused("smaller.yaml:4:")
    .refused(": policy.config.b[8]: more than 10000 nodes");
}

#[test]
fn deep_nesting_in_a_config_is_refused_where_it_passes_the_bound() {
    // 200k levels (400 KB): libyaml's scanner is quadratic in flow depth,
    // 96 s before exit 2 without the walk that stops at the bound.
    let dir = scratch("hostile-config-deep");
    let config = write(&dir, "deep.yaml", &format!("probes: {}\n", deep(200_000)));
    let ran = run(
        "check --config (200k levels)",
        &["check", "--config", config.to_str().unwrap()],
        Input::Nothing,
    );
    ran.refused("deep.yaml:1:24: probes[0][0]")
        .refused("[0]: nested more than 16 deep: more than a config has");
}

#[test]
fn a_flag_alias_bomb_is_refused() {
    // Under the 128 KiB a single argument may be: 1,000 strings aliased
    // 5,000 times, 5 million nodes.
    let bomb = format!(
        "[{{name: &a [{}], connections: {{}}}}, {}]",
        vec!["x"; 1_000].join(", "),
        vec!["*a"; 5_000].join(", ")
    );
    let ran = run(
        "check --probes (alias bomb)",
        &["check", "--probes", &bomb],
        Input::Nothing,
    );
    ran.refused("--probes: probes: line 1 column")
        .refused(": [9]: more than 10000 nodes");
}

// Manifests for `inject`.

#[test]
fn an_alias_bomb_in_a_manifest_is_refused() {
    // 1.07 MB: past 2.5 GB without the bound.
    let dir = scratch("hostile-inject-bomb");
    let manifest = write(
        &dir,
        "bomb.yaml",
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n{}",
            wide_bomb("  ", 50_000, 1_200)
        ),
    );
    let ran = run(
        "inject (1 MB alias bomb)",
        &["inject", "-f", manifest.to_str().unwrap()],
        Input::Nothing,
    );
    ran.refused("bomb.yaml:6:")
        .refused("more than 2000000 nodes, each alias counted as the nodes it repeats: more than a stream of manifests has");
    assert!(ran.out.is_empty(), "nothing on stdout: {}", ran.out);
}

#[test]
fn deep_nesting_and_too_many_documents_in_manifests_are_refused() {
    let dir = scratch("hostile-inject-deep");
    let manifest = write(&dir, "deep.yaml", &format!("kind: {}\n", deep(200_000)));
    run(
        "inject (200k levels)",
        &["inject", "-f", manifest.to_str().unwrap()],
        Input::Nothing,
    )
    .refused("deep.yaml:1:134: kind")
    .refused("nested more than 128 deep");

    // 40k documents: 38.7 s without the bound (each document's node cost a
    // walk past the others).
    let config_map = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
    let manifest = write(&dir, "many.yaml", &config_map.repeat(40_000));
    run(
        "inject (40k documents)",
        &["inject", "-f", manifest.to_str().unwrap()],
        Input::Nothing,
    )
    .refused("many.yaml:40001:1: more than 10000 documents");
}

#[test]
fn thousands_of_deployments_are_injected_in_linear_time() {
    // 2,000 Deployments took 32 s in a release build (each edit copied the
    // whole stream's top node; each document's line was counted from the
    // top): past the time limit in this debug one. Edited alone, seconds.
    let dir = scratch("hostile-inject-many");
    let one = |i: usize| {
        format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i}\nspec:\n  \
             template:\n    spec:\n      containers:\n        - name: app\n          image: \
             app:1\n          command: [/app]\n"
        )
    };
    let manifest = write(&dir, "many.yaml", &(0..2_000).map(one).collect::<String>());
    let ran = run(
        "inject (2,000 Deployments)",
        &[
            "inject",
            "--mode",
            "sidecar",
            "-f",
            manifest.to_str().unwrap(),
        ],
        Input::Nothing,
    );
    assert_eq!(ran.code, 0, "{}", ran.err);
    ran.within_memory();
    assert_eq!(ran.out.matches("kind: ConfigMap").count(), 2_000);
    assert!(ran.out.contains("name: web-1999-lameduck"));
}

#[test]
fn commands_read_only_regular_files_and_standard_input_through_a_bound() {
    let dir = scratch("hostile-files");
    let fifo = fifo(&dir);
    let fifo = fifo.to_str().unwrap();
    let zero = Path::new("/dev/zero");
    for (what, args, bound) in [
        ("inject", vec!["inject", "-f"], "16777216"),
        ("replay", vec!["replay"], "8388608"),
    ] {
        let with = |path| [args.as_slice(), &[path]].concat();
        // `/dev/zero` read until memory ran out; a FIFO hung.
        run(
            &format!("{what} /dev/zero"),
            &with("/dev/zero"),
            Input::Nothing,
        )
        .refused("/dev/zero: not a regular file (a character device)");
        run(&format!("{what} FIFO"), &with(fifo), Input::Nothing)
            .refused("not a regular file (a FIFO)");
        run(
            &format!("{what} - < /dev/zero"),
            &with("-"),
            Input::File(zero),
        )
        .refused(&format!("<stdin>: more than the {bound} bytes taken"));
    }
}

#[test]
fn a_byte_order_mark_is_read_past_as_kubectl_does() {
    // Refused as "line 2" before.
    let dir = scratch("hostile-inject-bom");
    let deployment =
        std::fs::read_to_string(root().join("tests/fixtures/inject/deployment.yaml")).unwrap();
    let manifest = write(&dir, "bom.yaml", &format!("\u{feff}{deployment}"));
    let ran = run(
        "inject (BOM)",
        &["inject", "-f", manifest.to_str().unwrap()],
        Input::Nothing,
    );
    assert_eq!(ran.code, 0, "{}", ran.err);
    assert!(!ran.out.contains('\u{feff}'));
    assert!(ran.out.contains("kind: ConfigMap"));

    // lameduck's own config: read past too, its lines and columns those
    // of the text after the mark.
    let config = write(&dir, "good.yaml", "\u{feff}grace_period: 45s\n");
    let ran = run(
        "check --config (BOM)",
        &[
            "check",
            "--cache-dir",
            "off",
            "--config",
            config.to_str().unwrap(),
        ],
        Input::Nothing,
    );
    assert_eq!(ran.code, 0, "{}{}", ran.out, ran.err);
    let config = write(&dir, "bad.yaml", "\u{feff}grace_period: 4294968s\n");
    run(
        "check --config (BOM, bad value)",
        &["check", "--config", config.to_str().unwrap()],
        Input::Nothing,
    )
    .refused("bad.yaml:1:15: grace_period: `4294968s` is not a duration");
}

#[test]
fn yaml_directives_are_taken_as_the_api_server_takes_them() {
    let dir = scratch("hostile-inject-directives");
    let deployment =
        std::fs::read_to_string(root().join("tests/fixtures/inject/deployment.yaml")).unwrap();
    let manifest = |version: &str| {
        let name = format!("yaml-{version}.yaml");
        write(&dir, &name, &format!("%YAML {version}\n---\n{deployment}"))
    };
    // The API server's parser reads YAML 1.1 and refuses `%YAML 1.2`; kubectl
    // would have refused what inject wrote.
    let v12 = manifest("1.2");
    run(
        "inject (%YAML 1.2)",
        &["inject", "-f", v12.to_str().unwrap()],
        Input::Nothing,
    )
    .refused("document 1 at line 1: `%YAML 1.2`: the Kubernetes API server reads YAML 1.1");
    let v11 = manifest("1.1");
    let ran = run(
        "inject (%YAML 1.1)",
        &["inject", "-f", v11.to_str().unwrap()],
        Input::Nothing,
    );
    assert_eq!(ran.code, 0, "{}", ran.err);

    // lameduck's own config, read by lameduck: YAML 1.2 is its to read.
    // `inject --config` panicked on it (exit 101).
    let config = write(
        &dir,
        "lameduck.yaml",
        "%YAML 1.2\n---\n# ours\ngrace_period: 45s\n",
    );
    let plain = write(&dir, "plain.yaml", &deployment);
    let ran = run(
        "inject --config (%YAML 1.2)",
        &[
            "inject",
            "--config",
            config.to_str().unwrap(),
            "-f",
            plain.to_str().unwrap(),
        ],
        Input::Nothing,
    );
    assert_eq!(ran.code, 0, "{}", ran.err);
    let written = config_in(&ran.out);
    assert!(written.starts_with("%YAML 1.2\n---\n# ours\n"), "{written}");
    let check = write(&dir, "written.yaml", &written);
    let ran = run(
        "check --config (inject's, %YAML 1.2)",
        &["check", "--config", check.to_str().unwrap()],
        Input::Nothing,
    );
    assert_eq!(ran.code, 0, "{}{}", ran.out, ran.err);
}

#[test]
fn a_grace_period_past_lameduck_s_range_is_clamped_with_a_note() {
    // The API server takes 4294968 s; `grace_period: 4294968s` is past
    // lameduck's u32 ms, which `run` refused: a crash loop.
    let dir = scratch("hostile-inject-grace");
    let deployment =
        std::fs::read_to_string(root().join("tests/fixtures/inject/deployment.yaml")).unwrap();
    let long = deployment.replace(
        "    spec:\n",
        "    spec:\n      terminationGracePeriodSeconds: 4294968\n",
    );
    assert_ne!(long, deployment);
    let manifest = write(&dir, "long.yaml", &long);
    let ran = run(
        "inject (grace 4294968 s)",
        &["inject", "-f", manifest.to_str().unwrap()],
        Input::Nothing,
    );
    assert_eq!(ran.code, 0, "{}", ran.err);
    assert!(ran.err.contains("terminationGracePeriodSeconds 4294968 is longer than lameduck's longest grace period: its config says 4294967s"), "{}", ran.err);
    assert!(
        ran.out.contains("terminationGracePeriodSeconds: 4294968"),
        "the pod's is kept"
    );
    let written = config_in(&ran.out);
    assert!(written.contains("grace_period: 4294967s"), "{written}");
    let check = write(&dir, "written.yaml", &written);
    let ran = run(
        "check --config (inject's, clamped)",
        &["check", "--config", check.to_str().unwrap()],
        Input::Nothing,
    );
    assert_eq!(ran.code, 0, "{}{}", ran.out, ran.err);
}

/// The `lameduck.yaml` of the first ConfigMap inject wrote.
fn config_in(out: &str) -> String {
    let block = out
        .split("lameduck.yaml: |")
        .nth(1)
        .unwrap_or_else(|| panic!("no config in:\n{out}"));
    block
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect()
}

// Recordings for `replay`.

/// A recording of `decisions` decisions, each with `reason`, after a TERM.
fn recording(decisions: usize, reason: &str, at: impl Fn(usize) -> u64) -> String {
    let snapshot = serde_json::json!({
        "trigger": "TERM", "elapsed_ms": 0, "remaining_ms": 28_000, "child": "running",
        "signals_sent": [], "ready": false, "probes": []
    });
    let mut timeline = vec![serde_json::json!({
        "at_ms": at(0), "drain_ms": 0, "event": "signal",
        "data": { "signal": "TERM", "action": "drain", "snapshot": snapshot }
    })];
    for i in 1..=decisions {
        timeline.push(serde_json::json!({
            "at_ms": at(i), "drain_ms": i, "event": "decision",
            "data": { "snapshot": snapshot, "decision": {
                "ready": false, "signal": null, "reason": reason, "next": { "recheck_ms": 100 } } }
        }));
    }
    serde_json::json!({ "timeline": timeline }).to_string()
}

#[test]
fn a_recording_whose_times_wrap_is_drawn_within_bounds() {
    // Times that wrap i64: 1.5 GB, then an abort, with --svg.
    let dir = scratch("hostile-replay-wrap");
    let status = write(
        &dir,
        "wrap.json",
        &recording(3, "waiting", |i| if i == 1 { u64::MAX } else { i as u64 }),
    );
    let svg = dir.join("wrap.svg");
    let ran = run(
        "replay --svg (wrapping times)",
        &[
            "replay",
            "--cache-dir",
            "off",
            "--svg",
            svg.to_str().unwrap(),
            status.to_str().unwrap(),
        ],
        Input::Nothing,
    );
    assert_eq!(ran.code, 0, "{}", ran.err);
    ran.within_memory();
    let drawn = std::fs::metadata(&svg).unwrap().len();
    println!("picture: {drawn} bytes");
    assert!(drawn < 64 << 10);
}

#[test]
fn after_a_failing_call_replay_asks_a_fresh_instance() {
    // Every call after the first failure said "cannot enter component
    // instance": the trapped instance was asked again.
    let dir = scratch("hostile-replay-trap");
    let policy = dir.join("trap.wasm");
    std::fs::write(&policy, crate::util::component("trap.wat")).unwrap();
    let status = write(
        &dir,
        "status.json",
        &recording(3, "waiting", |i| 1_000 + i as u64),
    );
    let ran = run(
        "replay (a policy that traps)",
        &[
            "replay",
            "--cache-dir",
            "off",
            "--policy",
            policy.to_str().unwrap(),
            status.to_str().unwrap(),
        ],
        Input::Nothing,
    );
    assert_eq!(ran.code, 0, "{}", ran.err);
    assert!(!ran.out.contains("cannot enter"), "{}", ran.out);
    assert_eq!(
        ran.out.matches("replayed: ERROR: trapped").count(),
        4,
        "{}",
        ran.out
    );
    assert!(
        ran.out.contains("4 call(s) replayed; 4 answer(s) differ"),
        "{}",
        ran.out
    );
}

#[test]
fn deep_json_and_recordings_longer_than_an_agent_keeps_are_refused() {
    let dir = scratch("hostile-replay-json");
    let deep = write(&dir, "deep.json", &deep(100_000));
    run(
        "replay (100k levels of JSON)",
        &["replay", deep.to_str().unwrap()],
        Input::Nothing,
    )
    .refused("deep.json: recursion limit exceeded");
    let long = write(
        &dir,
        "long.json",
        &recording(10_000, "waiting", |i| i as u64),
    );
    run(
        "replay (10,001 entries)",
        &["replay", long.to_str().unwrap()],
        Input::Nothing,
    )
    .refused("long.json: timeline: 10001 entries, more than the 10000 a recording holds");
}

// Terminal escapes: the policy's words, and a recording's.

/// A reason that writes the clipboard (OSC 52), sets the title, clears
/// the screen, returns the carriage and reverses what follows.
const ESCAPES: &str = "\u{1b}]52;c;aGk=\u{7}\u{1b}]0;owned\u{7}\u{1b}[2J\r\u{202e} done";

fn no_escapes(what: &str, text: &str) {
    let raw: Vec<char> = text
        .chars()
        .filter(|c| (c.is_control() && *c != '\n') || *c == '\u{202e}')
        .collect();
    assert!(raw.is_empty(), "{what} printed {raw:?}:\n{text}");
}

#[test]
fn the_commands_escape_what_a_policy_or_a_recording_says() {
    let dir = scratch("hostile-escapes");
    let policy = dir.join("escape.wasm");
    std::fs::write(&policy, with_wasi("escape.wat", &["wasi:cli/stdout@0.2.0"])).unwrap();
    let policy = policy.to_str().unwrap();

    let ran = run(
        "check (escapes)",
        &["check", "--cache-dir", "off", "--policy", policy],
        Input::Nothing,
    );
    assert_eq!(ran.code, 0, "{}{}", ran.out, ran.err);
    assert!(ran.out.contains("\\x1b]52;c;aGk=\\x07"), "{}", ran.out);
    no_escapes("check's verdict", &ran.out);
    // The line the policy printed from `init`, in the log.
    assert!(
        ran.err
            .contains("hello \\x1b]0;title\\x07\\x0d\\u{202e}world"),
        "{}",
        ran.err
    );
    no_escapes("check's log", &ran.err);

    let status = write(
        &dir,
        "status.json",
        &recording(2, ESCAPES, |i| 1_000 + i as u64),
    );
    let ran = run(
        "replay (escapes)",
        &[
            "replay",
            "--cache-dir",
            "off",
            "--policy",
            policy,
            status.to_str().unwrap(),
        ],
        Input::Nothing,
    );
    assert_eq!(ran.code, 0, "{}", ran.err);
    assert!(
        ran.out.contains("recorded: \\x1b]52;c;aGk=\\x07"),
        "{}",
        ran.out
    );
    assert!(
        ran.out.contains("replayed: \\x1b]52;c;aGk=\\x07"),
        "{}",
        ran.out
    );
    no_escapes("replay", &ran.out);

    let scenario = root().join("scenarios/web-behind-ingress.yaml");
    let ran = run(
        "simulate (escapes)",
        &[
            "simulate",
            "--cache-dir",
            "off",
            "--policy",
            policy,
            scenario.to_str().unwrap(),
        ],
        Input::Nothing,
    );
    assert_eq!(ran.code, 0, "{}", ran.err);
    assert!(
        ran.out.contains("\\x1b[2J\\x0d\\u{202e} done"),
        "{}",
        ran.out
    );
    no_escapes("simulate", &ran.out);
}

// Scenarios for `simulate`.

#[test]
fn simulate_refuses_values_that_would_make_its_work_unbounded() {
    let dir = scratch("hostile-simulate");
    let scenario = |name: &str, traffic: &str, drain: &str| {
        let text = format!(
            "serving: 24h\ntraffic:\n{traffic}  duration: {{ min: 10ms, max: 50ms }}\ndrain:\n{drain}"
        );
        write(&dir, name, &text)
    };
    let removed = "  endpoint_removed: 2s\n";
    let attacks = [
        // > 3 GiB in 6.6 s.
        (
            "rate 100000 for 24 h",
            scenario("rate.yaml", "  rate: 100000\n", removed),
            "traffic.rate: 8640200000 requests",
        ),
        (
            "a burst of 4294967295",
            scenario(
                "burst.yaml",
                "  bursts: { every: 1s, size: 4294967295 }\n",
                removed,
            ),
            "traffic.bursts: ",
        ),
        // 100k bursts: 1.9 GB.
        (
            "100k bursts",
            scenario(
                "bursts.yaml",
                "  bursts: { every: 864ms, size: 20 }\n",
                removed,
            ),
            "traffic.bursts: 2000060 requests",
        ),
        (
            "endpoint_removed: 1193h",
            scenario("removed.yaml", "  rate: 1\n", "  endpoint_removed: 1193h\n"),
            "drain.endpoint_removed: 4294800s is longer than a rehearsal plays (at most 86400s)",
        ),
    ];
    for (what, path, message) in attacks {
        run(
            &format!("simulate ({what})"),
            &["simulate", "--cache-dir", "off", path.to_str().unwrap()],
            Input::Nothing,
        )
        .refused(message);
    }
    // 24 s of work with a policy that never signals.
    let quiet = scenario("quiet.yaml", "  rate: 1\n", removed);
    run(
        "simulate (grace 4294967295 ms)",
        &[
            "simulate",
            "--cache-dir",
            "off",
            "--grace-period",
            "4294967295ms",
            quiet.to_str().unwrap(),
        ],
        Input::Nothing,
    )
    .refused("grace_period: 4294967295ms is longer than a rehearsal plays (at most 86400s)");
}

#[test]
fn a_rehearsal_past_its_entries_is_stopped() {
    // A policy that never signals and asks to be called again at once, for
    // a day's grace period: 8.6 million decisions at the agent's 10 ms.
    let dir = scratch("hostile-simulate-entries");
    let policy = dir.join("idle.wasm");
    std::fs::write(&policy, crate::util::component("idle.wat")).unwrap();
    let scenario = write(
        &dir,
        "quiet.yaml",
        "serving: 1s\ntraffic:\n  rate: 1\n  duration: { min: 10ms, max: 50ms }\ndrain:\n  endpoint_removed: 1s\n  app: { on_term: ignore }\n",
    );
    let ran = run(
        "simulate (a day of 10 ms rechecks)",
        &[
            "simulate",
            "--cache-dir",
            "off",
            "--policy",
            policy.to_str().unwrap(),
            "--grace-period",
            "24h",
            scenario.to_str().unwrap(),
        ],
        Input::Nothing,
    );
    ran.refused("more than 100000 entries on the timeline by ");
}
