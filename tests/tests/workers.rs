//! Workers as separate processes sharing one state store (SEMANTICS.md §6): a worker killed
//! with SIGKILL mid-publish is taken over once its lease expires, and `all_or_nothing` never
//! leaves the destination half updated (SQLite and PostgreSQL); three workers on one PostgreSQL
//! share 100 due mirrors, each synced exactly once; a new mirror runs at the next poll and a crowd
//! of them is spread, first and second runs alike. In-process: a finished run frees its slot at
//! once, shutdown releases what the worker holds within its deadline, the engine-wide switch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use regmirror::engine::{Mirror, Outcome, SourceConnector, StaticConnector};
use regmirror::registry::SourceRegistry;
use regmirror::registry::http::{HttpOptions, HttpRegistry};
use regmirror::state::{
    LogEntry, LogKind, LogRetention, PostgresStateStore, SqliteStateStore, StoreTimeouts,
};
use regmirror::worker::WorkerOptions;
use regmirror::{
    Digest, EngineSettings, ErrorKind, MemoryStateStore, MirrorConfig, RollbackMode, StateStore,
    SyncStatus,
};
use regmirror_tests::proxy::Fault;
use regmirror_tests::{Image, Postgres, Proxy, Registry, TcpProxy};
use time::OffsetDateTime;

const WORKER: &str = env!("CARGO_BIN_EXE_regmirror-test-worker");

