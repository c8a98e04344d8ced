//! regmirror keeps a repository in your registry in sync with a repository in an external
//! registry: Quay's "repository mirroring", as an embeddable engine.
//!
//! ```
//! use regmirror::TagFilter;
//!
//! let filter = TagFilter::parse("v3.*, !*beta*").unwrap();
//! assert_eq!(filter.select(["v32", "v3.1", "v3.2-4beta", "v3.3"]), ["v3.1", "v3.3"]);
//! ```

pub mod config;
pub mod engine;
pub mod error;
pub mod notify;
pub mod pattern;
pub mod reference;
pub mod registry;
pub mod settings;
pub mod state;
pub mod status;

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
