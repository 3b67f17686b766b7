//! A real registry (Debian's `docker-registry`, the CNCF distribution
//! registry) on loopback with TLS from a CA made here and htpasswd auth;
//! skopeo as an independent client; a TCP proxy that stalls. Used by
//! lameduck-oci's tests and by the agent's end-to-end tests (`tests/`), so
//! both meet the registry the same way.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lameduck_oci::{Digest, Reference, Settings};
use tempfile::TempDir;

pub const USER: &str = "policy-pusher";
pub const PASSWORD: &str = "correct horse battery staple";

/// A running registry; killed on drop, its storage with it.
pub struct TestRegistry {
    pub dir: TempDir,
    pub port: u16,
    pub tls: bool,
    /// The token service, when the registry uses bearer tokens.
    pub tokens: Option<TokenService>,
    child: Option<Child>,
}

/// How clients authenticate.
#[derive(Clone, Copy, PartialEq)]
enum Auth {
    /// Plain HTTP, anonymous.
    None,
    /// HTTP basic against an htpasswd file.
    Htpasswd,
    /// Bearer tokens from a token service that checks the same user and password.
    Token,
}

impl TestRegistry {
    /// TLS with a test CA, and htpasswd (bcrypt) auth.
    pub fn start() -> Self {
        Self::start_with(Auth::Htpasswd)
    }

    /// Plain HTTP, anonymous: for the `insecure` list.
    pub fn start_plain() -> Self {
        Self::start_with(Auth::None)
    }

    /// TLS, and the bearer-token flow: the registry sends clients to a token
    /// service, which checks the user's password and signs a JWT for the scope.
    pub fn start_token() -> Self {
        Self::start_with(Auth::Token)
    }

