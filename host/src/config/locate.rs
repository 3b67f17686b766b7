//! Where a setting is in a YAML file: `file:line:column`, found by the path
//! of keys and indexes that leads to it.

use std::fmt;

/// A step of a path into the YAML: a key or an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `probes[0].timeout`.
pub fn key_of(path: &[Step<'_>]) -> String {
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
pub fn locate(text: &str, path: &[Step<'_>]) -> Option<serde_yaml::Location> {
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

/// The steps of a path written `probes[0].http.url`.
pub fn steps(path: &str) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while let Some(close) = rest.find(']') {
            if let Ok(i) = rest[1..close].parse() {
                steps.push(Step::Index(i));
            }
            rest = &rest[close + 1..];
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_and_found() {
        assert_eq!(
            steps("probes[0].http.url"),
            [
                Step::Key("probes"),
                Step::Index(0),
                Step::Key("http"),
                Step::Key("url")
            ]
        );
        assert_eq!(key_of(&steps("a.b[2][3].c")), "a.b[2][3].c");
        let text = "probes:\n  - name: a\n  - name: b\n    http: { url: x }\n";
        let at = locate(text, &steps("probes[1].http.url")).unwrap();
        assert_eq!((at.line(), at.column()), (4, 18));
        assert!(locate(text, &steps("probes[2]")).is_none());
    }
}
