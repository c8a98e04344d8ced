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
use regmirror::view::NextRun;
use regmirror::{MirrorView, RollbackMode, SyncStatus};
use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;

/// `key: value` lines for `mirror show`.
pub fn print_view(view: &MirrorView) {
    let s = &view.state;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut rows: Vec<(&str, String)> = vec![
        ("id", view.id.clone()),
        ("source", view.source.clone()),
        (
            "credentials",
            match &view.source_username {
                Some(user) => format!("{user} (password stored, not shown)"),
                None => "none (anonymous)".to_owned(),
            },
        ),
        ("tags", view.tags.join(", ")),
        (
            "architectures",
            if view.architectures.is_empty() {
                "all".to_owned()
            } else {
                view.architectures.join(", ")
            },
        ),
        ("enabled", yes_no(view.enabled).to_owned()),
        (
            "interval",
            human_duration(Duration::from_secs(view.sync_interval_secs)),
        ),
        ("verify tls", yes_no(view.verify_tls).to_owned()),
        (
            "source CA",
            if view.source_ca_certs.is_empty() {
                "system".to_owned()
            } else {
                view.source_ca_certs.join(", ")
            },
        ),
        ("rollback", rollback_name(view.rollback).to_owned()),
        ("referrers", view.referrers.clone()),
        (
            "retry backoff",
            if view.retry_backoff_secs == 0 {
                "none (next poll)".to_owned()
            } else {
                human_duration(Duration::from_secs(view.retry_backoff_secs))
            },
        ),
        ("status", s.status.to_string()),
        ("retries left", s.retries_remaining.to_string()),
        ("last started", time_or_never(s.last_started)),
        ("last finished", time_or_never(s.last_finished)),
        ("next run", next_run_text(view.next)),
    ];
    if let Some(proxy) = &view.https_proxy {
        rows.push(("https proxy", proxy.clone()));
    }
    if let Some(proxy) = &view.http_proxy {
        rows.push(("http proxy", proxy.clone()));
    }
    if let Some(robot) = &view.robot {
        rows.push(("robot", robot.clone()));
    }
    rows.extend(lease_row(s));
    if let Some(error) = &s.last_error {
        rows.push(("last error", error.clone()));
    }
    if let Some(report) = &view.last_report {
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

/// Who holds the mirror's lease, or held it and stopped without finishing; `None` if nobody.
fn lease_row(s: &MirrorState) -> Option<(&'static str, String)> {
    let owner = s.lease_owner.as_ref()?;
    let expired = s
        .lease_expires
        .is_some_and(|e| e <= OffsetDateTime::now_utc());
    Some(if expired {
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
    })
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
            next_run_text(NextRun::of(r, OffsetDateTime::now_utc())),
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

/// When a mirror runs next, or why it does not, as `mirror show` and `mirror list` say it.
fn next_run_text(next: NextRun) -> String {
    match next {
        NextRun::Running => "running now".to_owned(),
        NextRun::AtNextPoll(_) => "at the next poll".to_owned(),
        NextRun::At { time, first: false } => format_time(time),
        NextRun::At { time, first: true } => format!(
            "{} (first run, spread with other new mirrors)",
            format_time(time)
        ),
        NextRun::Cancelled => "none (cancelled; use sync-now)".to_owned(),
        NextRun::Disabled => "none (disabled)".to_owned(),
        NextRun::Unscheduled => "none".to_owned(),
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
    fn log_kinds_have_their_serde_names() {
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
