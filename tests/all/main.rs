//! End-to-end tests, one module per capability.

mod drain;
mod sandbox;
mod supervision;
mod util;
