//! The kinds of values settings take, each read once whichever way it was
//! given (see [`Kind`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use serde_yaml::Value;

use super::declare::{Kind, Shape};
use crate::log::LogFormat;
use crate::probes::ProbeSpec;
use crate::source::PolicySource;
use lameduck_core::Signal;

/// A YAML scalar (string, number or boolean) as text.
pub fn scalar(yaml: &Value) -> Result<String, String> {
    match yaml {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Tagged(tagged) => scalar(&tagged.value),
        _ => Err("expected a string, number or boolean".into()),
    }
}

/// `250ms`, `30s`, `2m` as a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    lameduck_core::parse_duration_ms(text)
        .map(|ms| Duration::from_millis(ms.into()))
        .ok_or_else(|| format!("`{text}` is not a duration (examples: 250ms, 30s, 2m)"))
}

/// A duration: `250ms`, `30s`, `2m`.
pub struct Time;

impl Kind for Time {
    type Value = Duration;
    fn read(yaml: &Value) -> Result<Duration, String> {
        parse_duration(&scalar(yaml)?)
    }
    fn show(value: &Duration) -> serde_json::Value {
        json!(lameduck_core::show_duration(*value))
    }
}

/// A time something may take (a CPU budget, a probe's timeout): a duration,
/// and not zero (which would refuse every call, fail every probe).
pub struct Budget;

impl Budget {
    pub fn parse(text: &str) -> Result<Duration, String> {
        let duration = parse_duration(text)?;
        if duration.is_zero() {
            return Err("must be more than 0ms: nothing could be done within it".into());
        }
        Ok(duration)
    }
}

impl Kind for Budget {
    type Value = Duration;
    fn read(yaml: &Value) -> Result<Duration, String> {
        Budget::parse(&scalar(yaml)?)
    }
    fn show(value: &Duration) -> serde_json::Value {
        Time::show(value)
    }
}

/// One WebAssembly page: no policy runs in less.
const MIN_MEMORY: u64 = 64 << 10;

/// The most a 32-bit policy can address.
const MAX_MEMORY: u64 = 4 << 30;

/// The memory a policy may use: `16MiB`, `512KiB`, or bytes.
pub struct Memory;

impl Kind for Memory {
    type Value = usize;
    fn read(yaml: &Value) -> Result<usize, String> {
        let text = scalar(yaml)?;
        let bytes = text
            .trim()
            .parse::<bytesize::ByteSize>()
            .map_err(|_| format!("`{text}` is not a size (examples: 16MiB, 512KiB)"))?
            .as_u64();
        if !(MIN_MEMORY..=MAX_MEMORY).contains(&bytes) {
            return Err(format!(
                "`{text}` is out of range: from 64KiB (one WebAssembly page) to 4GiB"
            ));
        }
        Ok(bytes as usize)
    }
    fn show(value: &usize) -> serde_json::Value {
        let units = [(30, "GiB"), (20, "MiB"), (10, "KiB")];
        let shown = units
            .iter()
            .find(|(shift, _)| value.is_multiple_of(1 << shift))
            .map_or(format!("{value}"), |(shift, unit)| {
                format!("{}{unit}", value >> shift)
            });
        json!(shown)
    }
}

/// `true` or `false`.
pub struct Switch;

impl Kind for Switch {
    type Value = bool;
    fn read(yaml: &Value) -> Result<bool, String> {
        match scalar(yaml)?.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!("`{other}` is neither true nor false")),
        }
    }
    fn show(value: &bool) -> serde_json::Value {
        json!(value)
    }
}

/// A policy: `builtin:NAME`, a component file or an `oci://` reference.
pub struct Source;

impl Kind for Source {
    type Value = PolicySource;
    fn read(yaml: &Value) -> Result<PolicySource, String> {
        let text = scalar(yaml)?;
        if text.is_empty() {
            return Err("empty: give builtin:NAME, a component file or an oci:// reference".into());
        }
        PolicySource::parse(&text)
    }
    fn show(value: &PolicySource) -> serde_json::Value {
        json!(value.to_string())
    }
}

/// A second policy, if any.
pub struct Shadow;

impl Kind for Shadow {
    type Value = Option<PolicySource>;
    fn read(yaml: &Value) -> Result<Option<PolicySource>, String> {
        Source::read(yaml).map(Some)
    }
    fn show(value: &Option<PolicySource>) -> serde_json::Value {
        json!(value.as_ref().map(ToString::to_string))
    }
}

/// `policy.config`: a map of scalars, each key once. A later layer adds
/// keys and replaces those it gives again.
pub struct Pairs;

