//! A real CNCF distribution registry (`docker-registry serve`) on a loopback port, with a config
//! written into its own temp dir, stopped on drop. Variants: plain HTTP, TLS with a generated CA,
//! htpasswd basic auth and bearer-token auth with an in-process issuer.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use regmirror::registry::http::{HttpOptions, HttpRegistry};
use regmirror::{Credentials, Digest, ProxyConfig};
use tempfile::TempDir;

use crate::seed::{SeedAuth, Seeder};
use crate::tls::{ServerTls, SigningCert};
use crate::token::{ISSUER, SERVICE, TokenPolicy, TokenServer};

/// The distribution binary the kit runs.
pub const REGISTRY_BINARY: &str = "docker-registry";
/// The user the auth variants accept.
pub const USERNAME: &str = "mirror-tester";
/// That user's password (a test secret: assertions check it never shows up in messages).
pub const PASSWORD: &str = "pw-Zq81-not-in-logs";
/// A user the token variant grants `pull` only (pushing is refused for lack of scope).
pub const READER_USERNAME: &str = "mirror-reader";
/// That user's password.
pub const READER_PASSWORD: &str = "pw-Rd55-not-in-logs";

/// How a [`Registry`] is set up; build with [`Registry::builder`].
#[derive(Debug, Clone, Default)]
pub struct RegistryBuilder {
    tls: bool,
    basic_auth: bool,
    password: Option<TestPassword>,
    token: Option<TokenPolicy>,
    deletes_disabled: bool,
    client_certs: bool,
    http2_disabled: bool,
}

/// A password chosen by a test; `Debug` keeps it out, like every secret.
#[derive(Clone, Copy)]
struct TestPassword(&'static str);

impl std::fmt::Debug for TestPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestPassword(<redacted>)")
    }
}

impl RegistryBuilder {
    /// Serve HTTPS with a certificate from a CA the kit generates ([`Registry::ca_pem`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Serve HTTPS and require a client certificate signed by the kit's CA (distribution's
    /// `tls.clientcas`); [`Registry::client_cert_dir`] holds one. The kit's seeder has none.
    pub fn client_certs(mut self) -> Self {
        self.tls = true;
        self.client_certs = true;
        self
    }

    /// Serve HTTPS without offering HTTP/2 (distribution's `http.http2.disabled`), as many
    /// registries behind proxies do: clients speak HTTP/1.1, one request per connection at once.
    pub fn http2_disabled(mut self) -> Self {
        self.tls = true;
        self.http2_disabled = true;
        self
    }

    /// Require htpasswd basic auth for [`USERNAME`] / [`PASSWORD`].
    pub fn basic_auth(mut self) -> Self {
        self.basic_auth = true;
        self
    }

    /// Require htpasswd basic auth for [`USERNAME`] with `password` instead of [`PASSWORD`]
    /// (to test passwords with colons, quotes, `$`, backslashes, non-ASCII).
    pub fn basic_auth_password(mut self, password: &'static str) -> Self {
        self.basic_auth = true;
        self.password = Some(TestPassword(password));
        self
    }

    /// Require bearer tokens from an in-process issuer that grants everything to [`USERNAME`] /
    /// [`PASSWORD`], pull to [`READER_USERNAME`] / [`READER_PASSWORD`], and pull to anonymous
    /// callers when `anonymous_pull`.
    pub fn token_auth(mut self, anonymous_pull: bool) -> Self {
        self.token = Some(TokenPolicy {
            users: HashMap::from([(USERNAME.to_owned(), PASSWORD.to_owned())]),
            readers: HashMap::from([(READER_USERNAME.to_owned(), READER_PASSWORD.to_owned())]),
            anonymous_pull,
        });
        self
    }

    /// Refuse manifest deletes (distribution's `storage.delete.enabled: false`, its default),
    /// as many production registries do.
    pub fn deletes_disabled(mut self) -> Self {
        self.deletes_disabled = true;
        self
    }

    /// Start the registry and wait until it accepts connections. Panics with the install command
    /// when the binary is missing, and with the registry's log when it does not come up.
    pub fn start(self) -> Registry {
        let mut last_failure = String::new();
        // A free port can be taken by someone else between our probe and the registry's bind.
        for _ in 0..5 {
            match Registry::try_start(&self) {
                Ok(registry) => return registry,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("the test registry did not start: {last_failure}");
    }
}

/// A running distribution registry on 127.0.0.1. Dropping it kills and reaps the process and
/// removes its storage.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    port: u16,
    dir: TempDir,
    tls: Option<ServerTls>,
    basic_auth: bool,
    password: TestPassword,
    token: Option<TokenServer>,
}

impl Registry {
    /// A plain-HTTP registry without auth.
    pub fn start() -> Registry {
        Registry::builder().start()
    }

