//! Reads YAML a user wrote, within bounds, every error located.
//!
//! serde_yaml alone is not enough for text from anyone: it loads a whole
//! document before its deserializer sees a node; libyaml under it is
//! quadratic in flow nesting (`[[[[…`: 200k levels, minutes); and it
//! replays an anchor for each alias, so a file under any size cap can stand
//! for billions of nodes (its own repetition limit counts the aliases, not
//! what they repeat). So every text is first walked once, event by event,
//! in linear time ([`scan`]): documents, depth, nodes with every alias
//! counted as what it repeats, and aliases, each against the reader's
//! [`Bounds`]; the first thing over is refused with its file, line, column
//! and field. Only then does serde_yaml read it, typed ([`from_str`]), its
//! errors located the same way.

mod events;
mod scan;

use std::fmt;

pub use events::Location;
pub use scan::{Bounds, Document, scan};

/// What is wrong with a text, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The file (or flag, or variable) the text came from.
    pub file: String,
    pub at: Option<Location>,
    /// The field at fault, as serde names it (`probes[0].http`); empty for
    /// the whole text.
    pub path: String,
    pub message: String,
}

impl Error {
    /// The error without its file, for a text that has a name of its own
    /// (a flag's): `line L column C: field: message`.
    pub fn inside(&self) -> String {
        let mut text = String::new();
        if let Some(at) = self.at {
            text.push_str(&format!("line {} column {}: ", at.line, at.column));
        }
        if !self.path.is_empty() {
            text.push_str(&format!("{}: ", self.path));
        }
        text + &self.message
    }
}

impl fmt::Display for Error {
    /// `file:line:column: field: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(at) = self.at {
            write!(f, ":{}:{}", at.line, at.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Error {}

/// The UTF-8 byte order mark some editors put first. kubectl and the API
/// server read past it; so do our readers.
pub const BOM: char = '\u{feff}';

/// `text` without a leading byte order mark.
pub fn without_bom(text: &str) -> &str {
    text.strip_prefix(BOM).unwrap_or(text)
}

/// Reads one document of `text` (from `file`) as a `T`, once it is known to
/// be within `bounds`.
pub fn from_str<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    bounds: &Bounds,
) -> Result<T, Error> {
    let text = without_bom(text);
    scan(file, text, bounds)?;
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| located(file, &e))
}

fn located(file: &str, e: &serde_path_to_error::Error<serde_yaml::Error>) -> Error {
    let inner = e.inner();
    let message = inner.to_string();
    // serde_yaml appends " at line L column C" and may lead with a partial
    // path; the error carries the location and the full path instead.
    let mut message = message.split(" at line ").next().unwrap_or(&message);
    if let Some((prefix, rest)) = message.split_once(": ")
        && prefix
            .chars()
            .all(|c| c.is_alphanumeric() || "_.[]-".contains(c))
    {
        message = rest;
    }
    let path = e.path().to_string();
    Error {
        file: file.to_string(),
        at: inner.location().map(|at| Location {
            line: at.line(),
            column: at.column(),
        }),
        path: if path == "." { String::new() } else { path },
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const BOUNDS: Bounds = Bounds {
        what: "a test",
        documents: 1,
        depth: 8,
        nodes: 1_000,
        aliases: 10,
    };

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        inner: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    #[test]
    fn an_error_names_the_file_line_column_and_field() {
        let error = from_str::<Outer>("s.yaml", "inner:\n  - n: 1\n  - n: x\n", &BOUNDS)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("s.yaml:3:8: inner[1].n: invalid type: string \"x\""),
            "{error}"
        );
        let error = from_str::<Outer>("s.yaml", "inner: [{m: 1}]\n", &BOUNDS)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("s.yaml:1:10: inner[0].m: unknown field `m`"),
            "{error}"
        );
    }

    #[test]
    fn a_bound_is_checked_before_serde_reads() {
        let text = format!("inner: [{}]\n", ["{n: 1}"; 400].join(", "));
        let error = from_str::<Outer>("s.yaml", &text, &BOUNDS).unwrap_err();
        assert!(error.message.contains("more than 1000 nodes"), "{error}");
        assert!(error.path.starts_with("inner["), "{error}");
    }

    #[test]
    fn a_byte_order_mark_is_read_past() {
        let outer: Outer = from_str("s.yaml", "\u{feff}inner: [{n: 1}]\n", &BOUNDS).unwrap();
        assert_eq!(outer.inner.len(), 1);
        assert_eq!(without_bom("\u{feff}a"), "a");
        assert_eq!(without_bom("a\u{feff}"), "a\u{feff}");
    }
}
