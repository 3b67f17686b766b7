//! From bytes to a checked policy: compile (or load from the cache), check the
//! component against the world, link it to the sandbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::{DrainPolicy, DrainPolicyPre};
use super::cache::Cache;
use super::instance::{self, Instance, State, Ticker};
use super::{Identity, Limits, LoadError, PolicyError, WORLD};

/// The exports the world requires.
const EXPORTS: [&str; 3] = ["init", "on-signal", "decide"];

/// Every engine setting lives here, so a cached artifact always matches the
/// engine that loads it.
fn engine_config(limits: &Limits) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(limits.stack);
    // Traps are reported by kind; backtraces would cost time on every trap.
    config.wasm_backtrace_max_frames(None);
    // A policy is a little logic; what dominates a call is the component
    // boundary, not its code. Unoptimised compiles are much faster, which
    // is what a hot swap waits for.
    config.cranelift_opt_level(wasmtime::OptLevel::None);
    config
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
        let engine = Engine::new(&engine_config(&limits))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        instance::forbid_waiting(&mut linker)?;
        DrainPolicy::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)?;
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
        let (component, from_cache) = match self.cache.load(&sha256) {
            Some(component) => (component, true),
            None => {
                let component = Component::new(&self.engine, bytes)
                    .map_err(|e| LoadError::Invalid(first_line(&e)))?;
                self.cache.store(&sha256, &component);
                (component, false)
            }
        };
        let world = check_world(&self.engine, &component)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Mismatch(format!("{e:#}")))?;
        let pre =
            DrainPolicyPre::new(instance_pre).map_err(|e| LoadError::Mismatch(format!("{e:#}")))?;
        Ok(Compiled {
            identity: Identity {
                source: source.to_string(),
                sha256,
            },
            pre,
            world,
            limits: self.limits,
            ticker: self.ticker.clone(),
            compile_time: start.elapsed(),
            from_cache,
        })
    }
}

/// A checked policy, ready to be instantiated.
pub struct Compiled {
    identity: Identity,
    pre: DrainPolicyPre<State>,
    limits: Limits,
    ticker: Arc<Ticker>,
    /// The version of the world it was built against.
    pub world: String,
    /// How long compiling (or loading from the cache) and checking took.
    pub compile_time: Duration,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
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
            &self.identity,
            self.limits,
            self.ticker.clone(),
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

/// The check of [`check_world`] on a component's bytes, without compiling
/// it: a scan of its top-level import and export names. Cheap enough to do
/// before the app starts, even for a large component.
pub fn inspect(bytes: &[u8]) -> Result<String, LoadError> {
    use wasmparser::{Chunk, Encoding, Parser, Payload};
    let invalid = |e: wasmparser::BinaryReaderError| LoadError::Invalid(e.to_string());
    let text;
    let mut rest = if bytes.starts_with(b"\0asm") {
        bytes
    } else {
        text = wat::parse_bytes(bytes).map_err(|e| LoadError::Invalid(e.to_string()))?;
        &text[..]
    };
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut parser = Parser::new(0);
    loop {
        let (consumed, payload) = match parser.parse(rest, true).map_err(invalid)? {
            Chunk::Parsed { consumed, payload } => (consumed, payload),
            Chunk::NeedMoreData(_) => unreachable!("all the bytes are given"),
        };
        rest = &rest[consumed..];
        match payload {
            Payload::Version { encoding, .. } if encoding != Encoding::Component => {
                return Err(LoadError::Invalid(
                    "this is a core module; build a component (see guest-sdk/)".into(),
                ));
            }
            // Nested modules and components are most of a large component's
            // bytes and say nothing of its world: step over them.
            Payload::ModuleSection {
                unchecked_range, ..
            }
            | Payload::ComponentSection {
                unchecked_range, ..
            } => {
                rest = rest
                    .get((unchecked_range.end - unchecked_range.start) as usize..)
                    .ok_or_else(|| {
                        LoadError::Invalid("a nested section runs past the end".into())
                    })?;
            }
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
    }
    check_names(&imports, &exports)
}

fn check_names(imports: &[String], exports: &[String]) -> Result<String, LoadError> {
    let ours = version_of(WORLD);
    let mut found = None;
    for name in imports {
        if let Some(interface) = name.strip_prefix("lameduck:policy/") {
            let version = interface.split_once('@').map_or("", |(_, v)| v);
            if !compatible(version, ours) {
                return Err(LoadError::Version {
                    found: version.to_string(),
                });
            }
            found = Some(format!("lameduck:policy@{version}"));
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
        assert!(is_newer("0.2.0"));
        assert!(!is_newer("0.0.9"));
    }
}
