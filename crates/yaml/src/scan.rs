//! The bounds pass: one walk over libyaml's events that counts what the
//! text stands for and stops at the first thing over a bound.
//!
//! An alias stands for its anchor's whole node, repeated: serde_yaml
//! replays the anchor's events each time, so a few kilobytes can stand for
//! billions of nodes. Each anchor's size is known when its node ends, so an
//! alias costs the walk one lookup, however much it stands for: the walk is
//! linear in the text, and once it has passed, reading the text is bounded
//! by the nodes counted here.

use std::collections::HashMap;

use super::Error;
use super::events::{Event, Location, Parser};

/// How much a reader takes. Every reader states its own, with why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// What is read, for messages: "a config".
    pub what: &'static str,
    /// Documents in the stream (`---`).
    pub documents: usize,
    /// Collections within collections.
    pub depth: usize,
    /// Nodes (scalars, sequences, mappings, keys included), each alias
    /// counted as the nodes it repeats: the work of reading the text.
    pub nodes: u64,
    /// Aliases (`*name`).
    pub aliases: u64,
}

/// What a scan saw of each document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Where it begins.
    pub at: Location,
    /// Its `%YAML` directive, if any.
    pub version: Option<(i32, i32)>,
}

/// A collection not yet ended.
struct Open {
    kind: Kind,
    /// The anchor's number, if it has one.
    anchor: Option<usize>,
    /// Nodes counted before it.
    before: u64,
    /// The tallest of its elements so far (a scalar is 0 tall).
    tallest: usize,
}

enum Kind {
    Sequence { next: usize },
    Mapping { key: Option<String>, at_key: bool },
}

/// An anchored node, once it has ended: the nodes it stands for and how
/// many collections deep it goes.
#[derive(Clone, Copy)]
struct Size {
    nodes: u64,
    height: usize,
}

struct Walk<'b> {
    file: &'b str,
    bounds: &'b Bounds,
    open: Vec<Open>,
    nodes: u64,
    aliases: u64,
    /// The current document's anchors: name to number (a later anchor of
    /// the same name wins, as in serde_yaml).
    names: HashMap<Vec<u8>, usize>,
    /// By number: `None` while the anchored node is still open.
    sizes: Vec<Option<Size>>,
    documents: Vec<Document>,
}

/// Walks `text` (read from `file`, for messages) and refuses the first
/// thing over `bounds`, with its line, column and field. A syntax error
/// ends the walk without a refusal: serde_yaml, reading next, reports it
/// in its words, having been given nothing over a bound before it.
pub fn scan(file: &str, text: &str, bounds: &Bounds) -> Result<Vec<Document>, Error> {
    let mut walk = Walk {
        file,
        bounds,
        open: Vec::new(),
        nodes: 0,
        aliases: 0,
        names: HashMap::new(),
        sizes: Vec::new(),
        documents: Vec::new(),
    };
    let mut parser = Parser::new(text.as_bytes());
    loop {
        match parser.next_event() {
            Ok((Event::StreamEnd, _)) | Err(_) => return Ok(walk.documents),
            Ok((event, at)) => walk.step(event, at)?,
        }
    }
}

