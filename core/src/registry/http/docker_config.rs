//! Credentials the way `docker login` and `podman login` store them: `auths` entries in
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json` and `~/.docker/config.json`
//! (or `$DOCKER_CONFIG/config.json`), and credential helpers (`credHelpers`, `credsStore`) run
//! as `docker-credential-<name> get`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::config::Credentials;
use crate::error::{Error, ErrorKind, Result};

/// A credential helper that has not answered by then is given up on.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// The key docker uses for Docker Hub, in files and towards helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// Names Docker Hub goes by.
const DOCKER_HUB_HOSTS: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Where to look: the auth files in order of precedence, and the `PATH` for helpers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    pub files: Vec<PathBuf>,
    /// The files were named by the user (skopeo's `--authfile`), so a missing one is an error
    /// rather than "no logins there".
    pub required: bool,
    /// `PATH` for finding `docker-credential-*`; `None` inherits ours.
    pub helper_path: Option<OsString>,
}

impl Sources {
    /// The files podman and docker use, in the order skopeo reads them.
    pub(crate) fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let mut files = Vec::new();
        files.extend(var("REGISTRY_AUTH_FILE").map(PathBuf::from));
        files.extend(var("XDG_RUNTIME_DIR").map(|d| PathBuf::from(d).join("containers/auth.json")));
        match var("DOCKER_CONFIG") {
            Some(dir) => files.push(PathBuf::from(dir).join("config.json")),
            None => files.extend(var("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))),
        }
        Sources {
            files,
            required: false,
            helper_path: None,
        }
    }

    /// Only this file, which must exist (skopeo's `--authfile`).
    pub(crate) fn file(path: PathBuf) -> Self {
        Sources {
            files: vec![path],
            required: true,
            helper_path: None,
        }
    }

    /// Read and check every file that exists. A file that cannot be read or parsed, or holds an
    /// `auth` that is not base64 of `user:password`, is an error naming the file (as docker's
    /// own config loader refuses it): going on anonymously would only end in a puzzling 401.
    pub(crate) fn load(&self) -> Result<StoredLogins> {
        let mut files = Vec::new();
        for path in &self.files {
            let text = match std::fs::read(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.required => continue,
                Err(e) => {
                    return Err(Error::new(
                        ErrorKind::InvalidConfig,
                        format!("cannot read auth file {}: {e}", path.display()),
                    ));
                }
            };
            let invalid = |why: String| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("auth file {} is not valid: {why}", path.display()),
                )
            };
            let parsed: AuthFile =
                serde_json::from_slice(&text).map_err(|e| invalid(json_problem(&e)))?;
            let mut logins = Vec::new();
            for (key, entry) in parsed.auths {
                if let Some(credentials) = entry_credentials(&entry)
                    .map_err(|why| invalid(format!("the \"auth\" of {key:?} {why}")))?
                {
                    logins.push((key, credentials));
                }
            }
            files.push(LoadedFile {
                logins,
                helpers: parsed.cred_helpers,
                store: parsed.creds_store,
            });
        }
        Ok(StoredLogins {
            files,
            helper_path: self.helper_path.clone(),
        })
    }
}

/// What is wrong with a JSON document, by line and column. serde's own message is not used: for
/// a value of the wrong type it quotes the value, which may be a password.
fn json_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "it cannot be read",
        Category::Syntax => "it is not valid JSON",
        Category::Eof => "it is not valid JSON (it ends too early)",
        Category::Data => "a value has the wrong type for an auth file",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// The parts of a docker/containers auth file we read. Deliberately not `Debug`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// One auth file, checked: the logins it holds (by registry key) and the helpers it names.
/// Deliberately not `Debug`.
struct LoadedFile {
    logins: Vec<(String, Credentials)>,
    helpers: HashMap<String, String>,
    store: Option<String>,
}

/// The auth files that exist, read and checked once, in order of precedence.
/// Deliberately not `Debug`.
pub(crate) struct StoredLogins {
    files: Vec<LoadedFile>,
    helper_path: Option<OsString>,
}

/// What one file says about a host.
enum Found {
    Credentials(Credentials),
    Helper(String),
}

impl StoredLogins {
    /// The credentials stored for registry `host` (as the user names it, e.g. `docker.io`), or
    /// `None` when no file or helper has any.
    pub(crate) async fn lookup(&self, host: &str) -> Result<Option<Credentials>> {
        for file in &self.files {
            match find(file, host) {
                None => continue,
                Some(Found::Credentials(c)) => return Ok(Some(c)),
                Some(Found::Helper(name)) => {
                    return run_helper(self.helper_path.as_ref(), &name, host).await;
                }
            }
        }
        Ok(None)
    }
}

/// The host part of an auth file key (`https://index.docker.io/v1/` → `index.docker.io`).
fn key_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn same_registry(key: &str, host: &str) -> bool {
    let key = key_host(key);
    key == host || (DOCKER_HUB_HOSTS.contains(&key) && DOCKER_HUB_HOSTS.contains(&host))
}

