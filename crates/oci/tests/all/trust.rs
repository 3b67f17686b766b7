//! TLS trust, plain HTTP only when listed, and settings that cannot work.

use lameduck_oci::{Error, Registry, Settings, Source, TagFallback};

use crate::block_on;
use crate::fixture::{TestRegistry, component};

#[test]
fn registry_signed_by_an_unknown_ca_is_refused() {
    let registry = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let mut settings = registry.settings(cache.path());
    settings.ca_file = None;
    settings.retries = 0;
    let client = Registry::new(settings).unwrap();
    let error =
        block_on(client.pull(&registry.reference("drain:v1"), TagFallback::Never)).unwrap_err();
    assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.to_lowercase().contains("certificate"),
        "says it is the certificate: {text}"
    );
}

#[test]
fn plain_http_only_for_registries_listed_insecure() {
    let registry = TestRegistry::start_plain();
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(registry.settings(cache.path())).unwrap();
    let bytes = component(10_000, 30);
    let pinned = block_on(client.push(&bytes, &registry.reference("plain:v1"))).unwrap();
    let pulled = block_on(client.pull(&pinned, TagFallback::Never)).unwrap();
    assert_eq!((pulled.source, pulled.component), (Source::Registry, bytes));

    // The same registry, not listed: HTTPS is spoken to it, and fails.
    let mut settings = Settings::new(tempfile::tempdir().unwrap().path());
    settings.retries = 0;
    let strict = Registry::new(settings).unwrap();
    let error = block_on(strict.pull(&pinned, TagFallback::Never)).unwrap_err();
    assert!(
        matches!(error, Error::Unreachable { .. } | Error::Transport { .. }),
        "{error:?}"
    );
}

#[test]
fn unusable_settings_are_refused_at_construction() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::new(dir.path());
    settings.ca_file = Some(dir.path().join("missing-ca.pem"));
    let error = Registry::new(settings).unwrap_err();
    assert!(
        error.to_string().contains("CA file") && error.to_string().contains("missing-ca.pem"),
        "{error}"
    );

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let mut settings = Settings::new(dir.path());
    settings.ca_file = Some(empty);
    let error = Registry::new(settings).unwrap_err();
    assert!(error.to_string().contains("no CERTIFICATE"), "{error}");

    let auth = dir.path().join("auth.json");
    std::fs::write(&auth, r#"{"auths": {"r:1": {"auth": "%%%"}}}"#).unwrap();
    let mut settings = Settings::new(dir.path());
    settings.auth_file = Some(auth);
    let error = Registry::new(settings).unwrap_err();
    assert!(
        error.to_string().contains("auth file") && error.to_string().contains("not base64"),
        "{error}"
    );

    let mut settings = Settings::new(dir.path());
    settings.retries = 0;
    let client = Registry::new(settings).unwrap();
    let pinned =
        lameduck_oci::Reference::parse(&format!("oci://r:1/x@{}", lameduck_oci::Digest::of(b"x")))
            .unwrap();
    let error = block_on(client.push(b"x", &pinned)).unwrap_err();
    assert!(matches!(error, Error::PushTarget { .. }), "{error:?}");
}

#[test]
fn bearer_token_flow_with_the_auth_file_password() {
    // The registry answers 401 with a Bearer challenge; the client takes the
    // auth file's user and password to the token service and uses the JWT.
    let registry = TestRegistry::start_token();
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(registry.settings(cache.path())).unwrap();
    let bytes = component(30_000, 31);
    let pinned = block_on(client.push(&bytes, &registry.reference("token/drain:v1"))).unwrap();
    // skopeo reads the manifest through the same token flow (an independent client).
    let raw = registry.skopeo_manifest("token/drain:v1");
    assert_eq!(&lameduck_oci::Digest::of(&raw), pinned.digest().unwrap());
    let pulled = block_on(client.pull(&pinned, TagFallback::Never)).unwrap();
    assert_eq!((pulled.source, pulled.component), (Source::Registry, bytes));

    // The token service refuses a wrong password: refused, saying by whom.
    let auth = cache.path().join("wrong.json");
    crate::fixture::write_auth_file(&auth, &registry.host(), "wrong");
    let mut settings = registry.settings(tempfile::tempdir().unwrap().path());
    settings.auth_file = Some(auth);
    let wrong = Registry::new(settings).unwrap();
    let error = block_on(wrong.pull(&pinned, TagFallback::Never)).unwrap_err();
    assert!(
        matches!(error, Error::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("token service refused"),
        "{error}"
    );
}

#[test]
fn registry_token_in_the_auth_file_is_sent_as_a_bearer_token() {
    let registry = TestRegistry::start_token();
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(registry.settings(cache.path())).unwrap();
    let bytes = component(10_000, 32);
    let pinned = block_on(client.push(&bytes, &registry.reference("token/drain:v1"))).unwrap();

    for key in ["registrytoken", "identitytoken"] {
        let token = registry
            .tokens
            .as_ref()
            .unwrap()
            .mint("token/drain", &["pull"]);
        let auth = cache.path().join(format!("{key}.json"));
        let json = serde_json::json!({ "auths": { registry.host(): { key: token } } });
        std::fs::write(&auth, serde_json::to_vec(&json).unwrap()).unwrap();
        let mut settings = registry.settings(tempfile::tempdir().unwrap().path());
        settings.auth_file = Some(auth);
        let with_token = Registry::new(settings).unwrap();
        let pulled = block_on(with_token.pull(&pinned, TagFallback::Never)).unwrap();
        assert_eq!(pulled.component, bytes, "{key}");
        // The token grants pull on this repository only.
        let error =
            block_on(with_token.push(b"x", &registry.reference("token/drain:v2"))).unwrap_err();
        assert!(
            matches!(error, Error::Unauthorized { .. }),
            "{key}: {error:?}"
        );
    }
}
