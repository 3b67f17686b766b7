//! Pull, resolve and push, over oci-client, with caps, timeouts, retries and the cache.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use oci_client::RegistryOperation;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use reqwest::header::{self, HeaderValue};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use sha2::{Digest as _, Sha256};
use tracing::{debug, warn};

use crate::artifact::{self, Layer};
use crate::auth::Credentials;
use crate::cache::{Cache, Kind};
use crate::error::chain;
use crate::settings::MAX_BACKOFF;
use crate::{Digest, Error, Reference, Result, Settings};

/// What to do when a tag reference cannot be resolved (registry down, refused,
/// garbage under the tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagFallback {
    /// Fail.
    Never,
    /// Serve what this tag resolved to the last time it was pulled, if it is
    /// still cached intact; [`Source::CachedTag`] says why.
    LastPulled,
}

/// Where a pulled component came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The cache, by its pinned digest: the network was not used.
    Cache,
    /// The registry (the component blob may have been in the cache already).
    Registry,
    /// The cache, by the last resolution of a tag, because the registry failed.
    CachedTag {
        /// Why the registry could not be used this time.
        failure: String,
    },
}

/// A verified component and where it came from.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// The reference asked for.
    pub reference: Reference,
    /// The same repository pinned to the manifest digest: what to write in a
    /// config to get exactly this again.
    pub pinned: Reference,
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The component's (layer's) digest: a key for a compiled artifact.
    pub component_digest: Digest,
    /// The component's bytes, verified against `component_digest`.
    pub component: Vec<u8>,
    /// The cache file holding the same bytes.
    pub path: PathBuf,
    /// Cache, registry, or a tag's cached fallback.
    pub source: Source,
    /// How long the call took, retries included.
    pub elapsed: Duration,
}

/// A client for policy artifacts in OCI registries, with its cache.
///
/// Cheap to share by reference; every method takes `&self`.
pub struct Registry {
    settings: Settings,
    credentials: Credentials,
    client: oci_client::Client,
    /// For the manifest GET only, which oci-client reads without a cap.
    http: reqwest::Client,
    cache: Cache,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("settings", &self.settings)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Reads the auth and CA files and prepares the HTTP clients; no network yet.
    pub fn new(settings: Settings) -> Result<Self> {
        // reqwest is built without a crypto provider of its own; use ring's
        // unless the process already chose one (this is rustls' own switch).
        // ring, not aws-lc-rs: no C toolchain for the static musl build and a
        // smaller binary; rustls deprecates it only for lacking post-quantum
        // key exchange, and what is pulled is verified by digest anyway.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();

        let credentials = match &settings.auth_file {
            Some(path) => Credentials::load(path)?,
            None => Credentials::default(),
        };
        let roots = match &settings.ca_file {
            Some(path) => load_ca_file(path)?,
            None => Vec::new(),
        };
        let tls_error = |e: &dyn std::error::Error| Error::Settings {
            what: "TLS client",
            path: settings.ca_file.clone().unwrap_or_default(),
            reason: chain(e),
        };

        let config = ClientConfig {
            protocol: if settings.insecure.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(settings.insecure.clone())
            },
            extra_root_certificates: roots
                .iter()
                .map(|der| Certificate {
                    encoding: CertificateEncoding::Der,
                    data: der.to_vec(),
                })
                .collect(),
            platform_resolver: None,
            connect_timeout: Some(settings.connect_timeout),
            // A backstop for oci-client's own requests; the blob and manifest
            // reads are watched with `stall_timeout` here, which fires first.
            read_timeout: Some(settings.stall_timeout + Duration::from_secs(1)),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let client = oci_client::Client::try_from(config).map_err(|e| tls_error(&e))?;

        let mut http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .user_agent(USER_AGENT);
        for der in &roots {
            let cert = reqwest::Certificate::from_der(der).map_err(|e| tls_error(&e))?;
            http = http.tls_certs_merge([cert]);
        }
        let http = http.build().map_err(|e| tls_error(&e))?;

        let cache = Cache::new(settings.cache_dir.clone());
        Ok(Self {
            settings,
            credentials,
            client,
            http,
            cache,
        })
    }

