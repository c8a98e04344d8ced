//! Embedding regmirror: a `Mirror` over two in-memory registries with a memory state store, a
//! notifier of our own, a progress channel, one sync, then a worker that runs a sync-now and
//! stops on a shutdown signal. Offline and done in well under a second:
//! `cargo run -p regmirror --example embed`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use regmirror::engine::{Progress, ProgressEvent, StaticConnector};
use regmirror::registry::MemoryRegistry;
use regmirror::worker::WorkerOptions;
use regmirror::{
    MemoryStateStore, Mirror, MirrorConfig, MirrorEvent, Notifier, Result, SyncOptions, SyncStatus,
    async_trait,
};

/// Keeps the events the engine sends (a real one would post them somewhere).
#[derive(Debug, Default)]
struct Remember(Mutex<Vec<MirrorEvent>>);

#[async_trait]
impl Notifier for Remember {
    async fn notify(&self, event: &MirrorEvent) -> Result<()> {
        self.0
            .lock()
            .expect("no holder of this lock panics")
            .push(event.clone());
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    // The "external" registry with two releases and a release candidate, and ours, empty.
    let upstream = MemoryRegistry::new();
    upstream.seed_image(
        "coreos/etcd",
        Some("v3.5.0"),
        "amd64",
        &[b"base", b"etcd 3.5.0"],
    );
    upstream.seed_image(
        "coreos/etcd",
        Some("v3.5.1"),
        "amd64",
        &[b"base", b"etcd 3.5.1"],
    );
    upstream.seed_image(
        "coreos/etcd",
        Some("v3.6.0-rc1"),
        "amd64",
        &[b"base", b"rc"],
    );
    let ours = MemoryRegistry::new();

    let events = Arc::new(Remember::default());
    let mirror = Mirror::builder()
        .state(Arc::new(MemoryStateStore::new()))
        .destination(Arc::new(ours.clone()))
        .connector(Arc::new(StaticConnector(Arc::new(upstream.clone()))))
        .notifier(events.clone())
        .build()?;

    // Invalid configurations are refused, with the field at fault, before they reach a store.
    let source = "quay.io/coreos/etcd".parse()?;
    let bad = MirrorConfig::new("mirrors/etcd", source, &["v3.[5"]);
    if let Err(e) = bad.validated() {
        println!("refused: {e}");
    }

    let config = MirrorConfig::new(
        "mirrors/etcd",
        "quay.io/coreos/etcd".parse()?,
        &["v3.*", "!*-rc*"],
    );
    mirror.create_mirror(config.validated()?).await?;

    // One sync now, its progress read from a channel.
    let (tx, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let options = SyncOptions {
        progress: Progress::channel(tx),
        ..SyncOptions::default()
    };
    let report = mirror.sync_with("mirrors/etcd", options).await?;
    while let Ok(event) = progress.try_recv() {
        if let ProgressEvent::TagFinished { tag, status, .. } = event {
            println!("progress: {tag} {status:?}");
        }
    }
    println!(
        "sync: {:?}, synced {:?}, {} blobs ({} bytes) copied",
        report.outcome, report.tags_synced, report.blobs_copied, report.bytes_copied
    );
    assert!(report.is_success());

    // Upstream publishes a new release; a worker picks up the sync-now and is then shut down.
    upstream.seed_image(
        "coreos/etcd",
        Some("v3.5.2"),
        "amd64",
        &[b"base", b"etcd 3.5.2"],
    );
    mirror.sync_now("mirrors/etcd").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(mirror.worker(WorkerOptions::default()).run(async {
        // Shut down when told to (or when the sender is dropped).
        let _ = stopped.await;
    }));
    // Wait until the worker has claimed and finished the run.
    while matches!(
        mirror.get("mirrors/etcd").await?.state.status,
        SyncStatus::SyncNow | SyncStatus::Syncing
    ) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    let runs = worker.await.expect("the worker task does not panic")?;
    println!("worker ran {} sync(s)", runs.runs.len());
    assert_eq!(
        mirror.get("mirrors/etcd").await?.state.status,
        SyncStatus::Success
    );

    println!(
        "our tags: {:?}",
        ours.tag_map("mirrors/etcd").keys().collect::<Vec<_>>()
    );
    for entry in mirror.logs("mirrors/etcd", 20, None).await?.iter().rev() {
        let tag = entry.tag.as_deref().unwrap_or("-");
        println!("log: {:?} {tag}: {}", entry.kind, entry.message);
    }
    let events = events.0.lock().expect("no holder of this lock panics");
    println!("notifier got {} event(s)", events.len());
    Ok(())
}

// `cargo test -p regmirror` runs the example (`test = true` in Cargo.toml), so it cannot rot.
#[cfg(test)]
mod tests {
    #[test]
    fn the_example_runs() {
        super::main().expect("the example succeeds");
    }
}
