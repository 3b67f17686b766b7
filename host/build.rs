//! Builds the built-in policies for `wasm32-wasip2` and leaves them in
//! `OUT_DIR` for `include_bytes!`, so the agent carries its default policy.
//!
//! The policies are built by a nested cargo with its own target directory
//! (the outer build holds the lock on ours), without the outer build's
//! flags, which are for the host, not for wasm.

use std::path::{Path, PathBuf};
use std::process::Command;

const POLICIES: [&str; 3] = ["drain", "delay", "jobs"];
const PROFILE: &str = "wasm-policy";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().expect("host/ is inside the workspace");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let target_dir = root.join("target").join("policies");

    // Only what the built-in policies are made of: the other-language ports
    // under policies/ have build outputs of their own that must not trigger this.
    let policy_dirs = POLICIES.map(|p| format!("policies/{p}"));
    let watched = ["wit", "guest-sdk", "Cargo.lock"]
        .into_iter()
        .chain(policy_dirs.iter().map(String::as_str));
    for path in watched {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(root)
        .args([
            "build",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--profile",
            PROFILE,
        ])
        .env("CARGO_TARGET_DIR", &target_dir);
    for policy in POLICIES {
        cargo.args(["-p", &format!("lameduck-policy-{policy}")]);
    }
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
    let status = cargo
        .status()
        .expect("run cargo to build the built-in policies");
    assert!(
        status.success(),
        "building the built-in policies for wasm32-wasip2 failed \
         (is the target installed? `rustup target add wasm32-wasip2`)"
    );

    for policy in POLICIES {
        let built = wasm_path(&target_dir, policy);
        std::fs::copy(&built, out.join(format!("{policy}.wasm")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
    }
}

fn wasm_path(target_dir: &Path, policy: &str) -> PathBuf {
    target_dir
        .join("wasm32-wasip2")
        .join(PROFILE)
        .join(format!("lameduck_policy_{policy}.wasm"))
}