impl Kind for Pairs {
    type Value = Vec<(String, String)>;
    const SHAPE: Shape = Shape::Pairs;
    fn read(yaml: &Value) -> Result<Vec<(String, String)>, String> {
        let Value::Mapping(map) = yaml else {
            return Err("expected a map of keys to values".into());
        };
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(map.len());
        for (key, value) in map {
            let key = scalar(key)?;
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(format!("`{key}` is given twice"));
            }
            let value = scalar(value).map_err(|e| format!("{key}: {e}"))?;
            pairs.push((key, value));
        }
        pairs.sort();
        Ok(pairs)
    }
    fn join(earlier: &mut Vec<(String, String)>, later: Vec<(String, String)>) {
        for (key, value) in later {
            earlier.retain(|(k, _)| *k != key);
            earlier.push((key, value));
        }
    }
    /// The keys only: the values may be secrets.
    fn show(value: &Vec<(String, String)>) -> serde_json::Value {
        json!(value.iter().map(|(k, _)| k).collect::<Vec<_>>())
    }
}

/// A signal that may reload the policy: one the agent can catch and that
/// does not already mean something (TERM and INT begin the drain).
pub struct ReloadSignal;

impl ReloadSignal {
    pub fn parse(name: &str) -> Result<i32, String> {
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
}

impl Kind for ReloadSignal {
    type Value = Option<i32>;
    fn read(yaml: &Value) -> Result<Option<i32>, String> {
        ReloadSignal::parse(&scalar(yaml)?).map(Some)
    }
    fn show(value: &Option<i32>) -> serde_json::Value {
        json!(value.map(crate::signals::name))
    }
}

/// The admin server's address, or `off`.
pub struct Listen;

impl Listen {
    pub fn parse(text: &str) -> Result<Option<SocketAddr>, String> {
        if text == "off" {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|e| {
            format!("`{text}` is neither `off` nor an address like 0.0.0.0:9911 ({e})")
        })
    }
}

impl Kind for Listen {
    type Value = Option<SocketAddr>;
    fn read(yaml: &Value) -> Result<Option<SocketAddr>, String> {
        Listen::parse(&scalar(yaml)?)
    }
    fn show(value: &Option<SocketAddr>) -> serde_json::Value {
        json!(value.map_or("off".to_string(), |a| a.to_string()))
    }
}

/// A URL the agent can GET: `http://host[:port]/path`.
pub struct Url;

impl Kind for Url {
    type Value = Option<String>;
    fn read(yaml: &Value) -> Result<Option<String>, String> {
        let url = scalar(yaml)?;
        crate::probes::check_url(&url)?;
        Ok(Some(url))
    }
    fn show(value: &Option<String>) -> serde_json::Value {
        json!(value)
    }
}

/// A bearer token: trimmed (one read from a file or a Secret often ends
/// with a newline), without whitespace inside, which a bearer token cannot
/// hold. Never shown.
pub struct Token;

impl Kind for Token {
    type Value = Option<String>;
    fn read(yaml: &Value) -> Result<Option<String>, String> {
        let token = scalar(yaml)?.trim().to_string();
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the admin token contains whitespace, which a bearer token cannot".into());
        }
        Ok(Some(token).filter(|t| !t.is_empty()))
    }
    fn show(value: &Option<String>) -> serde_json::Value {
        json!(value.as_ref().map(|_| "(set)"))
    }
}

/// An IP address.
pub struct Ip;

impl Kind for Ip {
    type Value = Option<IpAddr>;
    fn read(yaml: &Value) -> Result<Option<IpAddr>, String> {
        let text = scalar(yaml)?;
        text.parse()
            .map(Some)
            .map_err(|_| format!("`{text}` is not an IP address"))
    }
    fn show(value: &Option<IpAddr>) -> serde_json::Value {
        json!(value.map(|ip| ip.to_string()))
    }
}

/// `text` or `json`.
pub struct Format;

