//! `regmirror worker --config regmirror.toml`: the mirroring daemon. It declares the file's
//! mirrors in the state store, then polls for due mirrors and syncs them until SIGINT/SIGTERM,
//! when it stops claiming and lets the runs in flight finish (or releases them) before exiting;
//! a second signal releases them at once.

use std::future::Future;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use regmirror::engine::{HttpConnector, Mirror};
use regmirror::notify::{LogNotifier, WebhookNotifier};
use regmirror::registry::http::HttpOptions;
use regmirror::worker::{RunProgress, WorkerOptions};
use regmirror::{EngineSettings, StateStore};
use tracing_subscriber::EnvFilter;

use crate::api::metrics::{MeteredStore, MetricsNotifier};
use crate::api::{self, Server, WorkerState};
use crate::failure::{CliResult, Failure};
use crate::worker_config::{LogFormat, WorkerConfig};

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The worker's config file (TOML): state store, destination, webhooks, mirrors.
    #[arg(long, value_name = "FILE", default_value = "regmirror.toml")]
    pub config: PathBuf,
}

/// The worker's log filter when `RUST_LOG` is not set.
const DEFAULT_LOG_FILTER: &str = "info,rustls_platform_verifier=off";

pub async fn run(args: WorkerArgs) -> CliResult<()> {
    let config = WorkerConfig::load(&args.config);
    // Logs in the file's format; a file that cannot be read is reported in text.
    init_logs(config.as_ref().map_or(LogFormat::Text, |c| c.log_format));
    let config = config?;
    let mut store = crate::store::open(&config.state, config.state_timeouts).await?;
    let metrics = match &config.api {
        Some(_) => {
            store = Arc::new(MeteredStore(store));
            Some(api::metrics::install()?)
        }
        None => None,
    };
    let metered = metrics.is_some();
    let mirror = engine(&config, store, metered)?;
    // Mirrors in the store but not in the file are left alone: they may have been added with
    // `regmirror mirror add`.
    mirror.declare(&config.mirrors).await?;
    let worker_state = Arc::new(WorkerState::default());
    let server = match (&config.api, metrics) {
        (Some(api_config), Some(metrics)) => {
            let (server, addr) = Server::start(
                api_config,
                mirror.clone(),
                metrics,
                Arc::clone(&worker_state),
            )
            .await?;
            tracing::info!(
                address = %addr,
                tls = api_config.tls.is_some(),
                "API endpoint listening"
            );
            Some(server)
        }
        _ => None,
    };
    tracing::info!(
        worker = mirror.worker_id(),
        state = %config.state,
        destination = %config.destination,
        poll_interval_secs = config.poll_interval.as_secs(),
        mirrors_declared = config.mirrors.len(),
        "worker started"
    );
    // Listened for from here on: a signal while opening the store or declaring mirrors
    // (nothing claimed yet) ends the process at once, by the signal's default action.
    let stop = StopSignals::listen();
    worker_state.set_claiming(true);
    let graceful = {
        let worker_state = Arc::clone(&worker_state);
        async move {
            stop.graceful.await;
            // Unready from the first signal on: a balancer stops sending management calls.
            worker_state.set_claiming(false);
        }
    };
    let report = mirror
        .worker(WorkerOptions {
            poll_interval: config.poll_interval,
            batch_size: config.max_concurrent_syncs,
            max_concurrent: config.max_concurrent_syncs,
            shutdown_deadline: config.shutdown_deadline,
            log_retention: config.log_retention,
            first_run_spread: config.first_run_spread,
            progress: if metered {
                api::metrics::run_progress()
            } else {
                RunProgress::default()
            },
        })
        .run_until(graceful, stop.now)
        .await;
    worker_state.set_claiming(false);
    if let Some(server) = server {
        server.stop(API_GRACE).await;
    }
    let report = report?;
    tracing::info!(
        runs = report.runs.len(),
        failed_polls = report.failed_polls,
        store_healthy = mirror.store_health().is_healthy(),
        "worker stopped"
    );
    Ok(())
}

/// How long API requests in flight may take to finish once the worker has stopped.
const API_GRACE: Duration = Duration::from_secs(2);

