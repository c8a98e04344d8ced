//! `seed`: push generated images into a registry, for demos and manual checks without internet.
//!
//! ```text
//! cargo run -p regmirror-tests --bin seed -- --registry http://127.0.0.1:5000 \
//!     --repo library/app --tags v1.0,v1.1,v2.0-rc1,latest --arch amd64,arm64
//! ```
//!
//! Every tag gets its own image: a multi-platform index when `--arch` names several
//! architectures, a single-platform image otherwise. All images share one base layer (as images
//! built `FROM` one base do) and each platform has a layer of its own. The same `--seed` always
//! gives the same digests. Credentials for a registry that needs them come from
//! `$SEED_USERNAME` / `$SEED_PASSWORD`.

use std::process::ExitCode;

use clap::Parser;
use regmirror_tests::image::{Blob, Flavor, Image, Index};
use regmirror_tests::seed::{SeedAuth, Seeder};

#[derive(Parser, Debug)]
#[command(about = "Push generated (multi-arch) images into a registry")]
struct Args {
    /// The registry's base URL, e.g. http://127.0.0.1:5000.
    #[arg(long)]
    registry: String,
    /// The repository to push to, e.g. library/app.
    #[arg(long)]
    repo: String,
    /// Tags to create (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    tags: Vec<String>,
    /// Architectures (comma-separated); two or more make multi-arch indexes.
    #[arg(long, value_delimiter = ',', default_value = "amd64,arm64")]
    arch: Vec<String>,
    /// Size in bytes of each generated layer.
    #[arg(long, default_value_t = 256 * 1024)]
    layer_size: usize,
    /// Docker media types instead of OCI ones.
    #[arg(long)]
    docker: bool,
    /// Changes every digest; the same seed gives the same images.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !args.registry.starts_with("http://") && !args.registry.starts_with("https://") {
        eprintln!("seed: --registry needs a scheme, e.g. http://127.0.0.1:5000");
        return ExitCode::from(2);
    }
    let auth = match (
        std::env::var("SEED_USERNAME"),
        std::env::var("SEED_PASSWORD"),
    ) {
        (Ok(user), Ok(password)) => SeedAuth::Basic(user, password),
        _ => SeedAuth::None,
    };
    let seeder = Seeder::new(&args.registry, None, auth);
    let flavor = if args.docker {
        Flavor::Docker
    } else {
        Flavor::Oci
    };
    let base = Blob::random(args.seed.wrapping_mul(1_000_003), args.layer_size);
    for (t, tag) in args.tags.iter().enumerate() {
        let images: Vec<Image> = args
            .arch
            .iter()
            .enumerate()
            .map(|(a, arch)| {
                let unique = args
                    .seed
                    .wrapping_mul(1_000_003)
                    .wrapping_add((t * 100 + a + 1) as u64);
                let own = Blob::random(unique, args.layer_size);
                Image::for_platform(flavor, unique, "linux", arch, vec![base.clone(), own])
            })
            .collect();
        let (digest, kind) = match <[Image; 1]>::try_from(images) {
            Ok([image]) => (
                seeder.push_image(&args.repo, tag, &image).await,
                format!("image for {}", image.architecture),
            ),
            Err(images) => {
                let index = Index::new(flavor, images);
                (
                    seeder.push_index(&args.repo, tag, &index).await,
                    format!("index for {}", args.arch.join(", ")),
                )
            }
        };
        println!("{}/{}:{tag} {digest} ({kind})", args.registry, args.repo);
    }
    ExitCode::SUCCESS
}
