//! Reading YAML a user wrote (scenarios, manifests): typed, with every
//! error naming the file, line, column and key at fault.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Parses YAML read from `path`; an error names the file, line, column and
/// key at fault.
pub fn from_yaml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| located(path, &e))
}

fn located(path: &Path, e: &serde_path_to_error::Error<serde_yaml::Error>) -> String {
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
        Some(at) => format!(
            "{}:{}:{}: {key}{message}",
            path.display(),
            at.line(),
            at.column()
        ),
        None => format!("{}: {key}{message}", path.display()),
    }
}

/// A duration written as `250ms`, `30s`, `2m`.
#[derive(Debug, Clone, Copy)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        lameduck_core::parse_duration_ms(&text)
            .map(|ms| Duration::from_millis(ms.into()))
            .ok_or_else(|| format!("`{text}` is not a duration (examples: 250ms, 30s, 2m)"))
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}
