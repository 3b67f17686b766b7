//! lameduck-oci against a real registry: Debian's `docker-registry` (CNCF
//! distribution) with TLS and htpasswd, and skopeo as the independent client.
//! One test binary, a module per concern. `scripts/test` installs the packages.

/// The registry, skopeo and the stalling proxy, shared with the agent's
/// end-to-end tests.
use lameduck_oci_testing as fixture;

mod faults;
mod interop;
mod measure;
mod pull;
mod trust;

use std::future::Future;

/// Runs a test body on a current-thread runtime, as the agent's pull thread will.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}
