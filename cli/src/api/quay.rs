//! Quay's repository-mirroring API (`endpoints/api/mirror.py`) under `/api/v1/repository/
//! {namespace}/{repository}/mirror`, so a script written for Quay drives regmirror unchanged:
//! Quay's JSON field names, status names, checks and status codes; plus `DELETE` and the
//! mirror's usage log. Requests become `Mirror` calls; the core validates and decides.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use regmirror::state::{LogEntry, LogKind, MirrorRecord};
use regmirror::{Credentials, Error, ErrorKind, MirrorConfig, RepositoryRef, SyncStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::macros::format_description;

use super::Api;

/// Entries one usage-log page holds at most (and by default).
const LOG_PAGE: usize = 100;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/repository/mirror/health", get(health))
        .route("/repository/{*path}", any(dispatch))
}

/// The share of failing mirrors above which mirroring is unhealthy (Quay's threshold).
const FAILING_THRESHOLD: f64 = 0.2;

#[derive(Deserialize)]
pub(super) struct HealthQuery {
    namespace: Option<String>,
    #[serde(default)]
    detailed: bool,
}

/// Quay's `GET /api/v1/repository/mirror/health`: counts by status, the issues found, 200 when
/// healthy and 503 when not (the store does not answer, or more than a fifth of the mirrors
/// fail); `?namespace=` narrows it, `?detailed=true` lists the mirrors.
async fn health(State(api): State<Api>, Query(query): Query<HealthQuery>) -> Response {
    let now = OffsetDateTime::now_utc();
    let records = match api.mirror.list().await {
        Ok(records) => records,
        Err(e) => return failure(&e),
    };
    let records: Vec<&MirrorRecord> = records
        .iter()
        .filter(|r| match &query.namespace {
            Some(ns) => r.config.id.split_once('/').is_some_and(|(n, _)| n == ns),
            None => true,
        })
        .collect();
    let count =
        |f: &dyn Fn(SyncStatus) -> bool| records.iter().filter(|r| f(r.state.status)).count();
    let syncing = count(&|s| s == SyncStatus::Syncing);
    let completed = count(&|s| s == SyncStatus::Success);
    // Quay counts NEVER_RUN as failed too; a mirror just added is not failing.
    let failed = count(&|s| s == SyncStatus::Fail);
    let never_run = count(&|s| s == SyncStatus::NeverRun);
    let stamp = quay_date(now);
    let mut issues = Vec::new();
    let store_healthy = api.mirror.store_health().is_healthy();
    if let Some(e) = api.mirror.store_health().last_error() {
        issues.push(json!({"severity": "critical", "message": format!("the state store does not answer: {e}"), "timestamp": stamp}));
    }
    let failure_rate = if records.is_empty() {
        0.0
    } else {
        failed as f64 / records.len() as f64
    };
    if failure_rate > FAILING_THRESHOLD {
        issues.push(json!({"severity": "critical", "message": format!("{:.1}% of repositories are failing (threshold: {}%)", failure_rate * 100.0, FAILING_THRESHOLD * 100.0), "timestamp": stamp}));
    }
    for r in records
        .iter()
        .filter(|r| r.state.status == SyncStatus::Fail && r.state.retries_remaining == 0)
        .take(5)
    {
        issues.push(json!({"severity": "error", "message": format!("Repository {} has exhausted all retry attempts", r.config.id), "timestamp": stamp}));
    }
    let healthy = store_healthy && failure_rate <= FAILING_THRESHOLD;
    let mut repositories = json!({
        "total": records.len(),
        "syncing": syncing,
        "completed": completed,
        "failed": failed,
        "never_run": never_run,
    });
    if query.detailed {
        repositories["details"] = records
            .iter()
            .map(|r| {
                let (namespace, repository) =
                    r.config.id.split_once('/').unwrap_or(("", &r.config.id));
                json!({
                    "namespace": namespace,
                    "repository": repository,
                    "sync_status": r.state.status.as_str(),
                    "is_enabled": r.config.enabled,
                    "last_sync": r.state.last_finished.map(quay_date),
                    "retries_remaining": r.state.retries_remaining,
                })
            })
            .collect();
    }
    let body = json!({
        "healthy": healthy,
        "workers": {
            "active": syncing,
            "status": if healthy { "healthy" } else { "degraded" },
        },
        "repositories": repositories,
        "last_check": stamp,
        "issues": issues,
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Repository names may hold slashes (`org/team/app`), so the path is split at its known
/// suffix rather than by the router.
async fn dispatch(
    State(api): State<Api>,
    Path(path): Path<String>,
    method: Method,
    Query(query): Query<LogQuery>,
    body: Bytes,
) -> Response {
    let route = [
        ("/mirror/sync-now", Route::SyncNow),
        ("/mirror/sync-cancel", Route::SyncCancel),
        ("/mirror", Route::Mirror),
        ("/logs", Route::Logs),
    ]
    .into_iter()
    .find_map(|(suffix, route)| path.strip_suffix(suffix).map(|id| (id, route)));
    let Some((id, route)) = route.filter(|(id, _)| id.contains('/')) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such API path");
    };
    match (route, method) {
        (Route::Mirror, Method::GET) => get_mirror(&api, id).await,
        (Route::Mirror, Method::POST) => create(&api, id, &body).await,
        (Route::Mirror, Method::PUT) => update(&api, id, &body).await,
        (Route::Mirror, Method::DELETE) => match api.mirror.delete(id).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => failure(&e),
        },
        // Quay answers 404 when the status does not allow the change (sync-now while SYNCING,
        // cancel of a mirror that is neither pending nor running).
        (Route::SyncNow, Method::POST) => transition(api.mirror.sync_now(id).await),
        (Route::SyncCancel, Method::POST) => transition(api.mirror.cancel(id).await),
        (Route::Logs, Method::GET) => logs(&api, id, query).await,
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "method not allowed on this path",
        ),
    }
}

