//! The services the bindings' tests (C, Python, Node) run against, started by the kit as the
//! Rust tests start them: a seeded source registry, the same source behind a proxy whose blob
//! downloads each take 3 s (a slow mirror, to cancel), an empty destination registry, and with
//! `--postgres` a PostgreSQL cluster with a fresh database. All plain HTTP on 127.0.0.1.
//!
//! Prints `NAME=VALUE` lines, then `READY`, and runs until its stdin closes (the test's end):
//!
//! ```text
//! REGMIRROR_TEST_SOURCE=127.0.0.1:PORT       library/app (v1.0 v1.1 v2.0-rc1 latest), library/tools (v1),
//!                                            library/slow (v1 v2 v3 v4)
//! REGMIRROR_TEST_SLOW_SOURCE=127.0.0.1:PORT  the same repositories; each blob GET takes 3 s
//! REGMIRROR_TEST_DEST=127.0.0.1:PORT         empty
//! REGMIRROR_TEST_POSTGRES=postgres://postgres@127.0.0.1:PORT/DB   (with --postgres)
//! READY
//! ```

use std::io::Read as _;
use std::time::Duration;

use regmirror_tests::{Fault, Image, Postgres, Proxy, Registry};

/// The seeded repositories and their tags.
const REPOSITORIES: [(&str, &[&str]); 3] = [
    ("library/app", &["v1.0", "v1.1", "v2.0-rc1", "latest"]),
    ("library/tools", &["v1"]),
    // Content of its own (nothing to mount from another repository), one tag per slow run.
    ("library/slow", &["v1", "v2", "v3", "v4"]),
];

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let postgres = std::env::args().skip(1).any(|a| a == "--postgres");
    let source = Registry::start();
    let dest = Registry::start();
    let seeder = source.seeder();
    let mut seed = 0;
    for (repository, tags) in REPOSITORIES {
        for tag in tags {
            seed += 1;
            seeder
                .push_image(repository, tag, &Image::simple(seed, 2, 4096))
                .await;
        }
    }
    let slow = Proxy::start(&source);
    // Slow rather than silent: a cancelled run stops after the downloads in flight.
    slow.inject(
        "GET",
        "/blobs/",
        Fault::Delay(Duration::from_secs(3)),
        usize::MAX,
    );
    println!("REGMIRROR_TEST_SOURCE={}", source.host());
    println!("REGMIRROR_TEST_SLOW_SOURCE={}", slow.host());
    println!("REGMIRROR_TEST_DEST={}", dest.host());
    let cluster = postgres.then(Postgres::start);
    if let Some(cluster) = &cluster {
        let db = cluster.create_database();
        let name = db.rsplit_once("dbname=").map_or("postgres", |(_, n)| n);
        println!(
            "REGMIRROR_TEST_POSTGRES=postgres://postgres@127.0.0.1:{}/{name}",
            cluster.port()
        );
    }
    println!("READY");
    // Until the test closes our stdin (or exits); the handles then stop every service.
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new()))
        .await
        .ok();
}
