//! Shared helpers: fixtures, components, the binary under test.

use std::path::{Path, PathBuf};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A fixture file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests").join("fixtures").join(name)
}

/// The fixture as a component: components (`.wat` or binary) as they are,
/// core modules in the world's canonical ABI wrapped with `wit/`, the way
/// `wit-bindgen` guests are.
pub fn component(name: &str) -> Vec<u8> {
    let bytes = wat::parse_file(fixture(name)).expect("fixture parses");
    if wasmparser_is_component(&bytes) {
        return bytes;
    }
    let mut module = bytes;
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_path(root().join("wit")).expect("wit/ parses");
    let world = resolve
        .select_world(&[package], Some("drain-policy"))
        .expect("the world exists");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("embed the world");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("a core module")
        .validate(true)
        .encode()
        .expect("the module implements the world's ABI")
}

/// A component's header has layer 1 (a core module's has layer 0).
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[6..8] == [1, 0]
}

/// The `lameduck` binary built with these tests.
pub fn lameduck() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("lameduck");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}
