//! The agent's configuration: a YAML file, `LAMEDUCK_…` environment variables
//! and flags, in that order of increasing precedence, over the defaults.
//! Unknown keys are errors; every error names the file, line, column and key.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::log::LogFormat;
use crate::probes::{Cidr, Exclude};
use lameduck_core::Signal;
use lameduck_runtime::Limits;

/// Where the policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// One of the policies inside the binary (`builtin:drain`).
    Builtin(String),
    /// A component file.
    File(PathBuf),
}

impl PolicySource {
    /// `builtin:NAME` or a path.
    pub fn parse(text: &str) -> Self {
        match text.strip_prefix("builtin:") {
            Some(name) => PolicySource::Builtin(name.to_string()),
            None => PolicySource::File(PathBuf::from(text)),
        }
    }
}

impl PolicySource {
    /// Checks the component's world by its import and export names, without
    /// compiling it or reading all of it; returns the world.
    pub fn inspect(&self) -> Result<String, String> {
        let checked = match self {
            PolicySource::Builtin(_) => {
                let bytes = self.read()?;
                lameduck_runtime::inspect(std::io::Cursor::new(&bytes[..]))
            }
            PolicySource::File(path) => {
                lameduck_runtime::inspect(open_regular(path, MAX_POLICY_BYTES)?.0)
            }
        };
        checked.map_err(|e| format!("{self}: {e}"))
    }

    /// The component's bytes.
    pub fn read(&self) -> Result<Cow<'static, [u8]>, String> {
        match self {
            PolicySource::Builtin(name) => lameduck_runtime::builtin::get(name)
                .map(Cow::Borrowed)
                .ok_or_else(|| {
                    let names: Vec<&str> = lameduck_runtime::builtin::ALL
                        .iter()
                        .map(|(n, _)| *n)
                        .collect();
                    format!(
                        "there is no built-in policy `{name}` (there are: {})",
                        names.join(", ")
                    )
                }),
            PolicySource::File(path) => read_regular(path, MAX_POLICY_BYTES).map(Cow::Owned),
        }
    }
}

/// The largest policy file taken (a JavaScript component is ~12 MB).
pub const MAX_POLICY_BYTES: u64 = 64 << 20;

/// The largest config file taken.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Opens a regular file of at most `max` bytes. Anything else is refused
/// before it is read: a FIFO would block the open or the read until a
/// writer came, `/dev/zero` would never end. The open does not block (a
/// FIFO opens at once without waiting for a writer); what was opened is
/// then checked, so a file swapped in between cannot pass.
fn open_regular(path: &Path, max: u64) -> Result<(std::fs::File, u64), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let at = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(at)?;
    let meta = file.metadata().map_err(at)?;
    if !meta.is_file() {
        return Err(format!(
            "{}: not a regular file (a {})",
            path.display(),
            file_kind(&meta.file_type())
        ));
    }
    if meta.len() > max {
        return Err(format!(
            "{}: {} bytes, more than the {max} taken",
            path.display(),
            meta.len()
        ));
    }
    Ok((file, meta.len()))
}

fn file_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// A regular file's bytes: at most `max` (it may grow while it is read).
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let (file, len) = open_regular(path, max)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes)
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::Builtin(name) => write!(f, "builtin:{name}"),
            PolicySource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What a probe observes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// TCP connections to these ports; none given means the app's own
    /// listening ports. `exclude` leaves some out (the admin port, the
    /// agent's own probes and `--node-ip` always are).
    Connections {
        ports: Vec<u16>,
        exclude: Exclude,
    },
    Http {
        url: String,
    },
    File {
        path: PathBuf,
    },
    Exec {
        command: Vec<String>,
    },
}

/// A configured probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub name: String,
    pub timeout: Duration,
    pub kind: ProbeKind,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The pod's `terminationGracePeriodSeconds`.
    pub grace_period: Duration,
    /// Kept between the agent's own deadline and the kubelet's SIGKILL.
    pub safety_margin: Duration,
    pub policy: PolicySource,
    /// A second policy asked every question the live one is, its answers
    /// recorded and counted, never obeyed.
    pub shadow: Option<PolicySource>,
    /// The `policy.config` map given to `init`.
    pub policy_config: Vec<(String, String)>,
    /// A signal that reloads the policy instead of being forwarded.
    pub reload_signal: Option<i32>,
    /// Turns on `PUT /policy`, which requires the token.
    policy_push: bool,
    /// Makes `/prestop` require the token.
    prestop_auth: bool,
    /// The admin server's bearer token, wherever it was given.
    admin_token: Option<String>,
    pub limits: Limits,
    pub probes: Vec<ProbeSpec>,
    /// The admin server's address; `None` turns it off.
    pub admin: Option<SocketAddr>,
    /// The node's IP (the kubelet's probes come from it): left out of
    /// `connections` probes.
    pub node_ip: Option<IpAddr>,
    /// The app's own readiness URL, also required to answer 2xx by `/readyz`.
    pub readiness_url: Option<String>,
    pub log_format: LogFormat,
    /// Where compiled policies are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            grace_period: Duration::from_secs(30),
            safety_margin: Duration::from_secs(2),
            policy: PolicySource::Builtin(lameduck_runtime::builtin::DEFAULT.into()),
            shadow: None,
            policy_config: Vec::new(),
            reload_signal: None,
            policy_push: false,
            prestop_auth: false,
            admin_token: None,
            limits: Limits::default(),
            probes: vec![ProbeSpec {
                name: "connections".into(),
                timeout: DEFAULT_PROBE_TIMEOUT,
                kind: ProbeKind::Connections {
                    ports: Vec::new(),
                    exclude: Exclude::default(),
                },
            }],
            admin: Some(SocketAddr::from(([0, 0, 0, 0], 9911))),
            node_ip: None,
            readiness_url: None,
            log_format: LogFormat::Text,
            cache_dir: default_cache_dir(),
        }
    }
}

