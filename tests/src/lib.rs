//! The regmirror test kit: real CNCF distribution registries on loopback ([`Registry`]), test
//! images and a seeder that pushes them without the client under test ([`image`], [`Seeder`]),
//! a counting, fault-injecting reverse proxy ([`Proxy`]), throwaway PostgreSQL clusters
//! ([`Postgres`]), and a webhook receiver ([`WebhookReceiver`]).
//!
//! Every server binds 127.0.0.1 only and stops when its handle is dropped.

pub mod image;
pub mod postgres;
pub mod proxy;
pub mod registry;
pub mod seed;
pub mod server;
pub mod tls;
pub mod token;
pub mod webhook;

pub use image::{Blob, Flavor, Image, Index};
pub use postgres::Postgres;
pub use proxy::{Fault, Proxy};
pub use registry::{
    PASSWORD, READER_PASSWORD, READER_USERNAME, Registry, RegistryBuilder, USERNAME,
};
pub use seed::Seeder;
pub use webhook::WebhookReceiver;
