//! Where a policy comes from: one of the built-in policies, a component
//! file, or a reference to a registry (`oci://…`), given as the setting or
//! as the content of the file the setting names — a reference file, what a
//! ConfigMap holds when the component itself is too large for it.

use std::borrow::Cow;
use std::fmt;
use std::io::{Read, Seek};
use std::path::PathBuf;

use lameduck_oci::Reference;

use crate::files;

/// The largest policy file taken (a JavaScript component is ~12 MB).
pub const MAX_POLICY_BYTES: u64 = 64 << 20;

/// The largest reference file taken: a reference is a few hundred bytes at
/// most (a 255-character repository, a 128-character tag, a digest).
pub const MAX_REFERENCE_BYTES: u64 = 4 << 10;

/// Where the policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// One of the policies inside the binary (`builtin:drain`).
    Builtin(String),
    /// A component file, or a file holding a reference.
    File(PathBuf),
    /// A component in a registry.
    Oci(Reference),
}

/// What a policy source holds when it is read.
#[derive(Debug)]
pub enum Content {
    /// The component's bytes.
    Component(Cow<'static, [u8]>),
    /// A reference to pull the component by.
    Reference(Reference),
}

impl PolicySource {
    /// `builtin:NAME`, `oci://…` (its syntax checked here) or a path.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with(lameduck_oci::SCHEME) {
            return Reference::parse(text)
                .map(PolicySource::Oci)
                .map_err(|e| e.to_string());
        }
        Ok(match text.strip_prefix("builtin:") {
            Some(name) => PolicySource::Builtin(name.to_string()),
            None => PolicySource::File(PathBuf::from(text)),
        })
    }

    /// What can be known before the app starts, without compiling and
    /// without the network: a component's world, by its import and export
    /// names (without reading all of it), or a reference's syntax. Returns
    /// what was found, in words.
    pub fn inspect(&self) -> Result<String, String> {
        let checked = match self {
            PolicySource::Builtin(_) => match self.read()? {
                Content::Component(bytes) => {
                    lameduck_runtime::inspect(std::io::Cursor::new(&bytes[..]))
                }
                Content::Reference(_) => unreachable!("a built-in policy is a component"),
            },
            PolicySource::File(path) => {
                let (mut file, len) = files::open_regular(path, MAX_POLICY_BYTES)?;
                let at = |e: std::io::Error| format!("{}: {e}", path.display());
                let mut head = Vec::new();
                (&mut file)
                    .take(MAX_REFERENCE_BYTES)
                    .read_to_end(&mut head)
                    .map_err(at)?;
                if let Some(reference) = reference_in(&head, len) {
                    return reference
                        .map(|r| format!("{r}, pulled beside the app"))
                        .map_err(|e| format!("{self}: {e}"));
                }
                file.rewind().map_err(at)?;
                lameduck_runtime::inspect(file)
            }
            PolicySource::Oci(reference) => {
                return Ok(format!("{reference}, pulled beside the app"));
            }
        };
        checked.map_err(|e| format!("{self}: {e}"))
    }

    /// The component's bytes, or the reference to pull them by.
    pub fn read(&self) -> Result<Content, String> {
        use lameduck_runtime::builtin;
        match self {
            PolicySource::Builtin(name) => builtin::get(name)
                .map(|bytes| Content::Component(Cow::Borrowed(bytes)))
                .ok_or_else(|| {
                    let names: Vec<&str> = builtin::ALL.iter().map(|(n, _)| *n).collect();
                    format!(
                        "there is no built-in policy `{name}` (there are: {})",
                        names.join(", ")
                    )
                }),
            PolicySource::File(path) => {
                let bytes = files::read_regular(path, MAX_POLICY_BYTES)?;
                match reference_in(&bytes, bytes.len() as u64) {
                    Some(reference) => reference
                        .map(Content::Reference)
                        .map_err(|e| format!("{}: {e}", path.display())),
                    None => Ok(Content::Component(Cow::Owned(bytes))),
                }
            }
            PolicySource::Oci(reference) => Ok(Content::Reference(reference.clone())),
        }
    }
}

