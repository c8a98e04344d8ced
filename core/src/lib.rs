//! regmirror keeps a repository in your registry in sync with a repository in an external
//! registry: Quay's "repository mirroring", as an embeddable engine. The behaviour is specified in
//! [`docs/SEMANTICS.md`](https://github.com/regmirror/regmirror/blob/main/docs/SEMANTICS.md), the
//! architecture in [`docs/DESIGN.md`](https://github.com/regmirror/regmirror/blob/main/docs/DESIGN.md).
//!
//! Tags are chosen by Quay's glob patterns (plus opt-in regex, semver and exclusions):
//!
//! ```
//! use regmirror::TagFilter;
//!
//! let filter = TagFilter::parse("v3.*, !*beta*").unwrap();
//! assert_eq!(filter.select(["v32", "v3.1", "v3.2-4beta", "v3.3"]), ["v3.1", "v3.3"]);
//! ```
//!
//! A [`Mirror`] keeps mirrors in a [`StateStore`] and syncs them into a destination registry.
//! Here both registries live in memory; real deployments use
//! [`registry::http::HttpRegistry`] (sources connect over HTTP by default) and a SQLite or
//! PostgreSQL store.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use regmirror::engine::StaticConnector;
//! use regmirror::registry::MemoryRegistry;
//! use regmirror::{MemoryStateStore, Mirror, MirrorConfig};
//!
//! let upstream = MemoryRegistry::new();
//! upstream.seed_image("coreos/etcd", Some("v3.5.0"), "amd64", &[b"layer"]);
//! upstream.seed_image("coreos/etcd", Some("v3.5.0-rc1"), "amd64", &[b"rc layer"]);
//! let ours = MemoryRegistry::new();
//!
//! let mirror = Mirror::builder()
//!     .state(Arc::new(MemoryStateStore::new()))
//!     .destination(Arc::new(ours.clone()))
//!     .connector(Arc::new(StaticConnector(Arc::new(upstream))))
//!     .build()
//!     .unwrap();
//! let source = "quay.io/coreos/etcd".parse().unwrap();
//! mirror
//!     .create_mirror(MirrorConfig::new("mirrors/etcd", source, &["v3.*", "!*-rc*"]).validated().unwrap())
//!     .await
//!     .unwrap();
//!
//! let report = mirror.sync("mirrors/etcd").await.unwrap();
//! assert!(report.is_success());
//! assert_eq!(report.tags_synced, ["v3.5.0"]);
//! assert!(ours.tag_map("mirrors/etcd").contains_key("v3.5.0"));
//! let log = mirror.logs("mirrors/etcd", 10, None).await.unwrap();
//! assert_eq!(log.len(), 3); // started, v3.5.0 synced, succeeded
//! # });
//! ```
//!
//! ## One-shot syncs
//!
//! Without a state store a [`Mirror`] still syncs a [`MirrorConfig`] once
//! ([`Mirror::sync_config`]: no schedule, no usage log), and [`oneshot::OneShotSync`] does the
//! same between two locations named as the CLI names them (`host/repo` or `oci:DIR`). Here an
//! in-memory registry is copied into an OCI image layout, and that layout into another:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use regmirror::engine::StaticConnector;
//! use regmirror::oneshot::{Location, OneShotSync};
//! use regmirror::registry::{LayoutRegistry, MemoryRegistry};
//! use regmirror::{Mirror, MirrorConfig, SyncOptions};
//!
//! let upstream = MemoryRegistry::new();
//! upstream.seed_image("library/app", Some("v1"), "amd64", &[b"layer"]);
//! let dir = tempfile::tempdir().unwrap();
//! let (first, second) = (dir.path().join("first"), dir.path().join("second"));
//!
//! let mirror = Mirror::builder()
//!     .connector(Arc::new(StaticConnector(Arc::new(upstream))))
//!     .destination(Arc::new(LayoutRegistry::single(&first)))
//!     .build()
//!     .unwrap();
//! let config = MirrorConfig::new("app", "example.com/library/app".parse().unwrap(), &["v*"]);
//! let report = mirror.sync_config(&config, SyncOptions::default()).await.unwrap();
//! assert_eq!(report.tags_synced, ["v1"]);
//!
//! let copy = OneShotSync::new(Location::Layout(first), Location::Layout(second), ["*"]);
//! let report = copy.run(SyncOptions::default()).await.unwrap();
//! assert!(report.is_success(), "{:?}", report.error);
//! assert_eq!(report.tags_synced, ["v1"]);
//! # });
//! ```
//!
//! ## Plugging in your own parts
//!
//! The engine talks to [`SourceRegistry`], [`DestRegistry`], [`StateStore`] and [`Notifier`]
//! trait objects; implement one to plug in your own. Their methods are async through
//! [`async_trait`](macro@async_trait), re-exported here so an implementation needs no extra dependency (as are
//! [`CancellationToken`] for [`SyncOptions::cancel`] and the [`bytes`] and [`time`] crates,
//! whose types appear in the traits):
//!
//! ```
//! use std::sync::Mutex;
//! use regmirror::{MirrorEvent, Notifier, Result, async_trait};
//!
//! #[derive(Debug, Default)]
//! struct Remember(Mutex<Vec<MirrorEvent>>);
//!
//! #[async_trait]
//! impl Notifier for Remember {
//!     async fn notify(&self, event: &MirrorEvent) -> Result<()> {
//!         self.0.lock().expect("not poisoned").push(event.clone());
//!         Ok(())
//!     }
//! }
//! ```
//!
//! Progress arrives as typed [`engine::ProgressEvent`]s through [`engine::Progress`] (a
//! callback or a channel) in [`SyncOptions::progress`]; a daemon runs
//! [`Mirror::worker`](engine::Mirror::worker) (see [`worker`]). `examples/embed.rs` puts these
//! together.
//!
//! ## Feature flags
//!
//! - `sqlite` (default): [`state::SqliteStateStore`], the embedded store (one file; SQLite is
//!   compiled in, no system library needed).
//! - `webhook` (default): [`notify::WebhookNotifier`], HMAC-signed HTTP POSTs of each event.
//! - `postgres`: `state::PostgresStateStore`, for many workers on many hosts sharing one
//!   PostgreSQL database.
//!
//! The HTTP registry client, OCI layouts, the memory registry and state store, and the log
//! notifier are always built.

