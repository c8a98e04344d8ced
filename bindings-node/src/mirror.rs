//! `Mirror`: one mirror from a source to a destination, synced on demand without a state store
//! ([`regmirror::oneshot::OneShotSync`]); `sync()` returns a Promise of a `SyncReport`.
//!
//! A sync runs on napi-rs's tokio runtime, not on a libuv worker thread: those (4 by default)
//! also serve Node's `fs`, `dns.lookup` and `crypto`, which a few long syncs would hold up.
//! `sync({ signal })` cancels the run the engine's way when the `AbortSignal` aborts.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{
    FnArgs, Function, FunctionRef, JsObjectValue, Object, ObjectRef, PromiseRaw, Unknown,
};
use napi::{Either, Env, JsError, JsValue};
use napi_derive::napi;
use regmirror::engine::{Outcome, SyncOptions};
use regmirror::oneshot::{Access, Location, OneShotSync};
use regmirror::registry::http::AddressGuard;
use regmirror::{Credentials as CoreCredentials, Error, ErrorKind};
use tokio_util::sync::CancellationToken;

use crate::errors::{ErrorCode, to_js, to_js_rejection};

/// A username and a password or token. The password is never shown.
#[napi(object)]
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What a `Mirror` copies, from where to where, and how.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct MirrorOptions {
    /// A registry repository `host[:port]/path`, or an OCI image layout `oci:DIRECTORY`.
    pub source: String,
    /// Same forms as `source`; its tags end up exactly the selected ones.
    pub to: String,
    /// Tag patterns: one comma-separated string or an array.
    pub tags: Either<String, Vec<String>>,
    /// Copy only these platforms of multi-arch images (default: all).
    pub architectures: Option<Vec<String>>,
    /// `'failed_tags_only'` (default) or `'all_or_nothing'`.
    #[napi(ts_type = "'failed_tags_only' | 'all_or_nothing'")]
    pub rollback: Option<String>,
    /// `'sparse'` (default) or `'rewrite'`.
    #[napi(ts_type = "'sparse' | 'rewrite'")]
    pub platform_index: Option<String>,
    /// Which signatures, SBOMs and attestations travel with the images: `'all'` (default),
    /// `'none'`, or comma-separated artifact types.
    pub referrers: Option<String>,
    /// Keep destination tags the patterns do not select (default: prune them).
    pub keep_unselected: Option<bool>,
    pub source_credentials: Option<Credentials>,
    /// Verify the source's TLS certificate (default true); `false` also permits plain HTTP.
    pub source_tls_verify: Option<bool>,
    pub dest_credentials: Option<Credentials>,
    /// Verify the destination's TLS certificate (default true); `false` also permits plain HTTP.
    pub dest_tls_verify: Option<bool>,
    /// Use docker/podman stored credentials when none are given (default false).
    pub docker_config: Option<bool>,
    /// Blob copies in flight at once (default 8); small reads (manifest and blob HEADs) have their own allowance of four per copy, up to 32.
    pub concurrency: Option<u32>,
    /// Upper bound for one run, in seconds (default 3600).
    pub timeout_seconds: Option<f64>,
    /// The SSRF guard (default false): refuse loopback, private, link-local, cloud-metadata and other non-public addresses for the source, its token service and its redirects.
    pub ssrf_guard: Option<bool>,
    /// Host names, addresses or CIDR networks (`'10.0.0.0/8'`) the SSRF guard lets through.
    pub ssrf_allow: Option<Vec<String>>,
    /// A registry listing more tags than this fails the run (default 1000000).
    pub max_tags: Option<u32>,
}

/// How to run one `sync()`.
#[napi(object, object_to_js = false, js_name = "SyncOptions")]
pub struct SyncCallOptions<'env> {
    /// Cancel the run when this signal aborts (`AbortController.signal`,
    /// `AbortSignal.timeout(ms)`): the promise rejects with an `AbortError`.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Object<'env>>,
}

impl std::fmt::Debug for SyncCallOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("signal", &self.signal.as_ref().map(|_| "AbortSignal"))
            .finish()
    }
}

/// A sync's `abort` listener on its signal. It is removed when the run ends, so a signal that
/// outlives many syncs does not collect listeners (Node warns past 10).
struct AbortListener {
    /// Released by `detach`; a run whose promise is never settled (the environment is torn
    /// down) leaks it, which is moot then.
    signal: ObjectRef<false>,
    listener: FunctionRef<Unknown<'static>, ()>,
}

impl AbortListener {
    /// Cancel `cancel` when `signal` aborts; cancelled at once if it already has.
    fn attach(env: &Env, signal: &Object, cancel: CancellationToken) -> napi::Result<Self> {
        let abort_signal: Function = env.get_global()?.get_named_property("AbortSignal")?;
        if !signal.instanceof(abort_signal)? {
            return Err(napi::Error::new(
                napi::Status::InvalidArg,
                "options.signal must be an AbortSignal (an AbortController's .signal)",
            ));
        }
        if signal.get_named_property::<bool>("aborted")? {
            cancel.cancel();
        }
        let listener = env.create_function_from_closure("onAbort", move |_| {
            cancel.cancel();
            Ok(())
        })?;
        listener_call(signal, "addEventListener", listener)?;
        Ok(AbortListener {
            signal: signal.create_ref()?,
            listener: listener.create_ref()?,
        })
    }

