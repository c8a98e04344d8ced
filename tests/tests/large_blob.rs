//! A 256 MiB blob streams through each streaming backend (push, then read back and hash) while
//! the process's resident memory stays flat. One test function runs the backends one after the
//! other, so nothing else in this process competes for memory while it is sampled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use regmirror::registry::LayoutRegistry;
use regmirror::registry::http::{HttpOptions, HttpRegistry};
use regmirror::{DestRegistry, Digest, SourceRegistry};
use regmirror_tests::Registry;
use regmirror_tests::image::LargeBlob;
use sha2::{Digest as _, Sha256};

const SIZE: u64 = 256 << 20;
/// Allowed growth of resident memory while streaming: a small fraction of the blob.
const MAX_GROWTH: u64 = 64 << 20;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("/proc/self/status has VmRSS");
    kib * 1024
}

/// Samples resident memory on a thread until dropped; `peak()` is the highest value seen.
struct Sampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start() -> Sampler {
        let peak = Arc::new(AtomicU64::new(resident_bytes()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(resident_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Sampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

async fn stream_through(
    name: &str,
    dest: &dyn DestRegistry,
    source: &dyn SourceRegistry,
    blob: &LargeBlob,
) {
    let before = resident_bytes();
    let sampler = Sampler::start();
    dest.push_blob("big/blob", &blob.digest, blob.size, blob.stream())
        .await
        .unwrap_or_else(|e| panic!("{name}: pushing {} MiB: {e}", blob.size >> 20));
    let mut stream = source.get_blob("big/blob", &blob.digest).await.unwrap();
    let (mut hasher, mut read) = (Sha256::new(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        read += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let peak = sampler.peak();
    assert_eq!(read, blob.size, "{name}");
    let digest = Digest::parse(&format!("sha256:{}", hex::encode(hasher.finalize()))).unwrap();
    assert_eq!(digest, blob.digest, "{name}");
    let growth = peak.saturating_sub(before);
    eprintln!(
        "{name}: resident memory grew by {} MiB while streaming {} MiB",
        growth >> 20,
        blob.size >> 20
    );
    assert!(
        growth < MAX_GROWTH,
        "{name}: resident memory grew by {growth} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_blob_streams_with_flat_memory() {
    let blob = LargeBlob::new(7, SIZE);

    let dir = tempfile::tempdir().unwrap();
    let layout = LayoutRegistry::single(dir.path());
    stream_through("layout", &layout, &layout, &blob).await;

    let registry = Registry::start();
    let options = HttpOptions {
        tls_verify: false,
        docker_config: false,
        ..HttpOptions::default()
    };
    let http = HttpRegistry::new(&registry.host(), options).unwrap();
    stream_through("http", &http, &http, &blob).await;
}
