//! End-to-end tests, one module per capability.

mod admin;
mod architecture;
mod conformance;
mod drain;
mod faults;
mod hostile;
mod inject;
mod picture;
mod registry;
mod reload;
mod replay;
mod rollout;
mod sandbox;
mod shadow;
mod sidecar;
mod simulate;
mod streams;
mod supervision;
mod util;
