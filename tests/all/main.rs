//! End-to-end tests, one module per capability.

mod admin;
mod conformance;
mod drain;
mod faults;
mod inject;
mod reload;
mod replay;
mod sandbox;
mod supervision;
mod util;
