//! regmirror keeps a repository in your registry in sync with a repository in an external
//! registry: Quay's "repository mirroring", as an embeddable engine.
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
//!     .create_mirror(MirrorConfig::new("mirrors/etcd", source, &["v3.*", "!*-rc*"]))
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

pub mod config;
pub mod engine;
pub mod error;
pub mod notify;
pub mod oneshot;
pub mod pattern;
pub mod reference;
pub mod registry;
pub mod settings;
pub mod state;
pub mod status;
pub mod worker;

pub use config::{Credentials, MirrorConfig, PlatformIndexMode, ProxyConfig, RollbackMode};
pub use engine::{Mirror, SyncOptions, SyncReport};
pub use error::{Error, ErrorKind, Result};
pub use notify::{EventKind, MirrorEvent, Notifier};
pub use pattern::TagFilter;
pub use reference::{Digest, RepositoryRef};
pub use registry::{DestRegistry, Manifest, SourceRegistry};
pub use settings::{EngineSettings, may_push};
pub use state::{MemoryStateStore, StateStore};
pub use status::SyncStatus;

// The README's Rust examples run as doctests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
