//! How mirrors, usage logs and times are shown: plain tables for people, JSON for programs.
//! Neither form ever carries a password: [`MirrorView`] holds the source *username* only, and
//! proxy URLs lose their passwords.

use std::borrow::Cow;
use std::fmt::Display;
use std::io::Write as _;
use std::time::Duration;

use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};
use regmirror::state::{LogEntry, LogKind, MirrorRecord, MirrorState};
use regmirror::{MirrorConfig, PlatformIndexMode, RollbackMode, SyncStatus};
use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;

/// A mirror as `mirror show --json` and `mirror list --json` print it.
#[derive(Debug, Serialize)]
pub struct MirrorView {
    pub id: String,
    pub source: String,
    /// The source username, if the mirror has credentials (the password is never shown).
    pub source_username: Option<String>,
    pub tags: Vec<String>,
    pub architectures: Vec<String>,
    pub sync_interval_secs: u64,
    pub enabled: bool,
    pub verify_tls: bool,
    /// CA bundles or `*.crt` directories trusted for the source.
    pub source_ca_certs: Vec<String>,
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
    pub timeout_secs: u64,
    pub retry_backoff_secs: u64,
    pub rollback: RollbackMode,
    pub platform_index: PlatformIndexMode,
    /// `all`, `none` or the artifact types copied with the images.
    pub referrers: String,
    pub robot: Option<String>,
    #[serde(flatten)]
    pub state: MirrorState,
    /// When a worker runs it next: its due time (in the past when overdue), or `null` while it
    /// runs or nothing will run it (cancelled, disabled, out of retries).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_run: Option<OffsetDateTime>,
    /// Whether it is due: the next poll of any worker with a free slot runs it.
    pub next_run_at_next_poll: bool,
    /// The next run as `mirror show` says it.
    #[serde(skip)]
    next_run_text: String,
    /// The summary line of the newest finished run, from the usage log.
    pub last_report: Option<String>,
}

impl MirrorView {
    pub fn new(record: &MirrorRecord, last_report: Option<String>) -> Self {
        let c: &MirrorConfig = &record.config;
        let next = NextRun::of(record, OffsetDateTime::now_utc());
        MirrorView {
            id: c.id.clone(),
            source: c.source.to_string(),
            source_username: c.source_credentials.as_ref().map(|c| c.username.clone()),
            tags: c.tags.clone(),
            architectures: c.architectures.clone(),
            sync_interval_secs: c.sync_interval.as_secs(),
            enabled: c.enabled,
            verify_tls: c.verify_tls,
            source_ca_certs: c
                .source_ca_certs
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            http_proxy: c.proxy.http_proxy.as_deref().map(redact_url),
            https_proxy: c.proxy.https_proxy.as_deref().map(redact_url),
            no_proxy: c.proxy.no_proxy.clone(),
            timeout_secs: c.timeout.as_secs(),
            retry_backoff_secs: c.retry_backoff.as_secs(),
            rollback: c.rollback,
            platform_index: c.platform_index,
            referrers: c.referrers.to_string(),
            robot: c.robot.clone(),
            state: record.state.clone(),
            next_run: next.time(),
            next_run_at_next_poll: matches!(next, NextRun::AtNextPoll(_)),
            next_run_text: next.to_string(),
            last_report,
        }
    }

