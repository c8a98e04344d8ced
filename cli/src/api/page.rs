//! The status page at `/` for people: one row per mirror (status, last and next run, last
//! error, a link to its usage log), rendered on the server as plain HTML with a little inline
//! CSS, no script and no build step; it reflows to cards on a phone.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use regmirror::SyncStatus;
use regmirror::state::MirrorRecord;
use time::OffsetDateTime;
use time::macros::format_description;

use super::Api;
use super::quay::log_kind;

/// Usage-log entries the log page shows.
const LOG_ENTRIES: usize = 200;

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:1rem;color:#222;background:#fafafa}
h1{font-size:1.3rem}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}
th{background:#eee}.status{font-weight:600;white-space:nowrap}
.SUCCESS{color:#17692b}.FAIL{color:#b00020}.SYNCING,.SYNC_NOW{color:#1d4ed8}.CANCEL{color:#92400e}
.error{color:#b00020;word-break:break-word}a{white-space:nowrap}.muted{color:#666}
@media (max-width:700px){table,thead,tbody,tr,th,td{display:block}thead{display:none}
tr{border:1px solid #ddd;border-radius:6px;margin-bottom:.8rem;background:#fff}
td{border:none;padding:.25rem .6rem}td:empty{display:none}td::before{content:attr(data-label) ': ';font-weight:600}}
";

fn document(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        title = escape(title)
    ))
}

pub(super) async fn status(State(api): State<Api>) -> Response {
    let records = match api.mirror.list().await {
        Ok(records) => records,
        Err(e) => {
            let body = format!(
                "<h1>regmirror</h1><p class=\"error\">The state store did not answer: {}</p>",
                escape(&e.to_string())
            );
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                document("regmirror", &body),
            )
                .into_response();
        }
    };
    let health = api.mirror.store_health();
    let mut body = format!(
        "<h1>regmirror worker {}</h1><p class=\"muted\">{} mirror(s); state store {}; page \
         rendered {}</p>",
        escape(api.mirror.worker_id()),
        records.len(),
        if health.is_healthy() {
            "answering"
        } else {
            "NOT answering"
        },
        time_of(Some(OffsetDateTime::now_utc())),
    );
    body.push_str(
        "<table><thead><tr><th>Mirror</th><th>Source</th><th>Status</th><th>Last run</th>\
         <th>Next run</th><th>Last error</th><th>Log</th></tr></thead><tbody>",
    );
    for record in &records {
        row(&mut body, record);
    }
    body.push_str("</tbody></table>");
    document("regmirror", &body).into_response()
}

fn row(out: &mut String, record: &MirrorRecord) {
    let (config, state) = (&record.config, &record.state);
    let status = state.status.as_str();
    let next = match state.status {
        SyncStatus::Syncing => "running now".to_owned(),
        SyncStatus::SyncNow => "at the next poll".to_owned(),
        // Cancelled: nothing runs until "sync now".
        SyncStatus::Cancel => "after sync-now".to_owned(),
        _ if !config.enabled => "disabled".to_owned(),
        _ if state.next_start <= OffsetDateTime::now_utc() => "at the next poll".to_owned(),
        _ => time_of(Some(state.next_start)),
    };
    let _ = write!(
        out,
        "<tr><td data-label=\"Mirror\">{id}</td><td data-label=\"Source\">{source}</td>\
         <td data-label=\"Status\" class=\"status {status}\">{status}</td>\
         <td data-label=\"Last run\">{last}</td><td data-label=\"Next run\">{next}</td>\
         <td data-label=\"Last error\" class=\"error\">{error}</td>\
         <td data-label=\"Log\"><a href=\"/logs/{href}\">usage log</a></td></tr>",
        id = escape(&config.id),
        source = escape(&config.source.to_string()),
        last = time_of(state.last_finished),
        next = escape(&next),
        error = escape(state.last_error.as_deref().unwrap_or("")),
        href = escape(&config.id),
    );
}

pub(super) async fn logs(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let entries = match api.mirror.get(&id).await {
        Ok(_) => api.mirror.logs(&id, LOG_ENTRIES, None).await,
        Err(e) => Err(e),
    };
    let entries = match entries {
        Ok(entries) => entries,
        Err(e) => {
            let status = if e.kind() == regmirror::ErrorKind::NotFound {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = format!("<p class=\"error\">{}</p>", escape(&e.to_string()));
            return (status, document("regmirror", &body)).into_response();
        }
    };
    let mut body = format!(
        "<p><a href=\"/\">all mirrors</a></p><h1>Usage log of {}</h1><table><thead><tr>\
         <th>Time</th><th>Event</th><th>Tag</th><th>Message</th></tr></thead><tbody>",
        escape(&id)
    );
    for entry in &entries {
        let _ = write!(
            body,
            "<tr><td data-label=\"Time\">{}</td><td data-label=\"Event\">{}</td>\
             <td data-label=\"Tag\">{}</td><td data-label=\"Message\">{}</td></tr>",
            time_of(Some(entry.time)),
            log_kind(entry.kind),
            escape(entry.tag.as_deref().unwrap_or("")),
            escape(&entry.message),
        );
    }
    body.push_str("</tbody></table>");
    document(&format!("regmirror: {id}"), &body).into_response()
}

fn time_of(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| {
        t.to_offset(time::UtcOffset::UTC)
            .format(format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
    })
    .unwrap_or_else(|| "never".to_owned())
}

/// Text for HTML: what a registry or a user wrote never becomes markup.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
