//! `regmirror sync SOURCE --to DEST --tags PATTERNS`: mirror one repository once, without a state
//! store, with skopeo's option names where skopeo has them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, ValueEnum};
use regmirror::config::{check_architectures, check_cert_dir};
use regmirror::engine::{DEFAULT_CONCURRENCY, PreviewAction, SyncOptions};
use regmirror::oneshot::{Access, OneShotSync};
use regmirror::registry::http::AddressGuard;
use regmirror::{MirrorConfig, PlatformIndexMode, ReferrersPolicy, RollbackMode, TagFilter};
use tokio_util::sync::CancellationToken;

use crate::credentials::CredentialSources;
use crate::failure::{CliResult, EXIT_FAILED, Failure};
use crate::hint::{self, Sides};
use crate::location::{self, Location};
use crate::output::print_json;
use crate::progress::TtyProgress;
use crate::summary::{JsonPreview, JsonReport, preview_text, report_text};

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Copy from: a registry repository `host[:port]/path` (`docker://` prefix allowed) or an OCI
    /// layout `oci:DIRECTORY`.
    #[arg(value_name = "SOURCE")]
    pub source: String,

    /// Copy to: a registry repository `host[:port]/path` (its tags end up exactly the selected
    /// ones) or an OCI layout `oci:DIRECTORY` (created if missing).
    #[arg(long, value_name = "DEST")]
    pub to: String,

    /// Tag patterns: comma-separated shell globs (`v3.*`, `v3.[12]`), `regex:`, `semver:` and `!`
    /// exclusions. May be repeated.
    #[arg(long, value_name = "PATTERNS", required = true)]
    pub tags: Vec<String>,

    /// Logins to use for both sides (docker `config.json` / podman `auth.json` format) instead
    /// of the default locations, as skopeo's --authfile.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,

    #[command(flatten)]
    pub src: SourceAccess,

    #[command(flatten)]
    pub dest: DestAccess,

    /// Copy only these architectures of multi-arch images (comma-separated, e.g. amd64,arm64).
    #[arg(long, value_name = "ARCHS", value_delimiter = ',')]
    pub arch: Vec<String>,

    /// What happens to the destination when a tag fails.
    #[arg(long, value_enum, default_value_t = Rollback::FailedTagsOnly)]
    pub rollback: Rollback,

    /// With --arch, what to do when the destination refuses an index whose other platforms are
    /// missing: fail the tag (sparse) or push a rewritten index of the selected platforms.
    #[arg(long, value_enum, default_value_t = PlatformIndex::Sparse)]
    pub platform_index: PlatformIndex,

    /// Which signatures, SBOMs and attestations travel with the images: all, none, or
    /// comma-separated artifact types (e.g. application/vnd.dev.cosign.simplesigning.v1+json).
    #[arg(long, value_name = "all|none|TYPES", default_value = "all", value_parser = parse_referrers)]
    pub referrers: ReferrersPolicy,

    /// Keep destination tags that the patterns do not select (by default they are deleted).
    #[arg(long)]
    pub no_prune: bool,

    /// Print what would be copied, kept and deleted, with the bytes to move; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the report as JSON on stdout (and no progress).
    #[arg(long)]
    pub json: bool,

    /// Blob copies and registry requests in flight at once; small reads (manifest and blob
    /// HEADs) up to 4× as many, at most 32 unless N is larger.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY as u16,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,

    /// Give up on the run after this long (e.g. 90s, 30m, 2h).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Fail the run when a registry lists more tags than this (an endless tag list stops here).
    #[arg(long, value_name = "N", default_value_t = regmirror::registry::http::DEFAULT_MAX_TAGS,
          value_parser = clap::value_parser!(u64).range(1..).map(|n| n as usize))]
    pub max_tags: usize,
}