fn find(file: &LoadedFile, host: &str) -> Option<Found> {
    if let Some((_, helper)) = file.helpers.iter().find(|(k, _)| same_registry(k, host)) {
        return Some(Found::Helper(helper.clone()));
    }
    if let Some((_, credentials)) = file.logins.iter().find(|(k, _)| same_registry(k, host)) {
        return Some(Found::Credentials(credentials.clone()));
    }
    file.store.clone().map(Found::Helper)
}

/// The login an entry holds, `None` for an empty one, or what is wrong with its `auth` (never
/// its content).
fn entry_credentials(entry: &AuthEntry) -> std::result::Result<Option<Credentials>, &'static str> {
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::new("<token>", token.clone())));
    }
    if let (Some(user), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials::new(user.clone(), password.clone())));
    }
    let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| "is not base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "does not decode to text")?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or("does not decode to \"user:password\" (it has no ':')")?;
    Ok(Some(Credentials::new(user, password)))
}

/// The credential helper protocol's answer. Deliberately not `Debug`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

async fn run_helper(
    helper_path: Option<&OsString>,
    name: &str,
    host: &str,
) -> Result<Option<Credentials>> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("credential helper name {name:?} is not a plain name"),
        ));
    }
    let program = format!("docker-credential-{name}");
    let server = if DOCKER_HUB_HOSTS.contains(&host) {
        DOCKER_HUB_KEY
    } else {
        host
    };
    let mut command = tokio::process::Command::new(&program);
    command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(path) = helper_path {
        command.env("PATH", path);
    }
    let failed = |why: String| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("credential helper {program} for {host}: {why}"),
        )
    };
    let mut child = command
        .spawn()
        .map_err(|e| failed(format!("cannot run it ({e}); is it installed and on PATH?")))?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    stdin
        .write_all(server.as_bytes())
        .await
        .map_err(|e| failed(format!("cannot write to it: {e}")))?;
    drop(stdin);
    let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| failed(format!("no answer within {HELPER_TIMEOUT:?}")))?
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        // The helper protocol reports "no credentials" as a failure with this text on stdout;
        // stdout is otherwise never echoed, it may hold a secret.
        let stdout = String::from_utf8_lossy(&output.stdout);
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().next().unwrap_or("").chars().take(200);
        return Err(failed(format!(
            "it failed ({}): {}",
            output.status,
            first.collect::<String>()
        )));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|e| failed(format!("its answer is not valid JSON: {e}")))?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials::new(answer.username, answer.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn sources(files: Vec<PathBuf>) -> Sources {
        Sources {
            files,
            required: false,
            helper_path: None,
        }
    }

    async fn lookup(sources: &Sources, host: &str) -> Result<Option<Credentials>> {
        sources.load()?.lookup(host).await
    }

    #[tokio::test]
    async fn auths_entries_by_host_and_docker_hub_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:pa:ss\"word");
        let file = write(
            dir.path(),
            "config.json",
            &format!(
                r#"{{"auths":{{
                    "https://index.docker.io/v1/":{{"auth":"{auth}"}},
                    "quay.io":{{"username":"bob","password":"pw"}},
                    "ghcr.io":{{"identitytoken":"refresh"}},
                    "empty.example":{{}}
                }}}}"#
            ),
        );
        let s = sources(vec![dir.path().join("missing.json"), file]);
        let c = lookup(&s, "docker.io").await.unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "pa:ss\"word")
        );
        let c = lookup(&s, "quay.io").await.unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "pw"));
        let c = lookup(&s, "ghcr.io").await.unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("<token>", "refresh")
        );
        assert!(lookup(&s, "empty.example").await.unwrap().is_none());
        assert!(lookup(&s, "other.example:5000").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn earlier_files_win_and_missing_files_hold_no_logins() {
        let dir = tempfile::tempdir().unwrap();
        let first = write(
            dir.path(),
            "auth.json",
            r#"{"auths":{"quay.io":{"username":"first","password":"1"}}}"#,
        );
        let second = write(
            dir.path(),
            "config.json",
            r#"{"auths":{"quay.io":{"username":"second","password":"2"}}}"#,
        );
        let c = lookup(&sources(vec![first, second]), "quay.io")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "first");

        assert!(
            lookup(&sources(vec![dir.path().join("missing.json")]), "quay.io")
                .await
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_file_that_cannot_be_parsed_is_an_error_naming_it_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        // An entry for another registry counts too, as docker's own loader refuses the file.
        let entry = |auth: &str| format!(r#"{{"auths":{{"other.example":{{"auth":"{auth}"}}}}}}"#);
        for (name, text, problem) in [
            (
                "cut.json",
                r#"{"auths": {"x": "hunter2"#.to_owned(),
                "it is not valid JSON (it ends too early) (line 1, column 24)",
            ),
            (
                "syntax.json",
                r#"{"auths": {"x": {"auth": hunter2}}}"#.to_owned(),
                "it is not valid JSON (line 1, column 26)",
            ),
            // serde's message for this one quotes the value.
            (
                "type.json",
                r#"{"auths": {"x": "hunter2"}}"#.to_owned(),
                "a value has the wrong type for an auth file (line 1, column 25)",
            ),
            (
                "base64.json",
                entry("hunter2!!"),
                r#"the "auth" of "other.example" is not base64"#,
            ),
            (
                "colon.json",
                entry(&b64("hunter2")),
                r#"the "auth" of "other.example" does not decode to "user:password" (it has no ':')"#,
            ),
            (
                "utf8.json",
                entry("/w=="),
                r#"the "auth" of "other.example" does not decode to text"#,
            ),
        ] {
            let file = write(dir.path(), name, &text);
            let e = sources(vec![file.clone()]).load().err().expect(name);
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
            assert_eq!(
                e.message(),
                format!("auth file {} is not valid: {problem}", file.display())
            );
            assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
        }
    }

    #[test]
    fn a_file_named_by_the_user_must_exist_one_looked_for_need_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("auth.json");
        assert!(sources(vec![missing.clone()]).load().is_ok());
        let e = Sources::file(missing.clone()).load().err().unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(
            e.message()
                .starts_with(&format!("cannot read auth file {}: ", missing.display())),
            "{e}"
        );
        let e = sources(vec![dir.path().to_owned()]).load().err().unwrap();
        assert!(e.message().contains("cannot read auth file"), "{e}");
    }

    #[tokio::test]
    async fn credential_helpers_are_run_with_the_server_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let script = write(
            &bin,
            "docker-credential-test",
            r#"#!/bin/sh
[ "$1" = get ] || exit 3
read server
case "$server" in
  https://index.docker.io/v1/) echo '{"ServerURL":"hub","Username":"hubuser","Secret":"hub-secret"}' ;;
  127.0.0.1:5000) echo '{"ServerURL":"x","Username":"local","Secret":"local-secret"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"#,
        );
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = write(
            dir.path(),
            "config.json",
            r#"{"credsStore":"test","credHelpers":{"quay.io":"missing"}}"#,
        );
        let s = Sources {
            files: vec![file],
            required: false,
            helper_path: Some(bin.into_os_string()),
        };
        let c = lookup(&s, "docker.io").await.unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("hubuser", "hub-secret")
        );
        let c = lookup(&s, "127.0.0.1:5000").await.unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("local", "local-secret")
        );
        assert!(lookup(&s, "elsewhere.example").await.unwrap().is_none());
        let e = lookup(&s, "quay.io").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().contains("docker-credential-missing"), "{e}");
    }

    #[test]
    fn helper_names_cannot_be_paths() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let e = rt
            .block_on(run_helper(None, "../../bin/sh", "x"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    }
}
