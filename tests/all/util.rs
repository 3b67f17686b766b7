//! Shared helpers: fixtures, components, the binary under test.

use std::path::{Path, PathBuf};

use lameduck_core::record::{Entry, Event};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A fixture file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests").join("fixtures").join(name)
}

/// The fixture as a component: components (`.wat` or binary) as they are,
/// core modules in the world's canonical ABI wrapped with `wit/`, the way
/// `wit-bindgen` guests are.
pub fn component(name: &str) -> Vec<u8> {
    component_in(name, &[], "drain-policy")
}

/// As [`component`], for a core module that also imports from the WIT
/// packages in `extra` (each its own package text, dependencies first), in
/// the world `world` of the last package (or of `wit/` if none).
pub fn component_in(name: &str, extra: &[&str], world: &str) -> Vec<u8> {
    let bytes = wat::parse_file(fixture(name)).expect("fixture parses");
    if wasmparser_is_component(&bytes) {
        return bytes;
    }
    wrap(bytes, extra, world)
}

/// A core module in the world's canonical ABI, wrapped as a component.
pub fn wrap(module: Vec<u8>, extra: &[&str], world: &str) -> Vec<u8> {
    let mut module = module;
    let mut resolve = wit_parser::Resolve::default();
    // The fixtures are written against the first version of the world
    // (its canonical ABI): the agent still loads such policies.
    let (mut package, _) = resolve
        .push_path(root().join("wit").join("v0.1"))
        .expect("wit/v0.1 parses");
    for (i, text) in extra.iter().enumerate() {
        package = resolve
            .push_str(format!("extra{i}.wit"), text)
            .expect("extra WIT parses");
    }
    let world = resolve
        .select_world(&[package], Some(world))
        .expect("the world exists");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("embed the world");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("a core module")
        .validate(true)
        .encode()
        .expect("the module implements the world's ABI")
}

/// The few WASI functions the fixtures call, as WIT, each package in the
/// text `component_in` takes (their types as wasmtime's WASI defines them).
const WASI: [&str; 4] = [
    "package wasi:io@0.2.0;
     interface error { resource error; }
     interface poll { resource pollable { block: func(); } }
     interface streams {
       use error.{error};
       variant stream-error { last-operation-failed(error), closed }
       resource output-stream {
         blocking-write-and-flush: func(contents: list<u8>) -> result<_, stream-error>;
       }
     }",
    "package wasi:clocks@0.2.0;
     interface monotonic-clock {
       use wasi:io/poll@0.2.0.{pollable};
       subscribe-duration: func(when: u64) -> pollable;
     }",
    "package wasi:cli@0.2.0;
     interface stdout {
       use wasi:io/streams@0.2.0.{output-stream};
       get-stdout: func() -> output-stream;
     }",
    "package wasi:random@0.2.0;
     interface random { get-random-bytes: func(len: u64) -> list<u8>; }",
];

/// As [`component`], for a fixture that also imports these WASI interfaces
/// (`wasi:cli/stdout@0.2.0`, …).
pub fn with_wasi(name: &str, imports: &[&str]) -> Vec<u8> {
    let imports: String = imports.iter().map(|i| format!("  import {i};\n")).collect();
    let world = format!(
        "package lameduck:fixtures;\nworld fixture {{\n  include lameduck:policy/drain-policy@0.1.0;\n{imports}}}"
    );
    let mut packages = WASI.to_vec();
    packages.push(&world);
    component_in(name, &packages, "fixture")
}

/// A component's header has layer 1 (a core module's has layer 0).
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[6..8] == [1, 0]
}

