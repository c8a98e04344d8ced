//! `regmirror mirror …`: manage mirrors in a state store (Quay's mirroring settings page, on the
//! command line). Workers (`regmirror worker`) pick the changes up at their next poll.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use regmirror::config::{check_architectures, check_cert_dir, check_interval};
use regmirror::state::{MirrorRecord, StoreTimeouts};
use regmirror::{
    ErrorKind, Mirror, MirrorConfig, MirrorView, ProxyConfig, RepositoryRef, StoreUrl, TagFilter,
    ValidConfig,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::credentials::CredentialSources;
use crate::failure::{CliResult, Failure};
use crate::output::{logs_table, mirrors_table, print_json, print_table, print_view};
use crate::sync::{
    PlatformIndex, Rollback, parse_duration, parse_duration_or_zero, parse_referrers,
};
use crate::worker_config::WorkerConfig;

/// Environment variable naming the state store when neither --state nor --config is given.
pub const STATE_ENV: &str = "REGMIRROR_STATE";

#[derive(Args, Debug)]
pub struct MirrorArgs {
    /// The state store: sqlite:PATH or postgres://USER@HOST:PORT/DB (default: $REGMIRROR_STATE).
    #[arg(long, global = true, value_name = "URL")]
    pub state: Option<String>,
    /// Use the state store of this worker config file.
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "state")]
    pub config: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: MirrorCommand,
}

#[derive(Subcommand, Debug)]
pub enum MirrorCommand {
    /// Create a mirror: keep repository ID (in the workers' destination) in sync with --source.
    Add(AddArgs),
    /// Change a mirror's settings; a running sync finishes with the old ones.
    Update(UpdateArgs),
    /// Every mirror with its status and schedule.
    List,
    /// One mirror: settings, status, retries, last and next run, last report.
    Show { id: String },
    /// Run the mirror at the workers' next poll, even if disabled or not due.
    SyncNow { id: String },
    /// Stop a pending or running sync (after the tags in flight); no runs until sync-now.
    Cancel { id: String },
    /// Let the schedule run the mirror again.
    Enable { id: String },
    /// Keep the schedule from running the mirror (sync-now still runs it).
    Disable { id: String },
    /// The mirror's usage log, newest first.
    Logs {
        id: String,
        /// At most this many entries.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Only entries older than this sequence number (to page back).
        #[arg(long, value_name = "SEQ")]
        before: Option<u64>,
    },
    /// Remove the mirror, its status and its log (the destination's images stay).
    Delete { id: String },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The destination repository (namespace/name); one mirror per repository.
    pub id: String,
    /// The repository to mirror: host[:port]/path.
    #[arg(long, value_name = "SOURCE")]
    pub source: String,
    /// Tag patterns (comma-separated globs, regex:, semver:, ! exclusions); may be repeated.
    #[arg(long, value_name = "PATTERNS", required = true)]
    pub tags: Vec<String>,
    /// Create the mirror disabled (only sync-now runs it).
    #[arg(long)]
    pub disabled: bool,
    #[command(flatten)]
    pub settings: MirrorSettings,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    pub id: String,
    /// A new source repository: host[:port]/path.
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    /// New tag patterns, replacing the old ones; may be repeated.
    #[arg(long, value_name = "PATTERNS")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub settings: MirrorSettings,
}

