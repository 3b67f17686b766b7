//! `oci://REGISTRY/REPO[:TAG][@sha256:DIGEST]`: what names a policy in a registry.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::Error;

/// The scheme every reference starts with.
pub const SCHEME: &str = "oci://";

/// A content digest: `sha256:` and 64 lowercase hex digits (the only algorithm
/// registries are required to support, and the only one accepted).
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The SHA-256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// The digest a finished hasher holds.
    pub(crate) fn from_hasher(hasher: Sha256) -> Self {
        let sum = hasher.finalize();
        let mut hex = String::with_capacity(64);
        for byte in sum {
            hex.push_str(&format!("{byte:02x}"));
        }
        Self { hex }
    }

    /// Parses `sha256:` and 64 lowercase hex digits; the error says which part is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(format!(
                "digest {text:?} has no algorithm (expected sha256:<64 hex digits>)"
            ));
        };
        if algorithm != "sha256" {
            return Err(format!(
                "digest algorithm {algorithm:?} is not supported (only sha256)"
            ));
        }
        if hex.len() != 64 {
            return Err(format!(
                "a sha256 digest has 64 hex digits, {text:?} has {}",
                hex.len()
            ));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!("digest {text:?} is not lowercase hex"));
        }
        Ok(Self {
            hex: hex.to_owned(),
        })
    }

    /// The 64 hex digits, without the algorithm (a file name in the cache).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

/// Where a policy lives: a registry, a repository, and a tag, a digest or both.
///
/// A digest pins the content: what is pulled must hash to it, and a cached copy
/// is served without the network. A tag is resolved by the registry each time
/// (the caller should warn about it). When both are given the digest decides
/// and the tag is kept only for display, as `docker pull name:tag@digest` does.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses `oci://REGISTRY/REPO@sha256:DIGEST`, `oci://REGISTRY/REPO:TAG` or
    /// `oci://REGISTRY/REPO:TAG@sha256:DIGEST`. The registry is always explicit
    /// (`host` or `host:port`); there is no default registry and no default tag.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::Reference {
            input: input.to_owned(),
            reason,
        };
        let Some(rest) = input.strip_prefix(SCHEME) else {
            return Err(invalid(format!("must start with {SCHEME}")));
        };
        let (name, digest) = match rest.split_once('@') {
            Some((name, digest)) => (name, Some(Digest::parse(digest).map_err(invalid)?)),
            None => (rest, None),
        };
        let Some((registry, path)) = name.split_once('/') else {
            return Err(invalid(
                "no repository: expected oci://REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST".into(),
            ));
        };
        check_registry(registry).map_err(invalid)?;
        // After the registry (which holds the port's colon) a colon can only start the tag.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) => (repository, Some(tag)),
            None => (path, None),
        };
        check_repository(repository).map_err(invalid)?;
        if let Some(tag) = tag {
            check_tag(tag).map_err(invalid)?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(invalid(
                "names neither a digest (@sha256:…) nor a tag (:TAG); pin a digest".into(),
            ));
        }
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The registry, `host` or `host:port`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository within the registry, e.g. `policies/drain`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned manifest digest, if one was given.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Whether a digest pins the content (else the registry resolves a tag).
    pub fn is_pinned(&self) -> bool {
        self.digest.is_some()
    }

    /// The same repository pinned to `digest`, without a tag: what to write in a
    /// config to pin what a tag resolved to.
    pub fn pinned(&self, digest: Digest) -> Self {
        Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The same repository with `tag` and no digest.
    pub fn tagged(&self, tag: &str) -> Result<Self, Error> {
        check_tag(tag).map_err(|reason| Error::Reference {
            input: tag.to_owned(),
            reason,
        })?;
        Ok(Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_owned()),
            digest: None,
        })
    }

    /// The reference in oci-client's terms (digest preferred over tag).
    pub(crate) fn to_client(&self) -> oci_client::Reference {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                digest.to_string(),
            ),
            (None, Some(tag)) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone(),
            ),
            (None, None) => unreachable!("a reference always has a tag or a digest"),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(input: &str) -> Result<Self, Error> {
        Self::parse(input)
    }
}

