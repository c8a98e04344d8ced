//! The front door (`Mirror` for stored mirrors) end to end, on SQLite and PostgreSQL with real
//! registries: a store named by a `StoreUrl`, a mirror added from `MirrorSettings` by a handle
//! without a destination (which refuses to sync), then previewed and synced by stored id through
//! a handle whose destination is a named `Destination` with a robot, and shown as the CLI shows
//! it (`MirrorView`, with the last run's report).

use std::time::Duration;

use regmirror::config::MirrorSettings;
use regmirror::engine::{PreviewAction, SyncOptions};
use regmirror::state::StoreTimeouts;
use regmirror::worker::WorkerOptions;
use regmirror::{Credentials, Destination, ErrorKind, Mirror, RollbackMode, StoreUrl, SyncStatus};
use regmirror_tests::{Image, Postgres, Registry, USERNAME};

async fn the_front_door_manages_previews_and_syncs(store: &str) {
    let source = Registry::start();
    let dest = Registry::builder().basic_auth().start();
    let seeder = source.seeder();
    for (i, tag) in ["v1", "v2", "v3-rc1"].into_iter().enumerate() {
        seeder
            .push_image("src/app", tag, &Image::simple(40 + i as u64, 2, 700))
            .await;
    }

    let url: StoreUrl = store.parse().unwrap();
    let timeouts = StoreTimeouts::default();
    // Management alone: no destination, as the CLI's `mirror` commands or an HTTP API hold it.
    let manage = Mirror::builder()
        .state(url.open(timeouts).await.unwrap())
        .build()
        .unwrap();
    let settings: MirrorSettings = serde_json::from_value(serde_json::json!({
        "id": "mirror/app",
        "source": format!("{}/src/app", source.host()),
        "tags": "v*, !*-rc*",
        "tls_verify": false,
        "interval": "1h",
        "rollback": "all_or_nothing",
    }))
    .unwrap();
    let record = manage.add(settings.clone()).await.unwrap();
    assert_eq!(record.config.rollback, RollbackMode::AllOrNothing);
    assert_eq!(record.config.sync_interval, Duration::from_secs(3600));
    let e = manage.add(settings).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    for e in [
        manage.sync("mirror/app").await.unwrap_err(),
        manage.preview("mirror/app").await.map(drop).unwrap_err(),
        manage
            .worker(WorkerOptions::default())
            .run(async {})
            .await
            .map(drop)
            .unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().contains("no destination"), "{e}");
    }
    // Refused before claiming: the mirror never ran.
    let view = manage.view("mirror/app").await.unwrap();
    assert_eq!(view.state.status, SyncStatus::NeverRun);
    assert_eq!(view.last_report, None);

    // The syncing engine: the destination by name, its robot the one identity that may push.
    let mut destination = Destination::parse(&dest.host()).unwrap();
    destination.tls_verify = false;
    destination.credentials = Some(Credentials::new(USERNAME, dest.password()));
    let engine = Mirror::builder()
        .state(url.open(timeouts).await.unwrap())
        .destination_spec(destination)
        .build()
        .unwrap();
    assert_eq!(engine.settings().robot.as_deref(), Some(USERNAME));
    assert!(engine.may_push("mirror/app", USERNAME).await);
    assert!(!engine.may_push("mirror/app", "alice").await);

    let preview = engine.preview("mirror/app").await.unwrap();
    let planned: Vec<_> = preview
        .tags
        .iter()
        .map(|t| (t.tag.as_str(), t.action))
        .collect();
    assert_eq!(
        planned,
        [("v1", PreviewAction::Copy), ("v2", PreviewAction::Copy)]
    );
    assert!(preview.bytes_to_copy > 0);
    assert!(
        dest.seeder().tags("mirror/app").await.is_empty(),
        "a preview writes nothing"
    );

    let report = engine
        .sync_with("mirror/app", SyncOptions::default())
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.error);
    assert_eq!(report.tags_synced, ["v1", "v2"]);
    assert_eq!(dest.seeder().tags("mirror/app").await, ["v1", "v2"]);

    // What `mirror show/list --json` print, read by the management handle.
    let view = manage.view("mirror/app").await.unwrap();
    assert_eq!(view.state.status, SyncStatus::Success);
    let last = view.last_report.as_deref().unwrap_or_default();
    assert!(last.starts_with("succeeded: 2 synced"), "{last}");
    let views = manage.views().await.unwrap();
    assert_eq!(views, [view]);
    let json = serde_json::to_value(&views[0]).unwrap();
    assert_eq!(json["status"], "SUCCESS");
    assert_eq!(json["rollback"], "all_or_nothing");

    // The rest of the management verbs, by id.
    assert!(
        !manage
            .set_enabled("mirror/app", false)
            .await
            .unwrap()
            .config
            .enabled
    );
    let pending = manage.sync_now("mirror/app").await.unwrap();
    assert_eq!(pending.state.status, SyncStatus::SyncNow);
    let cancelled = manage.cancel("mirror/app").await.unwrap();
    assert_eq!(cancelled.state.status, SyncStatus::Cancel);
    let log = manage.logs("mirror/app", 10, None).await.unwrap();
    assert_eq!(log.len(), 4, "started, two tags, succeeded: {log:?}");
    manage.delete("mirror/app").await.unwrap();
    let e = engine.preview("mirror/app").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(manage.views().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_door_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    the_front_door_manages_previews_and_syncs(&format!("sqlite:{}", path.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_door_on_postgresql() {
    let pg = Postgres::shared();
    let url = pg.password_user_url("front:door");
    let shown = url.parse::<StoreUrl>().unwrap().to_string();
    assert!(!shown.contains("front:door"), "{shown}");
    the_front_door_manages_previews_and_syncs(&url).await;
}