/// Settings `add` and `update` share; each one given replaces the mirror's value.
#[derive(Args, Debug)]
pub struct MirrorSettings {
    /// Architectures to copy from multi-arch images (comma-separated), or `all`.
    #[arg(long, value_name = "ARCHS", value_delimiter = ',')]
    pub arch: Option<Vec<String>>,
    /// Time between scheduled syncs, whole seconds of at least 1s (e.g. 30m, 6h, 1day;
    /// default 24h).
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// The wait before retrying a failed run, doubled for each further retry (default 60s);
    /// 0 retries at the workers' next poll, as Quay does.
    #[arg(long, value_name = "DURATION", value_parser = parse_backoff)]
    pub retry_backoff: Option<Duration>,
    /// The first scheduled sync, RFC 3339 (e.g. 2026-12-01T03:00:00Z); default: now (the
    /// workers' next poll runs it, and its schedule follows from that run).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub start: Option<OffsetDateTime>,
    /// Source credentials USER:PASS (split at the first colon).
    #[arg(long, value_name = "USER:PASS")]
    pub src_creds: Option<String>,
    /// Read the source's USER:PASS from this file.
    #[arg(long, value_name = "FILE", conflicts_with = "src_creds")]
    pub src_creds_file: Option<PathBuf>,
    /// Remove the source credentials (anonymous access).
    #[arg(long, conflicts_with_all = ["src_creds", "src_creds_file"])]
    pub src_no_creds: bool,
    /// Verify the source's TLS certificate; `=false` also permits plain HTTP.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub src_tls_verify: Option<bool>,
    /// Trust the source's private CA: a directory of *.crt files (as docker's certs.d/HOST),
    /// read by the workers (give a path valid on their hosts); "" removes it.
    #[arg(long, value_name = "DIR")]
    pub src_cert_dir: Option<String>,
    /// Proxy for http:// sources.
    #[arg(long, value_name = "URL")]
    pub http_proxy: Option<String>,
    /// Proxy for https:// sources.
    #[arg(long, value_name = "URL")]
    pub https_proxy: Option<String>,
    /// Hosts reached without a proxy (comma-separated).
    #[arg(long, value_name = "HOSTS")]
    pub no_proxy: Option<String>,
    /// Upper bound for one sync run (default 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// What happens to the destination when a tag fails.
    #[arg(long, value_enum)]
    pub rollback: Option<Rollback>,
    /// With --arch, what to do when the destination refuses a sparse index.
    #[arg(long, value_enum)]
    pub platform_index: Option<PlatformIndex>,
    /// Which signatures, SBOMs and attestations travel with the images: all (default), none,
    /// or comma-separated artifact types.
    #[arg(long, value_name = "all|none|TYPES", value_parser = parse_referrers)]
    pub referrers: Option<regmirror::ReferrersPolicy>,
    /// The only identity allowed to push to the destination repository while it is mirrored.
    #[arg(long, value_name = "NAME")]
    pub robot: Option<String>,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let interval = parse_duration(s)?;
    check_interval(interval)?;
    Ok(interval)
}

fn parse_backoff(s: &str) -> Result<Duration, String> {
    let backoff = parse_duration_or_zero(s)?;
    if backoff.subsec_nanos() != 0 {
        return Err("must be whole seconds (0 retries at the next poll)".to_owned());
    }
    Ok(backoff)
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("{e} (expected RFC 3339, e.g. 2026-12-01T03:00:00Z)"))
}

impl MirrorSettings {
    fn apply(&self, config: &mut MirrorConfig) -> CliResult<()> {
        if let Some(archs) = &self.arch {
            let archs: Vec<String> = archs
                .iter()
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect();
            if archs.iter().any(|a| a == "all") {
                config.architectures.clear();
            } else {
                check_architectures(&archs)
                    .map_err(|why| Failure::invalid(format!("--arch: {why}; or all")))?;
                config.architectures = archs;
            }
        }
        if let Some(interval) = self.interval {
            config.sync_interval = interval;
        }
        if let Some(backoff) = self.retry_backoff {
            config.retry_backoff = backoff;
        }
        if let Some(start) = self.start {
            config.sync_start_date = Some(start);
        }
        if self.src_no_creds {
            config.source_credentials = None;
        } else if let Some(credentials) = (CredentialSources {
            flag: "--src-creds",
            inline: self.src_creds.as_deref(),
            file_flag: "--src-creds-file",
            file: self.src_creds_file.as_deref(),
            // Stored credentials change only when asked on the command line.
            env: None,
        })
        .resolve()?
        {
            config.source_credentials = Some(credentials);
        }
        if let Some(verify) = self.src_tls_verify {
            config.verify_tls = verify;
        }
        if let Some(dir) = &self.src_cert_dir {
            config.source_ca_certs.clear();
            if !dir.is_empty() {
                let dir = std::path::Path::new(dir);
                check_cert_dir(dir).map_err(|e| Failure::from(e).context("--src-cert-dir"))?;
                // Stored for workers running elsewhere: not relative to this shell's directory.
                let dir = std::path::absolute(dir).map_err(|e| {
                    Failure::invalid(format!("--src-cert-dir: {}: {e}", dir.display()))
                })?;
                config.source_ca_certs.push(dir);
            }
        }
        let set = |value: &Option<String>, field: &mut Option<String>| {
            if let Some(v) = value {
                *field = (!v.is_empty()).then(|| v.clone());
            }
        };
        let ProxyConfig {
            http_proxy,
            https_proxy,
            no_proxy,
        } = &mut config.proxy;
        set(&self.http_proxy, http_proxy);
        set(&self.https_proxy, https_proxy);
        set(&self.no_proxy, no_proxy);
        if let Some(timeout) = self.timeout {
            config.timeout = timeout;
        }
        if let Some(rollback) = self.rollback {
            config.rollback = rollback.into();
        }
        if let Some(mode) = self.platform_index {
            config.platform_index = mode.into();
        }
        if let Some(referrers) = &self.referrers {
            config.referrers = referrers.clone();
        }
        set(&self.robot, &mut config.robot);
        Ok(())
    }
}

fn parse_source(s: &str) -> CliResult<RepositoryRef> {
    RepositoryRef::parse_docker(s)
        .map_err(|e| Failure::invalid(format!("--source: {}", e.message())))
}

