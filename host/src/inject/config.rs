//! The lameduck config inject puts in the ConfigMap: the `--config` file,
//! its comments kept, or a new one; with `grace_period` set to the pod's.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use yaml_edit::{Document, Mapping};

use crate::config::Config;

/// What a new config starts with.
const HEADER: &str = "\
# Written by `lameduck inject`. grace_period is the pod's
# terminationGracePeriodSeconds: change them together.
";

/// The config inject starts from: a file's, or the defaults.
#[derive(Debug, Default)]
pub struct BaseConfig {
    /// The file's text; `None` for a new config.
    text: Option<String>,
    /// The same, loaded as `lameduck run` would load it.
    loaded: Config,
}

impl BaseConfig {
    /// Reads and checks `path`; its admin server must be on, since the
    /// kubelet's hook and probe call it.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = crate::files::read_text(path, crate::config::MAX_CONFIG_BYTES)?;
        // As `run` reads it in the pod: the file alone, no flags, and
        // nothing from this machine's environment.
        let loaded = Config::load_with(Some(path), |_| None, &[]).map_err(|e| e.to_string())?;
        if loaded.admin.is_none() {
            return Err(format!(
                "{}: the admin server is off, but the kubelet's preStop hook and readiness \
                 probe call it",
                path.display()
            ));
        }
        // The hook would have to carry the token, in the manifest, in clear.
        if loaded.prestop_token().is_some() {
            return Err(format!(
                "{}: admin.prestop_auth is on, and inject writes no token into a preStop hook: \
                 add its httpHeaders yourself, or turn it off",
                path.display()
            ));
        }
        Ok(BaseConfig {
            text: Some(text),
            loaded,
        })
    }

    /// The port the hook and the probes call.
    pub fn admin_port(&self) -> u16 {
        self.loaded.admin.map_or(9911, |a| a.port())
    }

    /// The grace period when neither the pod nor `--grace-period` gives one.
    pub fn grace_period(&self) -> Duration {
        self.loaded.grace_period
    }

    pub fn safety_margin(&self) -> Duration {
        self.loaded.safety_margin
    }

    /// The config for a pod: `grace_period` is the pod's, and the app's
    /// readiness URL, if any, is `admin.readiness_url` (unless the file
    /// has one).
    pub fn render(&self, grace_seconds: u64, readiness_url: Option<&str>) -> String {
        let base = self.text.as_deref().unwrap_or(HEADER);
        let doc = match Document::from_str(base) {
            Ok(doc) if doc.as_mapping().is_some() => doc,
            // Comments only: the settings follow them.
            _ => {
                let mut text = base.to_string();
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!("grace_period: {grace_seconds}s\n"));
                Document::from_str(&text).expect("comments and a key parse")
            }
        };
        let config = doc.as_mapping().expect("a mapping");
        let grace = format!("{grace_seconds}s");
        if string_at(&config, "grace_period").as_deref() != Some(grace.as_str()) {
            config.set("grace_period", grace.as_str());
        }
        if let Some(url) = readiness_url.filter(|_| self.loaded.readiness_url.is_none()) {
            if config.get_mapping("admin").is_none() {
                config.set("admin", Mapping::new());
            }
            let admin = config.get_mapping("admin").expect("just set");
            admin.set("readiness_url", url);
        }
        doc.to_string()
    }
}

/// The scalar at `key`, as a string.
fn string_at(mapping: &Mapping, key: &str) -> Option<String> {
    mapping.get(key)?.as_scalar().map(|s| s.as_string())
}
