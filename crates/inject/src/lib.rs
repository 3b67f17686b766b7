//! `lameduck inject`: adds lameduck to Kubernetes manifests, as the app's
//! entrypoint or as a native sidecar, and writes them back.
//!
//! Each document is read twice: by serde_yaml, strictly, to decide what to
//! change and to refuse what cannot be injected ([`plan`]); and by yaml-edit,
//! losslessly, to change only that ([`write`]). Everything else, comments and
//! key order included, is copied as it was; a document left alone is copied
//! byte for byte, so injecting twice changes nothing the second time.

mod config;
mod objects;
mod plan;
mod write;

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;
use yaml_edit::YamlFile;

pub use config::{BaseConfig, Facts};
use plan::{CommandChange, Decision};

/// Where lameduck runs in the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The app container's entrypoint (`lameduck run -- app`), copied in by
    /// an init container: PID 1 duties, every signal, the app's exit code.
    Entrypoint,
    /// A native sidecar (an init container with `restartPolicy: Always`,
    /// Kubernetes >= 1.29): the app's command is left alone.
    Sidecar,
}

impl Mode {
    /// The name, as in `--mode` and the annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Entrypoint => "entrypoint",
            Mode::Sidecar => "sidecar",
        }
    }
}

/// How to inject.
#[derive(Debug)]
pub struct Options {
    pub mode: Mode,
    /// The lameduck image.
    pub image: String,
    /// The grace period of pods without `terminationGracePeriodSeconds`;
    /// by default the config's `grace_period`.
    pub grace_period: Option<Duration>,
    /// The config the ConfigMaps start from.
    pub config: BaseConfig,
    /// The app container; by default the one kubectl defaults to, or the first.
    pub container: Option<String>,
    /// Entrypoint mode: the commands of containers whose manifest has none,
    /// by container name.
    pub commands: Vec<(String, Vec<String>)>,
    /// The policy's reference (`oci://…`, checked by the caller): the
    /// ConfigMap holds it as a reference file, which `policy.file` names.
    pub policy: Option<String>,
}

impl Options {
    /// The defaults for `mode`.
    pub fn new(mode: Mode) -> Self {
        Options {
            mode,
            image: default_image(),
            grace_period: None,
            config: BaseConfig::default(),
            container: None,
            commands: Vec::new(),
            policy: None,
        }
    }
}

/// The image of this version.
pub fn default_image() -> String {
    format!("lameduck:{}", env!("CARGO_PKG_VERSION"))
}

/// A command is one list of words.
const COMMAND: lameduck_yaml::Bounds = lameduck_yaml::Bounds {
    what: "a command",
    documents: 1,
    depth: 1,
    nodes: 10_000,
    aliases: 0,
};

/// `NAME=CMD` of `--command`: CMD is a YAML or JSON list
/// (`[/docker-entrypoint.sh, nginx, -g, "daemon off;"]`) or words split
/// at spaces (`/app/server --port 8080`).
pub fn parse_command(text: &str) -> Result<(String, Vec<String>), String> {
    let (name, command) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=COMMAND"))?;
    let command = command.trim();
    let words: Vec<String> = if command.starts_with('[') {
        lameduck_yaml::from_str("--command", command, &COMMAND)
            .map_err(|e| format!("`{command}`: {}", e.inside()))?
    } else {
        command.split_whitespace().map(str::to_string).collect()
    };
    if name.trim().is_empty() || words.is_empty() {
        return Err(format!("`{text}` is not NAME=COMMAND"));
    }
    Ok((name.trim().to_string(), words))
}

/// The manifests with lameduck added.
#[derive(Debug)]
pub struct Injected {
    pub text: String,
    /// What the user should know: objects left alone, probes kept.
    pub notes: Vec<String>,
    /// Each lameduck config written, for the caller to load as `run` will.
    pub configs: Vec<Written>,
}

/// A lameduck config written into a ConfigMap.
#[derive(Debug)]
pub struct Written {
    /// The workload it is for, for messages: `app.yaml: document 2 (Deployment/web)`.
    pub place: String,
    pub config: String,
}

/// The largest input taken: manifests are read whole. A rendered chart or
/// a `kustomize build` of an application is a few megabytes at most; the
/// API server stores no object over 1.5 MiB.
pub const MAX_BYTES: u64 = 16 << 20;