/// `bytes` with a custom section appended: the same policy, other bytes.
pub fn variant(bytes: &[u8], n: u32) -> Vec<u8> {
    let name = b"lameduck-test";
    let payload = n.to_le_bytes();
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

/// The `lameduck` binary built with these tests, or the one `LAMEDUCK_BIN`
/// names (CI runs the suite again against the static musl build).
pub fn lameduck() -> PathBuf {
    if let Some(bin) = std::env::var_os("LAMEDUCK_BIN") {
        return root().join(bin);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("lameduck");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// A fresh, empty directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lameduck-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `lameduck run` around a command, with its log (JSON lines) collected and
/// read back as the timeline's typed records.
pub struct Agent {
    pub child: std::process::Child,
    logs: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    /// Lines of its stderr that are not JSON log lines (a panic's message,
    /// or every line with `--log-format text`).
    raw: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    started: std::time::Instant,
}

impl Agent {
    /// Starts `lameduck run ARGS -- COMMAND`, with the admin server off and
    /// no compile cache unless ARGS say otherwise.
    pub fn start(args: &[&str], command: &[&str]) -> Agent {
        Agent::start_with_env(args, &[], command)
    }

    /// As [`Agent::start`], with environment variables for the agent.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)], command: &[&str]) -> Agent {
        Agent::start_with(args, env, command, |_| {})
    }

    /// As [`Agent::start_with_env`], with `setup` of the agent's command
    /// before it starts.
    pub fn start_with(
        args: &[&str],
        env: &[(&str, &str)],
        command: &[&str],
        setup: impl FnOnce(&mut std::process::Command),
    ) -> Agent {
        let mut agent = Agent::command("run", args);
        setup(&mut agent);
        agent.envs(env.iter().copied()).arg("--").args(command);
        Agent::launch(agent)
    }

    /// Starts `lameduck sidecar ARGS`: the agent beside an app it did not
    /// start, with no compile cache unless ARGS say otherwise.
    pub fn sidecar(args: &[&str]) -> Agent {
        Agent::launch(Agent::command("sidecar", args))
    }

    /// `lameduck SUBCOMMAND` with JSON logs, the admin server off and no
    /// compile cache unless `args` say otherwise, then `args`.
    fn command(subcommand: &str, args: &[&str]) -> std::process::Command {
        let mut agent = std::process::Command::new(lameduck());
        agent.arg(subcommand);
        let defaults = [
            ("--log-format", "json"),
            ("--admin", "off"),
            ("--cache-dir", "off"),
        ];
        for (flag, default) in defaults {
            if !args.contains(&flag) {
                agent.args([flag, default]);
            }
        }
        agent.args(args);
        agent
    }

    fn launch(mut agent: std::process::Command) -> Agent {
        use std::io::BufRead;
        let mut child = agent
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start lameduck");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let raw = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let (sink, raw_sink) = (logs.clone(), raw.clone());
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                match serde_json::from_str(&line) {
                    Ok(value) => sink.lock().unwrap().push(value),
                    Err(_) => {
                        eprintln!("{line}");
                        raw_sink.lock().unwrap().push(line);
                    }
                }
            }
        });
        Agent {
            child,
            logs,
            raw,
            reader: Some(reader),
            started: std::time::Instant::now(),
        }
    }

    /// Lines of the agent's stderr that were not log lines.
    pub fn raw(&self) -> Vec<String> {
        self.raw.lock().unwrap().clone()
    }

    /// The pid of the agent's first child (the app), once it has one.
    pub fn app_pid(&self) -> i32 {
        let pid = self.pid();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            if let Some(child) = children.split_whitespace().next() {
                return child.parse().unwrap();
            }
            assert!(std::time::Instant::now() < deadline, "no app");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Samples the agent's peak memory, file descriptors and threads until
    /// it exits.
    pub fn watch(&self) -> Watch {
        let pid = self.pid();
        let peak = std::sync::Arc::new(std::sync::Mutex::new(Peak::default()));
        let sink = peak.clone();
        let thread = std::thread::spawn(move || {
            while let Some(now) = Peak::of(pid) {
                let mut peak = sink.lock().unwrap();
                peak.hwm_kib = peak.hwm_kib.max(now.hwm_kib);
                peak.fds = peak.fds.max(now.fds);
                peak.threads = peak.threads.max(now.threads);
                peak.cpu_ms = peak.cpu_ms.max(now.cpu_ms);
                drop(peak);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        Watch {
            peak,
            thread: Some(thread),
        }
    }

    /// The admin server's port, from the agent's log.
    pub fn admin_port(&self) -> u16 {
        let records = self.wait_for(
            "the admin server",
            std::time::Duration::from_secs(10),
            |r| r.iter().any(|e| matches!(e.event, Event::Admin { .. })),
        );
        let address = records
            .iter()
            .find_map(|e| match &e.event {
                Event::Admin { address } => Some(address),
                _ => None,
            })
            .unwrap();
        address
            .parse::<std::net::SocketAddr>()
            .unwrap_or_else(|e| panic!("the admin server's address {address}: {e}"))
            .port()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends the agent a signal, as the kubelet would.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Waits for the agent to exit (at most `limit`), returning its status
    /// and how long it ran.
    pub fn wait(&mut self, limit: std::time::Duration) -> (i32, std::time::Duration) {
        use std::os::unix::process::ExitStatusExt;
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Every line it wrote is read before its log is looked at:
                // they are in the pipe already (the app may hold it open longer).
                if let Some(reader) = self.reader.take() {
                    let until = std::time::Instant::now() + std::time::Duration::from_millis(500);
                    while !reader.is_finished() && std::time::Instant::now() < until {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                }
                let code = status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                return (code, self.started.elapsed());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "lameduck still running after {limit:?}; log:\n{}",
                show(&self.records())
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Every log line so far, as JSON: the timeline's entries and the other
    /// lines (the agent's warnings, a policy's own output).
    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.logs.lock().unwrap().clone()
    }

    /// The timeline so far: each log line that is a timeline entry (it has
    /// an `event`), read back as its typed record. A line that does not read
    /// fails the test, showing the line.
    pub fn records(&self) -> Vec<Entry> {
        self.logs()
            .into_iter()
            .filter(|line| line.get("event").is_some())
            .map(|line| read(&line))
            .collect()
    }

    /// Waits until the records so far satisfy `done`, and returns them; fails
    /// naming `what` and showing them if that takes `limit`.
    pub fn wait_for(
        &self,
        what: &str,
        limit: std::time::Duration,
        done: impl Fn(&[Entry]) -> bool,
    ) -> Vec<Entry> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let records = self.records();
            if done(&records) {
                return records;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {what} within {limit:?}:\n{}",
                show(&records)
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Records as a person reads them in a test's failure: when, what, and the
/// event in words.
pub fn show(records: &[Entry]) -> String {
    records
        .iter()
        .map(|e| {
            format!(
                "{:>7} ms {}: {}\n",
                e.at_ms,
                e.event.kind(),
                e.event.describe()
            )
        })
        .collect()
}

/// The timeline of a `/status` answer, as typed records.
pub fn timeline(status: &serde_json::Value) -> Vec<Entry> {
    status["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("no timeline in {status}"))
        .iter()
        .map(read)
        .collect()
}

/// A timeline entry as its typed record; one that does not read fails the
/// test, showing it.
fn read(entry: &serde_json::Value) -> Entry {
    match Entry::from_json(entry.clone()) {
        Ok(Some(record)) => record,
        Ok(None) => panic!("a kind of event lameduck-core does not know: {entry}"),
        Err(e) => panic!("a timeline entry that does not read ({e}): {entry}"),
    }
}

/// Whether a policy has been loaded: what most tests wait for before they
/// signal the agent.
pub fn policy_loaded(records: &[Entry]) -> bool {
    records
        .iter()
        .any(|e| matches!(e.event, Event::Policy { .. }))
}

/// An agent started with `args` and `env`, serving `app` (which drains on
/// TERM) with the admin server on, once its policy is in: (agent, admin
/// port, app port).
pub fn serving(app: &App, args: &[&str], env: &[(&str, &str)]) -> (Agent, u16, u16) {
    let command = app.command(&["--on-term", "drain"]);
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let args = [&["--admin", "127.0.0.1:0"], args].concat();
    let agent = Agent::start_with_env(&args, env, &command);
    let admin = agent.admin_port();
    let port = app.port();
    agent.wait_for(
        "the policy",
        std::time::Duration::from_secs(10),
        policy_loaded,
    );
    (agent, admin, port)
}

impl Agent {
    /// Kills the app (it has a process group of its own) and the agent.
    pub fn kill(&mut self) {
        let pid = self.pid();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-child, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // A test that failed leaves nothing behind.
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}

/// The test app (`tests/apps/app.py`) in `dir`, with extra flags.
pub struct App {
    pub dir: PathBuf,
}

impl App {
    pub fn new(name: &str) -> App {
        App { dir: scratch(name) }
    }

    /// The command line that runs the app with `flags`.
    pub fn command(&self, flags: &[&str]) -> Vec<String> {
        let mut cmd = vec![
            "python3".to_string(),
            root().join("tests/apps/app.py").display().to_string(),
            "--log".into(),
            self.dir.join("app.log").display().to_string(),
            "--ready".into(),
            self.dir.join("port").display().to_string(),
        ];
        cmd.extend(flags.iter().map(|f| f.to_string()));
        cmd
    }

    /// Waits until the app listens, and returns its port.
    pub fn port(&self) -> u16 {
        let path = self.dir.join("port");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(port) = std::fs::read_to_string(&path) {
                return port.trim().parse().unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the app did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// What the app recorded: (wall-clock seconds, line).
    pub fn log(&self) -> Vec<(f64, String)> {
        std::fs::read_to_string(self.dir.join("app.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (t, what) = l.split_once(' ')?;
                Some((t.parse().ok()?, what.to_string()))
            })
            .collect()
    }

    /// Waits until the app has recorded `line`.
    pub fn wait_for(&self, line: &str, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        while !self.log().iter().any(|(_, l)| l == line) {
            assert!(
                std::time::Instant::now() < deadline,
                "the app never logged {line}: {:?}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// A GET to the app that returns (status, wall-clock seconds when it completed).
pub fn get(port: u16, path: &str) -> std::io::Result<(u16, f64)> {
    let (status, _) = get_body(port, path)?;
    let done = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    Ok((status, done))
}

/// A GET to 127.0.0.1:`port`: (status, body).
pub fn get_body(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    request(port, "GET", path, None, b"")
}

/// A request to 127.0.0.1:`port`, with a bearer token if given: (status, body).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// A number of `/proc/PID/status` (`VmRSS:`, `VmHWM:`, in KiB), of `pid`
/// or, with `self`, of this process; `None` once it has exited.
pub fn status_kib(pid: &str, name: &str) -> Option<u64> {
    status_field(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        name,
    )
}

fn status_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The most a process held, as sampled.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peak {
    /// VmHWM: its peak resident memory.
    pub hwm_kib: u64,
    pub fds: usize,
    pub threads: u64,
    /// CPU time used (user and system).
    pub cpu_ms: u64,
}

impl Peak {
    /// A process's numbers now; `None` once it has exited (or is a zombie).
    pub fn of(pid: i32) -> Option<Peak> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| status_field(&status, name);
        if status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains("Z"))
        {
            return None;
        }
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command (which may hold spaces): utime, stime are 14 and 15.
        let after = stat.rsplit_once(") ")?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Some(Peak {
            hwm_kib: field("VmHWM:")?,
            fds,
            threads: field("Threads:")?,
            cpu_ms: ticks * 1000 / hz,
        })
    }
}

/// A sampler of an agent's [`Peak`].
pub struct Watch {
    peak: std::sync::Arc<std::sync::Mutex<Peak>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// The peak so far.
    pub fn now(&self) -> Peak {
        *self.peak.lock().unwrap()
    }

    /// The peak over the agent's life (it has exited).
    pub fn peak(mut self) -> Peak {
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.now()
    }
}

/// When the app got its TERM, in ms since the drain began.
pub fn term_sent(records: &[lameduck_core::record::Entry]) -> Option<u64> {
    records.iter().find_map(|e| match e.event {
        lameduck_core::record::Event::Sent {
            signal: lameduck_core::Signal::Term,
            ..
        } => e.drain_ms.map(u64::from),
        _ => None,
    })
}
