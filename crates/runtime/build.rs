//! Builds the built-in policies for `wasm32-wasip2` and leaves them in
//! `OUT_DIR` for `include_bytes!`, so the agent carries its default policy;
//! and the default policy compiled ahead of time for the target's CPU
//! architecture, so that a first start need not compile it.
//!
//! Both are built by a nested cargo with a target directory of its own (the
//! outer build holds the lock on ours), without the outer build's flags,
//! which are for the target, not for wasm or for this machine.

use std::path::{Path, PathBuf};
use std::process::Command;

const POLICIES: [&str; 3] = ["drain", "delay", "jobs"];
/// What the built-in policies are compiled for.
const WASM: &str = "wasm32-wasip2";
const PROFILE: &str = "wasm-policy";
/// The policy compiled ahead of time: the default one. The others compile
/// when chosen; each would add about as much again to the binary.
const PRECOMPILED: &str = "drain";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest
        .ancestors()
        .nth(2)
        .expect("crates/runtime/ is inside the workspace");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let target_dir = root.join("target").join("policies");

    // Only what the built-in policies are made of: the other-language ports
    // under policies/ have build outputs of their own that must not trigger this.
    let policy_dirs = POLICIES.map(|p| format!("policies/{p}"));
    let watched = [
        "wit",
        "guest-sdk",
        "crates/core",
        "crates/engine",
        "Cargo.lock",
    ]
    .into_iter()
    .chain(policy_dirs.iter().map(String::as_str));
    for path in watched {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    ensure_target(WASM);
    let mut cargo = nested_cargo(root, &target_dir);
    cargo.args(["build", "--quiet", "--target", WASM]);
    cargo.args(["--profile", PROFILE]);
    for policy in POLICIES {
        cargo.args(["-p", &format!("lameduck-policy-{policy}")]);
    }
    cargo.run("building the built-in policies for wasm32-wasip2");
    for policy in POLICIES {
        let built = wasm_path(&target_dir, policy);
        std::fs::copy(&built, out.join(format!("{policy}.wasm")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
    }

    // The precompiler runs here, so it is built for this machine.
    let precompile_dir = root.join("target").join("precompile");
    nested_cargo(root, &precompile_dir)
        .args(["build", "--quiet", "--release", "-p", "lameduck-engine"])
        .run("building lameduck-precompile");
    // A cross build to another architecture may find no compiler for it in
    // the precompiler (Cranelift is built for this machine's): the binary
    // then carries no precompiled code and compiles the policy at start-up.
    let target = std::env::var("TARGET").unwrap();
    let precompiled = out.join(format!("{PRECOMPILED}.cwasm"));
    let status = Command::new(precompile_dir.join("release").join("lameduck-precompile"))
        .arg(&target)
        .arg(out.join(format!("{PRECOMPILED}.wasm")))
        .arg(&precompiled)
        .status()
        .expect("run lameduck-precompile");
    if !status.success() {
        println!(
            "cargo:warning=the default policy is not precompiled for {target}; \
             it will be compiled when the agent starts"
        );
        std::fs::write(&precompiled, b"").unwrap();
    }
}

/// Adds `target` to the toolchain with rustup if it is missing: a fresh
/// machine has only its own target, and a first `cargo run` should work.
fn ensure_target(target: &str) {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
    if libdir.is_some_and(|dir| Path::new(&dir).is_dir()) {
        return;
    }
    println!(
        "cargo:warning=adding the {target} target with rustup: the built-in policies are WebAssembly"
    );
    Command::new("rustup")
        .args(["target", "add", target])
        .run(&format!("`rustup target add {target}`"));
}

/// A cargo for another target than the outer build's.
fn nested_cargo(root: &Path, target_dir: &Path) -> Command {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.current_dir(root).env("CARGO_TARGET_DIR", target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cargo.env_remove(var);
    }
    cargo
}

trait Run {
    fn run(&mut self, what: &str);
}

impl Run for Command {
    fn run(&mut self, what: &str) {
        let status = self
            .status()
            .unwrap_or_else(|e| panic!("{what}: cannot run {:?}: {e}", self.get_program()));
        assert!(status.success(), "{what} failed");
    }
}

fn wasm_path(target_dir: &Path, policy: &str) -> PathBuf {
    target_dir
        .join(WASM)
        .join(PROFILE)
        .join(format!("lameduck_policy_{policy}.wasm"))
}
