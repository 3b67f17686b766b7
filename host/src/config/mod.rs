//! The agent's configuration. Each setting is declared once, below: its
//! YAML key, flag, environment variable, default, kind of value and help.
//! From that one declaration come the field of [`Config`], the flag of
//! `--help`, the variable read, the key the file may hold, and its line in
//! `/status`. Layers, in order of precedence: the flags, the environment,
//! the file, the defaults ([`layers`]); then the rules between settings
//! ([`checks`]). Every error names where the setting was given: file, line,
//! column and key, or the variable, or the flag.

mod args;
mod checks;
mod declare;
mod kinds;
mod layers;
mod locate;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lameduck_runtime::Limits;

pub use args::Args;
pub use declare::{Declaration, Shape};
use declare::{Kind, optional, settings};
pub use kinds::parse_duration;
pub use layers::MAX_CONFIG_BYTES;

use crate::log::LogFormat;
use crate::probes::ProbeSpec;
use crate::source::PolicySource;

settings! {
    grace_period: Duration = Duration::from_secs(30),
        "grace_period", flag "grace-period", env "LAMEDUCK_GRACE_PERIOD",
        as kinds::Time, "DURATION", "45s",
        "The pod's terminationGracePeriodSeconds.";
    safety_margin: Duration = Duration::from_secs(2),
        "safety_margin", flag "safety-margin", env "LAMEDUCK_SAFETY_MARGIN",
        as kinds::Time, "DURATION", "3s",
        "Time kept between the agent's own deadline and the kubelet's SIGKILL.";
    policy: PolicySource = PolicySource::Builtin(lameduck_runtime::builtin::DEFAULT.into()),
        "policy.file", flag "policy", env "LAMEDUCK_POLICY",
        as kinds::Source, "FILE|oci://REF", "builtin:jobs",
        "The policy: a component file, builtin:drain|delay|jobs, or oci://REGISTRY/REPO@sha256:DIGEST (or :TAG) — given here or as the content of the file named here.";
    shadow: Option<PolicySource> = None,
        "policy.shadow", flag "shadow-policy", env "LAMEDUCK_SHADOW_POLICY",
        as kinds::Shadow, "FILE|oci://REF", "builtin:delay",
        "A second policy, asked every question the live one is, its answers recorded, compared and counted, never obeyed.";
    policy_config: Vec<(String, String)> = Vec::new(),
        "policy.config", flag "policy-config", env "LAMEDUCK_POLICY_CONFIG",
        as kinds::Pairs, "KEY=VALUE", "quiet=2s",
        "A setting of the policy, given to its init; repeatable.";
    reload_signal: Option<i32> = None,
        "policy.reload_signal", flag "reload-signal", env "LAMEDUCK_RELOAD_SIGNAL",
        as kinds::ReloadSignal, "SIGNAL", "HUP",
        "A signal that reloads the policy instead of being forwarded, e.g. HUP.";
    cpu_budget: Duration = Limits::default().cpu,
        "policy.cpu_budget", flag "cpu-budget", env "LAMEDUCK_CPU_BUDGET",
        as kinds::Budget, "DURATION", "5ms",
        "The CPU time a policy call may take.";
    memory_limit: usize = Limits::default().memory,
        "policy.memory_limit", flag "memory-limit", env "LAMEDUCK_MEMORY_LIMIT",
        as kinds::Memory, "SIZE", "8MiB",
        "The memory a policy may use (its memories and tables together).";
    probes: Vec<ProbeSpec> = vec![ProbeSpec::connections()],
        "probes", flag "probes", env "LAMEDUCK_PROBES",
        as kinds::Probes, "YAML", "[{name: web, connections: {ports: [8080]}}]",
        "The probes, as the file lists them (YAML or JSON).";
    admin: Option<SocketAddr> = Some(SocketAddr::from(([0, 0, 0, 0], 9911))),
        "admin.listen", flag "admin", env "LAMEDUCK_ADMIN",
        as kinds::Listen, "ADDR|off", "127.0.0.1:9000",
        "The admin server's address, or off.";
    readiness_url: Option<String> = None,
        "admin.readiness_url", flag "readiness-url", env "LAMEDUCK_READINESS_URL",
        as kinds::Url, "URL", "http://127.0.0.1:8080/ready",
        "The app's own readiness URL: /readyz also requires it to answer 2xx.";
    policy_push: bool = false,
        "admin.policy_push", flag "policy-push", env "LAMEDUCK_POLICY_PUSH",
        as kinds::Switch, "BOOL", "true",
        "Accept new policies by PUT /policy (needs the admin token).";
    prestop_auth: bool = false,
        "admin.prestop_auth", flag "prestop-auth", env "LAMEDUCK_PRESTOP_AUTH",
        as kinds::Switch, "BOOL", "true",
        "Make /prestop require the admin token too.";
    admin_token: Option<String> = None,
        "admin.token", flag none, env "LAMEDUCK_ADMIN_TOKEN",
        as kinds::Token, "TOKEN", "s3cret",
        "The admin server's bearer token.",
        why "a secret: never a flag, which ps shows to everyone on the node";
    node_ip: Option<IpAddr> = None,
        "node_ip", flag "node-ip", env "LAMEDUCK_NODE_IP",
        as kinds::Ip, "IP", "10.0.0.7",
        "The node's IP (the downward API's status.hostIP): connections from it, the kubelet's probes, are not the app's traffic.";
    log_format: LogFormat = LogFormat::Text,
        "log_format", flag "log-format", env "LAMEDUCK_LOG_FORMAT",
        as kinds::Format, "text|json", "json",
        "The log's format.";
    cache_dir: Option<PathBuf> = default_cache_dir(),
        "cache_dir", flag "cache-dir", env "LAMEDUCK_CACHE_DIR",
        as kinds::Dir, "DIR|off", "/var/cache/lameduck",
        "Where compiled policies, and policies pulled from registries, are cached, or off.";
    registry_auth: Option<PathBuf> = None,
        "registry.auth_file", flag "registry-auth", env "LAMEDUCK_REGISTRY_AUTH",
        as kinds::File, "FILE", "/var/run/secrets/registry/.dockerconfigjson",
        "Credentials for registries: a Docker config JSON, as an imagePullSecret holds it; registries it does not name are used anonymously.";
    registry_ca: Option<PathBuf> = None,
        "registry.ca_file", flag "registry-ca", env "LAMEDUCK_REGISTRY_CA",
        as kinds::File, "FILE", "/etc/lameduck/registry-ca.pem",
        "CA certificates (PEM) trusted for registries besides the system's; an image without system roots needs it for any HTTPS registry.";
    insecure_registries: Vec<String> = Vec::new(),
        "registry.insecure", flag "insecure-registry", env "LAMEDUCK_INSECURE_REGISTRIES",
        as kinds::Registries, "HOST:PORT", "registry.local:5000",
        "A registry spoken to over plain HTTP; repeatable. Every other one is HTTPS only.";
    registry_refresh: Option<Duration> = None,
        "registry.refresh", flag "registry-refresh", env "LAMEDUCK_REGISTRY_REFRESH",
        as kinds::Refresh, "DURATION|off", "5m",
        "How often a policy named by a tag (oci://…:TAG) is looked up again; a new digest is pulled and swapped in.";
}