fn parse_tags(tags: &[String]) -> CliResult<Vec<String>> {
    TagFilter::new(tags)
        .map(|f| f.patterns().to_vec())
        .map_err(|e| Failure::from(e).context("--tags"))
}

/// The state store these arguments name: --state, else --config's `state`, else $REGMIRROR_STATE.
pub fn state_url(state: Option<&str>, config: Option<&std::path::Path>) -> CliResult<StoreUrl> {
    if let Some(s) = state {
        return crate::store::parse(s, "--state");
    }
    if let Some(path) = config {
        return WorkerConfig::load_state(path);
    }
    match std::env::var(STATE_ENV) {
        Ok(s) if !s.is_empty() => crate::store::parse(&s, STATE_ENV),
        _ => Err(Failure::invalid("no state store given")
            .hint("pass --state sqlite:PATH or --config regmirror.toml, or set $REGMIRROR_STATE")),
    }
}

/// Map a store error about mirror `id` to a message that says what to do.
fn about(id: &str, e: regmirror::Error) -> Failure {
    match e.kind() {
        ErrorKind::NotFound => Failure::failed(format!("no mirror {id:?} in the state store"))
            .hint("see `regmirror mirror list`"),
        ErrorKind::Conflict => Failure::failed(e.message().to_owned()),
        _ => Failure::from(e),
    }
}

/// [`about`], with `hint` when the mirror's status refused the command (SEMANTICS.md §6).
fn refused(id: &str, e: regmirror::Error, hint: &str) -> Failure {
    let conflict = e.kind() == ErrorKind::Conflict;
    let failure = about(id, e);
    if conflict {
        failure.hint(hint.replace("ID", id))
    } else {
        failure
    }
}

pub async fn run(args: MirrorArgs) -> CliResult<()> {
    let url = state_url(args.state.as_deref(), args.config.as_deref())?;
    // Check the arguments before touching the store, so a typo never creates a database file.
    let prepared = prepare(&args.command)?;
    if let Some(path) = &args.config {
        check_guard(path, &args.command, prepared.as_ref()).await?;
    }
    if url == StoreUrl::Memory {
        return Err(Failure::invalid(
            "--state: memory: keeps nothing past this command; give sqlite:PATH or postgres://…",
        ));
    }
    let store = crate::store::open(&url, StoreTimeouts::default()).await?;
    let mirrors = Mirror::builder().state(store).build()?;
    let json = args.json;
    match args.command {
        MirrorCommand::Add(add) => {
            let config = prepared.expect("add always prepares a configuration");
            add_mirror(&mirrors, &add.id, config, json).await
        }
        MirrorCommand::Update(update) => update_mirror(&mirrors, update, json).await,
        MirrorCommand::List => list(&mirrors, json).await,
        MirrorCommand::Show { id } => {
            let view = mirrors.view(&id).await.map_err(|e| about(&id, e))?;
            if json {
                print_json(&view);
            } else {
                print_view(&view);
            }
            Ok(())
        }
        MirrorCommand::SyncNow { id } => {
            let record = mirrors.sync_now(&id).await.map_err(|e| {
                refused(
                    &id,
                    e,
                    "it is running now; to restart it, `regmirror mirror cancel ID` then sync-now: \
                     the new run starts once the cancelled one has stopped",
                )
            })?;
            status_line(&record, "a worker runs it at its next poll", json);
            Ok(())
        }
        MirrorCommand::Cancel { id } => {
            let record = mirrors.cancel(&id).await.map_err(|e| {
                refused(
                    &id,
                    e,
                    "only a pending (SYNC_NOW) or running (SYNCING) sync can be cancelled; \
                     `regmirror mirror disable ID` keeps the schedule from running it",
                )
            })?;
            status_line(&record, "no further runs until sync-now", json);
            Ok(())
        }
        MirrorCommand::Enable { id } => {
            let record = mirrors
                .set_enabled(&id, true)
                .await
                .map_err(|e| about(&id, e))?;
            status_line(&record, "enabled", json);
            Ok(())
        }
        MirrorCommand::Disable { id } => {
            let record = mirrors
                .set_enabled(&id, false)
                .await
                .map_err(|e| about(&id, e))?;
            status_line(&record, "disabled; sync-now still runs it", json);
            Ok(())
        }
        MirrorCommand::Logs { id, limit, before } => logs(&mirrors, &id, limit, before, json).await,
        MirrorCommand::Delete { id } => delete(&mirrors, &id, json).await,
    }
}