/// A `regmirror-test-worker` process; killed on drop if still running.
struct WorkerProcess {
    name: String,
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl WorkerProcess {
    fn start(name: &str, store: &str, source: &str, dest: &str, extra: &[&str]) -> WorkerProcess {
        let mut child = Command::new(WORKER)
            .args([
                "--id", name, "--store", store, "--source", source, "--dest", dest,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {WORKER}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("reading the worker's stdout");
        assert_eq!(line.trim(), "ready", "worker {name} did not start");
        WorkerProcess {
            name: name.to_owned(),
            child,
            stdout,
        }
    }

    /// SIGKILL: no shutdown, no release, leases left to expire.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the worker");
        self.child.wait().expect("reap the worker");
    }

    /// SIGTERM, wait for the graceful shutdown, and return the runs it reports:
    /// mirror id → outcomes.
    fn terminate(mut self) -> Vec<(String, Option<String>)> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
        let mut rest = String::new();
        self.stdout
            .read_to_string(&mut rest)
            .expect("reading the worker's report");
        let exit = self.child.wait().expect("reap the worker");
        assert!(exit.success(), "worker {} exited with {exit}", self.name);
        rest.lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("bad report line {line:?}: {e}"));
                (
                    v["mirror"].as_str().expect("mirror id").to_owned(),
                    v["outcome"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }
}

impl WorkerProcess {
    /// Send `signal` (`"STOP"`, `"CONT"`, …).
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal}");
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn dest_tags(registry: &Registry, repo: &str) -> BTreeMap<String, Digest> {
    registry.seeder().tag_digests(repo).await
}

fn mirror_config(id: &str, source: &Registry, repo: &str) -> MirrorConfig {
    let mut c = MirrorConfig::new(
        id,
        format!("{}/{repo}", source.host()).parse().unwrap(),
        &["v*"],
    );
    c.verify_tls = false;
    c.sync_start_date = Some(OffsetDateTime::now_utc() - Duration::from_secs(1));
    c
}

/// Create `config` through the front door (`Mirror::create_mirror`), as the CLI, the worker
/// and the bindings do.
async fn add(store: Arc<dyn StateStore>, config: MirrorConfig) {
    Mirror::builder()
        .state(store)
        .build()
        .unwrap()
        .create_mirror(config.validated().unwrap())
        .await
        .unwrap();
}

/// Worker A is killed while publishing tag v3 of four (v1, v2 and v4 moved with it, v3 not):
/// after A's lease expires worker B claims the mirror, puts the destination back from the
/// durable pre-run record and completes the sync. The destination ends fully updated.
async fn killed_worker_is_taken_over(store: Arc<dyn StateStore>, store_arg: &str) {
    let source = Registry::start();
    let dest = Registry::start();
    let proxy = Proxy::start(&dest);
    let seeder = source.seeder();
    let dest_seeder = dest.seeder();
    let mut old = BTreeMap::new();
    let mut new = BTreeMap::new();
    for (i, tag) in ["v1", "v2", "v3", "v4"].into_iter().enumerate() {
        let i = i as u64;
        new.insert(
            tag.to_owned(),
            seeder
                .push_image("src/app", tag, &Image::simple(10 + i, 2, 2000))
                .await,
        );
        old.insert(
            tag.to_owned(),
            dest_seeder
                .push_image("mirror/app", tag, &Image::simple(20 + i, 2, 2000))
                .await,
        );
    }
    old.insert(
        "v0-gone".to_owned(),
        dest_seeder
            .push_image("mirror/app", "v0-gone", &Image::simple(30, 1, 500))
            .await,
    );
    let mut config = mirror_config("mirror/app", &source, "src/app");
    config.rollback = RollbackMode::AllOrNothing;
    add(store.clone(), config.clone()).await;
    proxy.inject("PUT", "/manifests/v3", Fault::Hang, 1);

    let lease = "3000";
    let mut a = WorkerProcess::start(
        "worker-a",
        store_arg,
        &source.host(),
        &proxy.host(),
        &["--lease-ms", lease, "--poll-ms", "100"],
    );
    // Tags move several at once: v4 goes with v3.
    wait_for(
        "worker A to reach tag v3 and publish v4",
        Duration::from_secs(60),
        async || {
            let v4 = dest_tags(&dest, "mirror/app").await.get("v4").cloned();
            (proxy.count("PUT", "/manifests/v3") > 0 && v4 == new.get("v4").cloned()).then_some(())
        },
    )
    .await;
    let midway = dest_tags(&dest, "mirror/app").await;
    assert_eq!(midway["v1"], new["v1"], "A had published v1");
    assert_eq!(midway["v2"], new["v2"], "A had published v2");
    assert_eq!(midway["v3"], old["v3"], "A was stuck on v3");
    assert_eq!(midway["v4"], new["v4"], "A had published v4 with v3");
    let record = store.tag_record("mirror/app").await.unwrap();
    assert_eq!(record.as_ref(), Some(&old), "the pre-run record is durable");

    a.kill();
    let held = store.get_mirror("mirror/app").await.unwrap();
    assert_eq!(held.state.status, SyncStatus::Syncing);
    assert_eq!(held.state.lease_owner.as_deref(), Some("worker-a"));
    let a_expires = held.state.lease_expires.expect("A's lease");

    let b = WorkerProcess::start(
        "worker-b",
        store_arg,
        &source.host(),
        &dest.host(),
        &["--lease-ms", lease, "--poll-ms", "100"],
    );
    let done = wait_for(
        "worker B to finish the mirror",
        Duration::from_secs(60),
        async || {
            let r = store.get_mirror("mirror/app").await.unwrap();
            (r.state.lease_owner.is_none() && r.state.status != SyncStatus::Syncing).then_some(r)
        },
    )
    .await;
    assert_eq!(
        done.state.status,
        SyncStatus::Success,
        "{:?}",
        done.state.last_error
    );
    assert_eq!(done.state.lease_token, 2, "claimed by A, then once by B");
    assert!(
        done.state.last_started.expect("B started") >= a_expires,
        "B claimed only after A's lease expired"
    );
    assert_eq!(
        dest_tags(&dest, "mirror/app").await,
        new,
        "fully updated, v0-gone pruned"
    );
    assert_eq!(store.tag_record("mirror/app").await.unwrap(), None);

    let runs = b.terminate();
    assert_eq!(
        runs,
        [("mirror/app".to_owned(), Some("Success".to_owned()))]
    );
    let log = store.logs("mirror/app", 100, None).await.unwrap();
    let started = log
        .iter()
        .filter(|e| e.kind == LogKind::SyncStarted)
        .count();
    assert_eq!(started, 2, "A's run and B's run are both in the usage log");
    // A's run is closed in the log as failed, just before B's starts.
    let b_started = log
        .iter()
        .position(|e| e.kind == LogKind::SyncStarted)
        .expect("B's start");
    let lost = &log[b_started + 1];
    assert_eq!(lost.kind, LogKind::SyncFailed, "{log:?}");
    assert!(
        lost.message.contains("\"worker-a\"") && lost.message.contains("lease expired"),
        "{}",
        lost.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_taken_over_after_its_lease_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Arc::new(SqliteStateStore::open(&path).await.unwrap());
    killed_worker_is_taken_over(store, &format!("sqlite:{}", path.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_taken_over_after_its_lease_postgres() {
    let pg = Postgres::shared();
    let url = pg.create_database();
    let store = Arc::new(PostgresStateStore::connect(&url).await.unwrap());
    killed_worker_is_taken_over(store, &format!("postgres:{url}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_share_100_due_mirrors_on_postgres() {
    let pg = Postgres::shared();
    let url = pg.create_database();
    let store = PostgresStateStore::connect(&url).await.unwrap();
    worker_processes_share_due_mirrors(
        Arc::new(store),
        &format!("postgres:{url}"),
        &["w1", "w2", "w3"],
        100,
    )
    .await;
}

/// Processes on one host sharing one SQLite file: claims never overlap, and the writes of
/// both (claims, renewals, logs, releases) wait for each other instead of failing as busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap();
    let store_arg = format!("sqlite:{}", path.display());
    worker_processes_share_due_mirrors(Arc::new(store), &store_arg, &["w1", "w2"], 40).await;
    let reopened = SqliteStateStore::open(&path).await.unwrap();
    assert_eq!(reopened.list_mirrors().await.unwrap().len(), 40);
}

/// `count` due mirrors run by worker processes `names` sharing `store`: each synced exactly
/// once, by exactly one worker, every worker taking a share.
async fn worker_processes_share_due_mirrors(
    store: Arc<dyn StateStore>,
    store_arg: &str,
    names: &[&str],
    count: usize,
) {
    let source = Registry::start();
    let dest = Registry::start();
    let seeder = source.seeder();
    let v1 = seeder
        .push_image("src/app", "v1", &Image::simple(1, 2, 1000))
        .await;
    let v2 = seeder
        .push_image("src/app", "v2", &Image::simple(2, 1, 1000))
        .await;
    let ids: Vec<String> = (0..count).map(|i| format!("fleet/m{i:03}")).collect();
    for id in &ids {
        add(store.clone(), mirror_config(id, &source, "src/app")).await;
    }

    let args = [
        "--poll-ms",
        "200",
        "--max-concurrent",
        "3",
        "--batch",
        "2",
        "--lease-ms",
        "10000",
    ];
    let workers: Vec<_> = names
        .iter()
        .map(|name| WorkerProcess::start(name, store_arg, &source.host(), &dest.host(), &args))
        .collect();
    let records = wait_for(
        &format!("all {count} mirrors to be synced"),
        Duration::from_secs(180),
        async || {
            let all = store.list_mirrors().await.unwrap();
            all.iter()
                .all(|r| r.state.status == SyncStatus::Success && r.state.lease_owner.is_none())
                .then_some(all)
        },
    )
    .await;
    // Give any wrongly due mirror the chance to be claimed a second time before looking.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let mut per_worker = HashMap::new();
    let mut runs = Vec::new();
    for w in workers {
        let name = w.name.clone();
        let mine = w.terminate();
        per_worker.insert(name, mine.len());
        runs.extend(mine);
    }
    assert_eq!(runs.len(), count, "{count} runs in all: {per_worker:?}");
    let distinct: HashSet<_> = runs.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(distinct.len(), count, "no mirror synced twice");
    assert!(
        runs.iter().all(|(_, o)| o.as_deref() == Some("Success")),
        "{runs:?}"
    );
    assert!(
        per_worker.values().all(|n| *n > 0),
        "every worker took a share: {per_worker:?}"
    );
    for r in &records {
        assert_eq!(
            r.state.lease_token, 1,
            "{} claimed exactly once",
            r.config.id
        );
    }
    for r in store.list_mirrors().await.unwrap() {
        assert_eq!(
            r.state.lease_token, 1,
            "{} claimed again after finishing",
            r.config.id
        );
        let log = store.logs(&r.config.id, 100, None).await.unwrap();
        let started = log
            .iter()
            .filter(|e| e.kind == LogKind::SyncStarted)
            .count();
        let succeeded = log
            .iter()
            .filter(|e| e.kind == LogKind::SyncSucceeded)
            .count();
        assert_eq!((started, succeeded), (1, 1), "{}", r.config.id);
    }
    for id in ids.iter().step_by(9) {
        let tags = dest_tags(&dest, id).await;
        assert_eq!(
            tags,
            BTreeMap::from([("v1".to_owned(), v1.clone()), ("v2".to_owned(), v2.clone())]),
            "{id}"
        );
    }
}

/// A mirror without a start date, hourly, from `src/app` of `source`.
fn new_mirror(id: &str, source: &Registry, interval: Duration) -> MirrorConfig {
    let mut c = mirror_config(id, source, "src/app");
    c.sync_start_date = None;
    c.sync_interval = interval;
    c
}

/// The start times of a mirror's runs, oldest first, from its usage log.
async fn run_starts(store: &dyn StateStore, id: &str) -> Vec<OffsetDateTime> {
    let mut starts: Vec<_> = store
        .logs(id, 100, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == LogKind::SyncStarted)
        .map(|e| e.time)
        .collect();
    starts.reverse();
    starts
}

/// SEMANTICS.md §6 with a worker process on SQLite: a new hourly mirror without a start date
/// runs at the worker's first or second poll, not up to an hour later; mirrors with a start
/// date of their own keep it — one in the past runs at once and stays on its grid, one in the
/// future waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_mirror_runs_at_the_next_poll_and_explicit_starts_are_kept() {
    let source = Registry::start();
    let dest = Registry::start();
    source
        .seeder()
        .push_image("src/app", "v1", &Image::simple(1, 1, 500))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap();
    let hour = Duration::from_secs(3600);
    // Whole microseconds, as SQLite keeps times.
    let now = OffsetDateTime::now_utc();
    let now = now.replace_microsecond(now.microsecond()).unwrap();
    // Through the store: the test needs the mirrors created at exactly `now`.
    store
        .create_mirror(
            &new_mirror("mirror/new", &source, hour).validated().unwrap(),
            now,
        )
        .await
        .unwrap();
    let mut past = new_mirror("mirror/past", &source, hour);
    let past_start = now - Duration::from_secs(90 * 60);
    past.sync_start_date = Some(past_start);
    store
        .create_mirror(&past.clone().validated().unwrap(), now)
        .await
        .unwrap();
    let mut future = new_mirror("mirror/future", &source, hour);
    let future_start = now + Duration::from_secs(4);
    future.sync_start_date = Some(future_start);
    store
        .create_mirror(&future.clone().validated().unwrap(), now)
        .await
        .unwrap();

    let poll = Duration::from_secs(1);
    let worker = WorkerProcess::start(
        "w1",
        &format!("sqlite:{}", path.display()),
        &source.host(),
        &dest.host(),
        // A window far longer than the test: nothing here may be spread.
        &["--poll-ms", "1000", "--spread-ms", "600000"],
    );
    let ready = OffsetDateTime::now_utc();
    let synced = |id: &'static str| {
        let store = &store;
        async move || {
            let r = store.get_mirror(id).await.unwrap();
            (r.state.status == SyncStatus::Success).then_some(r)
        }
    };
    let new = wait_for(
        "mirror/new to sync",
        Duration::from_secs(30),
        synced("mirror/new"),
    )
    .await;
    let started = new.state.last_started.unwrap();
    assert!(
        started - ready < poll * 2,
        "mirror/new started {} after the worker, more than two polls",
        started - ready
    );
    assert_eq!(
        new.state.next_start,
        now + hour,
        "on a grid from its creation"
    );
    assert!(dest_tags(&dest, "mirror/new").await.contains_key("v1"));

    let past = wait_for(
        "mirror/past to sync",
        Duration::from_secs(30),
        synced("mirror/past"),
    )
    .await;
    assert!(past.state.last_started.unwrap() - ready < poll * 2);
    assert_eq!(
        past.state.next_start,
        past_start + hour * 2,
        "on its own grid"
    );

    let future = store.get_mirror("mirror/future").await.unwrap();
    if OffsetDateTime::now_utc() < future_start {
        assert_eq!(
            future.state.status,
            SyncStatus::NeverRun,
            "not before its start"
        );
    }
    let future = wait_for(
        "mirror/future to sync",
        Duration::from_secs(30),
        synced("mirror/future"),
    )
    .await;
    assert!(future.state.last_started.unwrap() >= future_start);
    assert_eq!(future.state.next_start, future_start + hour);
    let runs = worker.terminate();
    assert_eq!(runs.len(), 3, "{runs:?}");
}

/// 200 mirrors without a start date declared at once, run by two worker processes sharing one
/// SQLite file: the first poll places their first runs over the spread window (once: the store
/// decides), they start within it, and their second runs, one interval after each first, are
/// as spread as the first — not bunched as a crowd that all started together would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_new_mirrors_is_spread_over_the_window_and_stays_spread() {
    let source = Registry::start();
    let dest = Registry::start();
    source
        .seeder()
        .push_image("src/app", "v1", &Image::simple(1, 1, 200))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap();
    let interval = Duration::from_secs(10);
    let window = Duration::from_secs(4);
    let count = 200;
    let ids: Vec<String> = (0..count).map(|i| format!("crowd/m{i:03}")).collect();
    for id in &ids {
        let config = new_mirror(id, &source, interval);
        add(Arc::new(store.clone()), config.clone()).await;
    }
    let store_arg = format!("sqlite:{}", path.display());
    let spread_ms = window.as_millis().to_string();
    let args = [
        "--poll-ms",
        "200",
        "--spread-ms",
        &spread_ms,
        "--max-concurrent",
        "16",
        "--batch",
        "16",
    ];
    let workers: Vec<_> = ["w1", "w2"]
        .iter()
        .map(|name| WorkerProcess::start(name, &store_arg, &source.host(), &dest.host(), &args))
        .collect();
    let ready = OffsetDateTime::now_utc();

    // Placed by the first poll: the mirrors not run yet wait for slots all over the window.
    let slots = wait_for("the first runs", Duration::from_secs(30), async || {
        let all = store.list_mirrors().await.unwrap();
        all.iter().any(|r| r.state.last_started.is_some()).then(|| {
            all.iter()
                .filter(|r| r.state.status == SyncStatus::NeverRun)
                .map(|r| r.state.next_start)
                .collect::<Vec<_>>()
        })
    })
    .await;
    assert!(slots.len() > count / 2, "{} still to run", slots.len());
    let distinct: HashSet<_> = slots.iter().collect();
    assert_eq!(distinct.len(), slots.len(), "each has a slot of its own");
    let (first_slot, last_slot) = (slots.iter().min().unwrap(), slots.iter().max().unwrap());
    assert!(
        *last_slot - *first_slot > window * 3 / 4,
        "slots span only {}",
        *last_slot - *first_slot
    );
    assert!(*last_slot < ready + window, "a slot past the window");

    let mut starts = Vec::new();
    for id in &ids {
        let what = format!("{id} to run twice");
        let ran_twice = wait_for(&what, Duration::from_secs(60), async || {
            let s = run_starts(&store, id).await;
            (s.len() >= 2).then_some(s)
        })
        .await;
        starts.push(ran_twice);
    }
    let runs: usize = workers.into_iter().map(|w| w.terminate().len()).sum();
    assert!(runs >= 2 * count, "{runs} runs");

    let first: Vec<_> = starts.iter().map(|s| s[0]).collect();
    let second: Vec<_> = starts.iter().map(|s| s[1]).collect();
    let span =
        |times: &[OffsetDateTime]| *times.iter().max().unwrap() - *times.iter().min().unwrap();
    // Slack for a busy machine: runs start at the first poll after their slot with a free slot.
    let slack = Duration::from_secs(2);
    let latest = *first.iter().max().unwrap();
    assert!(
        latest - ready < window + slack,
        "the last first run began {} after the workers",
        latest - ready
    );
    assert!(
        span(&first) > window / 2,
        "first runs span only {}",
        span(&first)
    );
    assert!(
        span(&second) > window / 2,
        "second runs span only {}",
        span(&second)
    );
    // Spread evenly over 4 s: about 25 per half second; a crowd that first ran together is
    // due together again (measured: 94 of 200 in one half second without spreading).
    let origin = *second.iter().min().unwrap();
    let mut per_half_second = HashMap::new();
    for t in &second {
        *per_half_second
            .entry((*t - origin).whole_milliseconds() / 500)
            .or_insert(0usize) += 1;
    }
    let busiest = per_half_second.into_values().max().unwrap();
    assert!(
        busiest < count / 4,
        "{busiest} second runs in one half second"
    );
    // Each one's grid follows from its first run (but the one that waited longest: it keeps its
    // creation as its start date, as a lone new mirror does).
    for (i, s) in starts.iter().enumerate().skip(1) {
        let gap = s[1] - s[0];
        assert!(
            gap > interval - slack && gap < interval + slack,
            "{}: second run {gap} after the first",
            ids[i]
        );
    }
}

/// An engine in this process over plain-HTTP registries on loopback.
fn engine(
    store: Arc<dyn StateStore>,
    source: &str,
    dest: &str,
    settings: EngineSettings,
) -> Mirror {
    let plain_http = || HttpOptions {
        tls_verify: false,
        docker_config: false,
        ..HttpOptions::default()
    };
    Mirror::builder()
        .state(store)
        .connector(Arc::new(StaticConnector(Arc::new(
            HttpRegistry::new(source, plain_http()).unwrap(),
        ))))
        .destination(Arc::new(HttpRegistry::new(dest, plain_http()).unwrap()))
        .lease(Duration::from_secs(30))
        .worker_id("in-process")
        .settings(settings)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_finished_run_frees_its_slot_without_waiting_for_the_next_poll() {
    let source = Registry::start();
    let dest = Registry::start();
    source
        .seeder()
        .push_image("src/app", "v1", &Image::simple(1, 1, 500))
        .await;
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    for i in 0..3 {
        let config = mirror_config(&format!("ns/m{i}"), &source, "src/app");
        add(store.clone(), config.clone()).await;
    }
    let mirror = engine(
        store.clone(),
        &source.host(),
        &dest.host(),
        EngineSettings::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        mirror
            .worker(WorkerOptions {
                poll_interval: Duration::from_secs(3600),
                max_concurrent: 1,
                batch_size: 1,
                ..WorkerOptions::default()
            })
            .run(async move {
                let _ = stopped.await;
            }),
    );
    wait_for(
        "three runs one after another",
        Duration::from_secs(30),
        async || {
            let all = store.list_mirrors().await.unwrap();
            all.iter()
                .all(|r| r.state.status == SyncStatus::Success)
                .then_some(())
        },
    )
    .await;
    stop.send(()).unwrap();
    let report = worker.await.unwrap().unwrap();
    let ids: Vec<_> = report.runs.iter().map(|r| r.mirror_id.as_str()).collect();
    assert_eq!(
        ids,
        ["ns/m0", "ns/m1", "ns/m2"],
        "one at a time, oldest first"
    );
    assert!(
        report
            .runs
            .iter()
            .all(|r| r.outcome == Some(Outcome::Success))
    );
}

#[tokio::test]
async fn shutdown_releases_a_stuck_run_within_the_deadline() {
    let source = Registry::start();
    let dest = Registry::start();
    source
        .seeder()
        .push_image("src/app", "v1", &Image::simple(1, 1, 500))
        .await;
    let proxy = Proxy::start(&source);
    proxy.inject("GET", "/tags/list", Fault::Hang, 1);
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let config = mirror_config("ns/stuck", &source, "src/app");
    add(store.clone(), config.clone()).await;
    let mirror = engine(
        store.clone(),
        &proxy.host(),
        &dest.host(),
        EngineSettings::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        mirror
            .worker(WorkerOptions {
                poll_interval: Duration::from_millis(50),
                shutdown_deadline: Duration::from_secs(3),
                ..WorkerOptions::default()
            })
            .run(async move {
                let _ = stopped.await;
            }),
    );
    wait_for(
        "the run to hang on the tag list",
        Duration::from_secs(30),
        async || (proxy.count("GET", "/tags/list") > 0).then_some(()),
    )
    .await;
    stop.send(()).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the worker stops within its shutdown deadline")
        .unwrap()
        .unwrap();
    assert_eq!(report.runs.len(), 1);
    assert_ne!(report.runs[0].outcome, Some(Outcome::Success));
    let r = store.get_mirror("ns/stuck").await.unwrap();
    assert_eq!(
        r.state.lease_owner, None,
        "the claim was released, not left to expire"
    );
    assert_eq!(
        r.state.status,
        SyncStatus::SyncNow,
        "due again at once for the next worker"
    );
    assert_eq!(
        r.state.retries_remaining, 3,
        "an interrupted run costs no retry"
    );
}

#[tokio::test]
async fn with_mirroring_switched_off_a_worker_claims_nothing() {
    let source = Registry::start();
    let dest = Registry::start();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let config = mirror_config("ns/app", &source, "src/app");
    add(store.clone(), config.clone()).await;
    let settings = EngineSettings {
        mirroring_enabled: false,
        ..EngineSettings::default()
    };
    let mirror = engine(store.clone(), &source.host(), &dest.host(), settings);
    mirror.sync_now("ns/app").await.unwrap();
    let report = mirror
        .worker(WorkerOptions {
            poll_interval: Duration::from_millis(20),
            ..WorkerOptions::default()
        })
        .run(tokio::time::sleep(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(report.runs.is_empty());
    let r = store.get_mirror("ns/app").await.unwrap();
    assert_eq!(r.state.status, SyncStatus::SyncNow);
    assert_eq!(r.state.lease_token, 0, "never claimed");
}

#[tokio::test]
async fn invalid_worker_options_are_named() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let mirror = engine(
        store,
        "127.0.0.1:1",
        "127.0.0.1:1",
        EngineSettings::default(),
    );
    let e = mirror
        .worker(WorkerOptions {
            max_concurrent: 0,
            ..WorkerOptions::default()
        })
        .run(std::future::ready(()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    assert!(e.message().contains("max_concurrent"), "{e}");
}

/// Builds no source at all: it panics, as a bug in a run would.
#[derive(Debug)]
struct PanickingConnector;

impl SourceConnector for PanickingConnector {
    fn connect(&self, _config: &MirrorConfig) -> regmirror::Result<Arc<dyn SourceRegistry>> {
        panic!("a bug in the run");
    }
}

#[tokio::test]
async fn a_run_that_panics_is_released_as_failed_and_the_worker_goes_on() {
    let source = Registry::start();
    let dest = Registry::start();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let config = mirror_config("ns/app", &source, "src/app");
    add(store.clone(), config.clone()).await;
    let mirror = Mirror::builder()
        .state(store.clone())
        .connector(Arc::new(PanickingConnector))
        .destination(Arc::new(
            HttpRegistry::new(
                &dest.host(),
                HttpOptions {
                    tls_verify: false,
                    docker_config: false,
                    ..HttpOptions::default()
                },
            )
            .unwrap(),
        ))
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        mirror
            .worker(WorkerOptions {
                poll_interval: Duration::from_millis(20),
                ..WorkerOptions::default()
            })
            .run(async move {
                let _ = stopped.await;
            }),
    );
    let r = wait_for(
        "the panicked run to be released",
        Duration::from_secs(30),
        async || {
            let r = store.get_mirror("ns/app").await.unwrap();
            (r.state.status == SyncStatus::Fail).then_some(r)
        },
    )
    .await;
    assert_eq!(r.state.lease_owner, None);
    assert_eq!(r.state.retries_remaining, 2, "a panic costs a retry");
    assert!(r.state.last_error.unwrap().contains("panic"));
    stop.send(()).unwrap();
    let report = worker.await.unwrap().unwrap();
    assert_eq!(report.runs.len(), 1);
    assert_eq!(report.runs[0].outcome, None);
}

#[tokio::test]
async fn a_worker_applies_the_usage_log_retention() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let mut config = MirrorConfig::new("ns/app", "example.com/src/app".parse().unwrap(), &["v*"]);
    config.enabled = false;
    add(store.clone(), config.clone()).await;
    let entries: Vec<LogEntry> = (0..30)
        .map(|n| LogEntry {
            seq: 0,
            mirror_id: "ns/app".to_owned(),
            time: OffsetDateTime::now_utc(),
            kind: LogKind::TagSynced,
            tag: Some(format!("v{n}")),
            digest: None,
            message: format!("entry {n}"),
            failure: None,
        })
        .collect();
    // Through the store: thirty entries to prune, without thirty runs.
    store.append_log(&entries).await.unwrap();
    let mirror = engine(
        store.clone(),
        "127.0.0.1:1",
        "127.0.0.1:1",
        EngineSettings::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        mirror
            .worker(WorkerOptions {
                log_retention: LogRetention {
                    max_entries: Some(5),
                    max_age: None,
                },
                ..WorkerOptions::default()
            })
            .run(async move {
                let _ = stopped.await;
            }),
    );
    let kept = wait_for(
        "the log to be pruned",
        Duration::from_secs(10),
        async || {
            let log = store.logs("ns/app", 100, None).await.unwrap();
            (log.len() == 5).then_some(log)
        },
    )
    .await;
    assert_eq!(kept[0].message, "entry 29");
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

/// How many times the fencing cases repeat: `REGMIRROR_FENCING_ROUNDS` (default 2, to keep the
/// suite short; run with 20 or more to show the race is gone, not rarer).
fn fencing_rounds() -> usize {
    std::env::var("REGMIRROR_FENCING_ROUNDS")
        .ok()
        .map(|n| n.parse().expect("REGMIRROR_FENCING_ROUNDS is a number"))
        .unwrap_or(2)
}

/// The lease of the fencing cases' workers: renewed every second, fenced 0.75 s before its end.
const FENCING_LEASE_MS: &str = "3000";
const FENCING_TAGS: usize = 12;

/// How a fencing round cuts worker A off.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    /// A's PostgreSQL connections stall (a TCP proxy stops passing bytes), mid-publish.
    Partition,
    /// A is frozen with SIGSTOP mid-publish and resumed once B has taken over and finished.
    Freeze,
}

/// One round: worker A claims the mirror and publishes slowly (each tag PUT through its own
/// proxy takes 500 ms, less than the fence margin), so that its publishing outlasts its lease;
/// after two tags A is cut off, the source moves every tag to a new image, and worker B takes
/// the mirror over once A's lease has expired and completes it. The destination ends exactly
/// equal to the source, and A sent no write (PUT, DELETE, …) to the destination at or after
/// B's claim. (Without fencing A goes on publishing its stale plan over B's tags.)
async fn fencing_round(
    round: usize,
    cut: Cut,
    pg: &Postgres,
    source: &Registry,
    dest: &Registry,
) -> usize {
    let url = pg.create_database();
    let store = PostgresStateStore::connect(&url).await.unwrap();
    let db_proxy = TcpProxy::start(([127, 0, 0, 1], pg.port()).into());
    let a_url = url.replace(
        &format!("port={}", pg.port()),
        &format!("port={}", db_proxy.addr().port()),
    );
    let repo = format!("src/r{round}");
    let id = format!("mirror/r{round}");
    let seeder = source.seeder();
    let tags: Vec<String> = (0..FENCING_TAGS).map(|i| format!("v{i}")).collect();
    for (i, tag) in tags.iter().enumerate() {
        let image = Image::simple((round * 100 + i) as u64, 1, 500);
        seeder.push_image(&repo, tag, &image).await;
    }
    let mut config = mirror_config(&id, source, &repo);
    // Both modes: neither may let A write after the takeover, neither its tags nor a rollback.
    if round % 2 == 1 {
        config.rollback = RollbackMode::AllOrNothing;
    }
    // A run fenced because the machine is too busy to renew in time is retried at once.
    config.retry_backoff = Duration::ZERO;
    add(Arc::new(store.clone()), config.clone()).await;

    let a_dest = Proxy::start(dest);
    a_dest.inject(
        "PUT",
        "/manifests/v",
        Fault::Delay(Duration::from_millis(500)),
        100,
    );
    let b_dest = Proxy::start(dest);
    let args = [
        "--lease-ms",
        FENCING_LEASE_MS,
        "--poll-ms",
        "100",
        "--store-timeout-ms",
        "1000",
        "--shutdown-ms",
        "3000",
    ];
    let a_store = match cut {
        Cut::Partition => format!("postgres:{a_url}"),
        Cut::Freeze => format!("postgres:{url}"),
    };
    let a = WorkerProcess::start("worker-a", &a_store, &source.host(), &a_dest.host(), &args);
    wait_for(
        "A to publish two tags",
        Duration::from_secs(60),
        async || (a_dest.count("PUT", "/manifests/v") >= 2).then_some(()),
    )
    .await;
    match cut {
        Cut::Partition => db_proxy.stall(),
        Cut::Freeze => a.signal("STOP"),
    }
    let mut new = BTreeMap::new();
    for (i, tag) in tags.iter().enumerate() {
        let image = Image::simple((round * 100 + 50 + i) as u64, 1, 500);
        new.insert(tag.clone(), seeder.push_image(&repo, tag, &image).await);
    }

    let b = WorkerProcess::start(
        "worker-b",
        &format!("postgres:{url}"),
        &source.host(),
        &b_dest.host(),
        &args,
    );
    let done = wait_for(
        "B to complete the mirror",
        Duration::from_secs(60),
        async || {
            let r = store.get_mirror(&id).await.unwrap();
            (r.state.lease_token >= 2
                && r.state.lease_owner.is_none()
                && r.state.status == SyncStatus::Success)
                .then_some(r)
        },
    )
    .await;
    let takeover = done.state.last_started.expect("B's claim");
    if cut == Cut::Freeze {
        a.signal("CONT");
    }
    // Time for whatever A would still do: resume its publishing, roll back, release.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    assert_eq!(
        dest_tags(dest, &id).await,
        new,
        "round {round} ({cut:?}): the destination equals the source"
    );
    let stale: Vec<_> = a_dest
        .requests()
        .into_iter()
        .filter(|r| matches!(r.method.as_str(), "PUT" | "DELETE" | "PATCH" | "POST"))
        .filter(|r| OffsetDateTime::from(r.at) >= takeover)
        .collect();
    assert!(
        stale.is_empty(),
        "round {round} ({cut:?}): A wrote after B took over at {takeover}: {stale:?}"
    );
    let a_writes = a_dest.count("PUT", "/manifests/v");

    // A stops on SIGTERM within its shutdown deadline, even cut off from its store.
    let stopping = Instant::now();
    let runs = a.terminate();
    assert!(
        stopping.elapsed() < Duration::from_secs(3 + 3),
        "round {round} ({cut:?}): A took {:?} to stop",
        stopping.elapsed()
    );
    assert!(runs.len() <= 1, "{runs:?}");
    drop(b);
    a_writes
}

async fn fencing_rounds_hold(cut: Cut) {
    let pg = Postgres::shared();
    let source = Registry::start();
    let dest = Registry::start();
    let rounds = fencing_rounds();
    let mut a_writes = Vec::new();
    for round in 0..rounds {
        a_writes.push(fencing_round(round, cut, &pg, &source, &dest).await);
    }
    // Printed for the record (cargo test -- --nocapture).
    println!(
        "{cut:?}: {rounds} rounds, stale writes 0, A's tag writes before the takeover per round: {a_writes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_partitioned_from_postgresql_mid_publish_writes_nothing_after_the_takeover() {
    fencing_rounds_hold(Cut::Partition).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_frozen_past_its_lease_writes_nothing_when_resumed() {
    fencing_rounds_hold(Cut::Freeze).await;
}

/// A worker whose PostgreSQL stops answering (the connections stall): its polls fail within
/// the store's timeouts, it reports the store unhealthy (and healthy again once it answers),
/// and a shutdown still ends within the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_hangs_is_reported_and_never_holds_up_shutdown() {
    let pg = Postgres::shared();
    let url = pg.create_database();
    let proxy = TcpProxy::start(([127, 0, 0, 1], pg.port()).into());
    let via_proxy = url.replace(
        &format!("port={}", pg.port()),
        &format!("port={}", proxy.addr().port()),
    );
    let timeouts = StoreTimeouts {
        query: Duration::from_millis(500),
        checkout: Duration::from_millis(500),
    };
    let store = PostgresStateStore::connect_with(&via_proxy, timeouts)
        .await
        .unwrap();
    let mirror = engine(
        Arc::new(store),
        "127.0.0.1:1",
        "127.0.0.1:1",
        EngineSettings::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        mirror
            .worker(WorkerOptions {
                poll_interval: Duration::from_millis(100),
                shutdown_deadline: Duration::from_secs(2),
                ..WorkerOptions::default()
            })
            .run(async move {
                let _ = stopped.await;
            }),
    );
    let health = mirror.store_health();
    proxy.stall();
    wait_for(
        "the store to be reported unhealthy",
        Duration::from_secs(10),
        async || (!health.is_healthy()).then_some(()),
    )
    .await;
    assert!(
        health.last_error().unwrap().contains("Timeout"),
        "{:?}",
        health.last_error()
    );
    proxy.resume();
    wait_for(
        "the store to be healthy again",
        Duration::from_secs(10),
        async || health.is_healthy().then_some(()),
    )
    .await;
    proxy.stall();
    wait_for(
        "the store to be unhealthy again",
        Duration::from_secs(10),
        async || (!health.is_healthy()).then_some(()),
    )
    .await;
    let stopping = Instant::now();
    stop.send(()).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(3), worker)
        .await
        .expect("the worker stops within its shutdown deadline")
        .unwrap()
        .unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(3));
    assert!(report.failed_polls >= 2, "{report:?}");
}

/// Three worker processes on one PostgreSQL, 30 mirrors due together every 4 s: over several
/// slots each worker does at least a fifth of the runs. (A worker whose runs end first polls again
/// at once; without shares it took nearly everything while the others slept until their poll.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_mirrors_are_spread_fairly_across_three_worker_processes() {
    let pg = Postgres::shared();
    let url = pg.create_database();
    let store = PostgresStateStore::connect(&url).await.unwrap();
    let source = Registry::start();
    let dest = Registry::start();
    source
        .seeder()
        .push_image("src/app", "v1", &Image::simple(1, 1, 500))
        .await;
    // Due in a few seconds, once every worker has come up and been counted.
    let start = OffsetDateTime::now_utc() + Duration::from_secs(3);
    for i in 0..30 {
        let mut config = mirror_config(&format!("fleet/m{i:02}"), &source, "src/app");
        config.sync_start_date = Some(start);
        config.sync_interval = Duration::from_secs(4);
        add(Arc::new(store.clone()), config.clone()).await;
    }
    let args = ["--poll-ms", "1500", "--lease-ms", "10000"];
    let workers: Vec<_> = ["w1", "w2", "w3"]
        .iter()
        .map(|name| {
            WorkerProcess::start(
                name,
                &format!("postgres:{url}"),
                &source.host(),
                &dest.host(),
                &args,
            )
        })
        .collect();
    wait_for(
        "every mirror to run in four slots",
        Duration::from_secs(120),
        async || {
            let all = store.list_mirrors().await.unwrap();
            all.iter().all(|r| r.state.lease_token >= 4).then_some(())
        },
    )
    .await;
    let mut per_worker = BTreeMap::new();
    for w in workers {
        let name = w.name.clone();
        let runs = w.terminate();
        assert!(
            runs.iter().all(|(_, o)| o.as_deref() != Some("Failed")),
            "{runs:?}"
        );
        per_worker.insert(name, runs.len());
    }
    let total: usize = per_worker.values().sum();
    assert!(total >= 120, "{per_worker:?}");
    for (name, runs) in &per_worker {
        assert!(
            runs * 5 >= total,
            "{name} did {runs} of {total} runs, less than a fifth: {per_worker:?}"
        );
    }
    println!("runs per worker: {per_worker:?}");
}