/// How to reach the source registry.
#[derive(Args, Debug, Default)]
pub struct SourceAccess {
    /// Source credentials USER:PASS (split at the first colon). Prefer --src-creds-file or
    /// $REGMIRROR_SRC_CREDS, which keep the password out of the process list. Without any,
    /// the docker/podman login config is used.
    #[arg(long, value_name = "USER:PASS")]
    pub src_creds: Option<String>,
    /// Read the source's USER:PASS from this file.
    #[arg(long, value_name = "FILE", conflicts_with = "src_creds")]
    pub src_creds_file: Option<PathBuf>,
    /// Access the source anonymously, ignoring the docker/podman login config.
    #[arg(long, conflicts_with_all = ["src_creds", "src_creds_file"])]
    pub src_no_creds: bool,
    /// Source logins from this auth file instead of --authfile or the default locations.
    #[arg(long, value_name = "FILE", conflicts_with = "src_no_creds")]
    pub src_authfile: Option<PathBuf>,
    /// Verify the source's TLS certificate; `--src-tls-verify=false` also permits plain HTTP.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub src_tls_verify: Option<bool>,
    /// Trust the CA certificates (`*.crt`) in this directory for the source, and present its
    /// client certificate (`client.cert` + `client.key`), as in docker's `certs.d/HOST`.
    #[arg(long, value_name = "DIR")]
    pub src_cert_dir: Option<PathBuf>,
    /// The SSRF guard: refuse loopback, private, link-local and cloud-metadata addresses for
    /// the source, its token service and its redirects (checked as host names resolve).
    #[arg(long)]
    pub ssrf_guard: bool,
    /// Let the SSRF guard allow this host name, IP address or CIDR network (e.g.
    /// registry.corp, 10.0.0.0/8); comma-separated, may be repeated.
    #[arg(
        long,
        value_name = "HOST|CIDR",
        value_delimiter = ',',
        requires = "ssrf_guard"
    )]
    pub ssrf_allow: Vec<String>,
}

/// How to reach the destination registry.
#[derive(Args, Debug, Default)]
pub struct DestAccess {
    /// Destination credentials USER:PASS (split at the first colon). Prefer --dest-creds-file or
    /// $REGMIRROR_DEST_CREDS. Without any, the docker/podman login config is used.
    #[arg(long, value_name = "USER:PASS")]
    pub dest_creds: Option<String>,
    /// Read the destination's USER:PASS from this file.
    #[arg(long, value_name = "FILE", conflicts_with = "dest_creds")]
    pub dest_creds_file: Option<PathBuf>,
    /// Access the destination anonymously, ignoring the docker/podman login config.
    #[arg(long, conflicts_with_all = ["dest_creds", "dest_creds_file"])]
    pub dest_no_creds: bool,
    /// Destination logins from this auth file instead of --authfile or the default locations.
    #[arg(long, value_name = "FILE", conflicts_with = "dest_no_creds")]
    pub dest_authfile: Option<PathBuf>,
    /// Verify the destination's TLS certificate; `--dest-tls-verify=false` also permits plain HTTP.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub dest_tls_verify: Option<bool>,
    /// Trust the CA certificates (`*.crt`) in this directory for the destination, and present its
    /// client certificate (`client.cert` + `client.key`), as in docker's `certs.d/HOST`.
    #[arg(long, value_name = "DIR")]
    pub dest_cert_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Rollback {
    /// Failed tags keep their old value; the rest of the run stands (Quay's default).
    FailedTagsOnly,
    /// Any failure puts the destination back exactly as it was.
    AllOrNothing,
}

impl From<Rollback> for RollbackMode {
    fn from(r: Rollback) -> Self {
        match r {
            Rollback::FailedTagsOnly => RollbackMode::FailedTagsOnly,
            Rollback::AllOrNothing => RollbackMode::AllOrNothing,
        }
    }
}

/// `--referrers`: the engine's own parser, its message without the error kind.
pub fn parse_referrers(s: &str) -> Result<ReferrersPolicy, String> {
    s.parse()
        .map_err(|e: regmirror::Error| e.message().to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlatformIndex {
    /// Push the source's index unchanged (digest preserved); fail if the destination refuses it.
    Sparse,
    /// Push an index of only the selected platforms when the sparse one is refused.
    Rewrite,
}

impl From<PlatformIndex> for PlatformIndexMode {
    fn from(p: PlatformIndex) -> Self {
        match p {
            PlatformIndex::Sparse => PlatformIndexMode::Sparse,
            PlatformIndex::Rewrite => PlatformIndexMode::Rewrite,
        }
    }
}

/// `90s`, `30m`, `2h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration_or_zero(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(d)
}

/// A duration as whole seconds (`30`) or with units (`30s`, `6h`, `1day`), zero included.
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    Ok(match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| e.to_string())?,
    })
}

