//! The three layers over the defaults, each over the one before: the YAML
//! file, the environment (`LAMEDUCK_…`), the flags. Every setting is read
//! the same way whichever layer gives it ([`Kind::read`]); what differs is
//! only how its text is found and, on an error, how its place is named:
//! `file:line:column: key`, `LAMEDUCK_VAR`, or `--flag`.
//!
//! [`Kind::read`]: super::declare::Kind::read

use std::path::{Path, PathBuf};

use lameduck_yaml::Bounds;
use serde_yaml::{Mapping, Value};

use super::declare::{Declaration, Shape};
use super::locate::{key_of, locate, steps};
use super::{Config, ConfigError, DECLARATIONS};
use crate::files;

/// The largest config file taken.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A config is a page of settings, probes and the policy's included: a few
/// hundred nodes, five collections deep. Room for a hundred probes; none
/// for a file (or a flag) that stands for millions of nodes by aliases.
pub const CONFIG_BOUNDS: Bounds = Bounds {
    what: "a config",
    documents: 1,
    depth: 16,
    nodes: 10_000,
    aliases: 100,
};

/// Keys that once were, with what to write instead.
const GONE: [(&str, &str); 1] = [(
    "admin.enabled",
    "is gone: `admin.listen: off` turns the admin server off",
)];

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Default,
    File,
    Env(&'static str),
    Flag(&'static str),
}

/// A loaded configuration, with where each setting came from, to name the
/// place of a setting in an error.
pub struct Loaded {
    pub config: Config,
    /// By declaration, in order.
    origins: Vec<Origin>,
    /// The file and its text.
    file: Option<(PathBuf, String)>,
}

impl Loaded {
    /// The place of the setting at `path` (`probes[0].timeout`): its line
    /// in the file, or the variable or flag that gave it, then the path.
    pub fn place(&self, path: &str) -> String {
        let steps = steps(path);
        let key = key_of(&steps);
        let origin = DECLARATIONS
            .iter()
            .zip(&self.origins)
            .find(|(d, _)| {
                key.strip_prefix(d.key)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['[', '.']))
            })
            .map(|(_, origin)| *origin)
            .unwrap_or(Origin::Default);
        match origin {
            Origin::File if self.file.is_some() => self.place_in_file(path),
            Origin::Env(var) => format!("{var}: {key}"),
            Origin::Flag(flag) => format!("--{flag}: {key}"),
            _ => key,
        }
    }
}

/// The text of the config file at `path`: a regular file, bounded.
pub fn read(path: &Path) -> Result<(PathBuf, String), ConfigError> {
    let text = files::read_text(path, MAX_CONFIG_BYTES).map_err(ConfigError)?;
    Ok((path.to_path_buf(), text))
}

/// Reads `file` (its name and text, if given), the environment (through
/// `env`) and `flags` (the texts of each declaration's flag, by its index)
/// over the defaults.
pub fn load(
    file: Option<(PathBuf, String)>,
    env: impl Fn(&str) -> Option<String>,
    flags: &[(usize, Vec<String>)],
) -> Result<Loaded, ConfigError> {
    let mut loaded = Loaded {
        config: Config::default(),
        origins: vec![Origin::Default; DECLARATIONS.len()],
        file: None,
    };
    if let Some((path, text)) = file {
        // Read past a byte order mark, as kubectl does: the lines and
        // columns given later are then those of the text after it.
        let text = match text.strip_prefix(lameduck_yaml::BOM) {
            Some(rest) => rest.to_string(),
            None => text,
        };
        loaded.file = Some((path, text));
        loaded.read_file()?;
    }
    for (i, declaration) in DECLARATIONS.iter().enumerate() {
        let Some(var) = declaration.env else { continue };
        let Some(text) = env(var) else { continue };
        let yaml = from_text(declaration, &[text])
            .and_then(|yaml| loaded.config.set(declaration.key, &yaml));
        yaml.map_err(|e| ConfigError(format!("{var}: {}", joined(declaration.key, &e))))?;
        loaded.origins[i] = Origin::Env(var);
    }
    for (i, texts) in flags {
        let declaration = &DECLARATIONS[*i];
        let flag = declaration.flag.expect("a flag was given");
        let yaml = from_text(declaration, texts)
            .and_then(|yaml| loaded.config.set(declaration.key, &yaml));
        yaml.map_err(|e| ConfigError(format!("--{flag}: {}", joined(declaration.key, &e))))?;
        loaded.origins[*i] = Origin::Flag(flag);
    }
    Ok(loaded)
}