/// A stream of manifests: thousands of objects, each a few hundred nodes
/// (a CRD's schema, thousands). Deeper than serde_yaml's own limit (128)
/// nothing was ever read; more nodes than a 16 MiB stream of plain YAML
/// has (about one per 8 bytes) only aliases can stand for.
pub const BOUNDS: lameduck_yaml::Bounds = lameduck_yaml::Bounds {
    what: "a stream of manifests",
    documents: 10_000,
    depth: 128,
    nodes: 2_000_000,
    aliases: 10_000,
};

/// Why nothing was injected.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The input is not YAML.
    #[error("{input}: {message}")]
    Syntax { input: String, message: String },
    /// The input stands for more than [`BOUNDS`] allow.
    #[error("{0}")]
    Bounds(lameduck_yaml::Error),
    /// A document that cannot be injected as it is.
    #[error(
        "{input}: document {index} at line {line} ({object}){}: {message}",
        .container.as_ref().map(|c| format!(", container {c}")).unwrap_or_default()
    )]
    Refused {
        input: String,
        /// From 1.
        index: usize,
        line: usize,
        /// `Kind/name`.
        object: String,
        container: Option<String>,
        message: String,
    },
    /// An option that does not fit the input.
    #[error("{0}")]
    Option(String),
}

/// Injects lameduck into every workload of `text` (the YAML read from
/// `input`, a name for messages).
pub fn inject(input: &str, text: &str, options: &Options) -> Result<Injected, InjectError> {
    if options.mode == Mode::Sidecar
        && let Some((name, _)) = options.commands.first()
    {
        return Err(InjectError::Option(format!(
            "--command {name}=…: sidecar mode leaves commands alone; it is for --mode entrypoint"
        )));
    }
    // kubectl and the API server read past a byte order mark.
    let text = lameduck_yaml::without_bom(text);
    let docs = read_documents(input, text)?;
    let config_maps = config_maps(docs.iter().map(|d| &d.value));

    let mut out = String::with_capacity(text.len() + 2048 * docs.len());
    let mut notes = Vec::new();
    let mut configs = Vec::new();
    let mut used = HashSet::new();
    let mut copied = 0;
    let mut lines = Lines::default();
    for (i, Read { range, value }) in docs.iter().enumerate() {
        out.push_str(&text[copied..range.start]);
        copied = range.end;
        let line = lines.content_line(text, range.start);
        let original = &text[range.clone()];
        let object = object_name(value);
        let refused = |container: Option<String>, message: String| InjectError::Refused {
            input: input.to_string(),
            index: i + 1,
            line,
            object: object.clone(),
            container,
            message,
        };
        let here = format!("{input}: document {} ({object})", i + 1);
        match plan::decide(value, options, &config_maps) {
            Err(refusal) => return Err(refused(refusal.container, refusal.message)),
            Ok(Decision::Pass) => out.push_str(original),
            Ok(Decision::Leave(note)) => {
                notes.push(format!("{here}: {note}"));
                out.push_str(original);
            }
            Ok(Decision::Inject(plan)) => {
                // Edited alone: an edit in the whole stream's tree would
                // copy every document's node at the top, each time.
                let file =
                    YamlFile::from_str(original).map_err(|e| refused(None, e.to_string()))?;
                let doc = file
                    .documents()
                    .next()
                    .ok_or_else(|| refused(None, "yaml-edit reads no document here".into()))?;
                write::apply(&doc, &plan, options).map_err(|write::Unedited(path)| {
                    refused(
                        None,
                        format!(
                            "cannot edit {path}: it is an alias or tagged; write it out plainly"
                        ),
                    )
                })?;
                if let CommandChange::Given { name, .. } = &plan.command {
                    used.insert(name.clone());
                }
                let edited = doc.to_string();
                push_config_map(&mut out, &plan.config_map.to_yaml(), &edited);
                out.push_str(&edited);
                notes.extend(plan.notes.iter().map(|n| format!("{here}: {n}")));
                configs.push(Written {
                    place: here,
                    config: plan.config_map.config().to_string(),
                });
            }
        }
    }
    out.push_str(&text[copied..]);
    // A typo in a name still needed is refused above (the command unknown).
    for (name, _) in options.commands.iter().filter(|(n, _)| !used.contains(n)) {
        notes.push(format!(
            "--command {name}=…: no container {name} was given it"
        ));
    }
    Ok(Injected {
        text: out,
        notes,
        configs,
    })
}