impl SourceAccess {
    /// `authfile` is the --authfile both sides share.
    pub fn resolve(&self, location: &Location, authfile: Option<&Path>) -> CliResult<Access> {
        let mut access = resolve_access(
            location,
            "source",
            RawAccess {
                creds_flag: "--src-creds",
                creds: self.src_creds.as_deref(),
                file_flag: "--src-creds-file",
                file: self.src_creds_file.as_deref(),
                env: "REGMIRROR_SRC_CREDS",
                no_creds: self.src_no_creds,
                authfile: match &self.src_authfile {
                    Some(file) => Some(("--src-authfile", file.as_path())),
                    None => authfile.map(|file| ("--authfile", file)),
                },
                tls_flag: "--src-tls-verify",
                tls_verify: self.src_tls_verify,
                cert_flag: "--src-cert-dir",
                cert_dir: self.src_cert_dir.as_deref(),
            },
        )?;
        if self.ssrf_guard {
            if let Location::Layout(path) = location {
                return Err(Failure::invalid(format!(
                    "--ssrf-guard applies to a registry, but the source is the layout oci:{}",
                    path.display()
                ))
                .hint("drop --ssrf-guard"));
            }
            let guard = AddressGuard::new(&self.ssrf_allow)
                .map_err(|e| Failure::from(e).context("--ssrf-allow"))?;
            access.address_guard = Some(guard);
        }
        Ok(access)
    }
}

impl DestAccess {
    /// `authfile` is the --authfile both sides share.
    pub fn resolve(&self, location: &Location, authfile: Option<&Path>) -> CliResult<Access> {
        resolve_access(
            location,
            "destination",
            RawAccess {
                creds_flag: "--dest-creds",
                creds: self.dest_creds.as_deref(),
                file_flag: "--dest-creds-file",
                file: self.dest_creds_file.as_deref(),
                env: "REGMIRROR_DEST_CREDS",
                no_creds: self.dest_no_creds,
                authfile: match &self.dest_authfile {
                    Some(file) => Some(("--dest-authfile", file.as_path())),
                    None => authfile.map(|file| ("--authfile", file)),
                },
                tls_flag: "--dest-tls-verify",
                tls_verify: self.dest_tls_verify,
                cert_flag: "--dest-cert-dir",
                cert_dir: self.dest_cert_dir.as_deref(),
            },
        )
    }
}

/// One side's access flags with their names, so both sides share one resolver.
struct RawAccess<'a> {
    creds_flag: &'a str,
    creds: Option<&'a str>,
    file_flag: &'a str,
    file: Option<&'a Path>,
    env: &'a str,
    no_creds: bool,
    /// The auth file and the flag that gave it.
    authfile: Option<(&'a str, &'a Path)>,
    tls_flag: &'a str,
    tls_verify: Option<bool>,
    cert_flag: &'a str,
    cert_dir: Option<&'a Path>,
}

fn resolve_access(location: &Location, side: &str, raw: RawAccess<'_>) -> CliResult<Access> {
    if let Location::Layout(path) = location {
        // Registry settings given for a directory are a mistake worth pointing out (a password
        // typed for nothing, or the wrong argument made the layout).
        let given = [
            (raw.creds_flag, raw.creds.is_some()),
            (raw.file_flag, raw.file.is_some()),
            (
                raw.authfile.map_or("--authfile", |(flag, _)| flag),
                raw.authfile.is_some_and(|(flag, _)| flag != "--authfile"),
            ),
            (raw.tls_flag, raw.tls_verify.is_some()),
            (raw.cert_flag, raw.cert_dir.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
            return Err(Failure::invalid(format!(
                "{flag} applies to a registry, but the {side} is the layout oci:{}",
                path.display()
            ))
            .hint(format!("drop {flag}")));
        }
        return Ok(Access::default());
    }
    if let Some(dir) = raw.cert_dir {
        check_cert_dir(dir).map_err(|e| Failure::from(e).context(raw.cert_flag))?;
    }
    if let Some((flag, file)) = raw.authfile {
        check_auth_file(file).map_err(|f| f.context(flag))?;
    }
    let credentials = if raw.no_creds {
        None
    } else {
        CredentialSources {
            flag: raw.creds_flag,
            inline: raw.creds,
            file_flag: raw.file_flag,
            file: raw.file,
            env: Some(raw.env),
        }
        .resolve()?
    };
    Ok(Access {
        credentials,
        docker_config: !raw.no_creds,
        auth_file: raw.authfile.map(|(_, file)| file.to_owned()),
        tls_verify: raw.tls_verify.unwrap_or(true),
        ca_certs: raw.cert_dir.map(ToOwned::to_owned).into_iter().collect(),
        ..Access::default()
    })
}

/// A file given with a flag that is not a JSON object is reported here, naming the flag; the
/// registry client then refuses any auth file it cannot use (a bad `auth` entry, a value of the
/// wrong type, or one found in the default locations) before anything runs.
fn check_auth_file(file: &Path) -> CliResult<()> {
    if !file.is_file() {
        return Err(Failure::invalid(format!(
            "{} is not a file",
            file.display()
        )));
    }
    let text = std::fs::read(file)
        .map_err(|e| Failure::invalid(format!("cannot read {}: {e}", file.display())))?;
    // serde's message names a line and column, never the content (which holds secrets).
    match serde_json::from_slice::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(Failure::invalid(format!(
            "{} is not a JSON object such as {{\"auths\": {{...}}}}",
            file.display()
        ))),
        Err(e) => Err(Failure::invalid(format!(
            "{} is not valid JSON: {e}",
            file.display()
        ))),
    }
}

