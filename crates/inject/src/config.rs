//! The lameduck config inject puts in the ConfigMap: the `--config` file,
//! its comments kept, or a new one; with `grace_period` set to the pod's.

use std::str::FromStr;
use std::time::Duration;

use yaml_edit::{Document, Mapping};

/// What a new config starts with.
const HEADER: &str = "\
# Written by `lameduck inject`. grace_period is the pod's
# terminationGracePeriodSeconds: change them together.
";

/// The config inject starts from: a file's text (its comments kept), or
/// nothing; and what the agent reads in it, which the caller loaded and
/// checked as `lameduck run` would.
#[derive(Debug, Default)]
pub struct BaseConfig {
    /// The file's text; `None` for a new config.
    text: Option<String>,
    facts: Facts,
}

/// What inject needs to know of a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The port the kubelet's hook and probes call.
    pub admin_port: u16,
    /// The grace period when neither the pod nor `--grace-period` gives one.
    pub grace_period: Duration,
    pub safety_margin: Duration,
    /// Whether the file gives the app's readiness URL.
    pub readiness_url: bool,
}

impl Default for Facts {
    /// The agent's defaults.
    fn default() -> Self {
        Facts {
            admin_port: 9911,
            grace_period: Duration::from_secs(30),
            safety_margin: Duration::from_secs(2),
            readiness_url: false,
        }
    }
}

impl BaseConfig {
    /// A config file's `text`, with what the agent reads in it.
    pub fn new(text: String, facts: Facts) -> Self {
        BaseConfig {
            text: Some(text),
            facts,
        }
    }

    /// The port the hook and the probes call.
    pub fn admin_port(&self) -> u16 {
        self.facts.admin_port
    }

    /// The grace period when neither the pod nor `--grace-period` gives one.
    pub fn grace_period(&self) -> Duration {
        self.facts.grace_period
    }

    pub fn safety_margin(&self) -> Duration {
        self.facts.safety_margin
    }

    /// The config for a pod: `grace_period` is the pod's, the app's
    /// readiness URL, if any, is `admin.readiness_url` (unless the file
    /// has one), and `policy_file`, if given, is `policy.file`. Directives
    /// (`%YAML 1.2`), which yaml-edit's document does not take, are kept
    /// ahead of it as they were.
    pub fn render(
        &self,
        grace_seconds: u64,
        readiness_url: Option<&str>,
        policy_file: Option<&str>,
    ) -> Result<String, String> {
        let (directives, base) = split_directives(self.text.as_deref().unwrap_or(HEADER));
        let cannot = |e: yaml_edit::YamlError| {
            format!("yaml-edit cannot edit the --config file ({e}): write it as a plain mapping")
        };
        let doc = match Document::from_str(base) {
            Ok(doc) if doc.as_mapping().is_some() => doc,
            // Comments only: the settings follow them.
            _ => {
                let mut text = base.to_string();
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!("grace_period: {grace_seconds}s\n"));
                Document::from_str(&text).map_err(cannot)?
            }
        };
        let config = doc
            .as_mapping()
            .ok_or("the --config file is not a mapping of settings")?;
        let grace = format!("{grace_seconds}s");
        if string_at(&config, "grace_period").as_deref() != Some(grace.as_str()) {
            config.set("grace_period", grace.as_str());
        }
        if let Some(url) = readiness_url.filter(|_| !self.facts.readiness_url) {
            if config.get_mapping("admin").is_none() {
                config.set("admin", Mapping::new());
            }
            let admin = config
                .get_mapping("admin")
                .ok_or("the --config file's `admin` is not a mapping")?;
            admin.set("readiness_url", url);
        }
        if let Some(file) = policy_file {
            if config.get_mapping("policy").is_none() {
                config.set("policy", Mapping::new());
            }
            let policy = config
                .get_mapping("policy")
                .ok_or("the --config file's `policy` is not a mapping")?;
            policy.set("file", file);
        }
        Ok(format!("{directives}{doc}"))
    }
}

/// The directives at the top of a config and the `---` that ends them
/// (`%YAML 1.2\n---\n`), and the rest; no directive, nothing split.
fn split_directives(text: &str) -> (&str, &str) {
    let mut at = 0;
    let mut directives = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if line.starts_with('%') {
            directives = true;
        } else if directives && (trimmed == "---" || line.starts_with("--- ")) {
            let end = at + 3;
            return text.split_at(end);
        } else if !(trimmed.is_empty() || trimmed.starts_with('#')) {
            break;
        }
        at += line.len();
    }
    ("", text)
}

/// The scalar at `key`, as a string.
fn string_at(mapping: &Mapping, key: &str) -> Option<String> {
    mapping.get(key)?.as_scalar().map(|s| s.as_string())
}
