//! The status page at `/` for people: one row per mirror (status, last and next run, last
//! error, a link to its usage log), rendered on the server as plain HTML with a little inline
//! CSS, no script and no build step; it reflows to cards on a phone.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use regmirror::MirrorView;
use regmirror::view::NextRun;
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
    let views = match api.mirror.views().await {
        Ok(views) => views,
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
        views.len(),
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
    for view in &views {
        row(&mut body, view);
    }
    body.push_str("</tbody></table>");
    document("regmirror", &body).into_response()
}

fn row(out: &mut String, view: &MirrorView) {
    let state = &view.state;
    let status = state.status.as_str();
    let next = match view.next {
        NextRun::Running => "running now".to_owned(),
        NextRun::AtNextPoll(_) => "at the next poll".to_owned(),
        NextRun::At { time, first: false } => time_of(Some(time)),
        NextRun::At { time, first: true } => {
            format!(
                "{} (first run, spread with other new mirrors)",
                time_of(Some(time))
            )
        }
        NextRun::Cancelled => "cancelled: after sync-now".to_owned(),
        NextRun::Disabled => "disabled: on sync-now only".to_owned(),
        NextRun::Unscheduled => "not scheduled".to_owned(),
    };
    // The last run's summary line ("succeeded: 2 synced, …") says more than its time alone.
    let last = match &view.last_report {
        Some(report) => format!(
            "{}<br><span class=\"muted\">{}</span>",
            time_of(state.last_finished),
            escape(report)
        ),
        None => time_of(state.last_finished),
    };
    let _ = write!(
        out,
        "<tr><td data-label=\"Mirror\">{id}</td><td data-label=\"Source\">{source}</td>\
         <td data-label=\"Status\" class=\"status {status}\">{status}</td>\
         <td data-label=\"Last run\">{last}</td><td data-label=\"Next run\">{next}</td>\
         <td data-label=\"Last error\" class=\"error\">{error}</td>\
         <td data-label=\"Log\"><a href=\"/logs/{href}\">usage log</a></td></tr>",
        id = escape(&view.id),
        source = escape(&view.source),
        next = escape(&next),
        error = escape(state.last_error.as_deref().unwrap_or("")),
        href = escape(&view.id),
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