/// A one-shot sync, checked: where from, where to, how to reach each, and the mirror settings
/// the engine runs.
#[derive(Debug)]
pub struct CheckedSync {
    pub sync: OneShotSync,
    pub config: MirrorConfig,
}

impl SyncArgs {
    /// Check every argument and build the mirror configuration; any problem is exit status 2.
    pub fn check(&self) -> CliResult<CheckedSync> {
        let source = location::parse(&self.source, "SOURCE")?;
        let dest = location::parse(&self.to, "--to")?;
        if let Location::Layout(path) = &source
            && !path.join("index.json").is_file()
        {
            return Err(Failure::invalid(format!(
                "SOURCE: {} is not an OCI image layout (it has no index.json)",
                path.display()
            )));
        }
        if let Location::Layout(path) = &dest
            && path.exists()
            && !path.is_dir()
        {
            return Err(Failure::invalid(format!(
                "--to: {} is a file, not a directory for an OCI image layout",
                path.display()
            )));
        }
        if source.same_place(&dest) {
            return Err(Failure::invalid(
                "SOURCE and --to name the same repository; mirroring it onto itself would only \
                 delete the tags the patterns do not select",
            ));
        }
        let source_access = self.src.resolve(&source, self.authfile.as_deref())?;
        let dest_access = self.dest.resolve(&dest, self.authfile.as_deref())?;
        let filter = TagFilter::new(&self.tags).map_err(|e| Failure::from(e).context("--tags"))?;
        check_architectures(&self.arch)
            .map_err(|why| Failure::invalid(format!("--arch: {why}")))?;

        let mut sync = OneShotSync::new(source, dest, filter.patterns());
        sync.architectures = self.arch.clone();
        sync.rollback = self.rollback.into();
        sync.platform_index = self.platform_index.into();
        sync.referrers = self.referrers.clone();
        sync.keep_unselected = self.no_prune;
        sync.source_access = source_access;
        sync.dest_access = dest_access;
        sync.concurrency = usize::from(self.concurrency);
        sync.timeout = self.timeout;
        sync.max_tags = self.max_tags;
        let config = sync.config()?;
        Ok(CheckedSync { sync, config })
    }
}

/// Run `regmirror sync`: exit status 0 when every selected tag is current afterwards, 1 when a
/// tag (or the run) failed or was cancelled.
pub async fn run(args: SyncArgs) -> CliResult<ExitCode> {
    let CheckedSync { sync, config } = args.check()?;
    let source = sync
        .source_registry()
        .map_err(|e| Failure::from(e).context("SOURCE"))?;
    let dest = sync
        .dest_registry()
        .map_err(|e| Failure::from(e).context("--to"))?;
    let mirror = sync.mirror(source, dest)?;

    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    let bars = TtyProgress::start(!args.json);
    let options = SyncOptions {
        cancel,
        progress: bars.as_ref().map(TtyProgress::sink).unwrap_or_default(),
        keep_unselected: sync.keep_unselected,
    };
    let destination = sync.to.to_string();
    let source_name = sync.source.to_string();
    let sides = Sides::new(&sync.source, &sync.to)
        .plain_http_allowed(!sync.source_access.tls_verify, !sync.dest_access.tls_verify);

    if args.dry_run {
        let preview = mirror.preview_config(&config, options).await;
        if let Some(bars) = &bars {
            bars.finish();
        }
        let mut preview = preview.map_err(|e| {
            let hint = hint::for_error(&regmirror::Failure::from(&e), &sides);
            let failure = Failure::from(e).context("planning the sync");
            match hint {
                Some(hint) => failure.hint(hint),
                None => failure,
            }
        })?;
        preview.source = source_name;
        if args.json {
            print_json(&JsonPreview {
                dry_run: true,
                preview: &preview,
                destination,
            });
        } else {
            crate::output::line(preview_text(&preview, &destination));
        }
        let fails = preview.tags.iter().any(|t| t.action == PreviewAction::Fail);
        return Ok(exit(!fails));
    }

    let report = mirror.sync_config(&config, options).await;
    if let Some(bars) = &bars {
        bars.finish();
    }
    let mut report = report?;
    // A layout source has no registry name; say which directory it was.
    report.source = source_name;
    if args.json {
        print_json(&JsonReport {
            report: &report,
            destination,
            hint: crate::summary::hint(&report, &sides),
        });
    } else {
        crate::output::line(report_text(&report, &destination, &sides));
    }
    Ok(exit(report.is_success()))
}

