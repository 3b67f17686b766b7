//! Where a policy comes from: one of the built-in policies, or a component
//! file.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use crate::files;

/// The largest policy file taken (a JavaScript component is ~12 MB).
pub const MAX_POLICY_BYTES: u64 = 64 << 20;

/// Where the policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// One of the policies inside the binary (`builtin:drain`).
    Builtin(String),
    /// A component file.
    File(PathBuf),
}

impl PolicySource {
    /// `builtin:NAME` or a path.
    pub fn parse(text: &str) -> Self {
        match text.strip_prefix("builtin:") {
            Some(name) => PolicySource::Builtin(name.to_string()),
            None => PolicySource::File(PathBuf::from(text)),
        }
    }

    /// Checks the component's world by its import and export names, without
    /// compiling it or reading all of it; returns the world.
    pub fn inspect(&self) -> Result<String, String> {
        let checked = match self {
            PolicySource::Builtin(_) => {
                let bytes = self.read()?;
                lameduck_runtime::inspect(std::io::Cursor::new(&bytes[..]))
            }
            PolicySource::File(path) => {
                lameduck_runtime::inspect(files::open_regular(path, MAX_POLICY_BYTES)?.0)
            }
        };
        checked.map_err(|e| format!("{self}: {e}"))
    }

    /// The component's bytes.
    pub fn read(&self) -> Result<Cow<'static, [u8]>, String> {
        use lameduck_runtime::builtin;
        match self {
            PolicySource::Builtin(name) => builtin::get(name).map(Cow::Borrowed).ok_or_else(|| {
                let names: Vec<&str> = builtin::ALL.iter().map(|(n, _)| *n).collect();
                format!(
                    "there is no built-in policy `{name}` (there are: {})",
                    names.join(", ")
                )
            }),
            PolicySource::File(path) => files::read_regular(path, MAX_POLICY_BYTES).map(Cow::Owned),
        }
    }
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::Builtin(name) => write!(f, "builtin:{name}"),
            PolicySource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(
            PolicySource::parse("builtin:jobs"),
            PolicySource::Builtin("jobs".into())
        );
        assert_eq!(PolicySource::parse("/p.wasm").to_string(), "/p.wasm");
        let error = PolicySource::parse("builtin:nope").read().unwrap_err();
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
}