impl Kind for Format {
    type Value = LogFormat;
    fn read(yaml: &Value) -> Result<LogFormat, String> {
        match scalar(yaml)?.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}` is neither text nor json")),
        }
    }
    fn show(value: &LogFormat) -> serde_json::Value {
        json!(value)
    }
}

/// A directory, or `off` (or nothing) for none.
pub struct Dir;

impl Kind for Dir {
    type Value = Option<PathBuf>;
    fn read(yaml: &Value) -> Result<Option<PathBuf>, String> {
        let text = scalar(yaml)?;
        Ok((!text.is_empty() && text != "off").then(|| PathBuf::from(text)))
    }
    fn show(value: &Option<PathBuf>) -> serde_json::Value {
        json!(
            value
                .as_ref()
                .map_or("off".to_string(), |d| d.display().to_string())
        )
    }
}

/// A file a setting names (a path as given), or nothing.
pub struct File;

impl Kind for File {
    type Value = Option<PathBuf>;
    fn read(yaml: &Value) -> Result<Option<PathBuf>, String> {
        let text = scalar(yaml)?;
        if text.is_empty() {
            return Err("empty: give a file's path".into());
        }
        Ok(Some(PathBuf::from(text)))
    }
    fn show(value: &Option<PathBuf>) -> serde_json::Value {
        json!(value.as_ref().map(|p| p.display().to_string()))
    }
}

/// Registries by `host:port`, as references name them: a list.
pub struct Registries;

impl Registries {
    /// `host`, `host:port` or `[v6]:port`, as the reference grammar has it.
    pub fn parse(text: &str) -> Result<String, String> {
        let text = text.trim();
        // The grammar is the references' own: checked by parsing one.
        match lameduck_oci::Reference::parse(&format!("oci://{text}/x:y")) {
            Ok(reference) if reference.registry() == text => Ok(text.to_string()),
            Ok(_) => Err(format!("`{text}` is not a registry (HOST:PORT)")),
            Err(lameduck_oci::Error::Reference { reason, .. }) => {
                Err(format!("`{text}` is not a registry (HOST:PORT): {reason}"))
            }
            Err(e) => Err(format!("`{text}`: {e}")),
        }
    }
}

impl Kind for Registries {
    type Value = Vec<String>;
    const SHAPE: Shape = Shape::List;
    fn read(yaml: &Value) -> Result<Vec<String>, String> {
        let items = match yaml {
            Value::Sequence(items) => items.iter().collect(),
            Value::Null => Vec::new(),
            one => vec![one],
        };
        items
            .into_iter()
            .map(|item| Registries::parse(&scalar(item)?))
            .collect()
    }
    fn show(value: &Vec<String>) -> serde_json::Value {
        json!(value)
    }
}

/// How often to look a tag up again: a duration more than nothing, or `off`.
pub struct Refresh;

impl Kind for Refresh {
    type Value = Option<Duration>;
    fn read(yaml: &Value) -> Result<Option<Duration>, String> {
        match scalar(yaml)?.as_str() {
            "off" | "" => Ok(None),
            text => Budget::parse(text).map(Some),
        }
    }
    fn show(value: &Option<Duration>) -> serde_json::Value {
        value.as_ref().map_or(json!("off"), Time::show)
    }
}

/// The probes: a list, each with a name, a timeout and one kind.
pub struct Probes;

impl Kind for Probes {
    type Value = Vec<ProbeSpec>;
    const SHAPE: Shape = Shape::Yaml;
    fn read(yaml: &Value) -> Result<Vec<ProbeSpec>, String> {
        // The error leads with the place inside the list: `[0].http.url: …`.
        let probes: Vec<ProbeSpec> = serde_path_to_error::deserialize(yaml).map_err(|e| {
            let inner = e.inner().to_string();
            let inner = inner.split(" at line ").next().unwrap_or(&inner);
            match e.path().to_string().as_str() {
                "." => inner.to_string(),
                path if inner.starts_with('.') => format!("{path}{inner}"),
                path => format!("{path}: {inner}"),
            }
        })?;
        let mut names: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        if let Some(dup) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("two probes are named `{}`", dup[0]));
        }
        Ok(probes)
    }
    fn show(value: &Vec<ProbeSpec>) -> serde_json::Value {
        serde_json::to_value(value).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::String(s.into())
    }

    #[test]
    fn sizes() {
        assert_eq!(Memory::read(&text("16MiB")), Ok(16 << 20));
        assert_eq!(Memory::read(&text("65536")), Ok(65536));
        assert!(
            Memory::read(&text("lots"))
                .unwrap_err()
                .contains("not a size")
        );
        for huge in ["17179869184GiB", "99999999999999999999999", "5GiB"] {
            assert!(Memory::read(&text(huge)).is_err(), "{huge}");
        }
        assert_eq!(Memory::show(&(16 << 20)), json!("16MiB"));
        assert_eq!(Memory::show(&65537), json!("65537"));
    }

    #[test]
    fn a_budget_is_more_than_nothing() {
        assert!(
            Budget::read(&text("0s"))
                .unwrap_err()
                .contains("more than 0ms")
        );
    }

    #[test]
    fn registries_are_host_and_port() {
        let list = serde_yaml::from_str("[registry.local:5000, 10.0.0.7:5000, localhost]");
        assert_eq!(
            Registries::read(&list.unwrap()),
            Ok(vec![
                "registry.local:5000".to_string(),
                "10.0.0.7:5000".into(),
                "localhost".into()
            ])
        );
        for bad in ["http://r:5000", "r:5000/x", "r:99999", "bad_host:1"] {
            let e = Registries::read(&text(bad)).unwrap_err();
            assert!(e.contains("is not a registry (HOST:PORT)"), "{bad}: {e}");
        }
        assert_eq!(Refresh::read(&text("off")), Ok(None));
        assert!(Refresh::read(&text("0s")).is_err());
    }

    #[test]
    fn pairs_join_by_key() {
        let mut pairs = Pairs::read(&serde_yaml::from_str("{b: 1, a: x}").unwrap()).unwrap();
        assert_eq!(pairs, [("a".into(), "x".into()), ("b".into(), "1".into())]);
        Pairs::join(&mut pairs, vec![("a".into(), "y".into())]);
        assert_eq!(pairs, [("b".into(), "1".into()), ("a".into(), "y".into())]);
    }
}