fn exit(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// The first Ctrl-C (or SIGTERM, as `timeout`, systemd and container runtimes send) stops the
/// run after the work in flight, so no tag is left half-published and the report says what was
/// done; a second signal quits at once.
async fn stop_on_signal(cancel: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut signalled = async || {
        let term = async {
            match term.as_mut() {
                Some(term) => term.recv().await,
                // Without a SIGTERM handler only Ctrl-C stops the run cleanly.
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.is_ok(),
            _ = term => true,
        }
    };
    if !signalled().await {
        return;
    }
    eprintln!("regmirror: stopping after the work in flight (Ctrl-C again to quit now)");
    cancel.cancel();
    if signalled().await {
        std::process::exit(130);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cmd {
        #[command(flatten)]
        sync: SyncArgs,
    }

    fn parse(args: &[&str]) -> SyncArgs {
        let mut argv = vec!["sync"];
        argv.extend_from_slice(args);
        Cmd::try_parse_from(argv).unwrap().sync
    }

    fn check_err(args: &[&str]) -> String {
        parse(args).check().unwrap_err().to_string()
    }

    #[test]
    fn skopeo_style_options() {
        let args = parse(&[
            "quay.io/coreos/etcd",
            "--to",
            "127.0.0.1:5000/mirror/etcd",
            "--tags",
            "v3.*, !*-rc*",
            "--tags",
            "latest",
            "--src-creds",
            "robot:pa:ss",
            "--src-tls-verify=false",
            "--dest-tls-verify",
            "--arch",
            "amd64,arm64",
            "--rollback",
            "all-or-nothing",
            "--concurrency",
            "3",
            "--timeout",
            "90s",
        ]);
        let checked = args.check().unwrap();
        let c = &checked.config;
        assert_eq!(c.id, "mirror/etcd");
        assert_eq!(c.source.to_string(), "quay.io/coreos/etcd");
        assert_eq!(c.tags, ["v3.*", "!*-rc*", "latest"]);
        assert_eq!(c.architectures, ["amd64", "arm64"]);
        assert_eq!(c.rollback, RollbackMode::AllOrNothing);
        assert_eq!(c.timeout, Duration::from_secs(90));
        assert!(!c.verify_tls);
        let creds = checked.sync.source_access.credentials.unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("robot", "pa:ss")
        );
        assert!(!checked.sync.source_access.tls_verify);
        assert!(checked.sync.dest_access.tls_verify);
        assert_eq!(args.concurrency, 3);
    }

    #[test]
    fn the_ssrf_guard_is_off_unless_asked_for_and_takes_an_allow_list() {
        let base = ["quay.io/a/b", "--to", "oci:/tmp/out", "--tags", "v1"];
        let checked = parse(&base).check().unwrap();
        assert_eq!(checked.sync.source_access.address_guard, None);
        let with = |extra: &[&str]| {
            let argv: Vec<&str> = base.iter().chain(extra).copied().collect();
            parse(&argv).check()
        };
        let checked = with(&["--ssrf-guard", "--ssrf-allow", "10.0.0.0/8,Registry.Corp"]).unwrap();
        let guard = checked.sync.source_access.address_guard.unwrap();
        assert_eq!(guard.allow_list(), ["10.0.0.0/8", "registry.corp"]);
        let e = with(&["--ssrf-guard", "--ssrf-allow", "10.0.0.0/99"]).unwrap_err();
        assert!(e.to_string().contains("--ssrf-allow"), "{e}");
        assert!(e.to_string().contains("10.0.0.0/99"), "{e}");
        let mut argv = vec!["sync"];
        argv.extend(base.iter().chain(&["--ssrf-allow", "10.0.0.0/8"]));
        assert!(
            Cmd::try_parse_from(argv).is_err(),
            "--ssrf-allow needs --ssrf-guard"
        );
    }

    #[test]
    fn tls_verify_needs_an_equals_sign_for_its_value() {
        // `--src-tls-verify false` would silently make "false" a positional argument in Go's
        // flag style; clap then sees two sources and refuses.
        let argv = [
            "sync",
            "a.io/x",
            "--to",
            "b.io/y",
            "--tags",
            "*",
            "--src-tls-verify",
            "false",
        ];
        assert!(Cmd::try_parse_from(argv).is_err());
    }

    #[test]
    fn layouts_on_either_side() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.json"), "{}").unwrap();
        let src = format!("oci:{}", dir.path().display());
        let checked = parse(&[&src, "--to", "127.0.0.1:5000/m/app", "--tags", "*"])
            .check()
            .unwrap();
        assert_eq!(checked.config.id, "m/app");
        let checked = parse(&["quay.io/a/b", "--to", "oci:/tmp/out", "--tags", "*"])
            .check()
            .unwrap();
        assert_eq!(checked.config.id, "a/b");
        assert_eq!(checked.sync.to, Location::Layout("/tmp/out".into()));
    }

    #[test]
    fn invalid_input_is_named() {
        let base = ["quay.io/a/b", "--to", "127.0.0.1:5000/m/b"];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            check_err(&v)
        };
        assert!(with(&["--tags", "v3.[12"]).starts_with("--tags: "));
        assert!(with(&["--tags", "*", "--arch", "amd65"]).contains("--arch: unknown architecture"));
        assert!(with(&["--tags", "*", "--src-creds", "secret"]).starts_with("--src-creds: "));
        assert!(!with(&["--tags", "*", "--src-creds", "secret"]).contains("secret"));
        let e = with(&["--tags", "*", "--dest-cert-dir", "/nonexistent/certs"]);
        assert!(
            e.contains("--dest-cert-dir: /nonexistent/certs is not a readable directory"),
            "{e}"
        );
        let certs = tempfile::tempdir().unwrap();
        std::fs::write(certs.path().join("ca.pem"), "not read").unwrap();
        let dir = certs.path().to_str().unwrap();
        let e = with(&["--tags", "*", "--src-cert-dir", dir]);
        assert!(e.starts_with("--src-cert-dir: "), "{e}");
        assert!(e.contains("holds no *.crt file"), "{e}");
        let e = check_err(&[
            "quay.io/a/b",
            "--to",
            "oci:/tmp/x",
            "--tags",
            "*",
            "--dest-creds",
            "u:p",
        ]);
        assert!(e.contains("--dest-creds applies to a registry"), "{e}");
        let e = check_err(&[
            "oci:/nonexistent/layout",
            "--to",
            "oci:/tmp/x",
            "--tags",
            "*",
        ]);
        assert!(e.contains("is not an OCI image layout"), "{e}");
        let file = tempfile::NamedTempFile::new().unwrap();
        let to = format!("oci:{}", file.path().display());
        let e = check_err(&["quay.io/a/b", "--to", &to, "--tags", "*"]);
        assert!(e.contains("is a file, not a directory"), "{e}");
        for (src, to) in [
            ("quay.io/a/b", "quay.io/a/b"),
            ("127.0.0.1:5000/a/b", "localhost:5000/a/b"),
            ("[::1]:5000/a/b", "docker://127.0.0.1:5000/a/b"),
            ("alpine", "registry-1.docker.io/library/alpine"),
        ] {
            let e = check_err(&[src, "--to", to, "--tags", "*"]);
            assert!(e.contains("same repository"), "{src} {to}: {e}");
        }
        // Another port or repository is another place.
        parse(&[
            "127.0.0.1:5000/a/b",
            "--to",
            "localhost:5001/a/b",
            "--tags",
            "*",
        ])
        .check()
        .unwrap();
        parse(&[
            "127.0.0.1:5000/a/b",
            "--to",
            "localhost:5000/a/c",
            "--tags",
            "*",
        ])
        .check()
        .unwrap();
        let layout = tempfile::tempdir().unwrap();
        std::fs::write(layout.path().join("index.json"), "{}").unwrap();
        let direct = format!("oci:{}", layout.path().display());
        let roundabout = format!(
            "oci:{}/../{}",
            layout.path().display(),
            layout.path().file_name().unwrap().to_str().unwrap()
        );
        let e = check_err(&[&direct, "--to", &roundabout, "--tags", "*"]);
        assert!(e.contains("same repository"), "{e}");
    }
}