    /// Choose a variant.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    fn try_start(options: &RegistryBuilder) -> Result<Registry, String> {
        let dir = tempfile::Builder::new()
            .prefix("regmirror-registry-")
            .tempdir_in(scratch_dir())
            .map_err(|e| format!("creating a temp dir: {e}"))?;
        let port = free_port();
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: {deletes}\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: regmirror-test-{port}\n",
            storage = storage.display(),
            deletes = !options.deletes_disabled,
        );
        let tls = options.tls.then(|| ServerTls::generate(dir.path()));
        if let Some(tls) = &tls {
            write!(
                config,
                "  tls:\n    certificate: {}\n    key: {}\n",
                tls.cert_pem.display(),
                tls.key_pem.display()
            )
            .expect("writing to a String cannot fail");
            if options.client_certs {
                write!(config, "    clientcas:\n      - {}\n", tls.ca_pem.display())
                    .expect("writing to a String cannot fail");
            }
            if options.http2_disabled {
                config.push_str("  http2:\n    disabled: true\n");
            }
        }
        let mut token = None;
        if options.basic_auth {
            let htpasswd = dir.path().join("htpasswd");
            // Cost 4 (the minimum) keeps each authenticated request cheap; distribution only
            // accepts bcrypt entries.
            let password = options.password.map_or(PASSWORD, |p| p.0);
            let hash = bcrypt::hash(password, 4).expect("bcrypt hashing a short password");
            std::fs::write(&htpasswd, format!("{USERNAME}:{hash}\n"))
                .map_err(|e| format!("writing htpasswd: {e}"))?;
            write!(
                config,
                "auth:\n  htpasswd:\n    realm: regmirror-test\n    path: {}\n",
                htpasswd.display()
            )
            .expect("writing to a String cannot fail");
        } else if let Some(policy) = &options.token {
            let cert = SigningCert::generate(dir.path());
            let server = TokenServer::start(&cert, policy.clone(), tls.as_ref());
            write!(
                config,
                "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                server.realm(),
                cert.path.display()
            )
            .expect("writing to a String cannot fail");
            token = Some(server);
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, &config).map_err(|e| format!("writing config: {e}"))?;
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("creating log: {e}"))?;
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| format!("log handle: {e}"))?)
            .stderr(log)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`{REGISTRY_BINARY}` is not installed (CNCF distribution); install it with \
                 `apt-get install -y docker-registry`"
            ),
            Err(e) => panic!("starting {REGISTRY_BINARY}: {e}"),
        };
        let mut registry = Registry {
            child,
            port,
            dir,
            tls,
            basic_auth: options.basic_auth,
            password: options.password.unwrap_or(TestPassword(PASSWORD)),
            token,
        };
        registry.wait_ready(&log_path)?;
        Ok(registry)
    }

    fn wait_ready(&mut self, log_path: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let log = || {
            let mut text = String::new();
            let _ = std::fs::File::open(log_path).map(|mut f| f.read_to_string(&mut text));
            text
        };
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{REGISTRY_BINARY} exited with {status}:\n{}",
                    log()
                ));
            }
            if self.answers_v2() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{REGISTRY_BINARY} did not answer on port {} within 20 s:\n{}",
                    self.port,
                    log()
                ));
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Whether `/v2/` answers. Over plain HTTP the status line is checked; over TLS an accepted
    /// connection suffices, because distribution binds only once its config (certificates
    /// included) has loaded.
    fn answers_v2(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls.is_some() {
            return true;
        }
        use std::io::Write as _;
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 ")
    }

    /// `127.0.0.1:PORT`, the registry host as a client names it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` or `https://…`.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// The CA certificate (PEM file) that signed the server certificate, for TLS variants.
    pub fn ca_pem(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca_pem.as_path())
    }

    /// A directory as docker's `certs.d/HOST` for the TLS variants: `ca.crt` (the CA) and a
    /// client certificate the CA signed (`client.cert`, `client.key`).
    pub fn client_cert_dir(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.client_cert_dir.as_path())
    }

    /// Whether the registry requires credentials.
    pub fn requires_auth(&self) -> bool {
        self.basic_auth || self.token.is_some()
    }

    /// The token issuer, for the token variant.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// Options for regmirror's HTTP client to reach this registry: plain HTTP permitted
    /// (`tls_verify = false`) or the generated CA trusted, the kit user's credentials for auth
    /// variants, no docker config, no environment proxies for loopback.
    pub fn http_options(&self) -> HttpOptions {
        let mut options = client_options(
            self.tls.as_ref().map(|t| t.ca_pem.clone()),
            self.requires_auth(),
        );
        if let Some(credentials) = options.credentials.as_mut().filter(|_| self.basic_auth) {
            credentials.password = self.password.0.to_owned();
        }
        options
    }

    /// The password of [`USERNAME`] on a basic-auth registry.
    pub fn password(&self) -> &'static str {
        self.password.0
    }

    /// Like [`Registry::http_options`] with other credentials (e.g. wrong ones).
    pub fn http_options_as(&self, username: &str, password: &str) -> HttpOptions {
        HttpOptions {
            credentials: Some(Credentials::new(username, password)),
            ..self.http_options()
        }
    }

    /// A client of regmirror's HTTP backend for this registry, set up by [`Registry::http_options`].
    pub fn client(&self) -> HttpRegistry {
        HttpRegistry::new(&self.host(), self.http_options())
            .expect("the kit's client options are valid")
    }

    /// The directory holding the registry's storage (`docker/registry/v2/...`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's log file (warnings and errors).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// A client that pushes test images into this registry with raw distribution API calls,
    /// independent of the client under test.
    pub fn seeder(&self) -> Seeder {
        let auth = if self.basic_auth {
            SeedAuth::Basic(USERNAME.to_owned(), self.password.0.to_owned())
        } else if let Some(token) = &self.token {
            SeedAuth::Token(token.issuer_handle())
        } else {
            SeedAuth::None
        };
        Seeder::new(&self.base_url(), self.ca_pem(), auth)
    }

    fn blob_data_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Overwrite the stored blob with different bytes of the same length, so the registry serves
    /// content that does not match its digest.
    pub fn corrupt_blob(&self, digest: &Digest) {
        let path = self.blob_data_path(digest);
        let mut bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("reading stored blob {}: {e}", path.display()));
        assert!(!bytes.is_empty(), "cannot corrupt the empty blob {digest}");
        for b in &mut bytes {
            *b ^= 0x5a;
        }
        std::fs::write(&path, bytes)
            .unwrap_or_else(|e| panic!("writing stored blob {}: {e}", path.display()));
    }

    /// Delete the stored blob's data, so the registry answers it as missing (or fails to serve it).
    pub fn remove_blob(&self, digest: &Digest) {
        let path = self.blob_data_path(digest);
        let dir = path.parent().expect("a blob data path has a parent");
        std::fs::remove_dir_all(dir)
            .unwrap_or_else(|e| panic!("removing stored blob {}: {e}", dir.display()));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HTTP client options for a kit server: trust `ca_pem` if given (else allow plain HTTP), send
/// the kit user's credentials when `auth`.
pub(crate) fn client_options(ca_pem: Option<PathBuf>, auth: bool) -> HttpOptions {
    HttpOptions {
        credentials: auth.then(|| Credentials::new(USERNAME, PASSWORD)),
        tls_verify: ca_pem.is_some(),
        ca_certs: ca_pem.into_iter().collect(),
        proxy: ProxyConfig {
            no_proxy: Some("127.0.0.1,localhost".to_owned()),
            ..ProxyConfig::default()
        },
        docker_config: false,
        ..HttpOptions::default()
    }
}

/// Where registry storage goes: tmpfs when the machine has a roomy one, because distribution's
/// many small file writes per push are 5-8x slower on a disk shared with parallel builds
/// (measured: 18-29 ms vs 3.5-5 ms per manifest PUT). Containers often have a 64 MiB
/// `/dev/shm`, too small for the large-blob tests; then the usual temp dir is used.
fn scratch_dir() -> PathBuf {
    const ROOMY: u64 = 4 << 30;
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && fs4::available_space(shm).is_ok_and(|free| free >= ROOMY) {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a loopback port")
        .port()
}