    /// The settings this client was made with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Fetches the component `reference` names, verified, and caches it.
    ///
    /// A pinned reference whose manifest and component are cached intact is
    /// served from the cache without the network. Otherwise the manifest is
    /// fetched (capped, its digest checked against the pin), checked to be a
    /// wasm component artifact, and the component blob fetched (capped,
    /// digest checked), with retries and timeouts. A tag reference records
    /// what it resolved to, for [`TagFallback::LastPulled`].
    pub async fn pull(&self, reference: &Reference, fallback: TagFallback) -> Result<Pulled> {
        let started = Instant::now();
        if let Some(digest) = reference.digest() {
            if let Some(hit) = self.cached(reference, digest, Source::Cache, started) {
                return Ok(hit);
            }
            return self
                .retrying(reference, || self.pull_once(reference, started))
                .await;
        }
        match self
            .retrying(reference, || self.pull_once(reference, started))
            .await
        {
            Ok(pulled) => {
                self.cache.put_tag(reference, &pulled.manifest_digest)?;
                Ok(pulled)
            }
            Err(failure) if fallback == TagFallback::LastPulled => {
                let source = Source::CachedTag {
                    failure: failure.to_string(),
                };
                let cached = self.cache.get_tag(reference);
                match cached.and_then(|d| self.cached(reference, &d, source, started)) {
                    Some(hit) => {
                        warn!(%reference, pinned = %hit.pinned, error = %failure,
                            "registry failed; serving the tag's last pull from the cache");
                        Ok(hit)
                    }
                    None => Err(Error::NoCachedTag {
                        reference: reference.clone().into(),
                        failure: Box::new(failure),
                    }),
                }
            }
            Err(failure) => Err(failure),
        }
    }

    /// The manifest digest a reference currently names: the pin itself, or
    /// what the registry says the tag points at (a `refresh` poll). Nothing is
    /// pulled or checked beyond the digest; pull the pinned reference for that.
    pub async fn resolve(&self, reference: &Reference) -> Result<Digest> {
        if let Some(digest) = reference.digest() {
            return Ok(digest.clone());
        }
        self.retrying(reference, || async {
            let auth = self.auth_for(reference, RegistryOperation::Pull).await?;
            let response = self
                .manifest_request(reference, &auth, reqwest::Method::HEAD)
                .await?;
            match header_digest(reference, &response)? {
                Some(digest) => Ok(digest),
                // No Docker-Content-Digest header: hash the manifest itself.
                None => Ok(self.fetch_manifest(reference).await?.1),
            }
        })
        .await
    }

