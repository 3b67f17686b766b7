//! `lameduck inject`: the config a pod's lameduck will read, loaded and
//! checked as `lameduck run` loads it, for [`lameduck_inject`] to start
//! from.

use std::path::Path;

use lameduck_inject::{BaseConfig, Facts, Injected};

use crate::config::{Config, MAX_CONFIG_BYTES};
use crate::files;

/// Reads and checks the config at `path` as `run` will in the pod: the file
/// alone (no flags, nothing from this machine's environment). Its admin
/// server must be on, since the kubelet's hook and probe call it, and
/// `/prestop` must not need a token, which inject would have to write into
/// the manifest in clear.
pub fn base_config(path: &Path) -> Result<BaseConfig, String> {
    let text = files::read_text(path, MAX_CONFIG_BYTES)?;
    let loaded = Config::load_with(Some(path), |_| None, &[]).map_err(|e| e.to_string())?;
    let Some(admin) = loaded.admin else {
        return Err(format!(
            "{}: the admin server is off, but the kubelet's preStop hook and readiness probe \
             call it",
            path.display()
        ));
    };
    if loaded.prestop_token().is_some() {
        return Err(format!(
            "{}: admin.prestop_auth is on, and inject writes no token into a preStop hook: add \
             its httpHeaders yourself, or turn it off",
            path.display()
        ));
    }
    let facts = Facts {
        admin_port: admin.port(),
        grace_period: loaded.grace_period,
        safety_margin: loaded.safety_margin,
        readiness_url: loaded.readiness_url.is_some(),
    };
    Ok(BaseConfig::new(text, facts))
}

/// `--policy`: a reference to pull (its syntax checked here); a warning
/// when it names a tag, which a ConfigMap would then not pin.
pub fn policy_reference(text: &str) -> Result<String, String> {
    if !text.starts_with(lameduck_oci::SCHEME) {
        return Err(format!(
            "`{text}` is not a reference: a ConfigMap cannot hold a component (at most 1 MiB), \
             it holds its reference, oci://REGISTRY/REPO@sha256:DIGEST (`lameduck push` prints it)"
        ));
    }
    let reference = lameduck_oci::Reference::parse(text).map_err(|e| e.to_string())?;
    if !reference.is_pinned() {
        eprintln!(
            "lameduck inject: {reference} is a tag, not pinned: pods may run different policies \
             under the same name; pin the digest `lameduck push` prints"
        );
    }
    Ok(reference.to_string())
}

/// The manifests' name and text, from a file or from standard input (`-`):
/// a regular file, or a pipe read through a bound.
pub fn read_manifests(path: &Path) -> Result<(String, String), String> {
    files::read_input(path, lameduck_inject::MAX_BYTES)
}

/// Loads every config inject wrote as `run` will in the pod, and refuses
/// the manifests if `run` would refuse one: a pod whose lameduck cannot
/// start is a crash loop.
pub fn check_written(injected: &Injected) -> Result<(), String> {
    for written in &injected.configs {
        let name = Path::new("lameduck.yaml");
        Config::from_text(name, written.config.clone()).map_err(|e| {
            format!(
                "{}: the config inject would write is one `lameduck run` refuses: {e}",
                written.place
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_inject_cannot_carry_is_refused() {
        let dir = std::env::temp_dir().join(format!("lameduck-inject-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lameduck.yaml");
        std::fs::write(&path, "admin:\n  prestop_auth: true\n  token: t\n").unwrap();
        let e = base_config(&path).unwrap_err();
        assert!(
            e.contains("inject writes no token into a preStop hook"),
            "{e}"
        );
        std::fs::write(&path, "admin:\n  listen: \"off\"\n").unwrap();
        let e = base_config(&path).unwrap_err();
        assert!(e.contains("the admin server is off"), "{e}");
        std::fs::write(
            &path,
            "grace_period: 40s\nadmin: { listen: 127.0.0.1:9000 }\n",
        )
        .unwrap();
        let base = base_config(&path).unwrap();
        assert_eq!(base.admin_port(), 9000);
        assert_eq!(base.grace_period(), std::time::Duration::from_secs(40));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_written_config_run_would_refuse_is_caught() {
        let written = |config: &str| Injected {
            text: String::new(),
            notes: Vec::new(),
            configs: vec![lameduck_inject::Written {
                place: "in.yaml: document 1 (Deployment/web)".into(),
                config: config.into(),
            }],
        };
        check_written(&written("grace_period: 4294967s\n")).unwrap();
        let e = check_written(&written("grace_period: 4294968s\n")).unwrap_err();
        assert!(
            e.starts_with("in.yaml: document 1 (Deployment/web): the config inject would write")
                && e.contains("lameduck.yaml:1:15: grace_period: `4294968s` is not a duration"),
            "{e}"
        );
    }
}