    fn start_with(auth: Auth) -> Self {
        let tls = auth != Auth::None;
        let dir = tempfile::Builder::new()
            .prefix("lameduck-oci-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let root = dir.path();
        std::fs::create_dir_all(root.join("storage")).unwrap();
        std::fs::create_dir_all(root.join("certs")).unwrap();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: lameduck-test\n",
            storage = root.join("storage").display(),
        );
        if tls {
            write_tls_files(root);
            config.push_str(&format!(
                "  tls:\n    certificate: {cert}\n    key: {key}\n",
                cert = root.join("server.pem").display(),
                key = root.join("server.key").display(),
            ));
            write_auth_file(
                &root.join("auth.json"),
                &format!("127.0.0.1:{port}"),
                PASSWORD,
            );
        }
        let mut tokens = None;
        match auth {
            Auth::None => {}
            Auth::Htpasswd => {
                htpasswd(&root.join("htpasswd"));
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: lameduck-test\n    path: {}\n",
                    root.join("htpasswd").display(),
                ));
            }
            Auth::Token => {
                let service = TokenService::start(root);
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{port}/token\n    \
                     service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {bundle}\n",
                    port = service.port,
                    bundle = root.join("token-signer.pem").display(),
                ));
                tokens = Some(service);
            }
        }
        std::fs::write(root.join("config.yml"), config).unwrap();
        let mut registry = Self {
            dir,
            port,
            tls,
            tokens,
            child: None,
        };
        registry.resume();
        registry
    }

    /// (Re)starts the registry process on the same port and storage.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry; scripts/test installs it)");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("docker-registry exited ({status}): {}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "registry not up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the registry (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn reference(&self, repository_and_tag: &str) -> Reference {
        Reference::parse(&format!("oci://{}/{repository_and_tag}", self.host())).unwrap()
    }

    /// Settings that trust this registry and log in to it, caching in `cache`,
    /// with timeouts short enough for tests.
    pub fn settings(&self, cache: &Path) -> Settings {
        let mut settings = Settings::new(cache);
        if self.tls {
            settings.ca_file = Some(self.ca_file());
            settings.auth_file = Some(self.dir.path().join("auth.json"));
        } else {
            settings.insecure = vec![self.host()];
        }
        settings.connect_timeout = Duration::from_secs(2);
        settings.stall_timeout = Duration::from_secs(2);
        settings.timeout = Duration::from_secs(60);
        settings.retries = 2;
        settings.backoff = Duration::from_millis(100);
        settings
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("certs/ca.crt")
    }

    /// The `.dockerconfigjson` with this registry's user and password (TLS registries only).
    pub fn auth_file(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    /// The file the registry serves a blob from.
    pub fn blob_data(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// skopeo with this registry's CA and credentials; panics with its output on failure.
    pub fn skopeo(&self, args: &[&str]) -> Vec<u8> {
        let mut command = Command::new("skopeo");
        command
            .arg("--insecure-policy")
            .args(args)
            .stdin(Stdio::null());
        let output = command.output().expect("skopeo (Debian package skopeo)");
        assert!(
            output.status.success(),
            "skopeo {args:?}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// `--creds` and `--cert-dir` for skopeo, under the given prefix (`src-`, `dest-` or ``).
    pub fn skopeo_access(&self, prefix: &str) -> Vec<String> {
        vec![
            format!("--{prefix}creds={USER}:{PASSWORD}"),
            format!(
                "--{prefix}cert-dir={}",
                self.dir.path().join("certs").display()
            ),
        ]
    }

    /// The raw manifest skopeo reads for `repository_and_tag` (an independent client).
    pub fn skopeo_manifest(&self, target: &str) -> Vec<u8> {
        let access = self.skopeo_access("");
        let mut args = vec!["inspect", "--raw"];
        args.extend(access.iter().map(String::as_str));
        let url = format!("docker://{}/{target}", self.host());
        args.push(&url);
        self.skopeo(&args)
    }

    /// Copies an OCI layout directory's `tag` to `repository:tag` with skopeo.
    pub fn skopeo_push_layout(&self, layout: &Path, tag: &str, repository: &str) {
        let access = self.skopeo_access("dest-");
        let source = format!("oci:{}:{tag}", layout.display());
        let target = format!("docker://{}/{repository}:{tag}", self.host());
        let mut args = vec!["copy", "--quiet"];
        args.extend(access.iter().map(String::as_str));
        args.push(&source);
        args.push(&target);
        self.skopeo(&args);
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free loopback port (bound then released; the registry takes it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA made for this test and a server certificate for 127.0.0.1 and localhost.
fn write_tls_files(root: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "lameduck-oci test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();

    let mut server =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &ca).unwrap();

    std::fs::write(root.join("certs/ca.crt"), ca.pem()).unwrap();
    std::fs::write(root.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(root.join("server.key"), key.serialize_pem()).unwrap();
}

/// A bcrypt htpasswd file, made by apache2-utils' `htpasswd -B`.
fn htpasswd(path: &Path) {
    let output = Command::new("htpasswd")
        .args(["-B", "-b", "-c"])
        .arg(path)
        .args([USER, PASSWORD])
        .stdin(Stdio::null())
        .output()
        .expect("htpasswd (Debian package apache2-utils)");
    assert!(
        output.status.success(),
        "htpasswd: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A `.dockerconfigjson` for `registry` with the user and `password`.
pub fn write_auth_file(path: &Path, registry: &str, password: &str) {
    write_auth_file_for(path, &[registry], password);
}

/// A `.dockerconfigjson` with the user and `password` for each of `registries`.
pub fn write_auth_file_for(path: &Path, registries: &[&str], password: &str) {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    let auths: serde_json::Map<String, serde_json::Value> = registries
        .iter()
        .map(|r| (r.to_string(), serde_json::json!({ "auth": auth })))
        .collect();
    let json = serde_json::json!({ "auths": auths });
    std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
}

/// Deterministic pseudo-random bytes (a stand-in component: nothing here parses wasm).
pub fn component(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// An OCI image layout directory holding one manifest, tagged `tag`; returns
/// the manifest's digest. `config` and `layers` are (media type, bytes).
pub fn oci_layout(
    dir: &Path,
    tag: &str,
    config: (&str, &[u8]),
    layers: &[(&str, &[u8])],
) -> Digest {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = Digest::of(bytes);
        std::fs::write(blobs.join(digest.hex()), bytes).unwrap();
        serde_json::json!({ "digest": digest.to_string(), "size": bytes.len() })
    };
    let mut config_descriptor = put(config.1);
    config_descriptor["mediaType"] = config.0.into();
    let layer_descriptors: Vec<_> = layers
        .iter()
        .map(|(media_type, bytes)| {
            let mut descriptor = put(bytes);
            descriptor["mediaType"] = (*media_type).into();
            descriptor
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_descriptor,
        "layers": layer_descriptors,
    }))
    .unwrap();
    let mut manifest_descriptor = put(&manifest);
    manifest_descriptor["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    manifest_descriptor["annotations"] =
        serde_json::json!({ "org.opencontainers.image.ref.name": tag });
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [manifest_descriptor] });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    Digest::of(&manifest)
}

/// A TCP proxy to `upstream` that forwards each connection's first `budget`
/// bytes from the server, then stops sending (holding the connection open).
pub struct StallingProxy {
    pub port: u16,
    /// Connections that used their budget and are held, stalled.
    stalled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl StallingProxy {
    pub fn start(upstream: u16, budget: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = stalled.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let counter = counter.clone();
                std::thread::spawn(move || proxy(client, upstream, budget, &counter));
            }
        });
        Self { port, stalled }
    }

    /// `127.0.0.1:PORT`, the registry as seen through the proxy.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many connections have stalled so far (a client in the middle
    /// of an answer it will not get the rest of).
    pub fn stalled(&self) -> usize {
        self.stalled.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn proxy(
    client: TcpStream,
    upstream: u16,
    budget: usize,
    stalled: &std::sync::atomic::AtomicUsize,
) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (mut client_read, mut server_write) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    // Client to server: everything, until the client hangs up.
    let upward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server_write);
    });
    let (mut server_read, mut client_write) = (server, client);
    let mut sent = 0;
    let mut buffer = [0u8; 4096];
    while sent < budget {
        let n = match server_read.read(&mut buffer[..(budget - sent).min(4096)]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if client_write.write_all(&buffer[..n]).is_err() {
            break;
        }
        sent += n;
    }
    // Stalled: nothing more goes down; wait for the client to give up.
    if sent >= budget {
        stalled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let _ = upward.join();
}

const SERVICE: &str = "lameduck-test-registry";
const ISSUER: &str = "lameduck-test-token-service";

/// A token service as the distribution registry's token auth expects: GET
/// `/token?service=…&scope=repository:NAME:ACTIONS` with HTTP basic credentials
/// answers `{"token": JWT}`, an ES256 JWT whose `x5c` header carries the
/// signing certificate (trusted by the registry's `rootcertbundle`).
pub struct TokenService {
    pub port: u16,
    signer: std::sync::Arc<Signer>,
}

struct Signer {
    key: ring::signature::EcdsaKeyPair,
    certificate_der: Vec<u8>,
}

impl TokenService {
    fn start(root: &Path) -> Self {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, ISSUER);
        let certificate = params.self_signed(&key).unwrap();
        std::fs::write(root.join("token-signer.pem"), certificate.pem()).unwrap();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let signer = std::sync::Arc::new(Signer {
            key,
            certificate_der: certificate.der().to_vec(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let serving = signer.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let signer = serving.clone();
                std::thread::spawn(move || answer_token_request(stream, &signer));
            }
        });
        Self { port, signer }
    }

    /// A token for `actions` on `repository`, as the service would issue it.
    pub fn mint(&self, repository: &str, actions: &[&str]) -> String {
        self.signer.token(repository, actions)
    }
}

impl Signer {
    fn token(&self, repository: &str, actions: &[&str]) -> String {
        use base64::Engine as _;
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({
            "alg": "ES256", "typ": "JWT",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.certificate_der)],
        });
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": USER, "aud": SERVICE,
            "iat": now, "nbf": now - 10, "exp": now + 300, "jti": format!("{now}-{repository}"),
            "access": [{ "type": "repository", "name": repository, "actions": actions }],
        });
        let signing_input = format!(
            "{}.{}",
            url.encode(serde_json::to_vec(&header).unwrap()),
            url.encode(serde_json::to_vec(&claims).unwrap())
        );
        let signature = self
            .key
            .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
            .unwrap();
        format!("{signing_input}.{}", url.encode(signature.as_ref()))
    }
}

fn answer_token_request(mut stream: TcpStream, signer: &Signer) {
    use base64::Engine as _;
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request).into_owned();
    let target = request
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let expected = format!(
        "basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let authorised = request.lines().any(|line| {
        line.to_ascii_lowercase()
            .strip_prefix("authorization:")
            .map(str::trim)
            == Some(expected.to_ascii_lowercase().as_str())
    });
    let (status, body) = if !authorised {
        (
            "401 Unauthorized",
            r#"{"details":"wrong user or password"}"#.to_string(),
        )
    } else {
        // scope=repository:NAME:pull,push (percent-encoded).
        let scope = target
            .split(['?', '&'])
            .find_map(|pair| pair.strip_prefix("scope="))
            .map(percent_decode)
            .unwrap_or_default();
        let mut parts = scope.splitn(3, ':');
        let (_, name, actions) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
        let token = signer.token(name, &actions);
        (
            "200 OK",
            serde_json::json!({ "token": token, "expires_in": 300 }).to_string(),
        )
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