/// Refuse a source the workers of the config file would refuse at every run (their SSRF guard
/// is on and the source's host is not allowed): say so now, as Quay does when a mirror is saved.
async fn check_guard(
    path: &std::path::Path,
    command: &MirrorCommand,
    prepared: Option<&ValidConfig>,
) -> CliResult<()> {
    let Some(guard) = WorkerConfig::load_address_guard(path)? else {
        return Ok(());
    };
    let source = match (command, prepared) {
        (_, Some(config)) => Some(config.source.clone()),
        (MirrorCommand::Update(update), None) => {
            update.source.as_deref().map(parse_source).transpose()?
        }
        _ => None,
    };
    let Some(source) = source else {
        return Ok(());
    };
    guard.check_registry(source.registry()).await.map_err(|e| {
        Failure::invalid(format!("--source: {}", e.message())).hint(
            "the config's ssrf_guard refuses it for every worker; add the host or \
                 its network to ssrf_allow if it is meant to be mirrored",
        )
    })
}

async fn add_mirror(mirrors: &Mirror, id: &str, config: ValidConfig, json: bool) -> CliResult<()> {
    let record = mirrors
        .create_mirror(config)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Conflict => Failure::failed(format!("a mirror {id:?} already exists"))
                .hint("change it with `regmirror mirror update`"),
            _ => Failure::from(e),
        })?;
    show(&record, json);
    Ok(())
}

async fn update_mirror(mirrors: &Mirror, update: UpdateArgs, json: bool) -> CliResult<()> {
    let mut config = mirrors
        .get(&update.id)
        .await
        .map_err(|e| about(&update.id, e))?
        .config;
    if let Some(source) = &update.source {
        config.source = parse_source(source)?;
    }
    if !update.tags.is_empty() {
        config.tags = parse_tags(&update.tags)?;
    }
    update.settings.apply(&mut config)?;
    let record = mirrors
        .update_mirror(config.validated()?)
        .await
        .map_err(|e| about(&update.id, e))?;
    show(&record, json);
    Ok(())
}

async fn list(mirrors: &Mirror, json: bool) -> CliResult<()> {
    if json {
        print_json(&mirrors.views().await?);
        return Ok(());
    }
    let records = mirrors.list().await?;
    if records.is_empty() {
        crate::output::line("no mirrors yet (add one with `regmirror mirror add`)");
    } else {
        print_table(&mirrors_table(&records));
    }
    Ok(())
}

async fn logs(
    mirrors: &Mirror,
    id: &str,
    limit: u32,
    before: Option<u64>,
    json: bool,
) -> CliResult<()> {
    // Tell "no such mirror" apart from "no entries yet".
    mirrors.get(id).await.map_err(|e| about(id, e))?;
    let limit = usize::try_from(limit).expect("a u32 fits in usize here");
    let entries = mirrors.logs(id, limit, before).await?;
    if json {
        print_json(&entries);
    } else if entries.is_empty() {
        match before {
            Some(seq) => crate::output::line(format_args!("{id}: no log entries before {seq}")),
            None => crate::output::line(format_args!("{id}: no log entries yet")),
        }
    } else {
        print_table(&logs_table(&entries));
        if entries.len() == limit
            && let Some(oldest) = entries.last()
        {
            crate::output::line(format_args!("(older entries: --before {})", oldest.seq));
        }
    }
    Ok(())
}

async fn delete(mirrors: &Mirror, id: &str, json: bool) -> CliResult<()> {
    mirrors.delete(id).await.map_err(|e| {
        refused(
            id,
            e,
            "`regmirror mirror cancel ID`, then delete once `regmirror mirror show ID` no longer shows it running",
        )
    })?;
    if json {
        print_json(&serde_json::json!({ "id": id, "deleted": true }));
    } else {
        crate::output::line(format_args!(
            "{id}: deleted (the destination's images stay)"
        ));
    }
    Ok(())
}

/// The configuration `add` will create, checked; `None` for the other commands.
fn prepare(command: &MirrorCommand) -> CliResult<Option<ValidConfig>> {
    let MirrorCommand::Add(add) = command else {
        return Ok(None);
    };
    let source = parse_source(&add.source)?;
    let tags = parse_tags(&add.tags)?;
    let patterns: Vec<&str> = tags.iter().map(String::as_str).collect();
    let mut config = MirrorConfig::new(add.id.clone(), source, &patterns);
    config.enabled = !add.disabled;
    add.settings.apply(&mut config)?;
    Ok(Some(config.validated()?))
}

fn show(record: &MirrorRecord, json: bool) {
    let view = MirrorView::new(record, None);
    if json {
        print_json(&view);
    } else {
        print_view(&view);
    }
}

fn status_line(record: &MirrorRecord, note: &str, json: bool) {
    if json {
        print_json(&MirrorView::new(record, None));
    } else {
        crate::output::line(format_args!(
            "{}: {} ({note})",
            record.config.id, record.state.status
        ));
    }
}