    /// Remove the listener; returns the signal's `reason` (`undefined` when not aborted).
    fn detach<'env>(self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        let signal = self.signal.get_value(env)?;
        listener_call(
            &signal,
            "removeEventListener",
            self.listener.borrow_back(env)?,
        )?;
        let reason = signal.get_named_property("reason")?;
        self.signal.unref(env)?;
        Ok(reason)
    }
}

/// The `abort` listener: called with the event, which it ignores.
type Listener<'env> = Function<'env, Unknown<'static>, ()>;

/// `signal[method]('abort', listener)`.
fn listener_call(signal: &Object, method: &str, listener: Listener<'_>) -> napi::Result<()> {
    let call: Function<FnArgs<(&str, Listener<'_>)>, Unknown> =
        signal.get_named_property(method)?;
    call.apply(signal, FnArgs::from(("abort", listener)))?;
    Ok(())
}

/// The rejection of an aborted sync: an `Error` named `AbortError` (what `fetch` and Node's
/// APIs reject with), `code` `'Cancelled'`, the signal's `reason` as `cause`, and the report
/// of the run when it started.
fn abort_error(
    env: &Env,
    report: Option<regmirror::SyncReport>,
    reason: Option<Unknown>,
) -> napi::Result<napi::Error> {
    let message = report
        .as_ref()
        .and_then(|r| r.error.clone())
        .unwrap_or_else(|| "the sync was cancelled before it started".to_owned());
    let cancelled = Error::new(ErrorKind::Cancelled, message);
    let mut error = JsError::from(to_js(cancelled))
        .into_unknown(*env)
        .coerce_to_object()?;
    error.set_named_property("name", "AbortError")?;
    if let Some(reason) = reason {
        error.set_named_property("cause", reason)?;
    }
    if let Some(report) = report {
        error.set_named_property("report", SyncReport::from(report))?;
    }
    Ok(napi::Error::from(error.to_unknown()))
}

/// A tag that failed, and why.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct TagFailure {
    pub tag: String,
    pub reason: String,
}

/// A tag whose index was rewritten to the selected platforms (its digest differs).
#[napi(object)]
#[derive(Debug, Clone)]
pub struct RewrittenTag {
    pub tag: String,
    pub source_digest: String,
    pub digest: String,
}

/// What one sync run did. A failed tag is reported here; the promise rejects only when the
/// run could not start.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// The destination repository the run was named after.
    pub mirror_id: String,
    pub source: String,
    /// `'success'`, `'failed'` or `'cancelled'`.
    #[napi(ts_type = "'success' | 'failed' | 'cancelled'")]
    pub outcome: String,
    /// Why the run failed or was cancelled; absent when it succeeded.
    pub error: Option<String>,
    /// A remark on a successful run, such as "no tags matched".
    pub note: Option<String>,
    pub partial: bool,
    pub rolled_back: bool,
    pub tags_synced: Vec<String>,
    pub tags_current: Vec<String>,
    pub tags_failed: Vec<TagFailure>,
    pub tags_deleted: Vec<String>,
    pub tags_skipped: Vec<String>,
    pub tags_rewritten: Vec<RewrittenTag>,
    pub blobs_copied: f64,
    pub blobs_mounted: f64,
    pub blobs_present: f64,
    pub bytes_copied: f64,
    /// Signatures, SBOMs and attestations newly copied with their images.
    pub referrers_copied: f64,
    pub duration_ms: f64,
}

/// One mirror: `source`'s tags selected by `tags`, kept in `to`. The constructor checks every
/// setting and throws (`err.code`: `'InvalidPattern'`, `'InvalidReference'`,
/// `'InvalidConfig'`).
#[napi]
#[derive(Debug)]
pub struct Mirror {
    sync: Arc<OneShotSync>,
}

#[napi]
impl Mirror {
    /// Check the settings; throws when one is invalid.
    #[napi(constructor)]
    pub fn new(options: MirrorOptions) -> napi::Result<Self, ErrorCode> {
        build(options).map(|sync| Mirror {
            sync: Arc::new(sync),
        })
    }