#[derive(Clone, Copy)]
enum Route {
    Mirror,
    SyncNow,
    SyncCancel,
    Logs,
}

fn transition(result: regmirror::Result<MirrorRecord>) -> Response {
    match result {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) if e.kind() == ErrorKind::Conflict => {
            error(StatusCode::NOT_FOUND, "not_found", e.message())
        }
        Err(e) => failure(&e),
    }
}

/// Quay's `ViewMirrorConfig`.
#[derive(Serialize)]
struct View {
    is_enabled: bool,
    mirror_type: &'static str,
    external_reference: String,
    external_registry_username: Option<String>,
    external_registry_config: RegistryConfig,
    sync_interval: u64,
    sync_start_date: String,
    sync_expiration_date: Option<String>,
    sync_retries_remaining: u32,
    sync_status: &'static str,
    root_rule: Rule,
    robot_username: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct RegistryConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    verify_tls: Option<bool>,
    /// Accepted for Quay's scripts; regmirror enforces no signature policy (README).
    #[serde(skip_serializing_if = "Option::is_none")]
    unsigned_images: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy: Option<Proxy>,
}

#[derive(Serialize, Deserialize, Default)]
struct Proxy {
    // A key that is absent leaves the setting alone; `null` clears it (Quay's PUT).
    #[serde(default, deserialize_with = "present")]
    http_proxy: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    https_proxy: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    no_proxy: Option<Option<String>>,
}

#[derive(Serialize, Deserialize)]
struct Rule {
    rule_kind: String,
    rule_value: Vec<String>,
}

/// Quay's `CreateMirrorConfig` / `UpdateMirrorConfig`: every field optional here; POST checks
/// its required ones. Unknown fields are ignored, as Quay's schema allows them.
#[derive(Deserialize, Default)]
struct Body {
    is_enabled: Option<bool>,
    external_reference: Option<String>,
    #[serde(default, deserialize_with = "present")]
    external_registry_username: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    external_registry_password: Option<Option<String>>,
    sync_start_date: Option<String>,
    sync_interval: Option<u64>,
    robot_username: Option<String>,
    root_rule: Option<Rule>,
    external_registry_config: Option<RegistryConfig>,
}

/// `Some(value)` for a key that is present, `null` included.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

async fn get_mirror(api: &Api, id: &str) -> Response {
    match api.mirror.get(id).await {
        Ok(record) => axum::Json(view(&record)).into_response(),
        Err(e) => failure(&e),
    }
}

fn view(record: &MirrorRecord) -> View {
    let (config, state) = (&record.config, &record.state);
    let proxy = &config.proxy;
    View {
        is_enabled: config.enabled,
        mirror_type: "PULL",
        external_reference: config.source.to_string(),
        external_registry_username: config
            .source_credentials
            .as_ref()
            .map(|c| c.username.clone()),
        external_registry_config: RegistryConfig {
            verify_tls: Some(config.verify_tls),
            unsigned_images: Some(false),
            proxy: Some(Proxy {
                http_proxy: Some(proxy.http_proxy.clone()),
                https_proxy: Some(proxy.https_proxy.clone()),
                no_proxy: Some(proxy.no_proxy.clone()),
            }),
        },
        sync_interval: config.sync_interval.as_secs(),
        // Quay moves sync_start_date to the next run after each one: it is the next start.
        sync_start_date: quay_date(state.next_start),
        sync_expiration_date: state
            .lease_owner
            .as_ref()
            .and(state.lease_expires)
            .map(quay_date),
        sync_retries_remaining: state.retries_remaining,
        sync_status: state.status.as_str(),
        root_rule: Rule {
            rule_kind: "tag_glob_csv".to_owned(),
            rule_value: config.tags.clone(),
        },
        robot_username: config.robot.clone(),
    }
}

