//! The regmirror test kit: real CNCF distribution registries on loopback ([`Registry`]), test
//! images and a seeder that pushes them without the client under test ([`image`], [`Seeder`]),
//! a counting, fault-injecting reverse proxy ([`Proxy`]), a registry that misbehaves on purpose
//! ([`HostileRegistry`]), a TCP proxy that stalls like a network partition ([`TcpProxy`]),
//! throwaway PostgreSQL clusters ([`Postgres`]), and a webhook receiver ([`WebhookReceiver`]).
//!
//! Every server binds 127.0.0.1 only and stops when its handle is dropped.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use regmirror::SourceRegistry;
//! use regmirror_tests::image::images_sharing_layers;
//! use regmirror_tests::{Blob, Flavor, Image, Index, Proxy, Registry};
//!
//! // A TLS registry with bearer-token auth; the seeder gets its own tokens.
//! let registry = Registry::builder().tls().token_auth(false).start();
//! let seeder = registry.seeder();
//!
//! // 20 tags sharing 2 layers (each image has its own config).
//! let layers = [Blob::random(1, 1 << 20), Blob::random(2, 1 << 20)];
//! for (i, image) in images_sharing_layers(20, &layers).iter().enumerate() {
//!     seeder.push_image("src/app", &format!("v{i}"), image).await;
//! }
//! // A 2-platform index (children pushed by digest first).
//! let index = Index::two_platforms(Flavor::Oci, 7, 4096);
//! seeder.push_index("src/app", "multi", &index).await;
//! // An image whose layer the registry then serves corrupted.
//! let image = Image::simple(3, 2, 1000);
//! seeder.push_image("src/app", "broken", &image).await;
//! registry.corrupt_blob(&image.layers[0].digest);
//!
//! // regmirror's HTTP client, through a counting proxy.
//! let proxy = Proxy::start(&registry);
//! let client = proxy.client();
//! assert_eq!(client.list_tags("src/app").await.unwrap().len(), 22);
//! assert_eq!(proxy.count("GET", "/blobs/"), 0);
//! # }
//! ```

pub mod hostile;
pub mod image;
pub mod postgres;
pub mod proxy;
pub mod registry;
pub mod seed;
pub mod server;
pub mod tcp_proxy;
pub mod tls;
pub mod token;
pub mod webhook;

pub use hostile::{HostileRegistry, Mode};
pub use image::{Artifact, Blob, Flavor, Image, Index, referrers_index, referrers_tag};
pub use postgres::Postgres;
pub use proxy::{Fault, Proxy};
pub use registry::{
    PASSWORD, READER_PASSWORD, READER_USERNAME, Registry, RegistryBuilder, USERNAME,
};
pub use seed::Seeder;
pub use tcp_proxy::TcpProxy;
pub use webhook::WebhookReceiver;

/// One `#[tokio::test]` per backend and case, for suites that run the same cases against every
/// backend. `backend_suite!([http, memory], [round_trip])` makes `mod http` holding a test
/// `round_trip` that runs `super::round_trip(&super::Backend::http()).await`, and the same for
/// `memory`; the calling file defines the cases and `Backend` with one constructor per module.
#[macro_export]
macro_rules! backend_suite {
    ([$($backend:ident),* $(,)?], $cases:tt) => {
        $($crate::backend_suite!(@backend $backend $cases);)*
    };
    (@backend $backend:ident [$($case:ident),* $(,)?]) => {
        mod $backend {
            $(#[tokio::test]
            async fn $case() {
                super::$case(&super::Backend::$backend()).await;
            })*
        }
    };
}