/// A document as read: where it was, to copy it as it was (and to edit it);
/// and its value, to decide.
struct Read {
    range: std::ops::Range<usize>,
    value: Value,
}

/// Every document of `text`, once it is known to be within [`BOUNDS`]: only
/// then is it parsed whole, by serde_yaml and by yaml-edit (whose parser
/// would take a deep nesting as deep as it goes).
fn read_documents(input: &str, text: &str) -> Result<Vec<Read>, InjectError> {
    let syntax = |message: String| InjectError::Syntax {
        input: input.to_string(),
        message,
    };
    let documents = lameduck_yaml::scan(input, text, &BOUNDS).map_err(InjectError::Bounds)?;
    for (i, document) in documents.iter().enumerate() {
        if let Some((major, minor)) = document.version.filter(|v| *v != (1, 1)) {
            return Err(syntax(format!(
                "document {} at line {}: `%YAML {major}.{minor}`: the Kubernetes API server \
                 reads YAML 1.1 and refuses any other version (\"found incompatible YAML \
                 document\"); remove the directive",
                i + 1,
                document.at.line
            )));
        }
    }
    check_syntax(input, text)?;
    let file = YamlFile::from_str(text).map_err(|e| syntax(e.to_string()))?;
    // Only the ranges: yaml-edit's nodes, kept alive all together, would
    // cost each new one a walk past the others (40k documents: 39 s).
    let ranges: Vec<_> = file
        .documents()
        .map(|node| {
            let range = node.byte_range();
            range.start as usize..range.end as usize
        })
        .collect();
    drop(file);
    ranges
        .into_iter()
        .map(|range| {
            let value =
                serde_yaml::from_str(&text[range.clone()]).map_err(|e| syntax(e.to_string()))?;
            Ok(Read { range, value })
        })
        .collect()
}

/// serde_yaml reads the whole stream first: yaml-edit recovers from some
/// errors that must stop inject, and serde_yaml's messages have the line
/// and column.
fn check_syntax(input: &str, text: &str) -> Result<(), InjectError> {
    for doc in serde_yaml::Deserializer::from_str(text) {
        Value::deserialize(doc).map_err(|e| {
            let mut message = e.to_string();
            if let Some(at) = e.location()
                && !message.contains(" at line ")
            {
                message = format!("line {} column {}: {message}", at.line(), at.column());
            }
            InjectError::Syntax {
                input: input.to_string(),
                message,
            }
        })?;
    }
    Ok(())
}

/// The ConfigMaps in the input, whose names inject must not take.
fn config_maps<'a>(values: impl Iterator<Item = &'a Value>) -> plan::ConfigMaps {
    let field = |v: &Value, key: &str| v.get("metadata")?.get(key)?.as_str().map(str::to_string);
    values
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("ConfigMap"))
        .filter_map(|v| Some((field(v, "namespace"), field(v, "name")?)))
        .collect()
}

/// Lines counted so far, documents being met in order: each document's
/// line costs the text since the one before, not the text since the top.
#[derive(Default)]
struct Lines {
    at: usize,
    /// Newlines before `at`.
    before: usize,
}

impl Lines {
    /// The line where the document at `start` has its first key, past its
    /// comments and its `---`.
    fn content_line(&mut self, text: &str, start: usize) -> usize {
        self.before += text[self.at..start].matches('\n').count();
        self.at = start;
        let preamble = text[start..]
            .lines()
            .take_while(|l| {
                let l = l.trim();
                l.is_empty() || l.starts_with('#') || l == "---"
            })
            .count();
        self.before + 1 + preamble
    }
}

/// `Kind/name`, for messages.
fn object_name(value: &Value) -> String {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!("{kind}/{name}")
}

/// Puts the ConfigMap before its workload, so that `kubectl apply` creates
/// it first, as a document of its own.
fn push_config_map(out: &mut String, config_map: &str, workload: &str) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if workload.starts_with("---") {
        out.push_str("---\n");
        out.push_str(config_map);
    } else {
        // The first document, without a marker: it gets one.
        out.push_str(config_map);
        out.push_str("---\n");
    }
}

#[cfg(test)]
mod tests;