/// `host`, `host:port`, or `[v6]:port`; the grammar of the distribution spec.
fn check_registry(registry: &str) -> Result<(), String> {
    if registry.is_empty() {
        return Err("no registry: expected oci://REGISTRY/REPOSITORY…".into());
    }
    let (host, port) = if let Some(v6) = registry.strip_prefix('[') {
        let Some((address, after)) = v6.split_once(']') else {
            return Err(format!(
                "registry {registry:?}: unclosed [ in an IPv6 address"
            ));
        };
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "registry {registry:?}: {address:?} is not an IPv6 address"
            ));
        }
        match after {
            "" => (address, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (address, Some(port)),
                None => {
                    return Err(format!(
                        "registry {registry:?}: junk after the IPv6 address"
                    ));
                }
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    if !registry.starts_with('[') {
        let label_ok = |label: &str| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(format!(
                "registry host {host:?} is not a host name (letters, digits, - and . only)"
            ));
        }
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => {
                return Err(format!(
                    "registry port {port:?} is not a port number (1-65535)"
                ));
            }
        }
    }
    Ok(())
}

/// Path components of lowercase letters and digits joined by `.`, `_`, `__` or dashes.
fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("empty repository name".into());
    }
    if repository.len() > 255 {
        return Err(format!(
            "repository name is {} characters, at most 255",
            repository.len()
        ));
    }
    for component in repository.split('/') {
        let ok = !component.is_empty()
            && component.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && component.as_bytes()[0].is_ascii_alphanumeric()
            && component.as_bytes()[component.len() - 1].is_ascii_alphanumeric()
            && !component.contains("..")
            && !component.contains("___")
            && !component.contains("._")
            && !component.contains("_.");
        if !ok {
            return Err(format!(
                "repository component {component:?} must be lowercase letters and digits, \
                 joined by ., _, __ or dashes"
            ));
        }
    }
    Ok(())
}

/// Up to 128 of letters, digits, `_`, `.` and `-`, not starting with `.` or `-`.
fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !tag.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} must be 1-128 letters, digits, _, . or -, not starting with . or -"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn reason(input: &str) -> String {
        match Reference::parse(input) {
            Err(Error::Reference { reason, .. }) => reason,
            other => panic!("{input}: expected a reference error, got {other:?}"),
        }
    }

    #[test]
    fn forms_parse_and_round_trip() {
        for input in [
            format!("oci://registry.example.com/policies/drain@sha256:{HEX}"),
            "oci://127.0.0.1:5000/drain:v1".to_string(),
            format!("oci://localhost:5000/a/b/c:v1.2-rc_3@sha256:{HEX}"),
            "oci://[::1]:5000/drain:latest".to_string(),
            "oci://ghcr.io/org/my_policy__x.y-z:1".to_string(),
        ] {
            let reference = Reference::parse(&input).unwrap();
            assert_eq!(reference.to_string(), input);
            assert_eq!(Reference::parse(&reference.to_string()).unwrap(), reference);
        }
        let r = Reference::parse(&format!("oci://r:1/x/y:t@sha256:{HEX}")).unwrap();
        assert_eq!(
            (
                r.registry(),
                r.repository(),
                r.tag(),
                r.digest().map(|d| d.hex())
            ),
            ("r:1", "x/y", Some("t"), Some(HEX))
        );
        assert!(r.is_pinned());
        let p = r.pinned(Digest::of(b""));
        assert_eq!(
            p.to_string(),
            "oci://r:1/x/y@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(reason("registry/x:1").contains("oci://"));
        assert!(reason("oci://registry").contains("no repository"));
        assert!(reason("oci:///x:1").contains("no registry"));
        assert!(reason("oci://r/x").contains("neither a digest"));
        assert!(reason("oci://r/x@md5:abc").contains("not supported"));
        assert!(reason("oci://r/x@sha256:abc").contains("64 hex digits"));
        assert!(reason(&format!("oci://r/x@sha256:{}", HEX.to_uppercase())).contains("lowercase"));
        assert!(reason("oci://r/Drain:1").contains("\"Drain\""));
        assert!(reason("oci://r//x:1").contains("component"));
        assert!(reason("oci://r:99999/x:1").contains("port"));
        assert!(reason("oci://r:/x:1").contains("port"));
        assert!(reason("oci://bad_host/x:1").contains("host"));
        assert!(reason("oci://r/x:-t").contains("tag"));
        assert!(reason("oci://r/x:").contains("tag"));
        assert!(reason("oci://[zz]:1/x:1").contains("IPv6"));
    }

    #[test]
    fn digest_of_bytes() {
        assert_eq!(
            Digest::of(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