    /// `key: value` lines for `mirror show`.
    pub fn print_text(&self) {
        let s = &self.state;
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let mut rows: Vec<(&str, String)> = vec![
            ("id", self.id.clone()),
            ("source", self.source.clone()),
            (
                "credentials",
                match &self.source_username {
                    Some(user) => format!("{user} (password stored, not shown)"),
                    None => "none (anonymous)".to_owned(),
                },
            ),
            ("tags", self.tags.join(", ")),
            (
                "architectures",
                if self.architectures.is_empty() {
                    "all".to_owned()
                } else {
                    self.architectures.join(", ")
                },
            ),
            ("enabled", yes_no(self.enabled).to_owned()),
            (
                "interval",
                human_duration(Duration::from_secs(self.sync_interval_secs)),
            ),
            ("verify tls", yes_no(self.verify_tls).to_owned()),
            (
                "source CA",
                if self.source_ca_certs.is_empty() {
                    "system".to_owned()
                } else {
                    self.source_ca_certs.join(", ")
                },
            ),
            ("rollback", rollback_name(self.rollback).to_owned()),
            ("referrers", self.referrers.clone()),
            (
                "retry backoff",
                if self.retry_backoff_secs == 0 {
                    "none (next poll)".to_owned()
                } else {
                    human_duration(Duration::from_secs(self.retry_backoff_secs))
                },
            ),
            ("status", s.status.to_string()),
            ("retries left", s.retries_remaining.to_string()),
            ("last started", time_or_never(s.last_started)),
            ("last finished", time_or_never(s.last_finished)),
            ("next run", self.next_run_text.clone()),
        ];
        if let Some(proxy) = &self.https_proxy {
            rows.push(("https proxy", proxy.clone()));
        }
        if let Some(proxy) = &self.http_proxy {
            rows.push(("http proxy", proxy.clone()));
        }
        if let Some(robot) = &self.robot {
            rows.push(("robot", robot.clone()));
        }
        if let Some(owner) = &s.lease_owner {
            let expired = s
                .lease_expires
                .is_some_and(|e| e <= OffsetDateTime::now_utc());
            rows.push(if expired {
                (
                    "lost run",
                    format!(
                        "{owner} stopped without finishing (lease expired {}){}",
                        time_or_never(s.lease_expires),
                        // A cancelled one stays so until sync-now.
                        if s.status == SyncStatus::Syncing {
                            "; the next worker poll takes it over"
                        } else {
                            ""
                        }
                    ),
                )
            } else {
                (
                    "running on",
                    format!("{owner} (lease until {})", time_or_never(s.lease_expires)),
                )
            });
        }
        if let Some(error) = &s.last_error {
            rows.push(("last error", error.clone()));
        }
        if let Some(report) = &self.last_report {
            rows.push(("last report", report.clone()));
        }
        for (key, value) in rows {
            line(format_args!(
                "{:<14} {}",
                format!("{key}:"),
                escaped(&value)
            ));
        }
    }
}

/// The table of `mirror list`.
pub fn mirrors_table(records: &[MirrorRecord]) -> Table {
    let mut table = plain_table(&[
        "ID",
        "SOURCE",
        "TAGS",
        "STATUS",
        "ENABLED",
        "LAST FINISHED",
        "NEXT RUN",
    ]);
    for r in records {
        let c = &r.config;
        table.add_row(vec![
            c.id.clone(),
            c.source.to_string(),
            escaped(&c.tags.join(",")).into_owned(),
            r.state.status.to_string(),
            if c.enabled { "yes" } else { "no" }.to_owned(),
            time_or_never(r.state.last_finished),
            NextRun::of(r, OffsetDateTime::now_utc()).to_string(),
        ]);
    }
    table
}

/// The table of `mirror logs`.
pub fn logs_table(entries: &[LogEntry]) -> Table {
    let mut table = plain_table(&["SEQ", "TIME", "EVENT", "TAG", "DIGEST", "MESSAGE"]);
    for e in entries {
        table.add_row(vec![
            e.seq.to_string(),
            time_or_never(Some(e.time)),
            log_kind_name(e.kind).to_owned(),
            escaped(e.tag.as_deref().unwrap_or_default()).into_owned(),
            // The first 12 hex digits identify an image as `docker images` shows it.
            e.digest
                .as_ref()
                .map(|d| format!("sha256:{}", &d.hex()[..12]))
                .unwrap_or_default(),
            escaped(&e.message).into_owned(),
        ]);
    }
    table
}

fn plain_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    // Flush left with two spaces between columns, as `kubectl get` and `docker ps` print.
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// Print a table without the trailing blanks of its last column.
pub fn print_table(table: &Table) {
    for line in table.lines() {
        self::line(line.trim_end());
    }
}

/// The serde name of a usage-log kind (`tag_synced`), as the stores and `--json` spell it.
pub fn log_kind_name(kind: LogKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{kind:?}"))
}

fn rollback_name(mode: RollbackMode) -> &'static str {
    match mode {
        RollbackMode::FailedTagsOnly => "failed-tags-only",
        RollbackMode::AllOrNothing => "all-or-nothing",
    }
}