impl Walk<'_> {
    fn step(&mut self, event: Event, at: Location) -> Result<(), Error> {
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart { version } => {
                if self.documents.len() == self.bounds.documents {
                    let n = self.bounds.documents;
                    return Err(self.refuse(
                        at,
                        format!(
                            "more than {n} document{} (`---`): more than {} has",
                            if n == 1 { "" } else { "s" },
                            self.bounds.what
                        ),
                    ));
                }
                self.documents.push(Document { at, version });
                self.names.clear();
                self.sizes.clear();
            }
            Event::Scalar { anchor, value } => {
                self.count(1, at)?;
                if let Some(name) = anchor {
                    let number = self.anchor(name);
                    self.sizes[number] = Some(Size {
                        nodes: 1,
                        height: 0,
                    });
                }
                self.ended(Some(value.as_slice()), 0);
            }
            Event::Alias { anchor } => {
                self.aliases += 1;
                if self.aliases > self.bounds.aliases {
                    return Err(self.refuse(
                        at,
                        format!(
                            "more than {} aliases (`*name`): more than {} has",
                            self.bounds.aliases, self.bounds.what
                        ),
                    ));
                }
                let name = String::from_utf8_lossy(&anchor).into_owned();
                let Some(&number) = self.names.get(&anchor) else {
                    return Err(
                        self.refuse(at, format!("`*{name}`: no anchor `&{name}` before it"))
                    );
                };
                let Some(size) = self.sizes[number] else {
                    return Err(self.refuse(
                        at,
                        format!("`*{name}` is inside the node `&{name}` names: it would repeat itself without end"),
                    ));
                };
                if self.open.len() + size.height > self.bounds.depth {
                    return Err(self.too_deep(at));
                }
                self.count(size.nodes, at)?;
                self.ended(None, size.height);
            }
            Event::SequenceStart { anchor } => {
                self.begin(Kind::Sequence { next: 0 }, anchor, at)?
            }
            Event::MappingStart { anchor } => {
                let kind = Kind::Mapping {
                    key: None,
                    at_key: true,
                };
                self.begin(kind, anchor, at)?
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(open) = self.open.pop() else {
                    return Ok(());
                };
                let size = Size {
                    nodes: self.nodes - open.before,
                    height: open.tallest + 1,
                };
                if let Some(number) = open.anchor {
                    self.sizes[number] = Some(size);
                }
                self.ended(None, size.height);
            }
        }
        Ok(())
    }

    /// A collection begins.
    fn begin(&mut self, kind: Kind, anchor: Option<Vec<u8>>, at: Location) -> Result<(), Error> {
        if self.open.len() == self.bounds.depth {
            return Err(self.too_deep(at));
        }
        let before = self.nodes;
        self.count(1, at)?;
        let anchor = anchor.map(|name| self.anchor(name));
        self.open.push(Open {
            kind,
            anchor,
            before,
            tallest: 0,
        });
        Ok(())
    }

    /// A new anchor, open until its node ends.
    fn anchor(&mut self, name: Vec<u8>) -> usize {
        let number = self.sizes.len();
        self.sizes.push(None);
        self.names.insert(name, number);
        number
    }

    fn count(&mut self, nodes: u64, at: Location) -> Result<(), Error> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > self.bounds.nodes {
            return Err(self.refuse(
                at,
                format!(
                    "more than {} nodes, each alias counted as the nodes it repeats: more than {} has",
                    self.bounds.nodes, self.bounds.what
                ),
            ));
        }
        Ok(())
    }

    /// A node `height` collections tall has ended (a scalar's `text` is
    /// kept if it is a key, to name the place of what follows).
    fn ended(&mut self, text: Option<&[u8]>, height: usize) {
        let Some(parent) = self.open.last_mut() else {
            return;
        };
        parent.tallest = parent.tallest.max(height);
        match &mut parent.kind {
            Kind::Sequence { next } => *next += 1,
            Kind::Mapping { key, at_key } => {
                if *at_key {
                    *key =
                        Some(text.map_or("?".into(), |t| String::from_utf8_lossy(t).into_owned()));
                }
                *at_key = !*at_key;
            }
        }
    }

    fn too_deep(&self, at: Location) -> Error {
        self.refuse(
            at,
            format!(
                "nested more than {} deep: more than {} has",
                self.bounds.depth, self.bounds.what
            ),
        )
    }

    fn refuse(&self, at: Location, message: String) -> Error {
        Error {
            file: self.file.to_string(),
            at: Some(at),
            path: self.path(),
            message,
        }
    }

    /// The place being read, as serde names it: `probes[0].http`.
    fn path(&self) -> String {
        let mut path = String::new();
        for open in &self.open {
            match &open.kind {
                Kind::Sequence { next } => path.push_str(&format!("[{next}]")),
                Kind::Mapping {
                    key: Some(key),
                    at_key: false,
                } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Kind::Mapping { .. } => {}
            }
        }
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Bounds = Bounds {
        what: "a test",
        documents: 1,
        depth: 4,
        nodes: 100,
        aliases: 10,
    };

    fn refusal(text: &str, bounds: &Bounds) -> String {
        scan("t.yaml", text, bounds).unwrap_err().to_string()
    }

    #[test]
    fn what_is_within_bounds_passes() {
        let text = "a: &x [1, 2]\nb: *x\nc: {d: [[e]]}\n";
        let documents = scan("t.yaml", text, &SMALL).unwrap();
        assert_eq!(documents.len(), 1);
        // A syntax error is left to serde_yaml, which words it.
        assert!(scan("t.yaml", "a: [1\n", &SMALL).is_ok());
    }

    #[test]
    fn an_alias_counts_as_what_it_repeats() {
        // 15 nodes before the aliases, then 11 more for each: the eighth
        // passes 100.
        let text = format!(
            "a: &x [{}]\nb: [{}]\n",
            ["s"; 10].join(", "),
            ["*x"; 9].join(", ")
        );
        let error = refusal(&text, &SMALL);
        assert!(
            error.starts_with("t.yaml:2:") && error.contains(": b[7]: more than 100 nodes"),
            "{error}"
        );
        // The same number of aliases of a small node passes.
        let text = format!("a: &x s\nb: [{}]\n", ["*x"; 9].join(", "));
        assert!(scan("t.yaml", &text, &SMALL).is_ok());
    }

    #[test]
    fn nested_aliases_multiply_and_are_stopped_early() {
        // The billion laughs: each level ten of the one before.
        let mut text = String::from("a: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*l{}", i - 1); 10].join(", ");
            text.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
        }
        let bounds = Bounds {
            nodes: 1_000_000,
            aliases: 1_000,
            depth: 64,
            ..SMALL
        };
        let error = refusal(&text, &bounds);
        assert!(error.contains("more than 1000000 nodes"), "{error}");
        assert!(
            error.contains(": l6[0]: ") || error.contains(": l5["),
            "{error}"
        );
    }

    #[test]
    fn depth_counts_what_an_alias_brings() {
        let error = refusal(&format!("a: {}x{}\n", "[".repeat(5), "]".repeat(5)), &SMALL);
        assert!(
            error.starts_with("t.yaml:1:7: a[0][0][0]: nested more than 4 deep"),
            "{error}"
        );
        // Three deep, under one level, under a key: four.
        assert!(scan("t.yaml", "a: &x [[[1]]]\n", &SMALL).is_ok());
        let error = refusal("a: &x [[[1]]]\nb: [*x]\n", &SMALL);
        assert!(error.contains("b[0]: nested more than 4 deep"), "{error}");
    }

    #[test]
    fn aliases_documents_and_loops_are_refused() {
        let text = format!("a: &x 1\nb: [{}]\n", ["*x"; 11].join(", "));
        assert!(refusal(&text, &SMALL).contains("b[10]: more than 10 aliases"));
        let error = refusal("a: 1\n---\nb: 2\n", &SMALL);
        assert!(
            error.starts_with("t.yaml:2:1: more than 1 document"),
            "{error}"
        );
        let error = refusal("a: &x [1, *x]\n", &SMALL);
        assert!(
            error.contains("a[1]: `*x` is inside the node `&x` names"),
            "{error}"
        );
        let error = refusal("a: *nowhere\n", &SMALL);
        assert!(error.contains("a: `*nowhere`: no anchor"), "{error}");
    }

    #[test]
    fn deep_flow_nesting_is_refused_where_it_passes_the_bound() {
        // libyaml's scanner is quadratic in flow depth (200k levels took
        // minutes parsed whole): the walk stops at the level over the bound.
        let n = 200_000;
        let text = format!("a: {}{}\n", "[".repeat(n), "]".repeat(n));
        let error = refusal(&text, &SMALL);
        assert!(error.starts_with("t.yaml:1:7: "), "{error}");
    }
}
