//! The operator's `policy.config` map, read with typed getters.

use crate::{Signal, parse_duration_ms};

/// The `policy.config` map given to `init`. Every getter records the key as
/// known; any key left unread when `init` returns is refused as unknown, so a
/// typo in the operator's YAML is an error rather than a silent default.
#[derive(Debug, Clone)]
pub struct Config {
    pairs: Vec<(String, String)>,
    known: Vec<&'static str>,
}

impl Config {
    /// Wraps the pairs given to `init`.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Config {
            pairs,
            known: Vec::new(),
        }
    }

    /// The raw value of `key`, if set.
    pub fn get(&mut self, key: &'static str) -> Option<&str> {
        self.known.push(key);
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A duration such as `250ms`, `30s`, `2m` or `1h`, in milliseconds.
    pub fn duration_ms(&mut self, key: &'static str, default_ms: u32) -> Result<u32, String> {
        match self.get(key) {
            None => Ok(default_ms),
            Some(text) => parse_duration_ms(text).ok_or_else(|| {
                format!(
                    "policy.config.{key}: `{text}` is not a duration (examples: 250ms, 30s, 2m)"
                )
            }),
        }
    }

    /// A signal name such as `TERM`, `SIGUSR1` or `usr1`; `none` gives `None`.
    pub fn signal(
        &mut self,
        key: &'static str,
        default: Option<Signal>,
    ) -> Result<Option<Signal>, String> {
        match self.get(key) {
            None => Ok(default),
            Some(text) if text.eq_ignore_ascii_case("none") => Ok(None),
            Some(text) => Signal::from_name(text).map(Some).ok_or_else(|| {
                format!("policy.config.{key}: `{text}` is not a signal name (examples: TERM, USR1, none)")
            }),
        }
    }

    /// A string value.
    pub fn string(&mut self, key: &'static str, default: &str) -> String {
        self.get(key).unwrap_or(default).to_string()
    }

    /// Refuses keys that no getter asked for.
    pub fn finish(&self) -> Result<(), String> {
        let unknown: Vec<&str> = self
            .pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !self.known.contains(k))
            .collect();
        match unknown.as_slice() {
            [] => Ok(()),
            keys => Err(format!(
                "policy.config: unknown key{} {} (known: {})",
                if keys.len() > 1 { "s" } else { "" },
                keys.join(", "),
                self.known.join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_with_the_known_ones() {
        let mut config = Config::new(vec![
            ("quiet".into(), "2s".into()),
            ("qiuet-max".into(), "9s".into()),
        ]);
        assert_eq!(config.duration_ms("quiet", 1), Ok(2_000));
        assert_eq!(config.duration_ms("quiet-max", 1), Ok(1));
        let err = config.finish().unwrap_err();
        assert!(err.contains("unknown key qiuet-max"), "{err}");
        assert!(err.contains("quiet-max"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut config = Config::new(vec![("delay".into(), "soon".into())]);
        let err = config.duration_ms("delay", 1).unwrap_err();
        assert!(
            err.contains("policy.config.delay") && err.contains("soon"),
            "{err}"
        );
        let mut config = Config::new(vec![("stop-signal".into(), "none".into())]);
        assert_eq!(config.signal("stop-signal", Some(Signal::Usr1)), Ok(None));
    }
}
