//! From bytes to a checked policy: compile (or load from the cache), check the
//! component against the world, link it to the sandbox.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::{v0_1, v0_2, v0_3};
use super::cache::Cache;
use super::instance::{self, Instance, Pre, State, Ticker};
use super::instrument;
use super::output::Lines;
use super::{Identity, Limits, LoadError, OLDER_WORLDS, PolicyError, WORLD};
use crate::builtin;

/// The exports the world requires.
const EXPORTS: [&str; 3] = ["init", "on-signal", "decide"];

/// The engine's settings: `lameduck-engine`'s, which the precompiled
/// built-in policy was made with, and the stack limit, which only counts at
/// run time.
fn engine_config(limits: &Limits) -> anyhow::Result<Config> {
    let mut config = lameduck_engine::config(None)?;
    config.max_wasm_stack(limits.stack);
    Ok(config)
}

/// Compiles and checks policies. One per agent: it owns the engine, the
/// sandbox's linker, the compile cache and the epoch ticker.
#[derive(Clone)]
pub struct Compiler {
    engine: Engine,
    linker: Arc<Linker<State>>,
    cache: Cache,
    limits: Limits,
    ticker: Arc<Ticker>,
}

impl Compiler {
    /// An engine with `limits`, caching compiled code in `cache_dir` (if set
    /// and writable).
    pub fn new(limits: Limits, cache_dir: Option<std::path::PathBuf>) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(&limits)?)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        instance::forbid_waiting(&mut linker)?;
        // Each version imports its own `host` interface: all are linked.
        v0_3::DrainPolicy::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)?;
        v0_2::DrainPolicy::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)?;
        v0_1::DrainPolicy::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)?;
        Ok(Compiler {
            ticker: Ticker::start(&engine),
            cache: Cache::new(cache_dir, &engine),
            engine,
            linker: Arc::new(linker),
            limits,
        })
    }

    /// The budgets policies run within.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles `bytes` (a component, binary or text) read from `source`, and
    /// checks it against the world.
    pub fn compile(&self, source: &str, bytes: &[u8]) -> Result<Compiled, LoadError> {
        let start = Instant::now();
        let sha256 = sha256_hex(bytes);
        let (component, origin) = match self.load_compiled(bytes, &sha256) {
            Some(found) => found,
            None => {
                // Every run of its code between two checks of the budget
                // made short (see `instrument`).
                let bytes = instrument::instrument(bytes).map_err(LoadError::Invalid)?;
                let component = Component::new(&self.engine, &bytes)
                    .map_err(|e| LoadError::Invalid(first_line(&e)))?;
                self.cache.store(&sha256, &component);
                (component, Origin::Compiled)
            }
        };
        let world = check_world(&self.engine, &component)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Mismatch(format!("{e:#}")))?;
        let mismatch = |e: wasmtime::Error| LoadError::Mismatch(format!("{e:#}"));
        let pre = if world == WORLD {
            Pre::V0_3(v0_3::DrainPolicyPre::new(instance_pre).map_err(mismatch)?)
        } else if world == OLDER_WORLDS[0] {
            Pre::V0_2(v0_2::DrainPolicyPre::new(instance_pre).map_err(mismatch)?)
        } else {
            Pre::V0_1(v0_1::DrainPolicyPre::new(instance_pre).map_err(mismatch)?)
        };
        Ok(Compiled {
            lines: Lines::new(source),
            identity: Identity {
                source: source.to_string(),
                sha256,
            },
            pre,
            world,
            limits: self.limits,
            ticker: self.ticker.clone(),
            compile_time: start.elapsed(),
            origin,
        })
    }

    /// Code compiled before: shipped in the binary, or in the cache.
    fn load_compiled(&self, bytes: &[u8], sha256: &str) -> Option<(Component, Origin)> {
        if let Some(code) = builtin::precompiled(bytes) {
            // SAFETY: the code was compiled from these very bytes at build
            // time, by `lameduck-precompile`, and is part of this binary; the
            // engine checks its header and settings before use.
            match unsafe { Component::deserialize(&self.engine, code) } {
                Ok(component) => return Some((component, Origin::Precompiled)),
                Err(e) => tracing::warn!("the precompiled built-in policy does not load: {e:#}"),
            }
        }
        Some((self.cache.load(sha256)?, Origin::Cache))
    }
}