/// A configuration error, located.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// How long the agent waits for a policy's answer, in CPU budgets of the
/// call: beyond it, the built-in logic answers.
pub const PATIENCE: u32 = 4;

/// The user's cache directory; none (no cache) without one: the cache holds
/// native code, so a shared directory such as /tmp would not do.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("lameduck"))
}

impl Config {
    /// Reads `file` (if given), the process's environment and `flags` (by
    /// declaration, as [`Args`] collects them), and checks the result.
    pub fn load(
        file: Option<&Path>,
        flags: &[(usize, Vec<String>)],
    ) -> Result<Config, ConfigError> {
        Config::load_with(file, |var| std::env::var(var).ok(), flags)
    }

    /// As [`Config::load`], with the environment read through `env`.
    pub fn load_with(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &[(usize, Vec<String>)],
    ) -> Result<Config, ConfigError> {
        let file = file.map(layers::read).transpose()?;
        let mut loaded = layers::load(file, env, flags)?;
        checks::check(&mut loaded)?;
        Ok(loaded.config)
    }

    /// The config a file holding `text` (named `name`) gives, alone, as
    /// `run` would load it: no flags, nothing from the environment.
    pub fn from_text(name: &Path, text: String) -> Result<Config, ConfigError> {
        let mut loaded = layers::load(Some((name.to_path_buf(), text)), |_| None, &[])?;
        checks::check(&mut loaded)?;
        Ok(loaded.config)
    }

    /// The policy's budgets.
    pub fn limits(&self) -> Limits {
        Limits {
            cpu: self.cpu_budget,
            // Instantiating and `init` never have less than a call.
            init: Limits::default().init.max(self.cpu_budget),
            memory: self.memory_limit,
            ..Limits::default()
        }
    }

    /// The bearer token `PUT /policy` requires; `None` when it is off.
    pub fn push_token(&self) -> Option<&str> {
        self.admin_token.as_deref().filter(|_| self.policy_push)
    }

    /// The bearer token `/prestop` requires, if any.
    pub fn prestop_token(&self) -> Option<&str> {
        self.admin_token.as_deref().filter(|_| self.prestop_auth)
    }

    /// How long the agent waits for the policy's answer before the built-in
    /// logic answers: [`PATIENCE`] times a call's CPU budget, and never
    /// less than half a second (wall-clock time on a loaded machine).
    pub fn patience(&self) -> Duration {
        (self.cpu_budget * PATIENCE).max(Duration::from_millis(500))
    }

    /// The time a drain has: the grace period less the safety margin.
    pub fn drain_budget(&self) -> Duration {
        self.grace_period.saturating_sub(self.safety_margin)
    }
}

#[cfg(test)]
mod tests;