const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The user's cache directory; none (no cache) without one: the cache holds
/// native code, so a shared directory such as /tmp would not do.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("lameduck"))
}

/// Values given on the command line or in the environment; each wins over
/// the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub grace_period: Option<Duration>,
    pub safety_margin: Option<Duration>,
    pub policy: Option<String>,
    pub shadow: Option<String>,
    pub policy_config: Vec<(String, String)>,
    pub reload_signal: Option<String>,
    pub policy_push: Option<bool>,
    pub prestop_auth: Option<bool>,
    pub admin_token: Option<String>,
    pub admin: Option<String>,
    pub node_ip: Option<IpAddr>,
    pub readiness_url: Option<String>,
    pub log_format: Option<LogFormat>,
    pub cache_dir: Option<PathBuf>,
}

/// A configuration error, located.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Parses YAML read from `path`; an error names the file, line, column and
/// key at fault.
pub fn from_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| located(path, &e))
}

impl Config {
    /// Reads `file` (if given) and applies `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let mut source = None;
        if let Some(path) = file {
            let bytes = read_regular(path, MAX_CONFIG_BYTES).map_err(ConfigError)?;
            let text = String::from_utf8(bytes)
                .map_err(|e| ConfigError(format!("{}: not UTF-8 text: {e}", path.display())))?;
            config.apply_file(&text, path)?;
            source = Some((path, text));
        }
        config.apply(overrides)?;
        let file = source.as_ref().map(|(path, text)| File {
            path,
            text,
            overrides,
        });
        config.check(file.as_ref())?;
        Ok(config)
    }

    /// The rules between settings, checked once every source is in: the
    /// switch and the token may come from different ones, and so may the
    /// grace period and a probe's timeout. An error names the file, line
    /// and column of the setting at fault when the file gave it.
    fn check(&mut self, file: Option<&File<'_>>) -> Result<(), ConfigError> {
        // `file:line:column: key: message` when the file gave the setting
        // (and no flag or variable replaced it), else `key: message`.
        let at = |path: &[Step<'_>], overridden: bool, message: String| -> ConfigError {
            let place = file.filter(|_| !overridden).and_then(|f| f.locate(path));
            ConfigError(match place {
                Some(place) => format!("{place}: {message}"),
                None => format!("{}: {message}", key_of(path)),
            })
        };
        // A token read from a file or a Secret often ends with a newline;
        // a bearer token never holds whitespace.
        if let Some(token) = self.admin_token.take() {
            let token = token.trim().to_string();
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(at(
                    &[Step::Key("admin"), Step::Key("token")],
                    file.is_some_and(|f| f.overrides.admin_token.is_some()),
                    "the admin token contains whitespace, which a bearer token cannot".into(),
                ));
            }
            self.admin_token = Some(token).filter(|t| !t.is_empty());
        }
        if self.admin_token.is_none() {
            for (on, what) in [
                (self.policy_push, "PUT /policy is on (admin.policy_push)"),
                (
                    self.prestop_auth,
                    "/prestop needs a token (admin.prestop_auth)",
                ),
            ] {
                if on {
                    return Err(ConfigError(format!(
                        "{what} but no token is set: give admin.token or LAMEDUCK_ADMIN_TOKEN"
                    )));
                }
            }
        }
        if self.safety_margin >= self.grace_period {
            return Err(at(
                &[Step::Key("safety_margin")],
                file.is_some_and(|f| f.overrides.safety_margin.is_some()),
                format!(
                    "safety_margin ({:?}) must be shorter than grace_period ({:?})",
                    self.safety_margin, self.grace_period
                ),
            ));
        }
        // Work the agent may be waiting on when its deadline falls must end
        // within the margin it keeps before the kubelet's KILL.
        let margin = self.safety_margin;
        for (i, probe) in self.probes.iter().enumerate() {
            if probe.timeout >= margin {
                return Err(at(
                    &[Step::Key("probes"), Step::Index(i), Step::Key("timeout")],
                    false,
                    format!(
                        "{:?} for probe `{}` does not fit the safety margin \
                         ({margin:?}): a reading asked for at the deadline must come before \
                         the kubelet's KILL; shorten the timeout or lengthen safety_margin",
                        probe.timeout, probe.name
                    ),
                ));
            }
        }
        if self.limits.cpu * PATIENCE > margin {
            return Err(at(
                &[Step::Key("policy"), Step::Key("cpu_budget")],
                false,
                format!(
                    "{:?} does not fit the safety margin ({margin:?}): the \
                     agent waits up to {PATIENCE}× the budget for an answer, which must come \
                     before the kubelet's KILL; at most {:?} with this margin",
                    self.limits.cpu,
                    margin / PATIENCE
                ),
            ));
        }
        // The budget for instantiating and `init` is never below a call's.
        self.limits.init = self.limits.init.max(self.limits.cpu);
        if let (Some(url), Some(admin)) = (&self.readiness_url, self.admin)
            && points_at(url, admin)
        {
            return Err(at(
                &[Step::Key("admin"), Step::Key("readiness_url")],
                file.is_some_and(|f| f.overrides.readiness_url.is_some()),
                format!(
                    "`{url}` is lameduck's own admin server ({admin}): its /readyz would ask \
                     itself without end; give the app's own readiness URL"
                ),
            ));
        }
        Ok(())
    }

    /// The bearer token `PUT /policy` requires; `None` when it is off.
    pub fn push_token(&self) -> Option<&str> {
        self.admin_token.as_deref().filter(|_| self.policy_push)
    }

    /// The bearer token `/prestop` requires, if any.
    pub fn prestop_token(&self) -> Option<&str> {
        self.admin_token.as_deref().filter(|_| self.prestop_auth)
    }

    /// The configuration for `/status`: everything but policy config values
    /// (which may be secrets) and the environment.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "grace_period_ms": self.grace_period.as_millis() as u64,
            "safety_margin_ms": self.safety_margin.as_millis() as u64,
            "policy": self.policy.to_string(),
            "shadow": self.shadow.as_ref().map(ToString::to_string),
            "policy_config_keys": self.policy_config.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            "cpu_budget_ms": self.limits.cpu.as_millis() as u64,
            "memory_limit_bytes": self.limits.memory,
            "probes": self.probes.iter().map(|p| serde_json::json!({
                "name": p.name,
                "timeout_ms": p.timeout.as_millis() as u64,
                "kind": match &p.kind {
                    ProbeKind::Connections { ports, exclude } => serde_json::json!({ "connections": {
                        "ports": ports,
                        "exclude": {
                            "peers": exclude.peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                            "ports": exclude.ports,
                        },
                    } }),
                    ProbeKind::Http { url } => serde_json::json!({ "http": { "url": url } }),
                    ProbeKind::File { path } => serde_json::json!({ "file": { "path": path } }),
                    ProbeKind::Exec { command } => serde_json::json!({ "exec": { "program": command[0] } }),
                },
            })).collect::<Vec<_>>(),
            "admin": self.admin.map(|a| a.to_string()),
            "node_ip": self.node_ip.map(|ip| ip.to_string()),
            "policy_push": self.policy_push,
            "prestop_auth": self.prestop_auth,
            "reload_signal": self.reload_signal.map(crate::signals::name),
            "readiness_url": self.readiness_url,
        })
    }

    /// How long the agent waits for the policy's answer before the built-in
    /// logic answers: [`PATIENCE`] times a call's CPU budget, and never
    /// less than half a second (wall-clock time on a loaded machine).
    pub fn patience(&self) -> Duration {
        (self.limits.cpu * PATIENCE).max(Duration::from_millis(500))
    }

    /// The time a drain has: the grace period less the safety margin.
    pub fn drain_budget(&self) -> Duration {
        self.grace_period.saturating_sub(self.safety_margin)
    }

    fn apply_file(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let file: FileConfig = from_yaml(path, text)?;
        let at = |key: &str, message: String| {
            ConfigError(format!("{}: {key}: {message}", path.display()))
        };
        if let Some(d) = file.grace_period {
            self.grace_period = d.0;
        }
        if let Some(d) = file.safety_margin {
            self.safety_margin = d.0;
        }
        if let Some(dir) = file.cache_dir {
            self.cache_dir = cache_dir(dir);
        }
        if let Some(format) = file.log_format {
            self.log_format = format;
        }
        if let Some(admin) = file.admin {
            if admin.token.is_some() {
                self.admin_token = admin.token;
            }
            if let Some(push) = admin.policy_push {
                self.policy_push = push;
            }
            if let Some(auth) = admin.prestop_auth {
                self.prestop_auth = auth;
            }
            if let Some(Url(url)) = admin.readiness_url {
                self.readiness_url = Some(url);
            }
            self.admin = match (admin.enabled, admin.listen) {
                (Some(false), _) => None,
                (_, Some(listen)) => Some(
                    listen
                        .parse()
                        .map_err(|e| at("admin.listen", format!("`{listen}`: {e}")))?,
                ),
                (_, None) => self.admin,
            };
        }
        if let Some(policy) = file.policy {
            if let Some(source) = policy.file {
                self.policy = PolicySource::parse(&source);
            }
            if let Some(source) = policy.shadow {
                self.shadow = Some(PolicySource::parse(&source));
            }
            if let Some(PolicyConfig(map)) = policy.config {
                self.policy_config = map.into_iter().collect();
            }
            if let Some(Budget(d)) = policy.cpu_budget {
                self.limits.cpu = d;
            }
            if let Some(MemoryLimit(bytes)) = policy.memory_limit {
                self.limits.memory = bytes;
            }
            if let Some(ReloadSignal(signal)) = policy.reload_signal {
                self.reload_signal = Some(signal);
            }
        }
        if let Some(probes) = file.probes {
            self.probes = probes
                .into_iter()
                .enumerate()
                .map(|(i, p)| p.resolve().map_err(|e| at(&format!("probes[{i}]"), e)))
                .collect::<Result<_, _>>()?;
            let mut names: Vec<&str> = self.probes.iter().map(|p| p.name.as_str()).collect();
            names.sort_unstable();
            if let Some(dup) = names.windows(2).find(|w| w[0] == w[1]) {
                return Err(at("probes", format!("two probes are named `{}`", dup[0])));
            }
        }
        Ok(())
    }

    fn apply(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        if let Some(d) = o.grace_period {
            self.grace_period = d;
        }
        if let Some(d) = o.safety_margin {
            self.safety_margin = d;
        }
        if let Some(policy) = &o.policy {
            self.policy = PolicySource::parse(policy);
        }
        if let Some(shadow) = &o.shadow {
            self.shadow = Some(PolicySource::parse(shadow));
        }
        for (key, value) in &o.policy_config {
            self.policy_config.retain(|(k, _)| k != key);
            self.policy_config.push((key.clone(), value.clone()));
        }
        if let Some(admin) = &o.admin {
            self.admin = parse_admin(admin).map_err(|e| ConfigError(format!("--admin: {e}")))?;
        }
        if let Some(name) = &o.reload_signal {
            self.reload_signal = Some(
                reload_signal(name).map_err(|e| ConfigError(format!("--reload-signal: {e}")))?,
            );
        }
        if let Some(push) = o.policy_push {
            self.policy_push = push;
        }
        if let Some(auth) = o.prestop_auth {
            self.prestop_auth = auth;
        }
        if o.admin_token.is_some() {
            self.admin_token = o.admin_token.clone();
        }
        if let Some(url) = &o.readiness_url {
            crate::probes::check_url(url)
                .map_err(|e| ConfigError(format!("--readiness-url: {e}")))?;
            self.readiness_url = Some(url.clone());
        }
        if let Some(format) = o.log_format {
            self.log_format = format;
        }
        if o.node_ip.is_some() {
            self.node_ip = o.node_ip;
        }
        if let Some(dir) = &o.cache_dir {
            self.cache_dir = cache_dir(dir.clone());
        }
        Ok(())
    }
}

