//! The rules of who may import whom (ARCHITECTURE.md), checked on the
//! source: within each crate, the top-level modules import one another
//! without a circle; and each crate depends only on the crates below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::util::root;

/// The crates, each with the workspace crates it may depend on.
const LAYERS: [(&str, &[&str]); 11] = [
    ("crates/core", &[]),
    ("crates/engine", &[]),
    ("crates/yaml", &[]),
    ("guest-sdk", &["lameduck-core"]),
    (
        "crates/runtime",
        &[
            "lameduck-core",
            "lameduck-engine",
            "lameduck-sdk",
            "lameduck-policy-drain",
        ],
    ),
    ("crates/picture", &["lameduck-core"]),
    (
        "crates/simulate",
        &[
            "lameduck-core",
            "lameduck-runtime",
            "lameduck-sdk",
            "lameduck-picture",
            "lameduck-yaml",
        ],
    ),
    ("crates/inject", &["lameduck-yaml"]),
    ("crates/oci", &[]),
    ("crates/oci-testing", &["lameduck-oci"]),
    (
        "host",
        &[
            "lameduck-core",
            "lameduck-runtime",
            "lameduck-picture",
            "lameduck-simulate",
            "lameduck-inject",
            "lameduck-oci",
            "lameduck-yaml",
        ],
    ),
];

#[test]
fn the_modules_of_each_crate_import_each_other_without_a_circle() {
    for (dir, _) in LAYERS {
        let src = root().join(dir).join("src");
        let graph = imports(&src);
        if let Some(circle) = find_circle(&graph) {
            panic!(
                "{dir}: the modules import each other in a circle: {}",
                circle.join(" → ")
            );
        }
    }
}

#[test]
fn each_crate_depends_only_on_the_crates_below_it() {
    for (dir, allowed) in LAYERS {
        let manifest = std::fs::read_to_string(root().join(dir).join("Cargo.toml")).unwrap();
        let dependencies = manifest
            .split("[dependencies]")
            .nth(1)
            .unwrap_or_default()
            .split("\n[")
            .next()
            .unwrap_or_default();
        for line in dependencies.lines() {
            let name = line.split(['=', '.']).next().unwrap_or_default().trim();
            if name.starts_with("lameduck") {
                assert!(
                    allowed.contains(&name),
                    "{dir} depends on {name}, which is not below it (ARCHITECTURE.md)"
                );
            }
        }
    }
}

#[test]
fn a_circle_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &[][..]),
    ]
    .into_iter()
    .map(|(m, to)| (m.to_string(), to.iter().map(|t| t.to_string()).collect()))
    .collect();
    assert_eq!(find_circle(&graph).unwrap(), ["a", "b", "c", "a"]);
}

/// The top-level modules under `src` (files and directories), each with
/// the others it names as `crate::other` or `super::other` at its top.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = std::fs::read_dir(src)
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_stem()?.to_str()?.to_string();
            let module = path.is_dir() || path.extension().is_some_and(|x| x == "rs");
            (module && !["lib", "main"].contains(&name.as_str())).then_some(name)
        })
        .collect();
    let mut graph = BTreeMap::new();
    for module in &modules {
        let mut named = BTreeSet::new();
        for file in files_of(src, module) {
            // Code only: a doc comment may point anywhere.
            let text: String = std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            // In the module's own file, `super::` is the crate's root.
            let top =
                file == src.join(format!("{module}.rs")) || file == src.join(module).join("mod.rs");
            for other in &modules {
                let named_here = text.contains(&format!("crate::{other}"))
                    || (top && text.contains(&format!("super::{other}")));
                if other != module && named_here {
                    named.insert(other.clone());
                }
            }
        }
        graph.insert(module.clone(), named);
    }
    graph
}

/// The Rust files of the top-level module `module`.
fn files_of(src: &Path, module: &str) -> Vec<PathBuf> {
    let mut files = vec![src.join(format!("{module}.rs"))];
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                files.push(path);
            }
        }
    }
    files.retain(|f| f.exists());
    files
}

/// A circle in `graph`, if there is one, as the modules along it.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}