impl Loaded {
    fn read_file(&mut self) -> Result<(), ConfigError> {
        let (path, text) = self.file.clone().expect("a file");
        let yaml: Value =
            lameduck_yaml::from_str(&path.display().to_string(), &text, &CONFIG_BOUNDS)
                .map_err(|e| ConfigError(e.to_string()))?;
        match yaml {
            Value::Null => Ok(()),
            Value::Mapping(map) => self.walk(&map, ""),
            _ => Err(ConfigError(format!(
                "{}: not a map of settings (such as `grace_period: 30s`)",
                path.display()
            ))),
        }
    }

    /// Sets every declared key under `prefix` that `map` holds, and refuses
    /// the keys that are not declared.
    fn walk(&mut self, map: &Mapping, prefix: &str) -> Result<(), ConfigError> {
        for (key, value) in map {
            let name = key.as_str().unwrap_or_default();
            let key = format!("{prefix}{name}");
            if let Some(i) = DECLARATIONS.iter().position(|d| d.key == key) {
                if let Err(e) = self.config.set(&key, value) {
                    self.origins[i] = Origin::File;
                    return Err(self.error(&key, &e));
                }
                self.origins[i] = Origin::File;
                continue;
            }
            let below = format!("{key}.");
            match value {
                Value::Mapping(map) if DECLARATIONS.iter().any(|d| d.key.starts_with(&below)) => {
                    self.walk(map, &below)?
                }
                // `admin:` with nothing under it.
                Value::Null if DECLARATIONS.iter().any(|d| d.key.starts_with(&below)) => {}
                _ => return Err(self.unknown(&key, prefix)),
            }
        }
        Ok(())
    }

    /// An error in the file's value of `key`: `e` may lead with the place
    /// inside it (`[0].http.url: …`).
    fn error(&self, key: &str, e: &str) -> ConfigError {
        let (inside, message) = match e.split_once(": ") {
            Some((inside, message)) if inside.starts_with(['[', '.']) => (inside, message),
            _ => ("", e),
        };
        let path = format!("{key}{inside}");
        ConfigError(format!("{}: {message}", self.place_in_file(&path)))
    }

    fn place_in_file(&self, path: &str) -> String {
        let (file, text) = self.file.as_ref().expect("a file");
        let steps = steps(path);
        let found = (1..=steps.len())
            .rev()
            .find_map(|len| locate(text, &steps[..len]));
        match found {
            Some(at) => format!("{}:{}:{}: {path}", file.display(), at.line(), at.column()),
            None => format!("{}: {path}", file.display()),
        }
    }

    fn unknown(&self, key: &str, prefix: &str) -> ConfigError {
        let place = self.place_in_file(key);
        if let Some((_, instead)) = GONE.iter().find(|(gone, _)| *gone == key) {
            return ConfigError(format!("{place}: {instead}"));
        }
        let mut known: Vec<&str> = DECLARATIONS
            .iter()
            .filter_map(|d| d.key.strip_prefix(prefix))
            .map(|rest| rest.split('.').next().unwrap_or(rest))
            .collect();
        known.dedup();
        ConfigError(format!(
            "{place}: unknown setting (known here: {})",
            known.join(", ")
        ))
    }
}

/// `key: message`, or `key[0].x: message` when the message leads with the
/// place inside the value.
fn joined(key: &str, e: &str) -> String {
    if e.starts_with(['[', '.']) {
        format!("{key}{e}")
    } else {
        format!("{key}: {e}")
    }
}

/// The YAML a file would hold for the texts of a flag (given once or more)
/// or of a variable.
fn from_text(declaration: &Declaration, texts: &[String]) -> Result<Value, String> {
    let items = || {
        texts
            .iter()
            .flat_map(|t| t.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    };
    match declaration.shape {
        Shape::Scalar => Ok(Value::String(texts.last().cloned().unwrap_or_default())),
        Shape::Yaml => {
            let text = texts.last().map_or("", String::as_str);
            lameduck_yaml::from_str(declaration.key, text, &CONFIG_BOUNDS).map_err(|e| e.inside())
        }
        Shape::List => Ok(Value::Sequence(
            items().map(|t| Value::String(t.into())).collect(),
        )),
        Shape::Pairs => {
            let mut map = Mapping::new();
            for item in items() {
                let (k, v) = item
                    .split_once('=')
                    .ok_or_else(|| format!("`{item}` is not key=value"))?;
                map.insert(
                    Value::String(k.trim().into()),
                    Value::String(v.trim().into()),
                );
            }
            Ok(Value::Mapping(map))
        }
    }
}
