//! Logging through the host: lines land in the agent's log, tagged with the
//! policy. Natively (under the harness) they go to stderr.

use crate::Level;

/// Writes a line to the agent's log.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::lameduck::policy::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[policy {level:?}] {message}");
}

/// Writes a debug line.
pub fn debug(message: &str) {
    log(Level::Debug, message)
}

/// Writes an info line.
pub fn info(message: &str) {
    log(Level::Info, message)
}

/// Writes a warning.
pub fn warn(message: &str) {
    log(Level::Warn, message)
}
