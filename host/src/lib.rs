//! lameduck: a shutdown agent for Kubernetes pods.
//!
//! Data flows one way: events (signals, `/prestop`, the child's exit, timers)
//! reach the [`controller`], which samples the [`probes`], builds a snapshot,
//! asks the [`policy`], and applies the decision through the [`supervisor`];
//! the [`timeline`] records each step.

pub mod builtin;
pub mod policy;