/// Quay's date format, `2026-12-01T03:00:00Z`.
fn quay_date(t: OffsetDateTime) -> String {
    let utc = t.to_offset(time::UtcOffset::UTC);
    utc.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_else(|_| utc.to_string())
}

/// Why a request is refused with 400: its `detail`.
type Invalid = String;

fn parse_body(body: &Bytes) -> Result<Body, Invalid> {
    let mut json = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut json).map_err(|e| match e.path().to_string() {
        path if path == "." => format!("invalid JSON body: {}", e.inner()),
        path => format!("invalid JSON body: {path}: {}", e.inner()),
    })
}

fn bad_request(detail: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", detail)
}

async fn create(api: &Api, id: &str, body: &Bytes) -> Response {
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(detail) => return bad_request(&detail),
    };
    let missing: Vec<&str> = [
        ("external_reference", body.external_reference.is_none()),
        ("sync_interval", body.sync_interval.is_none()),
        ("sync_start_date", body.sync_start_date.is_none()),
        ("root_rule", body.root_rule.is_none()),
    ]
    .into_iter()
    .filter_map(|(name, missing)| missing.then_some(name))
    .collect();
    if !missing.is_empty() {
        return bad_request(&format!(
            "missing required field(s): {}",
            missing.join(", ")
        ));
    }
    let reference = body.external_reference.clone().unwrap_or_default();
    let source = match parse_reference(&reference) {
        Ok(source) => source,
        Err(detail) => return bad_request(&detail),
    };
    // The worker's defaults (its file's default_rollback and retry_backoff) come with it.
    let mut config = api.mirror.settings().mirror_config(id, source, &[]);
    if let Err(detail) = apply(&mut config, body) {
        return bad_request(&detail);
    }
    let created = match config.validated() {
        Ok(config) => api.mirror.create_mirror(config).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(_) => StatusCode::CREATED.into_response(),
        Err(e) if e.kind() == ErrorKind::Conflict => error(
            StatusCode::CONFLICT,
            "invalid_request",
            &format!("Mirror configuration already exists for repository {id}"),
        ),
        Err(e) => failure(&e),
    }
}

async fn update(api: &Api, id: &str, body: &Bytes) -> Response {
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(detail) => return bad_request(&detail),
    };
    let mut config = match api.mirror.get(id).await {
        Ok(record) => record.config,
        Err(e) => return failure(&e),
    };
    if let Some(reference) = &body.external_reference {
        if reference.is_empty() {
            return bad_request("Empty string is an invalid repository location.");
        }
        match parse_reference(reference) {
            Ok(source) => config.source = source,
            Err(detail) => return bad_request(&detail),
        }
    }
    if let Err(detail) = apply(&mut config, body) {
        return bad_request(&detail);
    }
    // Quay answers 201 to a successful PUT.
    let updated = match config.validated() {
        Ok(config) => api.mirror.update_mirror(config).await,
        Err(e) => Err(e),
    };
    match updated {
        Ok(_) => StatusCode::CREATED.into_response(),
        Err(e) => failure(&e),
    }
}

fn parse_reference(reference: &str) -> Result<RepositoryRef, Invalid> {
    RepositoryRef::parse(reference).map_err(|e| format!("external_reference: {}", e.message()))
}

/// Apply what the body sets to `config`, with Quay's rules for credentials and rules; the core
/// validates the result.
fn apply(config: &mut MirrorConfig, body: Body) -> Result<(), Invalid> {
    if let Some(enabled) = body.is_enabled {
        config.enabled = enabled;
    }
    if let Some(start) = &body.sync_start_date {
        let start = OffsetDateTime::parse(start, &Rfc3339)
            .map_err(|_| "Incorrect DateTime format for sync_start_date.".to_owned())?;
        config.sync_start_date = Some(start);
    }
    if let Some(interval) = body.sync_interval {
        config.sync_interval = std::time::Duration::from_secs(interval);
    }
    if let Some(robot) = body.robot_username {
        config.robot = Some(robot);
    }
    credentials(
        config,
        body.external_registry_username,
        body.external_registry_password,
    )?;
    if let Some(registry) = body.external_registry_config {
        if let Some(verify) = registry.verify_tls {
            config.verify_tls = verify;
        }
        if let Some(proxy) = registry.proxy {
            let set = |field: &mut Option<String>, value: Option<Option<String>>| {
                if let Some(value) = value {
                    *field = value.filter(|v| !v.is_empty());
                }
            };
            set(&mut config.proxy.http_proxy, proxy.http_proxy);
            set(&mut config.proxy.https_proxy, proxy.https_proxy);
            set(&mut config.proxy.no_proxy, proxy.no_proxy);
        }
    }
    if let Some(rule) = body.root_rule {
        if rule.rule_kind != "tag_glob_csv" {
            return Err("validation failed: rule_kind must be \"tag_glob_csv\"".to_owned());
        }
        config.tags = rule.rule_value;
    }
    Ok(())
}

