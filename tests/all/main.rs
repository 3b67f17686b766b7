//! End-to-end tests, one module per capability.

mod admin;
mod conformance;
mod drain;
mod picture;
mod reload;
mod replay;
mod sandbox;
mod supervision;
mod util;