/// A cache directory; `off` (or nothing) turns the cache off.
fn cache_dir(dir: PathBuf) -> Option<PathBuf> {
    (!dir.as_os_str().is_empty() && dir.as_os_str() != "off").then_some(dir)
}

/// A signal that may reload the policy: one the agent can catch and that
/// does not already mean something (TERM and INT begin the drain).
fn reload_signal(name: &str) -> Result<i32, String> {
    let number = crate::signals::parse(name)
        .ok_or_else(|| format!("`{name}` is not a signal (examples: HUP, USR2)"))?;
    let why = match crate::signals::from_number(number) {
        Some(Signal::Term | Signal::Int) => "it begins the drain",
        Some(Signal::Kill | Signal::Stop) => "it cannot be caught",
        Some(_) => return Ok(number),
        None => "the agent takes only the signals a policy can name",
    };
    Err(format!(
        "`{name}` cannot be the reload signal: {why} (examples: HUP, USR2)"
    ))
}

/// Whether `url` reaches the admin server at `admin`: the same port, on a
/// loopback, unspecified or this machine's own address (or the admin's).
fn points_at(url: &str, admin: SocketAddr) -> bool {
    let Some((host, port)) = url_host_port(url) else {
        return false;
    };
    if port != admin.port() {
        return false;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    let Ok(ip) = host.parse::<std::net::IpAddr>() else {
        // A name is not resolved here; /readyz refuses to ask itself.
        return false;
    };
    ip.is_loopback()
        || ip.is_unspecified()
        || ip == admin.ip()
        || (admin.ip().is_unspecified() && local_addresses().contains(&ip))
}

/// The host and port an `http://` URL reaches.
fn url_host_port(url: &str) -> Option<(&str, u16)> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => Some((host, port.parse().ok()?)),
        _ => Some((authority, 80)),
    }
}

