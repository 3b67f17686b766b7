//! End-to-end tests, one module per capability.

mod admin;
mod conformance;
mod drain;
mod reload;
mod replay;
mod rollout;
mod sandbox;
mod supervision;
mod util;
