//! The built-in policies, compiled to `wasm32-wasip2` at build time and
//! carried inside the binary. `drain` is the default.

/// The default policy's name.
pub const DEFAULT: &str = "drain";

/// Every built-in policy, by name.
pub const ALL: [(&str, &[u8]); 3] = [
    (
        "drain",
        include_bytes!(concat!(env!("OUT_DIR"), "/drain.wasm")),
    ),
    (
        "delay",
        include_bytes!(concat!(env!("OUT_DIR"), "/delay.wasm")),
    ),
    (
        "jobs",
        include_bytes!(concat!(env!("OUT_DIR"), "/jobs.wasm")),
    ),
];

/// The default policy compiled ahead of time, for any CPU of the target's
/// architecture (by `lameduck-precompile`, see `build.rs`); empty if the
/// build could not (a cross build to another architecture).
pub const PRECOMPILED: (&str, &[u8]) = (
    DEFAULT,
    include_bytes!(concat!(env!("OUT_DIR"), "/drain.cwasm")),
);

/// The precompiled code of `component`, if it is a built-in policy that
/// ships precompiled.
pub fn precompiled(component: &[u8]) -> Option<&'static [u8]> {
    let (name, code) = PRECOMPILED;
    (!code.is_empty() && get(name)? == component).then_some(code)
}

/// The component of the built-in policy called `name`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    ALL.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}