/// The addresses of this machine's interfaces.
fn local_addresses() -> Vec<std::net::IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list it allocated, walked here
    // read-only and freed with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut at = list;
        while !at.is_null() {
            let addr = (*at).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        found.push(std::net::IpAddr::from(
                            u32::from_be(v4.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        found.push(std::net::IpAddr::from(v6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            at = (*at).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

/// How long the agent waits for a policy's answer, in CPU budgets of the
/// call: beyond it, the built-in logic answers.
pub const PATIENCE: u32 = 4;

/// The config file, to say where in it a setting is.
struct File<'a> {
    path: &'a Path,
    text: &'a str,
    overrides: &'a Overrides,
}

/// A step of a path into the YAML: a key or an index.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl File<'_> {
    /// `file:line:column: key` of the setting at `path`, or of the nearest
    /// setting above it that the file gave (a probe without a timeout).
    fn locate(&self, path: &[Step<'_>]) -> Option<String> {
        (1..=path.len()).rev().find_map(|len| {
            let at = locate(self.text, &path[..len])?;
            Some(format!(
                "{}:{}:{}: {}",
                self.path.display(),
                at.line(),
                at.column(),
                key_of(path)
            ))
        })
    }
}

/// `probes[0].timeout`.
fn key_of(path: &[Step<'_>]) -> String {
    let mut key = String::new();
    for step in path {
        match step {
            Step::Key(k) if key.is_empty() => key.push_str(k),
            Step::Key(k) => key.push_str(&format!(".{k}")),
            Step::Index(i) => key.push_str(&format!("[{i}]")),
        }
    }
    key
}

/// Where the value at `path` is in `text`. serde_yaml knows where each
/// value is, and tells it with an error: a deserializer that walks down the
/// path and fails on arriving gets the place.
fn locate(text: &str, path: &[Step<'_>]) -> Option<serde_yaml::Location> {
    use serde::de::{DeserializeSeed, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
    const HERE: &str = "lameduck: here";

    struct Finder<'p>(&'p [Step<'p>]);

    impl<'de> DeserializeSeed<'de> for Finder<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl Finder<'_> {
        fn arrived<E: Error>(&self) -> Result<(), E> {
            if self.0.is_empty() {
                Err(E::custom(HERE))
            } else {
                Ok(())
            }
        }
    }

    impl<'de> Visitor<'de> for Finder<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("anything")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            self.arrived()?;
            while let Some(key) = map.next_key::<serde_yaml::Value>()? {
                match self.0[0] {
                    Step::Key(k) if key.as_str() == Some(k) => {
                        map.next_value_seed(Finder(&self.0[1..]))?
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            self.arrived()?;
            let mut i = 0;
            loop {
                let more = match self.0[0] {
                    Step::Index(n) if n == i => seq.next_element_seed(Finder(&self.0[1..]))?,
                    _ => seq.next_element::<IgnoredAny>()?.map(|_| ()),
                };
                if more.is_none() {
                    return Ok(());
                }
                i += 1;
            }
        }
        fn visit_str<E: Error>(self, _: &str) -> Result<(), E> {
            self.arrived()
        }
        fn visit_bool<E: Error>(self, _: bool) -> Result<(), E> {
            self.arrived()
        }
        fn visit_i64<E: Error>(self, _: i64) -> Result<(), E> {
            self.arrived()
        }
        fn visit_u64<E: Error>(self, _: u64) -> Result<(), E> {
            self.arrived()
        }
        fn visit_f64<E: Error>(self, _: f64) -> Result<(), E> {
            self.arrived()
        }
        fn visit_unit<E: Error>(self) -> Result<(), E> {
            self.arrived()
        }
    }

    let error = Finder(path)
        .deserialize(serde_yaml::Deserializer::from_str(text))
        .err()?;
    error.to_string().contains(HERE).then(|| error.location())?
}

/// `off` or an address.
pub fn parse_admin(text: &str) -> Result<Option<SocketAddr>, String> {
    if text == "off" {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| format!("`{text}` is neither `off` nor an address like 0.0.0.0:9911 ({e})"))
}

/// `250ms`, `30s`, `2m` as a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    lameduck_core::parse_duration_ms(text)
        .map(|ms| Duration::from_millis(ms.into()))
        .ok_or_else(|| format!("`{text}` is not a duration (examples: 250ms, 30s, 2m)"))
}

/// `key=value`.
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not key=value"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

fn located(path: &Path, e: &serde_path_to_error::Error<serde_yaml::Error>) -> ConfigError {
    let inner = e.inner();
    let message = inner.to_string();
    // serde_yaml appends " at line L column C" and may lead with a partial
    // path; we lead with the location and the full path instead.
    let mut message = message.split(" at line ").next().unwrap_or(&message);
    if let Some((prefix, rest)) = message.split_once(": ")
        && prefix
            .chars()
            .all(|c| c.is_alphanumeric() || "_.[]-".contains(c))
    {
        message = rest;
    }
    let key = e.path().to_string();
    let key = if key == "." {
        String::new()
    } else {
        format!("{key}: ")
    };
    match inner.location() {
        Some(at) => ConfigError(format!(
            "{}:{}:{}: {key}{message}",
            path.display(),
            at.line(),
            at.column()
        )),
        None => ConfigError(format!("{}: {key}{message}", path.display())),
    }
}

// ---- the file's shape ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    grace_period: Option<Dur>,
    safety_margin: Option<Dur>,
    policy: Option<PolicyFile>,
    probes: Option<Vec<ProbeFile>>,
    admin: Option<AdminFile>,
    log_format: Option<LogFormat>,
    cache_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    file: Option<String>,
    shadow: Option<String>,
    reload_signal: Option<ReloadSignal>,
    config: Option<PolicyConfig>,
    cpu_budget: Option<Budget>,
    memory_limit: Option<MemoryLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    enabled: Option<bool>,
    listen: Option<String>,
    readiness_url: Option<Url>,
    policy_push: Option<bool>,
    prestop_auth: Option<bool>,
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeFile {
    name: String,
    timeout: Option<Budget>,
    connections: Option<ConnectionsFile>,
    http: Option<HttpFile>,
    file: Option<FileProbeFile>,
    exec: Option<ExecFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionsFile {
    #[serde(default)]
    ports: Vec<u16>,
    #[serde(default)]
    exclude: ExcludeFile,
}

/// `exclude: { peers: [CIDR…], ports: [port…] }`; each peer is checked
/// where it is read, so an error names it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ExcludeFile {
    #[serde(default)]
    peers: Vec<Cidr>,
    #[serde(default)]
    ports: Vec<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    url: Url,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProbeFile {
    path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecFile {
    command: Vec<String>,
}

impl ProbeFile {
    fn resolve(self) -> Result<ProbeSpec, String> {
        let name = self.name;
        let mut kinds = Vec::new();
        if let Some(c) = self.connections {
            kinds.push(ProbeKind::Connections {
                ports: c.ports,
                exclude: Exclude {
                    peers: c.exclude.peers,
                    ports: c.exclude.ports,
                },
            });
        }
        if let Some(h) = self.http {
            kinds.push(ProbeKind::Http { url: h.url.0 });
        }
        if let Some(f) = self.file {
            kinds.push(ProbeKind::File { path: f.path });
        }
        if let Some(e) = self.exec {
            if e.command.is_empty() {
                return Err(format!("probe `{name}`: exec.command is empty"));
            }
            kinds.push(ProbeKind::Exec { command: e.command });
        }
        let kind = match kinds.len() {
            1 => kinds.pop().expect("one"),
            n => {
                return Err(format!(
                    "probe `{name}` has {n} kinds: give exactly one of connections, http, file, exec"
                ));
            }
        };
        Ok(ProbeSpec {
            name,
            timeout: self.timeout.map_or(DEFAULT_PROBE_TIMEOUT, |b| b.0),
            kind,
        })
    }
}

/// A duration written as `250ms`, `30s`, `2m`.
#[derive(Debug, Clone, Copy)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// A time something may take (a CPU budget, a probe's timeout): a
/// duration, and not zero (which would refuse every call, fail every probe).
struct Budget(Duration);

impl<'de> Deserialize<'de> for Budget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Dur(duration) = Dur::deserialize(d)?;
        if duration.is_zero() {
            return Err(serde::de::Error::custom(
                "must be more than 0ms: nothing could be done within it",
            ));
        }
        Ok(Budget(duration))
    }
}

/// `policy.memory_limit`: a size a policy can run within.
struct MemoryLimit(usize);

/// One WebAssembly page: no policy runs in less.
const MIN_MEMORY: usize = 64 << 10;

/// The most a 32-bit policy can address.
const MAX_MEMORY: usize = 4 << 30;

impl<'de> Deserialize<'de> for MemoryLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Scalar(text) = Scalar::deserialize(d)?;
        let bytes = parse_bytes(&text).map_err(serde::de::Error::custom)?;
        if !(MIN_MEMORY..=MAX_MEMORY).contains(&bytes) {
            return Err(serde::de::Error::custom(format!(
                "`{text}` is out of range: from 64KiB (one WebAssembly page) to 4GiB"
            )));
        }
        Ok(MemoryLimit(bytes))
    }
}

/// `policy.reload_signal`.
struct ReloadSignal(i32);

impl<'de> Deserialize<'de> for ReloadSignal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Scalar(name) = Scalar::deserialize(d)?;
        reload_signal(&name)
            .map(ReloadSignal)
            .map_err(serde::de::Error::custom)
    }
}

/// A URL the agent can GET.
struct Url(String);

impl<'de> Deserialize<'de> for Url {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let url = String::deserialize(d)?;
        crate::probes::check_url(&url).map_err(serde::de::Error::custom)?;
        Ok(Url(url))
    }
}

/// `policy.config`: a map of scalars, each key once.
struct PolicyConfig(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for PolicyConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = PolicyConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of keys to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<PolicyConfig, A::Error> {
                let mut entries = BTreeMap::new();
                while let Some(Scalar(key)) = map.next_key()? {
                    let Scalar(value) = map.next_value()?;
                    if entries.insert(key.clone(), value).is_some() {
                        return Err(serde::de::Error::custom(format!("`{key}` is given twice")));
                    }
                }
                Ok(PolicyConfig(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// A size written as `16MiB`, `512KiB` or a number of bytes.
fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => 0,
    };
    let invalid = || format!("`{text}` is not a size (examples: 16MiB, 512KiB)");
    match number.parse::<usize>() {
        Ok(n) if scale > 0 => n
            .checked_mul(scale)
            .ok_or_else(|| format!("`{text}` is too large")),
        Ok(_) => Err(invalid()),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => {
            Err(format!("`{text}` is too large"))
        }
        Err(_) => Err(invalid()),
    }
}

/// A YAML scalar (string, number or boolean) as text.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(s) => Ok(Scalar(s)),
            serde_yaml::Value::Number(n) => Ok(Scalar(n.to_string())),
            serde_yaml::Value::Bool(b) => Ok(Scalar(b.to_string())),
            _ => Err(serde::de::Error::custom(
                "expected a string, number or boolean",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        config.apply_file(yaml, Path::new("lameduck.yaml"))?;
        Ok(config)
    }

    #[test]
    fn a_full_file() {
        let c = load(
            "grace_period: 45s\nsafety_margin: 3s\npolicy:\n  file: builtin:jobs\n  config:\n    stop-taking-work: USR2\n    recheck: 100\n  cpu_budget: 5ms\n  memory_limit: 8MiB\nprobes:\n  - name: idle\n    http: { url: 'http://127.0.0.1:8080/idle' }\n    timeout: 500ms\n  - name: web\n    connections: { ports: [8080, 8443] }\nadmin:\n  listen: 127.0.0.1:9000\nlog_format: json\n",
        )
        .unwrap();
        assert_eq!(c.grace_period, Duration::from_secs(45));
        assert_eq!(c.policy, PolicySource::Builtin("jobs".into()));
        assert_eq!(
            c.policy_config,
            vec![
                ("recheck".into(), "100".into()),
                ("stop-taking-work".into(), "USR2".into())
            ]
        );
        assert_eq!(
            (c.limits.cpu, c.limits.memory),
            (Duration::from_millis(5), 8 << 20)
        );
        assert_eq!(c.probes[0].timeout, Duration::from_millis(500));
        assert_eq!(
            c.probes[1].kind,
            ProbeKind::Connections {
                ports: vec![8080, 8443],
                exclude: Exclude::default(),
            }
        );
        assert_eq!(c.admin, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn connections_exclusions() {
        let c = load("probes:\n  - name: web\n    connections:\n      exclude: { peers: [10.0.0.0/8, 'fd00::7'], ports: [9090] }\n").unwrap();
        assert_eq!(
            c.probes[0].kind,
            ProbeKind::Connections {
                ports: Vec::new(),
                exclude: Exclude {
                    peers: vec!["10.0.0.0/8".parse().unwrap(), "fd00::7".parse().unwrap()],
                    ports: vec![9090],
                },
            }
        );
        let e = load("probes:\n  - name: web\n    connections:\n      exclude: { peers: [10.0.0.0/8, 10.1/16] }\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("probes[0].connections.exclude.peers[1]")
                && e.contains("`10.1/16` is not an address or a CIDR block"),
            "{e}"
        );
        let e = load("probes:\n  - name: web\n    connections:\n      exclude: { hosts: [] }\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("probes[0].connections.exclude.hosts: unknown field `hosts`"),
            "{e}"
        );
    }

    #[test]
    fn errors_carry_file_line_column_and_key() {
        let e = load("grace_period: 30s\ngrace_priod: 5s\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("lameduck.yaml:2:1: grace_priod: unknown field `grace_priod`"),
            "{e}"
        );
        let e = load("policy:\n  cpu_budget: fast\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("lameduck.yaml:2:")
                && e.contains("policy.cpu_budget")
                && e.contains("`fast`"),
            "{e}"
        );
        let e = load("probes:\n  - name: web\n    connections: { ports: [http] }\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("lameduck.yaml:3:")
                && e.contains("probes[0].connections.ports[0]: invalid type"),
            "{e}"
        );
        let e =
            load("probes:\n  - name: x\n    http: { url: 'http://a/' }\n    file: { path: /x }\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("probes[0]") && e.contains("exactly one"), "{e}");
    }

    #[test]
    fn overrides_win() {
        let mut c = load("grace_period: 45s\nadmin: { enabled: false }\n").unwrap();
        c.apply(&Overrides {
            grace_period: Some(Duration::from_secs(10)),
            admin: Some("127.0.0.1:1".into()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(c.grace_period, Duration::from_secs(10));
        assert_eq!(c.admin, Some("127.0.0.1:1".parse().unwrap()));
    }

    #[test]
    fn the_example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lameduck.example.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        load(&text).unwrap();
    }

    #[test]
    fn prestop_auth_needs_a_token() {
        let on = Overrides {
            prestop_auth: Some(true),
            ..Overrides::default()
        };
        let err = Config::load(None, &on).unwrap_err().to_string();
        assert!(
            err.contains("/prestop needs a token (admin.prestop_auth) but no token is set"),
            "{err}"
        );
        let c = Config::load(
            None,
            &Overrides {
                admin_token: Some("s3cret".into()),
                ..on
            },
        )
        .unwrap();
        assert_eq!(c.prestop_token(), Some("s3cret"));
        assert_eq!(c.push_token(), None);
    }

    #[test]
    fn the_push_token_may_come_from_the_file_while_the_switch_is_a_flag() {
        let dir = std::env::temp_dir().join(format!("lameduck-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token.yaml");
        std::fs::write(&file, "admin: { token: s3cret }\n").unwrap();
        let on = Overrides {
            policy_push: Some(true),
            ..Overrides::default()
        };
        let c = Config::load(Some(&file), &on).unwrap();
        assert_eq!(c.push_token(), Some("s3cret"));
        let err = Config::load(None, &on).unwrap_err().to_string();
        assert!(err.contains("no token is set"), "{err}");
        assert_eq!(
            Config::load(Some(&file), &Overrides::default())
                .unwrap()
                .push_token(),
            None
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("16MiB"), Ok(16 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        // Overflowing sizes wrapped to 0 (or panicked in a debug build).
        for huge in ["17179869184GiB", "99999999999999999999999"] {
            assert!(
                parse_bytes(huge).unwrap_err().contains("too large"),
                "{huge}"
            );
        }
    }

    /// A config file for [`Config::load`], and its path.
    fn file(name: &str, yaml: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lameduck-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, yaml).unwrap();
        path
    }

    #[test]
    fn settings_that_cannot_work_are_refused_where_they_are() {
        let cases = [
            (
                "safety_margin: 500ms\nprobes:\n  - name: web\n    connections: {}\n",
                // The probe has no timeout of its own: its entry is named.
                ":3:5: probes[0].timeout: 1s for probe `web` does not fit the safety margin (500ms)",
            ),
            (
                "policy:\n  cpu_budget: 600ms\n",
                ":2:15: policy.cpu_budget: 600ms does not fit",
            ),
            (
                "policy:\n  reload_signal: STOP\n",
                ":2:3: policy.reload_signal: `STOP` cannot",
            ),
            (
                "admin:\n  readiness_url: http://[::1]:9911/\n",
                ":2:18: admin.readiness_url",
            ),
            (
                "admin:\n  token: \"a b\"\n",
                ":2:10: admin.token: the admin token contains",
            ),
        ];
        for (i, (yaml, expected)) in cases.into_iter().enumerate() {
            let path = file(&format!("refused{i}.yaml"), yaml);
            let error = Config::load(Some(&path), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with(&format!("{}{expected}", path.display())),
                "{yaml}: {error}"
            );
        }
        // Given by a flag, the setting is named by its key.
        let error = Config::load(
            None,
            &Overrides {
                readiness_url: Some("http://127.0.0.1:9911/readyz".into()),
                ..Overrides::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("admin.readiness_url: "), "{error}");
    }

    #[test]
    fn a_token_is_trimmed() {
        let c = Config::load(
            None,
            &Overrides {
                admin_token: Some(" s3cret\n".into()),
                prestop_auth: Some(true),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.prestop_token(), Some("s3cret"));
    }

    #[test]
    fn only_regular_files_are_read() {
        let error = Config::load(Some(Path::new("/dev/zero")), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert_eq!(error, "/dev/zero: not a regular file (a character device)");
        let dir = file("x", "").parent().unwrap().to_path_buf();
        let error = PolicySource::File(dir.clone()).read().unwrap_err();
        assert!(
            error.ends_with("not a regular file (a directory)"),
            "{error}"
        );
    }
}