/// When a mirror runs next, or why it does not.
enum NextRun {
    /// A worker holds a live lease on it.
    Running,
    /// Due since this time: the next poll runs it.
    AtNextPoll(OffsetDateTime),
    /// Due at this time; `first` when that is the first run of a new mirror, placed there by
    /// a worker spreading the first runs of new mirrors due together.
    At { time: OffsetDateTime, first: bool },
    /// Nothing runs it; why.
    None(&'static str),
}

impl NextRun {
    fn of(record: &MirrorRecord, now: OffsetDateTime) -> NextRun {
        let (c, s) = (&record.config, &record.state);
        // A running mirror is "due" when its lease would expire: that is no run to announce.
        if s.status == SyncStatus::Syncing && s.lease_expires.is_some_and(|e| e > now) {
            return NextRun::Running;
        }
        match s.due_at(c.enabled) {
            Some(due) if due <= now => NextRun::AtNextPoll(due),
            Some(time) => NextRun::At {
                time,
                first: c.sync_start_date.is_none()
                    && s.status == SyncStatus::NeverRun
                    && s.last_started.is_none()
                    && s.next_start != s.start_date,
            },
            None if s.status == SyncStatus::Cancel => {
                NextRun::None("none (cancelled; use sync-now)")
            }
            None if !c.enabled => NextRun::None("none (disabled)"),
            None => NextRun::None("none"),
        }
    }

    fn time(&self) -> Option<OffsetDateTime> {
        match self {
            NextRun::AtNextPoll(time) | NextRun::At { time, .. } => Some(*time),
            NextRun::Running | NextRun::None(_) => None,
        }
    }
}

impl std::fmt::Display for NextRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NextRun::Running => f.write_str("running now"),
            NextRun::AtNextPoll(_) => f.write_str("at the next poll"),
            NextRun::At { time, first: false } => f.write_str(&format_time(*time)),
            NextRun::At { time, first: true } => write!(
                f,
                "{} (first run, spread with other new mirrors)",
                format_time(*time)
            ),
            NextRun::None(why) => f.write_str(why),
        }
    }
}

pub fn format_time(t: OffsetDateTime) -> String {
    let utc = t.to_offset(time::UtcOffset::UTC);
    utc.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]Z"
    ))
    .unwrap_or_else(|_| utc.to_string())
}

fn time_or_never(t: Option<OffsetDateTime>) -> String {
    t.map_or_else(|| "never".to_owned(), format_time)
}

/// `1day`, `6h`, `90s`: a duration as it would be typed.
pub fn human_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A URL without its password (proxies may carry `user:pass@`).
pub fn redact_url(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut url) if url.password().is_some() => {
            // Replacing an existing password cannot fail.
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(_) => s.to_owned(),
        // Not a URL we can read: it might still hold a secret, so show nothing of it.
        Err(_) => "(set)".to_owned(),
    }
}

/// `text` fit for a terminal or a log line: control characters (ESC, CR, BEL, NUL, newline,
/// DEL, the C1 set) and the Unicode controls that reorder text on screen become visible
/// escapes (`\n`, `\u{1b}`), so a tag or an error a registry supplied can neither drive the
/// terminal nor forge lines of the summary. Text output passes everything a registry supplied
/// through here; JSON output carries it exact, escaped by JSON's own rules.
pub fn escaped(text: &str) -> Cow<'_, str> {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hidden(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Print `text` and a line end on stdout, as `println!` does, except when the reader went away
/// (`regmirror mirror list | head`): then the process ends quietly by SIGPIPE, as `cat` would,
/// instead of panicking with a backtrace.
///
/// SIGPIPE itself stays ignored (Rust's default) rather than reset to its default action:
/// registry connections write with `writev`, which raises it when a registry closes a
/// connection mid-request, and that would kill a sync without a word.
pub fn line(text: impl Display) {
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{text}").and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            // SAFETY: restoring SIGPIPE's default action and raising it ends the process, the
            // one thing wanted here; no memory is touched.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
            std::process::exit(141);
        }
        Err(e) => {
            eprintln!("regmirror: cannot write to stdout: {e}");
            std::process::exit(i32::from(crate::failure::EXIT_FAILED));
        }
    }
}

/// Print `value` as pretty JSON on stdout.
pub fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(json) => line(json),
        Err(e) => eprintln!("regmirror: cannot encode the output as JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_passwords_are_hidden() {
        assert_eq!(
            redact_url("http://u:secret@proxy:3128"),
            "http://u:***@proxy:3128/"
        );
        assert_eq!(redact_url("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(redact_url("not a url secret"), "(set)");
        assert_eq!(log_kind_name(LogKind::TagSynced), "tag_synced");
    }

    #[test]
    fn control_characters_become_visible_escapes() {
        assert!(matches!(escaped("v1.2-rc_3 ünïcode"), Cow::Borrowed(_)));
        assert_eq!(
            escaped("a\u{1b}[2Jb\rc\u{7}d\u{0}e\nf\tg\u{7f}h\u{9b}i\u{202e}j"),
            "a\\u{1b}[2Jb\\rc\\u{7}d\\u{0}e\\nf\\tg\\u{7f}h\\u{9b}i\\u{202e}j"
        );
    }
}