/// Where a policy's native code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled just now.
    Compiled,
    /// The compile cache.
    Cache,
    /// Compiled at build time and shipped in the binary.
    Precompiled,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Compiled => "compiled",
            Origin::Cache => "from the compile cache",
            Origin::Precompiled => "precompiled, from the binary",
        })
    }
}

/// A checked policy, ready to be instantiated.
pub struct Compiled {
    identity: Identity,
    pre: Pre,
    /// What its instances may write to the agent's log, together.
    lines: Arc<Lines>,
    limits: Limits,
    ticker: Arc<Ticker>,
    /// The version of the world it was built against.
    pub world: String,
    /// How long compiling (or loading compiled code) and checking took.
    pub compile_time: Duration,
    /// Where the native code came from.
    pub origin: Origin,
}

impl Compiled {
    /// Where it came from and its sha256.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A fresh instance, `init`-ed with `config`.
    pub fn instantiate(&self, config: &[(String, String)]) -> Result<Instance, PolicyError> {
        Instance::new(
            &self.pre,
            self.limits,
            self.ticker.clone(),
            self.lines.clone(),
            config,
        )
    }
}

/// Checks imports and exports by name, so that a mismatch is reported in the
/// words an author understands ("export `decide` is missing") rather than as
/// a type error deep in the linker. Returns the world version found.
fn check_world(engine: &Engine, component: &Component) -> Result<String, LoadError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    check_names(&imports, &exports)
}

/// How much of a component [`inspect`] reads at a time.
const INSPECT_CHUNK: usize = 8 * 1024;

/// The check of [`check_world`] on a component, without compiling it: a
/// scan of its top-level import and export names. It reads the top-level
/// sections only and seeks over the nested modules (most of a large
/// component's bytes), so it is cheap enough to do before the app starts,
/// even for an 18 MB Python policy.
pub fn inspect(mut input: impl Read + Seek) -> Result<String, LoadError> {
    use wasmparser::{Chunk, Encoding, Parser, Payload};
    let invalid = |e: wasmparser::BinaryReaderError| LoadError::Invalid(e.to_string());
    let io = |e: std::io::Error| LoadError::Invalid(e.to_string());

    let len = input.seek(SeekFrom::End(0)).map_err(io)?;
    input.rewind().map_err(io)?;
    let mut buf = Vec::new();
    (&mut input).take(4).read_to_end(&mut buf).map_err(io)?;
    if buf != b"\0asm" {
        return Err(LoadError::Invalid(
            "not a WebAssembly binary (its first bytes are not `\\0asm`); \
             text (.wat) is for tests, turn it into a component with `wasm-tools parse`"
                .into(),
        ));
    }

    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut parser = Parser::new(0);
    let (mut at, mut eof) = (0, false);
    loop {
        let (consumed, payload) = match parser.parse(&buf[at..], eof).map_err(invalid)? {
            Chunk::Parsed { consumed, payload } => (consumed, payload),
            Chunk::NeedMoreData(hint) => {
                buf.drain(..at);
                at = 0;
                let read = (&mut input)
                    .take(hint.max(INSPECT_CHUNK) as u64)
                    .read_to_end(&mut buf)
                    .map_err(io)?;
                // At the end, the parser says what is missing.
                eof = read == 0;
                continue;
            }
        };
        at += consumed;
        let mut skip = 0;
        match payload {
            Payload::Version { encoding, .. } if encoding != Encoding::Component => {
                return Err(LoadError::Invalid(
                    "this is a core module; build a component (see guest-sdk/)".into(),
                ));
            }
            // Nested modules and components say nothing of the world.
            Payload::ModuleSection {
                unchecked_range, ..
            }
            | Payload::ComponentSection {
                unchecked_range, ..
            } => skip = (unchecked_range.end - unchecked_range.start) as usize,
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(invalid)?;
                    // Types the world `use`s are imported by name; they are not capabilities.
                    if !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                        imports.push(import.name.name.to_string());
                    }
                }
            }
            Payload::ComponentExportSection(reader) => {
                for export in reader {
                    exports.push(export.map_err(invalid)?.name.name.to_string());
                }
            }
            Payload::End(_) => break,
            _ => {}
        }
        let buffered = buf.len() - at;
        if skip <= buffered {
            at += skip;
        } else {
            let to = input
                .seek(SeekFrom::Current((skip - buffered) as i64))
                .map_err(io)?;
            if to > len {
                return Err(LoadError::Invalid(
                    "a nested module runs past the end of the file".into(),
                ));
            }
            buf.clear();
            at = 0;
        }
    }
    check_names(&imports, &exports)
}

