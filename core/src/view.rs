//! A stored mirror as it is shown to people and programs ([`MirrorView`]): its settings without
//! secrets, its status with Quay's names, when it runs next, and its last run's summary. What
//! `regmirror mirror show/list --json` prints, and what the bindings and an HTTP API return.

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{MirrorConfig, PlatformIndexMode, RollbackMode};
use crate::state::SyncStatus;
use crate::state::{MirrorRecord, MirrorState};

/// A mirror for display ([`Mirror::view`](crate::Mirror::view)). It never holds a password:
/// the source *username* only, and proxy URLs without their passwords.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Status (Quay's names: `NEVER_RUN`, `SYNCING`, …), retries left, schedule, last run,
    /// lease; serialized flat beside the settings.
    #[serde(flatten)]
    pub state: MirrorState,
    /// When a worker runs it next: its due time (in the past when overdue), or `null` while it
    /// runs or nothing will run it (cancelled, disabled, out of retries).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_run: Option<OffsetDateTime>,
    /// Whether it is due: the next poll of any worker with a free slot runs it.
    pub next_run_at_next_poll: bool,
    /// The next run with its reason, for a text rendering (`next_run` and
    /// `next_run_at_next_poll` carry it in JSON).
    #[serde(skip)]
    pub next: NextRun,
    /// The summary line of the newest finished run, from the usage log: `succeeded: …`,
    /// `failed: …` or `cancelled: …`.
    pub last_report: Option<String>,
}

impl MirrorView {
    /// The view of `record` now, with `last_report` (see [`MirrorView::last_report`]).
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
            next,
            last_report,
        }
    }

    /// The summary of a finished run from its finish entry (as
    /// [`StateStore::last_finishes`](crate::StateStore::last_finishes) returns it); `None`
    /// without one, or for an entry that finishes no run.
    pub fn last_report(finish: Option<&crate::state::LogEntry>) -> Option<String> {
        use crate::state::LogKind;
        finish.and_then(|e| {
            let outcome = match e.kind {
                LogKind::SyncSucceeded => "succeeded",
                LogKind::SyncFailed => "failed",
                LogKind::SyncCancelled => "cancelled",
                _ => return None,
            };
            Some(format!("{outcome}: {}", e.message))
        })
    }
}

/// When a mirror runs next, or why it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextRun {
    /// A worker holds a live lease on it.
    Running,
    /// Due since this time: the next poll runs it.
    AtNextPoll(OffsetDateTime),
    /// Due at this time; `first` when that is the first run of a new mirror, placed there by
    /// a worker spreading the first runs of new mirrors due together.
    At { time: OffsetDateTime, first: bool },
    /// Cancelled: nothing runs it until "sync now".
    Cancelled,
    /// Disabled: only "sync now" runs it.
    Disabled,
    /// Out of retries and not due again (or otherwise unscheduled).
    Unscheduled,
}

impl NextRun {
    /// The next run of `record` as of `now`.
    pub fn of(record: &MirrorRecord, now: OffsetDateTime) -> NextRun {
        let (c, s) = (&record.config, &record.state);
        // A running mirror is "due" when its lease would expire: that is no run to announce.
        if s.holds_live_lease(now) {
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
            None if s.status == SyncStatus::Cancel => NextRun::Cancelled,
            None if !c.enabled => NextRun::Disabled,
            None => NextRun::Unscheduled,
        }
    }

    /// The time it runs (or was due), if it is scheduled.
    pub fn time(&self) -> Option<OffsetDateTime> {
        match self {
            NextRun::AtNextPoll(time) | NextRun::At { time, .. } => Some(*time),
            _ => None,
        }
    }
}

/// A URL without its password (proxies may carry `user:pass@`).
fn redact_url(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;
    use crate::config::Credentials;
    use crate::state::{LogEntry, LogKind};

    fn record() -> MirrorRecord {
        let mut config = MirrorConfig::new("ns/app", "quay.io/org/app".parse().unwrap(), &["v*"]);
        config.source_credentials = Some(Credentials::new("me", "hunter2"));
        config.proxy.https_proxy = Some("http://u:hunter2@proxy:3128".into());
        config.proxy.http_proxy = Some("not a url hunter2".into());
        let state = MirrorState::new(&config, datetime!(2026-01-01 00:00 UTC));
        MirrorRecord { config, state }
    }

    #[test]
    fn the_json_names_and_no_secret() {
        let view = MirrorView::new(&record(), Some("succeeded: 1 synced".into()));
        let json = serde_json::to_value(&view).unwrap();
        assert!(!json.to_string().contains("hunter2"), "{json}");
        assert_eq!(json["source_username"], "me");
        assert_eq!(json["https_proxy"], "http://u:***@proxy:3128/");
        assert_eq!(json["http_proxy"], "(set)");
        assert_eq!(json["status"], "NEVER_RUN");
        assert_eq!(json["retries_remaining"], 3);
        assert_eq!(json["sync_interval_secs"], 86_400);
        assert_eq!(json["rollback"], "failed_tags_only");
        assert_eq!(json["referrers"], "all");
        assert_eq!(json["next_run_at_next_poll"], true);
        assert_eq!(json["next_run"], "2026-01-01T00:00:00Z");
        assert_eq!(json["last_report"], "succeeded: 1 synced");
        assert!(json.get("next").is_none());
    }

    #[test]
    fn why_a_mirror_does_not_run() {
        let now = datetime!(2026-01-01 00:00:01 UTC);
        let mut r = record();
        assert_eq!(
            NextRun::of(&r, now),
            NextRun::AtNextPoll(r.state.next_start)
        );
        r.config.enabled = false;
        assert_eq!(NextRun::of(&r, now), NextRun::Disabled);
        r.state.status = SyncStatus::Cancel;
        assert_eq!(NextRun::of(&r, now), NextRun::Cancelled);
        r.state.status = SyncStatus::Syncing;
        r.state.lease_expires = Some(now + Duration::from_secs(30));
        assert_eq!(NextRun::of(&r, now), NextRun::Running);
        assert_eq!(NextRun::Running.time(), None);
        let later = datetime!(2026-01-02 00:00 UTC);
        let mut r = record();
        r.state.next_start = later;
        assert_eq!(
            NextRun::of(&r, now),
            NextRun::At {
                time: later,
                first: true
            }
        );
    }

    #[test]
    fn the_last_report_says_how_the_run_finished() {
        let entry = |seq, kind, message: &str| LogEntry {
            seq,
            mirror_id: "ns/app".into(),
            time: datetime!(2026-01-01 00:00 UTC),
            kind,
            tag: None,
            digest: None,
            message: message.into(),
            failure: None,
        };
        let failed = entry(4, LogKind::SyncFailed, "0 synced: boom");
        assert_eq!(
            MirrorView::last_report(Some(&failed)).as_deref(),
            Some("failed: 0 synced: boom")
        );
        let started = entry(5, LogKind::SyncStarted, "sync started");
        assert_eq!(MirrorView::last_report(Some(&started)), None);
        assert_eq!(MirrorView::last_report(None), None);
    }
}
