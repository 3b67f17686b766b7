//! The operator's `policy.config` map, read with typed getters.

use crate::Signal;

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

/// Parses `250ms`, `30s`, `1.5s`, `2m`, `1h` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<u32> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    let ms = number * scale;
    (ms.is_finite() && ms <= u32::MAX as f64).then_some(ms.round() as u32)
}

impl Signal {
    /// Every signal of the contract, in declaration order.
    pub const ALL: [Signal; 22] = [
        Signal::Hup,
        Signal::Int,
        Signal::Quit,
        Signal::Kill,
        Signal::Usr1,
        Signal::Usr2,
        Signal::Pipe,
        Signal::Alrm,
        Signal::Term,
        Signal::Cont,
        Signal::Stop,
        Signal::Tstp,
        Signal::Ttin,
        Signal::Ttou,
        Signal::Urg,
        Signal::Xcpu,
        Signal::Xfsz,
        Signal::Vtalrm,
        Signal::Prof,
        Signal::Winch,
        Signal::Io,
        Signal::Pwr,
    ];

    /// The conventional name, without `SIG`: `TERM`, `USR1`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hup => "HUP",
            Signal::Int => "INT",
            Signal::Quit => "QUIT",
            Signal::Kill => "KILL",
            Signal::Usr1 => "USR1",
            Signal::Usr2 => "USR2",
            Signal::Pipe => "PIPE",
            Signal::Alrm => "ALRM",
            Signal::Term => "TERM",
            Signal::Cont => "CONT",
            Signal::Stop => "STOP",
            Signal::Tstp => "TSTP",
            Signal::Ttin => "TTIN",
            Signal::Ttou => "TTOU",
            Signal::Urg => "URG",
            Signal::Xcpu => "XCPU",
            Signal::Xfsz => "XFSZ",
            Signal::Vtalrm => "VTALRM",
            Signal::Prof => "PROF",
            Signal::Winch => "WINCH",
            Signal::Io => "IO",
            Signal::Pwr => "PWR",
        }
    }

    /// Parses `TERM`, `SIGTERM` or `term`.
    pub fn from_name(text: &str) -> Option<Signal> {
        let upper = text.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        Signal::ALL.into_iter().find(|s| s.name() == bare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("1.5s"), Some(1_500));
        assert_eq!(parse_duration_ms("2m"), Some(120_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("30"), None);
        assert_eq!(parse_duration_ms("s"), None);
        assert_eq!(parse_duration_ms("5 parsecs"), None);
        assert_eq!(parse_duration_ms("9999999h"), None);
    }

    #[test]
    fn signals_by_name() {
        assert_eq!(Signal::from_name("TERM"), Some(Signal::Term));
        assert_eq!(Signal::from_name("sigusr1"), Some(Signal::Usr1));
        assert_eq!(Signal::from_name("SIGFOO"), None);
        for s in Signal::ALL {
            assert_eq!(Signal::from_name(s.name()), Some(s));
        }
    }

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