/// Logs go to stderr, as text lines (colored on a terminal) or JSON objects; RUST_LOG picks
/// the level (info by default). The TLS verifier logs every refused certificate as an ERROR of
/// its own; the sync's failure event already says it, with the mirror and what to do, so by
/// default the verifier is quiet.
fn init_logs(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // One object a line: the event's fields (worker=...) at the top, and for a line from a
        // run the run's span (mirror, run, worker) under "span".
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// The engine the file describes: its store, destination, robot, notifiers and limits.
fn engine(config: &WorkerConfig, store: Arc<dyn StateStore>, metered: bool) -> CliResult<Mirror> {
    let mut builder = Mirror::builder()
        .state(store)
        .destination_spec(config.destination.clone())
        .max_tags(config.max_tags)
        .connector(Arc::new(HttpConnector::new(HttpOptions {
            // As HttpConnector::default(): a mirror without credentials is anonymous.
            docker_config: false,
            address_guard: config.address_guard.clone(),
            max_tags: config.max_tags,
            ..HttpOptions::default()
        })))
        .concurrency(config.concurrency)
        .lease(config.lease)
        .settings(EngineSettings {
            default_rollback: config.defaults.rollback,
            default_retry_backoff: config.defaults.retry_backoff,
            ..EngineSettings::default()
        })
        .notifier(Arc::new(LogNotifier));
    if metered {
        builder = builder.notifier(Arc::new(MetricsNotifier));
    }
    for (i, hook) in config.webhooks.iter().enumerate() {
        let mut webhook = WebhookNotifier::builder(&hook.url);
        if let Some(secret) = &hook.secret {
            webhook = webhook.secret(secret);
        }
        let webhook = webhook
            .build()
            .map_err(|e| Failure::from(e).context(format!("webhook {}", i + 1)))?;
        builder = builder.notifier(Arc::new(webhook));
    }
    Ok(builder.build()?)
}

/// SIGINT and SIGTERM (what Ctrl-C, `systemctl stop` and `docker stop` send): the first asks
/// for a graceful stop, a second one to stop now.
struct StopSignals<G, N> {
    graceful: G,
    now: N,
}

impl StopSignals<(), ()> {
    fn listen() -> StopSignals<impl Future<Output = ()>, impl Future<Output = ()>> {
        let (count, seen) = tokio::sync::watch::channel(0u32);
        tokio::spawn(async move {
            // Without a SIGTERM handler only Ctrl-C stops the worker.
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    Some(()) = async { term.as_mut()?.recv().await } => {}
                }
                // Said before the worker hears of it, so "worker stopped" always comes after.
                if *count.borrow() == 0 {
                    tracing::info!(
                        "shutting down: no new syncs; waiting for the runs in flight (a second \
                         signal stops them now)"
                    );
                } else {
                    tracing::info!("stopping now: the runs in flight are released");
                }
                count.send_modify(|n| *n += 1);
            }
        });
        let after = |n: u32| {
            let mut seen = seen.clone();
            async move {
                // The sender lives as long as the listening task, that is, the process.
                let _ = seen.wait_for(|count| *count >= n).await;
            }
        };
        StopSignals {
            graceful: after(1),
            now: after(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use regmirror::state::Declaration;
    use regmirror::{Credentials, StoreUrl};

    use super::*;

    #[tokio::test]
    async fn declaring_again_changes_nothing_and_an_edit_keeps_the_status() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreUrl::Sqlite(dir.path().join("s.db"))
            .open(Default::default())
            .await
            .unwrap();
        let config = WorkerConfig::parse(
            "[destination]\nregistry = \"r.io\"\n\
             [[mirror]]\nid = \"m/a\"\nsource = \"q.io/a\"\ntags = \"v*\"\n\
             username = \"u\"\npassword = \"p:w\"\n",
            dir.path(),
        )
        .unwrap();
        let mirror = engine(&config, store, false).unwrap();
        assert_eq!(
            mirror.declare(&config.mirrors).await.unwrap(),
            [Declaration::Created]
        );
        mirror.sync_now("m/a").await.unwrap();
        let before = mirror.get("m/a").await.unwrap();

        // A restart with the same file: the stored mirror (and its schedule) stay as they are.
        let again = mirror.declare(&config.mirrors).await.unwrap();
        assert_eq!(again, [Declaration::Unchanged]);
        assert_eq!(mirror.get("m/a").await.unwrap(), before);

        let mut edited = config.mirrors[0].clone().into_inner();
        edited.tags = vec!["v2*".into()];
        edited.enabled = false;
        edited.source_credentials = Some(Credentials::new("u", "other:pw"));
        assert_eq!(
            mirror
                .declare(&[edited.validated().unwrap()])
                .await
                .unwrap(),
            [Declaration::Updated {
                changed: vec!["enabled".into(), "source_credentials".into(), "tags".into()]
            }]
        );
        let after = mirror.get("m/a").await.unwrap();
        assert_eq!(after.config.tags, ["v2*"]);
        assert_eq!(after.state.status, before.state.status);
    }
}