/// The reference a file holds, if it holds one: its text is `oci://…` and
/// nothing else but whitespace around it (a ConfigMap's trailing newline).
/// `head` is the start of the file, `len` its whole length. A component
/// never starts so: a binary one starts with `\0asm`, a text one with `(`
/// or a comment.
fn reference_in(head: &[u8], len: u64) -> Option<Result<Reference, String>> {
    let text = head.trim_ascii_start();
    if !text.starts_with(lameduck_oci::SCHEME.as_bytes()) {
        return None;
    }
    if len > MAX_REFERENCE_BYTES {
        return Some(Err(format!(
            "starts with {} but has {len} bytes: a reference file holds one reference, at most \
             {MAX_REFERENCE_BYTES} bytes",
            lameduck_oci::SCHEME
        )));
    }
    let Ok(text) = std::str::from_utf8(text.trim_ascii_end()) else {
        return Some(Err("a reference file that is not UTF-8 text".into()));
    };
    Some(Reference::parse(text).map_err(|e| e.to_string()))
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::Builtin(name) => write!(f, "builtin:{name}"),
            PolicySource::File(path) => write!(f, "{}", path.display()),
            PolicySource::Oci(reference) => write!(f, "{reference}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn sources() {
        assert_eq!(
            PolicySource::parse("builtin:jobs"),
            Ok(PolicySource::Builtin("jobs".into()))
        );
        assert_eq!(
            PolicySource::parse("/p.wasm").unwrap().to_string(),
            "/p.wasm"
        );
        let pinned = format!("oci://registry.example:5000/policies/drain@{DIGEST}");
        assert_eq!(
            PolicySource::parse(&pinned).unwrap().to_string(),
            pinned,
            "a reference reads back as it was written"
        );
        let error = PolicySource::parse("oci://registry.example/drain").unwrap_err();
        assert!(error.contains("pin a digest"), "{error}");
        let error = PolicySource::parse("builtin:nope")
            .unwrap()
            .read()
            .unwrap_err();
        assert!(
            error.contains("there is no built-in policy `nope`"),
            "{error}"
        );
        let error = PolicySource::File(std::env::temp_dir()).read().unwrap_err();
        assert!(
            error.ends_with("not a regular file (a directory)"),
            "{error}"
        );
    }

    #[test]
    fn a_file_holding_a_reference_is_read_as_one() {
        let dir = std::env::temp_dir().join(format!("lameduck-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.ref");
        let source = PolicySource::File(path.clone());
        // As a ConfigMap holds it: a trailing newline.
        let pinned = format!("oci://registry.example:5000/drain@{DIGEST}");
        std::fs::write(&path, format!("  {pinned}\n")).unwrap();
        match source.read().unwrap() {
            Content::Reference(reference) => assert_eq!(reference.to_string(), pinned),
            Content::Component(_) => panic!("read as a component"),
        }
        assert_eq!(
            source.inspect().unwrap(),
            format!("{pinned}, pulled beside the app")
        );
        // A bad reference is refused before the app starts, where it is.
        std::fs::write(&path, "oci://registry.example:5000/Drain:v1\n").unwrap();
        let error = source.inspect().unwrap_err();
        assert!(
            error.starts_with(&path.display().to_string()) && error.contains("\"Drain\""),
            "{error}"
        );
        // A component is still a component.
        std::fs::write(&path, b"\0asm\x0d\0\x01\0").unwrap();
        assert!(matches!(source.read().unwrap(), Content::Component(_)));
        // A large file starting like a reference is not one.
        let mut large = pinned.into_bytes();
        large.resize(MAX_REFERENCE_BYTES as usize + 1, b' ');
        std::fs::write(&path, &large).unwrap();
        let error = source.read().unwrap_err();
        assert!(error.contains("holds one reference"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