/// Quay's credential rules: username and password together set both (a `null` username with a
/// password is refused); a username alone keeps the password; a password alone is refused.
fn credentials(
    config: &mut MirrorConfig,
    username: Option<Option<String>>,
    password: Option<Option<String>>,
) -> Result<(), Invalid> {
    match (username, password) {
        (None, None) => {}
        (None, Some(_)) => {
            return Err(
                "Unable to set a new password without also specifying a username.".to_owned(),
            );
        }
        (Some(None), Some(Some(_))) => {
            return Err("Unable to delete username while setting a password.".to_owned());
        }
        (Some(None), _) => config.source_credentials = None,
        (Some(Some(username)), Some(password)) => {
            config.source_credentials =
                Some(Credentials::new(username, password.unwrap_or_default()));
        }
        (Some(Some(username)), None) => {
            let password = config
                .source_credentials
                .take()
                .map(|c| c.password)
                .unwrap_or_default();
            config.source_credentials = Some(Credentials::new(username, password));
        }
    }
    Ok(())
}

#[derive(Deserialize, Default)]
pub(super) struct LogQuery {
    /// The `next_page` of the previous page.
    next_page: Option<u64>,
    limit: Option<usize>,
}

/// The usage log, newest first, in the shape of Quay's `/repository/{repo}/logs`.
async fn logs(api: &Api, id: &str, query: LogQuery) -> Response {
    let limit = query.limit.unwrap_or(LOG_PAGE).clamp(1, LOG_PAGE);
    // A mirror that does not exist is a 404, not an empty log.
    if let Err(e) = api.mirror.get(id).await {
        return failure(&e);
    }
    match api.mirror.logs(id, limit, query.next_page).await {
        Ok(entries) => {
            let next_page = (entries.len() == limit)
                .then(|| entries.last().map(|e| e.seq))
                .flatten();
            let logs: Vec<Value> = entries.iter().map(log_entry).collect();
            axum::Json(json!({ "logs": logs, "next_page": next_page })).into_response()
        }
        Err(e) => failure(&e),
    }
}

fn log_entry(entry: &LogEntry) -> Value {
    json!({
        "kind": log_kind(entry.kind),
        "datetime": entry.time.format(&Rfc2822).unwrap_or_default(),
        "metadata": {
            "message": entry.message,
            "tag": entry.tag,
            "digest": entry.digest.as_ref().map(ToString::to_string),
        },
    })
}

/// Quay's log kind names; regmirror's own events get names in the same style.
pub(super) fn log_kind(kind: LogKind) -> &'static str {
    match kind {
        LogKind::SyncStarted => "repo_mirror_sync_started",
        LogKind::TagSynced => "repo_mirror_sync_tag_success",
        LogKind::TagFailed => "repo_mirror_sync_tag_failed",
        LogKind::TagDeleted => "repo_mirror_sync_tag_deleted",
        LogKind::TagRestored => "repo_mirror_sync_tag_restored",
        LogKind::SyncSucceeded => "repo_mirror_sync_success",
        LogKind::SyncFailed => "repo_mirror_sync_failed",
        LogKind::SyncCancelled => "repo_mirror_sync_cancelled",
    }
}

/// A core error as Quay's error body with the status its kind means.
fn failure(e: &Error) -> Response {
    let (status, kind) = match e.kind() {
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorKind::InvalidConfig | ErrorKind::InvalidPattern | ErrorKind::InvalidReference => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        ErrorKind::Conflict => (StatusCode::CONFLICT, "invalid_request"),
        ErrorKind::Timeout | ErrorKind::Network | ErrorKind::State => {
            (StatusCode::SERVICE_UNAVAILABLE, "downstream_issue")
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
    };
    error(status, kind, &e.to_string())
}

/// Quay's error body: `detail` and `error_message` say what, `error_type` and `title` the kind.
pub(super) fn error(status: StatusCode, kind: &str, detail: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "status": status.as_u16(),
            "error_message": detail,
            "title": kind,
            "error_type": kind,
            "detail": detail,
            "type": format!("/api/v1/error/{kind}"),
        })),
    )
        .into_response()
}