    /// Run one sync on regmirror's runtime. When `options.signal` aborts, the run stops after
    /// the work in flight (nothing is rolled back) and the promise rejects with an `Error`
    /// whose `name` is `'AbortError'` (as `fetch` and Node's own APIs reject), `code`
    /// `'Cancelled'`, `cause` the signal's `reason`, and `report` the run's `SyncReport` (what
    /// it did before it stopped); a signal already aborted rejects at once without running
    /// (no `report`). A run that ended before it noticed the abort resolves as usual.
    #[napi(ts_return_type = "Promise<SyncReport>")]
    pub fn sync<'env>(
        &self,
        env: &'env Env,
        options: Option<SyncCallOptions<'env>>,
    ) -> napi::Result<PromiseRaw<'env, SyncReport>> {
        let sync = Arc::clone(&self.sync);
        let cancel = CancellationToken::new();
        let signal = options.and_then(|o| o.signal);
        let listener = match &signal {
            Some(signal) => Some(AbortListener::attach(env, signal, cancel.clone())?),
            None => None,
        };
        let run = SyncOptions {
            cancel: cancel.clone(),
            ..SyncOptions::default()
        };
        env.spawn_future_with_callback(
            async move {
                if cancel.is_cancelled() {
                    return Ok(None);
                }
                Ok(Some(sync.run(run).await))
            },
            // On the JavaScript thread, where the error object keeps its `code`.
            move |env, output| {
                let reason = match listener {
                    Some(listener) => Some(listener.detach(env)?),
                    None => None,
                };
                match (output, reason) {
                    (Some(Ok(report)), Some(reason)) if report.outcome == Outcome::Cancelled => {
                        Err(abort_error(env, Some(report), Some(reason))?)
                    }
                    (Some(Ok(report)), _) => Ok(SyncReport::from(report)),
                    (Some(Err(e)), _) => Err(to_js_rejection(*env, e)),
                    (None, reason) => Err(abort_error(env, None, reason)?),
                }
            },
        )
    }

    /// Where the images come from.
    #[napi(getter)]
    pub fn source(&self) -> String {
        self.sync.source.to_string()
    }

    /// Where they go.
    #[napi(getter)]
    pub fn to(&self) -> String {
        self.sync.to.to_string()
    }

    /// The tag patterns, as given.
    #[napi(getter)]
    pub fn tags(&self) -> Vec<String> {
        self.sync.tags.clone()
    }
}

fn build(o: MirrorOptions) -> napi::Result<OneShotSync, ErrorCode> {
    let tags = match o.tags {
        Either::A(list) => vec![list],
        Either::B(tags) => tags,
    };
    let docker_config = o.docker_config.unwrap_or(false);
    let access = |credentials: Option<Credentials>, tls_verify: Option<bool>| Access {
        credentials: credentials.map(|c| CoreCredentials::new(c.username, c.password)),
        tls_verify: tls_verify.unwrap_or(true),
        docker_config,
        ..Access::default()
    };
    let build = || -> regmirror::Result<OneShotSync> {
        let mut sync = OneShotSync::new(o.source.parse::<Location>()?, o.to.parse()?, tags);
        sync.architectures = o.architectures.unwrap_or_default();
        if let Some(rollback) = &o.rollback {
            sync.rollback = rollback.parse()?;
        }
        if let Some(platform_index) = &o.platform_index {
            sync.platform_index = platform_index.parse()?;
        }
        if let Some(referrers) = &o.referrers {
            sync.referrers = referrers.parse()?;
        }
        sync.keep_unselected = o.keep_unselected.unwrap_or(false);
        let allow = o.ssrf_allow.unwrap_or_default();
        sync.source_access = Access {
            address_guard: AddressGuard::switch(o.ssrf_guard.unwrap_or(false), &allow)
                .map_err(|e| e.context("ssrfAllow"))?,
            ..access(o.source_credentials, o.source_tls_verify)
        };
        sync.dest_access = access(o.dest_credentials, o.dest_tls_verify);
        if let Some(n) = o.concurrency {
            sync.concurrency = n as usize;
        }
        if let Some(n) = o.max_tags {
            sync.max_tags = n as usize;
        }
        if let Some(secs) = o.timeout_seconds {
            sync.timeout = Duration::try_from_secs_f64(secs).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("timeoutSeconds: {secs} is not a number of seconds"),
                )
            })?;
        }
        sync.config()?;
        Ok(sync)
    };
    build().map_err(to_js)
}

impl From<regmirror::SyncReport> for SyncReport {
    fn from(r: regmirror::SyncReport) -> Self {
        // JavaScript numbers hold integers exactly up to 2^53: far beyond any count or size here.
        let number = |n: u64| n as f64;
        SyncReport {
            mirror_id: r.mirror_id,
            source: r.source,
            outcome: r.outcome.as_str().to_owned(),
            error: r.error,
            note: r.note,
            partial: r.partial,
            rolled_back: r.rolled_back,
            tags_synced: r.tags_synced,
            tags_current: r.tags_current,
            tags_failed: r
                .tags_failed
                .into_iter()
                .map(|f| TagFailure {
                    tag: f.tag,
                    reason: f.reason,
                })
                .collect(),
            tags_deleted: r.tags_deleted,
            tags_skipped: r.tags_skipped,
            tags_rewritten: r
                .tags_rewritten
                .into_iter()
                .map(|t| RewrittenTag {
                    tag: t.tag,
                    source_digest: t.source_digest.to_string(),
                    digest: t.digest.to_string(),
                })
                .collect(),
            blobs_copied: number(r.blobs_copied),
            blobs_mounted: number(r.blobs_mounted),
            blobs_present: number(r.blobs_present),
            bytes_copied: number(r.bytes_copied),
            referrers_copied: number(r.referrers_copied),
            duration_ms: number(r.duration_ms),
        }
    }
}
