//! Credentials from a Docker config JSON, the format of Kubernetes' image pull secrets.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use crate::Error;

/// The credentials of each registry named in a `.dockerconfigjson`.
#[derive(Clone, Default)]
pub(crate) struct Credentials {
    by_registry: BTreeMap<String, RegistryAuth>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Registry names only: the secrets stay out of logs.
        f.debug_list().entries(self.by_registry.keys()).finish()
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    auths: Option<BTreeMap<String, Entry>>,
}

#[derive(Deserialize, Default)]
struct Entry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
    registrytoken: Option<String>,
}

impl Credentials {
    /// Reads `{"auths": {"host:port": {...}}}` (or the older top-level map of a
    /// `.dockercfg`). Each entry is `auth` (base64 of `user:password`),
    /// `username` and `password`, or a token: `registrytoken` and
    /// `identitytoken` are sent as bearer tokens.
    pub(crate) fn load(path: &Path) -> Result<Self, Error> {
        let bad = |reason: String| Error::Settings {
            what: "auth file",
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let entries: BTreeMap<String, Entry> = if value.get("auths").is_some() {
            serde_json::from_value::<DockerConfig>(value)
                .map_err(|e| bad(format!("\"auths\": {e}")))?
                .auths
                .unwrap_or_default()
        } else {
            serde_json::from_value(value).map_err(|e| bad(format!("not a Docker config: {e}")))?
        };
        let mut by_registry = BTreeMap::new();
        for (key, entry) in entries {
            let auth = entry
                .credentials()
                .map_err(|reason| bad(format!("{key:?}: {reason}")))?;
            by_registry.insert(normalise(&key), auth);
        }
        Ok(Self { by_registry })
    }

    /// The credentials for `registry` (`host:port`), or anonymous.
    pub(crate) fn for_registry(&self, registry: &str) -> RegistryAuth {
        self.by_registry
            .get(registry)
            .cloned()
            .unwrap_or(RegistryAuth::Anonymous)
    }

    /// Whether the file named `registry`.
    pub(crate) fn has(&self, registry: &str) -> bool {
        self.by_registry.contains_key(registry)
    }
}

impl Entry {
    fn credentials(self) -> Result<RegistryAuth, String> {
        if let Some(token) = self
            .registrytoken
            .or(self.identitytoken)
            .filter(|t| !t.is_empty())
        {
            return Ok(RegistryAuth::Bearer(token));
        }
        if let Some(auth) = self.auth.filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| format!("\"auth\" is not base64: {e}"))?;
            let decoded =
                String::from_utf8(decoded).map_err(|_| "\"auth\" is not UTF-8 text".to_string())?;
            let Some((user, password)) = decoded.split_once(':') else {
                return Err("\"auth\" is not base64 of user:password".into());
            };
            return Ok(RegistryAuth::Basic(user.to_owned(), password.to_owned()));
        }
        match (self.username, self.password) {
            (Some(user), Some(password)) => Ok(RegistryAuth::Basic(user, password)),
            _ => Err(
                "no credentials: expected \"auth\", \"username\" and \"password\", \
                      or \"identitytoken\""
                    .into(),
            ),
        }
    }
}

/// `https://host:port/v1/` → `host:port`, as Docker and the kubelet match keys.
fn normalise(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> Result<Credentials, Error> {
        let dir = std::env::temp_dir().join(format!("lameduck-oci-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{:x}.json", sha2_hash(json)));
        std::fs::write(&path, json).unwrap();
        let result = Credentials::load(&path);
        std::fs::remove_file(&path).unwrap();
        result
    }

    fn sha2_hash(text: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        h.finish()
    }

    #[test]
    fn every_entry_form() {
        let creds = load(
            r#"{"auths": {
                "a:5000": {"auth": "dXNlcjpwYTpzcw=="},
                "https://b.example/v1/": {"username": "u", "password": "p"},
                "c": {"identitytoken": "tok"},
                "docker.io": {"auth": "", "registrytoken": "rt"}
            }}"#,
        )
        .unwrap();
        assert_eq!(
            creds.for_registry("a:5000"),
            RegistryAuth::Basic("user".into(), "pa:ss".into())
        );
        assert_eq!(
            creds.for_registry("b.example"),
            RegistryAuth::Basic("u".into(), "p".into())
        );
        assert_eq!(creds.for_registry("c"), RegistryAuth::Bearer("tok".into()));
        assert_eq!(
            creds.for_registry("docker.io"),
            RegistryAuth::Bearer("rt".into())
        );
        assert_eq!(creds.for_registry("a:5001"), RegistryAuth::Anonymous);
        assert!(creds.has("a:5000") && !creds.has("a"));
        // Secrets never reach a Debug print.
        assert!(!format!("{creds:?}").contains("pa:ss"));
    }

    #[test]
    fn legacy_dockercfg() {
        let creds = load(r#"{"r:1": {"username": "u", "password": "p"}}"#).unwrap();
        assert_eq!(
            creds.for_registry("r:1"),
            RegistryAuth::Basic("u".into(), "p".into())
        );
    }

    #[test]
    fn bad_files_say_why() {
        let text = |json| load(json).unwrap_err().to_string();
        assert!(text("{").contains("not JSON"));
        assert!(text(r#"{"auths": {"r": {"auth": "!!"}}}"#).contains("not base64"));
        assert!(text(r#"{"auths": {"r": {"auth": "bm9jb2xvbg=="}}}"#).contains("user:password"));
        assert!(text(r#"{"auths": {"r": {"username": "u"}}}"#).contains("no credentials"));
        let missing = Credentials::load(Path::new("/nonexistent/auth.json")).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/auth.json"),
            "{missing}"
        );
    }
}
