//! A worker process for the multi-process tests: runs `Mirror::worker` against a state store
//! (SQLite file or PostgreSQL), a plain-HTTP source and destination on loopback until SIGTERM, then
//! prints one JSON line per run it made. Tests kill it with SIGKILL to play a crashed worker.
//!
//! ```text
//! regmirror-test-worker --store sqlite:PATH|postgres:URL --source 127.0.0.1:PORT
//!     --dest 127.0.0.1:PORT --id NAME
//!     [--lease-ms N] [--poll-ms N] [--max-concurrent N] [--batch N] [--spread-ms N]
//!     [--store-timeout-ms N] [--shutdown-ms N]
//! ```

use std::sync::Arc;
use std::time::Duration;

use regmirror::StateStore;
use regmirror::engine::{Mirror, StaticConnector};
use regmirror::registry::http::{HttpOptions, HttpRegistry};
use regmirror::state::{PostgresStateStore, SqliteStateStore, StoreTimeouts};
use regmirror::worker::WorkerOptions;

struct Args {
    store: String,
    source: String,
    dest: String,
    id: String,
    lease: Duration,
    timeouts: StoreTimeouts,
    options: WorkerOptions,
}

fn parse_args() -> Args {
    let mut args = Args {
        store: String::new(),
        source: String::new(),
        dest: String::new(),
        id: String::new(),
        lease: Duration::from_secs(60),
        timeouts: StoreTimeouts::default(),
        options: WorkerOptions::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || -> u64 {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--store" => args.store = value.clone(),
            "--source" => args.source = value.clone(),
            "--dest" => args.dest = value.clone(),
            "--id" => args.id = value.clone(),
            "--lease-ms" => args.lease = Duration::from_millis(number()),
            "--poll-ms" => args.options.poll_interval = Duration::from_millis(number()),
            "--max-concurrent" => args.options.max_concurrent = number() as usize,
            "--batch" => args.options.batch_size = number() as usize,
            "--spread-ms" => args.options.first_run_spread = Duration::from_millis(number()),
            "--store-timeout-ms" => {
                let timeout = Duration::from_millis(number());
                args.timeouts = StoreTimeouts {
                    query: timeout,
                    checkout: timeout,
                };
            }
            "--shutdown-ms" => args.options.shutdown_deadline = Duration::from_millis(number()),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        [&args.store, &args.source, &args.dest, &args.id]
            .iter()
            .all(|a| !a.is_empty()),
        "--store, --source, --dest and --id are required"
    );
    args
}

async fn open_store(spec: &str, timeouts: StoreTimeouts) -> Arc<dyn StateStore> {
    if let Some(path) = spec.strip_prefix("sqlite:") {
        Arc::new(
            SqliteStateStore::open_with(path, timeouts)
                .await
                .expect("opening SQLite"),
        )
    } else if let Some(url) = spec.strip_prefix("postgres:") {
        Arc::new(
            PostgresStateStore::connect_with(url, timeouts)
                .await
                .expect("connecting to PostgreSQL"),
        )
    } else {
        panic!("--store must start with sqlite: or postgres:")
    }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let plain_http = || HttpOptions {
        tls_verify: false,
        docker_config: false,
        ..HttpOptions::default()
    };
    let source = HttpRegistry::new(&args.source, plain_http()).expect("source client");
    let dest = HttpRegistry::new(&args.dest, plain_http()).expect("destination client");
    let mirror = Mirror::builder()
        .state(open_store(&args.store, args.timeouts).await)
        .destination(Arc::new(dest))
        .connector(Arc::new(StaticConnector(Arc::new(source))))
        .lease(args.lease)
        .worker_id(&args.id)
        .build()
        .expect("building the engine");
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    println!("ready");
    let report = mirror
        .worker(args.options)
        .run(async move {
            sigterm.recv().await;
        })
        .await
        .expect("valid worker options");
    for run in report.runs {
        let outcome = run.outcome.map(|o| format!("{o:?}"));
        println!(
            "{}",
            serde_json::json!({"mirror": run.mirror_id, "token": run.token, "outcome": outcome})
        );
    }
}
