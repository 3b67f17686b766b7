//! lameduck: a shutdown agent for Kubernetes pods — the agent itself, and
//! the commands of the `lameduck` binary around it.
//!
//! Data flows one way: events (signals, `/prestop`, the app's exit, timers)
//! reach the controller (through its inbox), which samples the [`probes`],
//! builds a snapshot, asks the policy (on the decider's thread, through
//! `lameduck-runtime`), and applies the decision through the supervisor;
//! the timeline records each step as a typed record (`lameduck-core`).
//! The rules of the drain are `lameduck_core::agent`; this crate performs
//! them.

mod admin;
pub mod check;
pub mod config;
mod controller;
mod decider;
mod files;
mod inbox;
pub mod inject;
pub mod log;
mod metrics;
pub mod probes;
mod pull;
pub mod push;
mod question;
mod reload;
pub mod replay;
pub mod run;
mod shared;
mod signals;
pub mod simulate;
mod source;
mod supervisor;
mod timeline;