    /// Pushes `component` as a wasm artifact to `reference` (a tag) and
    /// returns the same repository pinned to the pushed manifest's digest.
    /// The component is not checked here: the caller checks it first.
    pub async fn push(&self, component: &[u8], reference: &Reference) -> Result<Reference> {
        if reference.digest().is_some() || reference.tag().is_none() {
            return Err(Error::PushTarget {
                reference: reference.clone().into(),
                reason: "push to a tag (oci://REGISTRY/REPO:TAG); the digest is what the push \
                         returns"
                    .into(),
            });
        }
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let pushable = artifact::pushable(component, &created);
        let component = bytes::Bytes::copy_from_slice(component);
        let target = reference.to_client();
        self.retrying(reference, || async {
            self.auth_for(reference, RegistryOperation::Push).await?;
            let blob = |data: bytes::Bytes, digest: &Digest, what: &'static str| {
                let digest = digest.to_string();
                let target = &target;
                async move {
                    self.client
                        .push_blob(target, data, &digest)
                        .await
                        .map_err(|e| {
                            self.client_error(reference, &format!("push of {what} {digest}"), e)
                        })
                }
            };
            blob(component.clone(), &pushable.layer_digest, "component").await?;
            blob(
                pushable.config.clone().into(),
                &pushable.config_digest,
                "config",
            )
            .await?;
            self.client
                .push_manifest_raw(
                    &target,
                    pushable.manifest.clone(),
                    HeaderValue::from_static(artifact::MANIFEST_MEDIA_TYPE),
                )
                .await
                .map_err(|e| self.client_error(reference, "push of the manifest", e))?;
            Ok(())
        })
        .await?;
        Ok(reference.pinned(Digest::of(&pushable.manifest)))
    }

    /// The cached manifest `digest` and its component, if both are intact.
    fn cached(
        &self,
        reference: &Reference,
        digest: &Digest,
        source: Source,
        started: Instant,
    ) -> Option<Pulled> {
        let manifest = self.cache.get(Kind::Manifest, digest)?;
        let layer = match artifact::component_layer(&manifest) {
            Ok(layer) => layer,
            Err(reason) => {
                warn!(%reference, %digest, %reason, "cached manifest is not a wasm artifact; ignored");
                return None;
            }
        };
        let component = self.cache.get(Kind::Blob, &layer.digest)?;
        debug!(%reference, %digest, "served from the policy cache");
        Some(Pulled {
            reference: reference.clone(),
            pinned: reference.pinned(digest.clone()),
            manifest_digest: digest.clone(),
            path: self.cache.blob_path(&layer.digest),
            component_digest: layer.digest,
            component,
            source,
            elapsed: started.elapsed(),
        })
    }

    /// One attempt at a network pull.
    async fn pull_once(&self, reference: &Reference, started: Instant) -> Result<Pulled> {
        let (manifest, digest) = self.fetch_manifest(reference).await?;
        if let Some(pin) = reference.digest()
            && *pin != digest
        {
            return Err(Error::DigestMismatch {
                reference: reference.clone().into(),
                registry: reference.registry().to_owned(),
                what: "manifest",
                expected: pin.to_string(),
                actual: digest.to_string(),
            });
        }
        let layer = artifact::component_layer(&manifest).map_err(|reason| Error::NotWasm {
            reference: reference.clone().into(),
            registry: reference.registry().to_owned(),
            digest: digest.clone(),
            reason,
        })?;
        let component = match self.cache.get(Kind::Blob, &layer.digest) {
            Some(component) => component,
            None => {
                let component = self.fetch_blob(reference, &layer).await?;
                self.cache.put(Kind::Blob, &layer.digest, &component)?;
                component
            }
        };
        // The manifest last: a cached manifest means its component was cached.
        self.cache.put(Kind::Manifest, &digest, &manifest)?;
        Ok(Pulled {
            reference: reference.clone(),
            pinned: reference.pinned(digest.clone()),
            manifest_digest: digest,
            path: self.cache.blob_path(&layer.digest),
            component_digest: layer.digest,
            component,
            source: Source::Registry,
            elapsed: started.elapsed(),
        })
    }

    /// Runs `attempt` until it succeeds, fails for good, the retries are used
    /// up or the total timeout passes, pausing with a doubling backoff.
    async fn retrying<T, F, Fut>(&self, reference: &Reference, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.settings.timeout;
        let mut attempts = 0;
        let mut pause = self.settings.backoff;
        let mut last: Option<Error> = None;
        let timed_out = |attempts, last: Option<Error>| Error::TimedOut {
            reference: reference.clone().into(),
            registry: reference.registry().to_owned(),
            after: self.settings.timeout,
            attempts,
            last: last.map(Box::new),
        };
        loop {
            attempts += 1;
            match tokio::time::timeout_at(deadline, attempt()).await {
                Err(_) => return Err(timed_out(attempts, last)),
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if e.is_transient() && attempts <= self.settings.retries => {
                    if tokio::time::Instant::now() + pause >= deadline {
                        return Err(timed_out(attempts, Some(e)));
                    }
                    warn!(%reference, attempt = attempts, error = %e, retry_in = ?pause, "registry attempt failed");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_BACKOFF);
                    last = Some(e);
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Credentials for the reference's registry, with oci-client's challenge
    /// and token exchange done for `operation`: the bearer token, if the
    /// registry uses tokens, else the credentials themselves.
    async fn auth_for(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
    ) -> Result<RegistryAuth> {
        let auth = self.credentials.for_registry(reference.registry());
        let token = self
            .client
            .auth(&reference.to_client(), &auth, operation)
            .await
            .map_err(|e| self.client_error(reference, "authentication", e))?;
        Ok(match token {
            Some(token) => RegistryAuth::Bearer(token),
            None => auth,
        })
    }

    /// Sends a manifest request and checks its status.
    ///
    /// Written here rather than through oci-client because its manifest
    /// fetch reads the whole body whatever its size; the cap needs the stream.
    async fn manifest_request(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
        method: reqwest::Method,
    ) -> Result<reqwest::Response> {
        let target = reference.to_client();
        let registry = target.resolve_registry();
        let scheme = if self.settings.insecure.iter().any(|r| r == registry) {
            "http"
        } else {
            "https"
        };
        let tag_or_digest = match reference.digest() {
            Some(digest) => digest.to_string(),
            None => reference
                .tag()
                .expect("a reference has a tag or a digest")
                .to_owned(),
        };
        let url = format!(
            "{scheme}://{registry}/v2/{}/manifests/{tag_or_digest}",
            target.repository()
        );
        let mut request = self
            .http
            .request(method, &url)
            .header(header::ACCEPT, artifact::ACCEPT);
        request = match auth {
            RegistryAuth::Anonymous => request,
            RegistryAuth::Basic(user, password) => request.basic_auth(user, Some(password)),
            RegistryAuth::Bearer(token) => request.bearer_auth(token),
        };
        let send = tokio::time::timeout(
            self.settings.connect_timeout + self.settings.stall_timeout,
            request.send(),
        );
        let response = match send.await {
            Err(_) => return Err(self.stalled(reference, "manifest")),
            Ok(Err(e)) => return Err(self.request_error(reference, "manifest", &e)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let detail = match tokio::time::timeout(self.settings.stall_timeout, response.bytes()).await
        {
            Ok(Ok(body)) => String::from_utf8_lossy(&body[..body.len().min(1024)])
                .trim()
                .to_owned(),
            _ => String::new(),
        };
        let detail = if detail.is_empty() {
            url.to_string()
        } else {
            format!("{url}: {detail}")
        };
        Err(self.status_error(reference, "manifest", status.as_u16(), detail))
    }

    /// The manifest's bytes (at most `max_manifest_bytes`) and their digest.
    async fn fetch_manifest(&self, reference: &Reference) -> Result<(Vec<u8>, Digest)> {
        let auth = self.auth_for(reference, RegistryOperation::Pull).await?;
        let mut response = self
            .manifest_request(reference, &auth, reqwest::Method::GET)
            .await?;
        let claimed = header_digest(reference, &response)?;
        let limit = self.settings.max_manifest_bytes;
        let too_large = |size| Error::TooLarge {
            reference: reference.clone().into(),
            registry: reference.registry().to_owned(),
            what: "manifest".into(),
            size,
            limit,
        };
        if let Some(length) = response.content_length()
            && length > limit
        {
            return Err(too_large(length));
        }
        let mut body = Vec::new();
        loop {
            let chunk =
                match tokio::time::timeout(self.settings.stall_timeout, response.chunk()).await {
                    Err(_) => return Err(self.stalled(reference, "manifest")),
                    Ok(Err(e)) => return Err(self.request_error(reference, "manifest", &e)),
                    Ok(Ok(None)) => break,
                    Ok(Ok(Some(chunk))) => chunk,
                };
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large((body.len() + chunk.len()) as u64));
            }
            body.extend_from_slice(&chunk);
        }
        let digest = Digest::of(&body);
        if let Some(claimed) = claimed
            && claimed != digest
        {
            return Err(Error::DigestMismatch {
                reference: reference.clone().into(),
                registry: reference.registry().to_owned(),
                what: "manifest (Docker-Content-Digest header)",
                expected: claimed.to_string(),
                actual: digest.to_string(),
            });
        }
        Ok((body, digest))
    }

    /// The component blob, capped, watched for stalls, digest verified.
    async fn fetch_blob(&self, reference: &Reference, layer: &Layer) -> Result<Vec<u8>> {
        let what = format!("blob {}", layer.digest);
        let cap = self.settings.max_layer_bytes;
        let too_large = |size, limit| Error::TooLarge {
            reference: reference.clone().into(),
            registry: reference.registry().to_owned(),
            what: what.clone(),
            size,
            limit,
        };
        if layer.size > cap {
            return Err(too_large(layer.size, cap));
        }
        let target = reference.to_client();
        let descriptor = layer.descriptor();
        let open = tokio::time::timeout(
            self.settings.connect_timeout + self.settings.stall_timeout,
            self.client.pull_blob_stream(&target, &descriptor),
        );
        let sized = match open.await {
            Err(_) => return Err(self.stalled(reference, &what)),
            Ok(result) => result.map_err(|e| self.client_error(reference, &what, e))?,
        };
        if let Some(length) = sized.content_length
            && length > layer.size
        {
            return Err(too_large(length, layer.size));
        }
        let mut stream = sized.stream;
        let mut hasher = Sha256::new();
        let mut bytes = Vec::with_capacity(layer.size as usize);
        loop {
            let chunk = match tokio::time::timeout(self.settings.stall_timeout, stream.next()).await
            {
                Err(_) => return Err(self.stalled(reference, &what)),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(self.blob_stream_error(reference, &what, e)),
                Ok(Some(Ok(chunk))) => chunk,
            };
            // The descriptor's size is part of what the manifest digest pins.
            if (bytes.len() + chunk.len()) as u64 > layer.size {
                return Err(too_large((bytes.len() + chunk.len()) as u64, layer.size));
            }
            hasher.update(&chunk);
            bytes.extend_from_slice(&chunk);
        }
        let actual = Digest::from_hasher(hasher);
        if actual != layer.digest {
            return Err(Error::DigestMismatch {
                reference: reference.clone().into(),
                registry: reference.registry().to_owned(),
                what: "blob",
                expected: layer.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        if bytes.len() as u64 != layer.size {
            return Err(self.protocol(
                reference,
                format!(
                    "{what} has {} bytes, its descriptor says {}",
                    bytes.len(),
                    layer.size
                ),
            ));
        }
        Ok(bytes)
    }

    fn stalled(&self, reference: &Reference, what: &str) -> Error {
        Error::Stalled {
            reference: reference.clone().into(),
            registry: reference.registry().to_owned(),
            what: what.to_owned(),
            after: self.settings.stall_timeout,
        }
    }

    fn protocol(&self, reference: &Reference, reason: String) -> Error {
        Error::Protocol {
            reference: reference.clone().into(),
            registry: reference.registry().to_owned(),
            reason,
        }
    }

    fn status_error(
        &self,
        reference: &Reference,
        what: &str,
        status: u16,
        detail: String,
    ) -> Error {
        let registry = reference.registry().to_owned();
        match status {
            401 | 403 => Error::Unauthorized {
                reference: reference.clone().into(),
                repository: reference.repository().to_owned(),
                had_credentials: self.credentials.has(&registry),
                registry,
                status,
                detail,
            },
            404 => Error::NotFound {
                reference: reference.clone().into(),
                registry,
                what: what.to_owned(),
                detail,
            },
            _ => Error::Status {
                reference: reference.clone().into(),
                registry,
                what: what.to_owned(),
                status,
                detail,
            },
        }
    }

    fn request_error(&self, reference: &Reference, what: &str, e: &reqwest::Error) -> Error {
        let registry = reference.registry().to_owned();
        if e.is_connect() {
            Error::Unreachable {
                reference: reference.clone().into(),
                registry,
                detail: chain(e),
            }
        } else if e.is_timeout() {
            self.stalled(reference, what)
        } else {
            Error::Transport {
                reference: reference.clone().into(),
                registry,
                detail: format!("{what}: {}", chain(e)),
            }
        }
    }

    /// A failure inside the blob stream: oci-client's own digest check, a
    /// reqwest error, or a plain I/O error.
    fn blob_stream_error(&self, reference: &Reference, what: &str, e: std::io::Error) -> Error {
        if let Some(inner) = e.get_ref() {
            if let Some(oci_client::errors::DigestError::VerificationError { expected, actual }) =
                inner.downcast_ref()
            {
                return Error::DigestMismatch {
                    reference: reference.clone().into(),
                    registry: reference.registry().to_owned(),
                    what: "blob",
                    expected: expected.clone(),
                    actual: actual.clone(),
                };
            }
            if let Some(e) = inner.downcast_ref::<reqwest::Error>() {
                return self.request_error(reference, what, e);
            }
        }
        Error::Transport {
            reference: reference.clone().into(),
            registry: reference.registry().to_owned(),
            detail: format!("{what}: {}", chain(&e)),
        }
    }

    fn client_error(&self, reference: &Reference, what: &str, e: OciDistributionError) -> Error {
        match e {
            OciDistributionError::RequestError(e) => self.request_error(reference, what, &e),
            OciDistributionError::UnauthorizedError { url } => {
                self.status_error(reference, what, 401, url)
            }
            OciDistributionError::AuthenticationFailure(reason) => self.status_error(
                reference,
                what,
                401,
                format!("the token service refused: {}", reason.trim()),
            ),
            OciDistributionError::ServerError { code, url, message } => {
                self.status_error(reference, what, code, format!("{url}: {}", message.trim()))
            }
            OciDistributionError::RegistryError { envelope, url } => {
                let code = |wanted: &[OciErrorCode]| {
                    envelope.errors.iter().any(|e| wanted.contains(&e.code))
                };
                let detail = format!("{url}: {envelope}");
                if code(&[OciErrorCode::Unauthorized]) {
                    self.status_error(reference, what, 401, detail)
                } else if code(&[OciErrorCode::Denied]) {
                    self.status_error(reference, what, 403, detail)
                } else if code(&[
                    OciErrorCode::NameUnknown,
                    OciErrorCode::ManifestUnknown,
                    OciErrorCode::BlobUnknown,
                    OciErrorCode::NotFound,
                ]) {
                    self.status_error(reference, what, 404, detail)
                } else if code(&[OciErrorCode::Toomanyrequests]) {
                    self.status_error(reference, what, 429, detail)
                } else {
                    self.protocol(reference, format!("{what} refused: {detail}"))
                }
            }
            OciDistributionError::DigestError(
                oci_client::errors::DigestError::VerificationError { expected, actual },
            ) => Error::DigestMismatch {
                reference: reference.clone().into(),
                registry: reference.registry().to_owned(),
                what: "blob",
                expected,
                actual,
            },
            OciDistributionError::IoError(e) => self.blob_stream_error(reference, what, e),
            other => self.protocol(reference, format!("{what}: {}", chain(&other))),
        }
    }
}

const USER_AGENT: &str = concat!("lameduck-oci/", env!("CARGO_PKG_VERSION"));

/// The `Docker-Content-Digest` header, if the registry sent one.
fn header_digest(reference: &Reference, response: &reqwest::Response) -> Result<Option<Digest>> {
    let Some(value) = response.headers().get("docker-content-digest") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    Digest::parse(text)
        .map(Some)
        .map_err(|reason| Error::Protocol {
            reference: reference.clone().into(),
            registry: reference.registry().to_owned(),
            reason: format!("Docker-Content-Digest header: {reason}"),
        })
}

/// The certificates of a PEM bundle; a file with none is an error, not an empty trust list.
fn load_ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let bad = |reason: String| Error::Settings {
        what: "CA file",
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM bundle: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE in the file".into()));
    }
    Ok(certs)
}