// The docs link the default features' types (the SQLite store, the webhook notifier); a build
// without them would otherwise fail `cargo doc` under `-D warnings` on those links alone.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "webhook")),
    allow(rustdoc::broken_intra_doc_links)
)]

pub mod config;
mod destination;
pub mod engine;
pub mod error;
pub mod failure;
pub mod handoff;
pub mod notify;
pub mod oneshot;
pub mod pattern;
mod redact;
pub mod reference;
pub mod registry;
pub mod settings;
pub mod state;
pub mod status;
pub mod view;
pub mod worker;

pub use config::{
    Credentials, MirrorConfig, PlatformIndexMode, ProxyConfig, ReferrersPolicy, RollbackMode,
    ValidConfig,
};
pub use destination::{Destination, DestinationTarget};
pub use engine::{Mirror, SyncOptions, SyncReport};
pub use error::{Detail, Phase, Side};
pub use error::{Error, ErrorKind, Result};
pub use failure::{Failure, TagFailure};
pub use notify::{EventKind, MirrorEvent, Notifier};
pub use pattern::TagFilter;
pub use reference::{Digest, RepositoryRef};
pub use registry::{DestRegistry, Manifest, SourceRegistry};
pub use settings::{EngineSettings, may_push};
pub use state::SyncStatus;
pub use state::{MemoryStateStore, StateStore, StoreUrl};
pub use view::MirrorView;

// What implementing the traits and cancelling a sync need, so embedders do not have to pin
// matching versions of these crates themselves.
pub use async_trait::async_trait;
pub use bytes;
pub use time;
pub use tokio_util::sync::CancellationToken;

// The README's Rust examples run as doctests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
