//! lameduck: a shutdown agent for Kubernetes pods.
//!
//! Data flows one way: events (signals, `/prestop`, the app's exit, timers)
//! reach the [`controller`], which samples the [`probes`], builds a snapshot,
//! asks the [`policy`], and applies the decision through the [`supervisor`];
//! the [`timeline`] records each step.

pub mod admin;
pub mod check;
pub mod config;
pub mod controller;
pub mod decider;
pub mod files;
pub mod inbox;
pub mod inject;
pub mod log;
pub mod metrics;
pub mod picture;
pub mod probes;
pub mod question;
pub mod reload;
pub mod replay;
pub mod run;
pub mod shared;
pub mod signals;
pub mod simulate;
pub mod source;
pub mod supervisor;
pub mod timeline;
pub mod yaml;