/// Checks names; returns the world (of [`WORLD`] and [`OLDER_WORLDS`]) the
/// component was built against.
fn check_names(imports: &[String], exports: &[String]) -> Result<String, LoadError> {
    let mut found = None;
    for name in imports {
        if let Some(interface) = name.strip_prefix("lameduck:policy/") {
            let version = interface.split_once('@').map_or("", |(_, v)| v);
            let world = std::iter::once(WORLD)
                .chain(OLDER_WORLDS)
                .find(|world| compatible(version, version_of(world)))
                .ok_or_else(|| LoadError::Version {
                    found: version.to_string(),
                })?;
            found = Some(world.to_string());
        } else if !name.starts_with("wasi:") {
            return Err(LoadError::UnknownImport(name.to_string()));
        }
    }
    for export in EXPORTS {
        if !exports.iter().any(|e| e == export) {
            return Err(LoadError::MissingExport(export));
        }
    }
    Ok(found.unwrap_or_else(|| WORLD.to_string()))
}

fn version_of(world: &str) -> &str {
    world.split_once('@').map_or("", |(_, v)| v)
}

/// Semver compatibility as the component model reads it: `0.x.*` matches
/// `0.x.*`, `N.*` matches `N.*`.
fn compatible(a: &str, b: &str) -> bool {
    let key = |v: &str| -> Vec<String> {
        let parts: Vec<&str> = v.split('.').collect();
        match parts.as_slice() {
            ["0", minor, ..] => vec!["0".into(), minor.to_string()],
            [major, ..] => vec![major.to_string()],
            [] => vec![],
        }
    };
    key(a) == key(b)
}

/// Whether `found` is newer than this agent's world, for a plain message.
pub(super) fn is_newer(found: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(found) > parse(version_of(WORLD))
}

fn first_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().to_string()
}

/// The sha256 of `bytes`, in hex: a policy's identity.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_versions() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.3", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("", "0.1.0"));
        assert!(compatible("1.2.0", "1.0.0"));
        assert!(is_newer("0.4.0"));
        assert!(!is_newer("0.2.9"));
        let import = |v: &str| vec![format!("lameduck:policy/host@{v}")];
        let exports = EXPORTS.map(String::from);
        assert_eq!(check_names(&import("0.3.1"), &exports).unwrap(), WORLD);
        assert_eq!(
            check_names(&import("0.2.0"), &exports).unwrap(),
            OLDER_WORLDS[0]
        );
        assert_eq!(
            check_names(&import("0.1.0"), &exports).unwrap(),
            OLDER_WORLDS[1]
        );
        let newer = check_names(&import("0.4.0"), &exports).unwrap_err();
        assert_eq!(
            newer.to_string(),
            "built against lameduck:policy@0.4.0, a newer version than this agent's \
             lameduck:policy@0.3.0 (it also loads lameduck:policy@0.2.0, lameduck:policy@0.1.0)"
        );
    }

    /// Counts the bytes read through it.
    struct Counting<'a> {
        inner: std::io::Cursor<&'a [u8]>,
        read: usize,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n;
            Ok(n)
        }
    }

    impl Seek for Counting<'_> {
        fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
            self.inner.seek(to)
        }
    }

    #[test]
    fn inspect_reads_the_top_level_only() {
        let drain = crate::builtin::get("drain").unwrap();
        let mut input = Counting {
            inner: std::io::Cursor::new(drain),
            read: 0,
        };
        assert_eq!(inspect(&mut input).unwrap(), WORLD);
        // The core module, most of the bytes, is sought over.
        assert!(
            input.read < drain.len() / 4,
            "read {} of {} bytes",
            input.read,
            drain.len()
        );
    }

    #[test]
    fn inspect_refuses_a_truncated_component() {
        let drain = crate::builtin::get("drain").unwrap();
        for cut in [6, 100, drain.len() / 2, drain.len() - 1] {
            let error = inspect(std::io::Cursor::new(&drain[..cut])).unwrap_err();
            assert!(
                matches!(error, LoadError::Invalid(_)),
                "cut at {cut}: {error}"
            );
        }
    }

    /// The text format is for tests: the agent carries no parser for it.
    #[test]
    fn inspect_refuses_text_saying_what_to_do() {
        let text = b"(component)";
        let error = inspect(std::io::Cursor::new(&text[..])).unwrap_err();
        assert!(
            error.to_string().contains("not a WebAssembly binary")
                && error.to_string().contains("wasm-tools parse"),
            "{error}"
        );
    }
}
