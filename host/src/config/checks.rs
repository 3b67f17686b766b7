//! The rules between settings, checked once every layer is in: the switch
//! and the token may come from different ones, and so may the grace period
//! and a probe's timeout. An error names the place of the setting at fault.

use std::net::{IpAddr, SocketAddr};

use super::layers::Loaded;
use super::{ConfigError, PATIENCE};

pub fn check(loaded: &mut Loaded) -> Result<(), ConfigError> {
    let at =
        |path: &str, message: String| ConfigError(format!("{}: {message}", loaded.place(path)));
    let config = &loaded.config;
    if config.admin_token.is_none() {
        for (on, key, what) in [
            (config.policy_push, "admin.policy_push", "PUT /policy is on"),
            (
                config.prestop_auth,
                "admin.prestop_auth",
                "/prestop needs a token",
            ),
        ] {
            if on {
                return Err(at(
                    key,
                    format!("{what} but no token is set: give admin.token or LAMEDUCK_ADMIN_TOKEN"),
                ));
            }
        }
    }
    if config.safety_margin >= config.grace_period {
        return Err(at(
            "safety_margin",
            format!(
                "safety_margin ({:?}) must be shorter than grace_period ({:?})",
                config.safety_margin, config.grace_period
            ),
        ));
    }
    // Work the agent may be waiting on when its deadline falls must end
    // within the margin it keeps before the kubelet's KILL.
    let margin = config.safety_margin;
    for (i, probe) in config.probes.iter().enumerate() {
        if probe.timeout >= margin {
            return Err(at(
                &format!("probes[{i}].timeout"),
                format!(
                    "{:?} for probe `{}` does not fit the safety margin ({margin:?}): a reading \
                     asked for at the deadline must come before the kubelet's KILL; shorten the \
                     timeout or lengthen safety_margin",
                    probe.timeout, probe.name
                ),
            ));
        }
    }
    if config.cpu_budget * PATIENCE > margin {
        return Err(at(
            "policy.cpu_budget",
            format!(
                "{:?} does not fit the safety margin ({margin:?}): the agent waits up to \
                 {PATIENCE}× the budget for an answer, which must come before the kubelet's \
                 KILL; at most {:?} with this margin",
                config.cpu_budget,
                margin / PATIENCE
            ),
        ));
    }
    if let (Some(url), Some(admin)) = (&config.readiness_url, config.admin)
        && points_at(url, admin)
    {
        return Err(at(
            "admin.readiness_url",
            format!(
                "`{url}` is lameduck's own admin server ({admin}): its /readyz would ask itself \
                 without end; give the app's own readiness URL"
            ),
        ));
    }
    Ok(())
}

/// Whether `url` reaches the admin server at `admin`: the same port, on a
/// loopback, unspecified or this machine's own address (or the admin's).
fn points_at(url: &str, admin: SocketAddr) -> bool {
    let Ok((host, port)) = crate::probes::http::host_port(url) else {
        return false;
    };
    if port != admin.port() {
        return false;
    }
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    let Ok(ip) = host.parse::<IpAddr>() else {
        // A name is not resolved here; /readyz refuses to ask itself.
        return false;
    };
    ip.is_loopback()
        || ip.is_unspecified()
        || ip == admin.ip()
        || (admin.ip().is_unspecified() && local_addresses().contains(&ip))
}

/// The addresses of this machine's interfaces.
fn local_addresses() -> Vec<IpAddr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    interfaces
        .filter_map(|interface| {
            let address = interface.address?;
            if let Some(v4) = address.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_readiness_url_on_the_admin_port_is_found_out() {
        let admin: SocketAddr = "0.0.0.0:9911".parse().unwrap();
        assert!(points_at("http://127.0.0.1:9911/readyz", admin));
        assert!(points_at("http://localhost:9911/", admin));
        assert!(points_at("http://[::1]:9911/", admin));
        assert!(!points_at("http://127.0.0.1:8080/", admin));
        assert!(!points_at("http://app.example:9911/", admin));
        let lo = local_addresses();
        assert!(lo.iter().any(IpAddr::is_loopback), "{lo:?}");
    }
}
