//! The `regmirror` binary against real registries (CNCF distribution on loopback, from the kit):
//! syncs with patterns, dry runs, JSON reports, exit statuses, `oci:` layouts, mirror
//! management, and credentials that never show up in any output.

use std::collections::BTreeMap;
use std::process::Command;

use regmirror::Digest;
use regmirror_tests::image::{Flavor, Index};
use regmirror_tests::registry::{PASSWORD, Registry, USERNAME};
use serde_json::Value;

mod common;
use common::command;

/// What one run of the binary did.
#[derive(Debug)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

fn output(mut c: Command) -> Output {
    let out = c.output().expect("running the regmirror binary");
    Output {
        code: out.status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt as _;
            panic!(
                "regmirror exits, it is not killed: {:?} {}{}",
                out.status.signal(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        }),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn regmirror(args: &[&str]) -> Output {
    output(command(args))
}

/// Push a two-platform index under each tag (each its own content); returns tag → digest.
async fn seed(registry: &Registry, repo: &str, tags: &[&str]) -> BTreeMap<String, Digest> {
    let seeder = registry.seeder();
    let mut digests = BTreeMap::new();
    for tag in tags {
        // Content follows the tag name, so equal names (and only those) share images.
        let seed = tag
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let index = Index::two_platforms(Flavor::Oci, seed, 4096);
        digests.insert(
            (*tag).to_owned(),
            seeder.push_index(repo, tag, &index).await,
        );
    }
    digests
}

/// The destination's tag → digest, read with the kit's own client.
async fn tags_of(registry: &Registry, repo: &str) -> BTreeMap<String, Digest> {
    registry.seeder().tag_digests(repo).await
}

fn subset(all: &BTreeMap<String, Digest>, tags: &[&str]) -> BTreeMap<String, Digest> {
    tags.iter()
        .map(|t| ((*t).to_owned(), all[*t].clone()))
        .collect()
}

const PLAIN: [&str; 2] = ["--src-tls-verify=false", "--dest-tls-verify=false"];

fn sync_args<'a>(src: &'a str, dest: &'a str, tags: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["sync", src, "--to", dest, "--tags", tags];
    args.extend_from_slice(extra);
    args
}

#[tokio::test]
async fn sync_between_two_registries_selects_by_pattern_and_prunes() {
    let (source, dest) = (Registry::start(), Registry::start());
    let seeded = seed(
        &source,
        "lib/app",
        &["v1.0", "v1.1", "v2.0-rc1", "v2.0", "latest"],
    )
    .await;
    let src = format!("{}/lib/app", source.host());
    let dst = format!("{}/mirror/app", dest.host());

    let out = regmirror(&sync_args(&src, &dst, "v1.*, v2.*, !*-rc*", &PLAIN));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("synced   3   v1.0, v1.1, v2.0"),
        "{out:?}"
    );
    assert!(
        out.stdout.lines().last().unwrap().starts_with("success"),
        "{out:?}"
    );
    // Digests are preserved: the mirror serves the source's exact manifests.
    assert_eq!(
        tags_of(&dest, "mirror/app").await,
        subset(&seeded, &["v1.0", "v1.1", "v2.0"])
    );

    let out = regmirror(&sync_args(&src, &dst, "v2.*,!*-rc*", &PLAIN));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("deleted  2   v1.0, v1.1"), "{out:?}");
    assert!(out.stdout.contains("current  1   v2.0"), "{out:?}");
    assert_eq!(
        tags_of(&dest, "mirror/app").await,
        subset(&seeded, &["v2.0"])
    );

    // --no-prune copies without deleting what the patterns leave out.
    let out = regmirror(&sync_args(
        &src,
        &dst,
        "latest",
        &[PLAIN[0], PLAIN[1], "--no-prune"],
    ));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        tags_of(&dest, "mirror/app").await,
        subset(&seeded, &["latest", "v2.0"])
    );
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_changes_nothing() {
    let (source, dest) = (Registry::start(), Registry::start());
    seed(&source, "lib/app", &["v1", "v2"]).await;
    seed(&dest, "mirror/app", &["stale"]).await;
    let before = tags_of(&dest, "mirror/app").await;
    let src = format!("{}/lib/app", source.host());
    let dst = format!("{}/mirror/app", dest.host());

    let out = regmirror(&sync_args(
        &src,
        &dst,
        "v*",
        &[PLAIN[0], PLAIN[1], "--dry-run"],
    ));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("nothing was changed"), "{out:?}");
    assert!(out.stdout.contains("copy      v1 ("), "{out:?}");
    assert!(out.stdout.contains("delete    stale"), "{out:?}");
    assert_eq!(tags_of(&dest, "mirror/app").await, before);

    let out = regmirror(&sync_args(
        &src,
        &dst,
        "v*",
        &[PLAIN[0], PLAIN[1], "--dry-run", "--json"],
    ));
    assert_eq!(out.code, 0, "{out:?}");
    let plan = out.json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["tags_to_delete"], serde_json::json!(["stale"]));
    let actions: Vec<&str> = plan["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["copy", "copy"]);
    // Two platforms × (config + own layer) + one shared layer per tag, 4096-byte layers.
    assert!(plan["bytes_to_copy"].as_u64().unwrap() > 4 * 4096, "{plan}");
    assert_eq!(tags_of(&dest, "mirror/app").await, before);
}

#[tokio::test]
async fn json_report_has_the_fields_scripts_read() {
    let (source, dest) = (Registry::start(), Registry::start());
    seed(&source, "lib/app", &["a", "b"]).await;
    let src = format!("{}/lib/app", source.host());
    let dst = format!("{}/mirror/app", dest.host());
    let json_args = [PLAIN[0], PLAIN[1], "--json"];

    let out = regmirror(&sync_args(&src, &dst, "*", &json_args));
    assert_eq!(out.code, 0, "{out:?}");
    let r = out.json();
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["source"], src);
    assert_eq!(r["destination"], dst);
    assert_eq!(r["mirror_id"], "mirror/app");
    assert_eq!(r["tags_synced"], serde_json::json!(["a", "b"]));
    assert_eq!(r["tags_failed"], serde_json::json!([]));
    assert!(r["bytes_copied"].as_u64().unwrap() > 0);
    assert!(r["blobs_copied"].as_u64().unwrap() > 0);
    for field in [
        "tags_current",
        "tags_deleted",
        "duration_ms",
        "error",
        "note",
        "partial",
        "rolled_back",
        "hint",
    ] {
        assert!(r.get(field).is_some(), "{field} missing from {r}");
    }
    // `if report["error"]: alert()` must not fire on a success.
    assert_eq!(r["error"], Value::Null, "{r}");

    let out = regmirror(&sync_args(&src, &dst, "a", &json_args));
    let r = out.json();
    assert_eq!(r["tags_current"], serde_json::json!(["a"]));
    assert_eq!(r["tags_deleted"], serde_json::json!(["b"]));
    assert_eq!(r["bytes_copied"], 0);
    assert_eq!(r["error"], Value::Null, "{r}");

    // A run that matches nothing succeeds with a note, not an error.
    let out = regmirror(&sync_args(&src, &dst, "nomatch", &json_args));
    assert_eq!(out.code, 0, "{out:?}");
    let r = out.json();
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["error"], Value::Null, "{r}");
    assert!(
        r["note"].as_str().unwrap().starts_with("no tags matched"),
        "{r}"
    );
    let out = regmirror(&sync_args(&src, &dst, "nomatch", &PLAIN));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("success: no tags matched (the source has 2 tags"),
        "{out:?}"
    );
}

#[tokio::test]
async fn exit_status_is_0_success_1_failure_2_invalid_input() {
    let (source, dest) = (Registry::start(), Registry::start());
    let seeder = source.seeder();
    let good = Index::two_platforms(Flavor::Oci, 1, 4096);
    let bad = Index::two_platforms(Flavor::Oci, 2, 4096);
    seeder.push_index("lib/app", "good", &good).await;
    seeder.push_index("lib/app", "bad", &bad).await;
    source.corrupt_blob(&bad.children[0].layers[1].digest);
    let src = format!("{}/lib/app", source.host());
    let dst = format!("{}/mirror/app", dest.host());

    assert_eq!(regmirror(&sync_args(&src, &dst, "good", &PLAIN)).code, 0);

    let out = regmirror(&sync_args(&src, &dst, "*", &PLAIN));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("failed   1   bad"), "{out:?}");
    assert!(out.stdout.contains("FAILED: "), "{out:?}");
    // failed_tags_only: the good tag stands, the bad one never appears.
    assert_eq!(
        tags_of(&dest, "mirror/app")
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["good"]
    );

    // A registry nobody listens on fails the run (1), with a hint.
    let nowhere = format!(
        "127.0.0.1:{}/lib/app",
        regmirror_tests::registry::free_port()
    );
    let out = regmirror(&sync_args(&nowhere, &dst, "*", &PLAIN));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("hint: "), "{out:?}");

    for (args, needle) in [
        (
            sync_args(&src, &dst, "v1.[12", &PLAIN),
            "--tags: invalid tag pattern \"v1.[12\"",
        ),
        (
            sync_args(&src, &dst, "*", &["--arch", "amd65"]),
            "--arch: unknown architecture",
        ),
        (sync_args("https://x.io/a", &dst, "*", &[]), "SOURCE: "),
        (
            sync_args(&src, "oci:", "*", &[]),
            "--to: \"oci:\" needs a directory",
        ),
        (vec!["sync", &src, "--tags", "*"], "--to <DEST>"),
        (
            vec!["sync", &src, "--to", &dst, "--tags", "*", "--bogus"],
            "--bogus",
        ),
        (vec!["frobnicate"], "frobnicate"),
    ] {
        let out = regmirror(&args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(needle), "{needle:?} not in {out:?}");
        assert_eq!(
            out.stderr.trim().lines().next().map(str::is_empty),
            Some(false)
        );
    }
}

#[tokio::test]
async fn oci_layouts_as_destination_and_source() {
    let (source, dest) = (Registry::start(), Registry::start());
    let seeded = seed(&source, "lib/app", &["v1", "v2", "other"]).await;
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let oci = format!("oci:{}", layout.display());
    let src = format!("{}/lib/app", source.host());

    let out = regmirror(&sync_args(&src, &oci, "v*", &["--src-tls-verify=false"]));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(layout.join("oci-layout").is_file());
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut names: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                m["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("v1".to_owned(), seeded["v1"].to_string()),
            ("v2".to_owned(), seeded["v2"].to_string())
        ]
    );

    // And back out of the layout into another registry, digests intact.
    let dst = format!("{}/from/layout", dest.host());
    let out = regmirror(&sync_args(
        &oci,
        &dst,
        "*",
        &["--dest-tls-verify=false", "--json"],
    ));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["source"], oci);
    assert_eq!(
        tags_of(&dest, "from/layout").await,
        subset(&seeded, &["v1", "v2"])
    );

    let out = regmirror(&sync_args(
        &format!("oci:{}", dir.path().join("absent").display()),
        &dst,
        "*",
        &[],
    ));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("is not an OCI image layout"), "{out:?}");
}

/// A password with the characters that break naive handling: colons (USER:PASS is split at the
/// first one), quotes, `$`, `;`, a backslash, spaces and non-ASCII.
const NASTY: &str = "s3:cr$t;'\"\\ pässwörd:";

#[tokio::test]
async fn credentials_never_appear_in_any_output() {
    let source = Registry::builder().basic_auth_password(NASTY).start();
    let dest = Registry::builder().basic_auth_password(NASTY).start();
    seed(&source, "lib/app", &["v1"]).await;
    let src = format!("{}/lib/app", source.host());
    let dst = format!("{}/mirror/app", dest.host());
    let creds = format!("{USERNAME}:{NASTY}");
    let wrong = format!("{USERNAME}:{NASTY}-but-wrong");
    let dir = tempfile::tempdir().unwrap();
    let creds_file = dir.path().join("creds");
    std::fs::write(&creds_file, format!("{creds}\n")).unwrap();
    let creds_file = creds_file.to_str().unwrap();
    let mut outputs = Vec::new();

    // Inline, from a file, and from the environment: all work.
    let inline = [
        PLAIN[0],
        PLAIN[1],
        "--src-creds",
        &creds,
        "--dest-creds",
        &creds,
    ];
    let out = regmirror(&sync_args(&src, &dst, "*", &inline));
    assert_eq!(out.code, 0, "{out:?}");
    outputs.push(out);
    let files = [
        PLAIN[0],
        PLAIN[1],
        "--src-creds-file",
        creds_file,
        "--dest-creds-file",
        creds_file,
        "--json",
    ];
    let out = regmirror(&sync_args(&src, &dst, "*", &files));
    assert_eq!(out.code, 0, "{out:?}");
    outputs.push(out);
    let mut c = command(&sync_args(
        &src,
        &dst,
        "*",
        &[PLAIN[0], PLAIN[1], "--dry-run"],
    ));
    c.env("REGMIRROR_SRC_CREDS", &creds)
        .env("REGMIRROR_DEST_CREDS", &creds);
    let out = output(c);
    assert_eq!(out.code, 0, "{out:?}");
    outputs.push(out);

    // Wrong or missing credentials fail with a message that names the problem, not the secret.
    let out = regmirror(&sync_args(
        &src,
        &dst,
        "*",
        &[
            PLAIN[0],
            PLAIN[1],
            "--src-creds",
            &wrong,
            "--dest-creds",
            &creds,
        ],
    ));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("Unauthorized"), "{out:?}");
    outputs.push(out);
    let out = regmirror(&sync_args(
        &src,
        &dst,
        "*",
        &[PLAIN[0], PLAIN[1], "--src-creds", "pässwörd"],
    ));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("--src-creds: expected USER:PASS"),
        "{out:?}"
    );
    outputs.push(out);
    outputs.push(regmirror(&sync_args(
        &src,
        &dst,
        "[",
        &["--src-creds", &creds],
    )));
    outputs.push(regmirror(&[
        "sync",
        &src,
        "--to",
        &dst,
        "--tags",
        "*",
        "--src-creds",
        &creds,
        "--src-creds-file",
        creds_file,
    ]));

    // Stored with a mirror, shown by nothing.
    let state = format!("sqlite:{}", dir.path().join("state.db").display());
    let out = regmirror(&[
        "mirror",
        "--state",
        &state,
        "add",
        "mirror/app",
        "--source",
        &src,
        "--tags",
        "*",
        "--src-creds",
        &creds,
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains(USERNAME), "{out:?}");
    outputs.push(out);
    for args in [
        vec!["mirror", "--state", &state, "show", "mirror/app"],
        vec!["mirror", "--state", &state, "show", "mirror/app", "--json"],
        vec!["mirror", "--state", &state, "list"],
        vec!["mirror", "--state", &state, "list", "--json"],
        vec![
            "mirror",
            "--state",
            &state,
            "update",
            "mirror/app",
            "--tags",
            "v*",
            "--json",
        ],
    ] {
        let out = regmirror(&args);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        outputs.push(out);
    }

    for out in &outputs {
        let all = out.all();
        for secret in ["s3:cr", "pässwörd", NASTY] {
            assert!(!all.contains(secret), "{secret:?} printed: {out:?}");
        }
    }
}

#[test]
fn mirror_commands_round_trip_through_the_state_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let state = format!("sqlite:{}", db.display());
    let m = |args: &[&str]| {
        let mut all = vec!["mirror", "--state", state.as_str()];
        all.extend_from_slice(args);
        regmirror(&all)
    };

    // Invalid input is refused before the store is touched.
    let out = m(&[
        "add",
        "mirror/etcd",
        "--source",
        "quay.io/coreos/etcd",
        "--tags",
        "v3.[12",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("--tags: invalid tag pattern"),
        "{out:?}"
    );
    // A sub-second interval would be stored as 0 s (due at every poll): refused, named.
    for (interval, why) in [
        ("500ms", "500ms is less than 1 second"),
        ("1500ms", "1s 500ms is not a whole number of seconds"),
    ] {
        let out = m(&[
            "add",
            "mirror/etcd",
            "--source",
            "quay.io/coreos/etcd",
            "--tags",
            "*",
            "--interval",
            interval,
        ]);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("--interval"), "{out:?}");
        assert!(out.stderr.contains(why), "{out:?}");
    }
    assert!(!db.exists());

    let out = m(&[
        "add",
        "mirror/etcd",
        "--source",
        "quay.io/coreos/etcd",
        "--tags",
        "v3.*,!*-rc*",
        "--arch",
        "amd64,arm64",
        "--interval",
        "6h",
        "--start",
        "2030-01-01T03:00:00Z",
        "--rollback",
        "all-or-nothing",
        "--retry-backoff",
        "0",
        "--referrers",
        "application/spdx+json",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("status:        NEVER_RUN"), "{out:?}");
    assert!(
        out.stdout.contains("referrers:     application/spdx+json"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("retry backoff: none (next poll)"),
        "{out:?}"
    );
    let out = m(&[
        "add",
        "mirror/etcd",
        "--source",
        "quay.io/coreos/etcd",
        "--tags",
        "*",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("already exists"), "{out:?}");
    assert_eq!(
        m(&[
            "add",
            "mirror/alpine",
            "--source",
            "alpine",
            "--tags",
            "3.*",
            "--disabled"
        ])
        .code,
        0
    );

    let out = m(&["list"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("ID"), "{out:?}");
    assert!(
        lines[1].starts_with("mirror/alpine  docker.io/library/alpine"),
        "{out:?}"
    );
    assert!(
        lines[2].starts_with("mirror/etcd    quay.io/coreos/etcd"),
        "{out:?}"
    );

    let show = m(&["show", "mirror/etcd", "--json"]).json();
    assert_eq!(show["tags"], serde_json::json!(["v3.*", "!*-rc*"]));
    assert_eq!(show["architectures"], serde_json::json!(["amd64", "arm64"]));
    assert_eq!(show["sync_interval_secs"], 6 * 3600);
    assert_eq!(show["rollback"], "all_or_nothing");
    assert_eq!(show["status"], "NEVER_RUN");
    assert_eq!(show["retries_remaining"], 3);
    assert_eq!(show["next_start"], "2030-01-01T03:00:00Z");
    assert_eq!(show["retry_backoff_secs"], 0);
    assert_eq!(show["referrers"], "application/spdx+json");
    let out = m(&["update", "mirror/etcd", "--referrers", "sometimes"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--referrers"), "{out:?}");
    assert!(out.stderr.contains("\"sometimes\""), "{out:?}");
    assert_eq!(m(&["update", "mirror/etcd", "--referrers", "none"]).code, 0);
    assert_eq!(
        m(&["show", "mirror/etcd", "--json"]).json()["referrers"],
        "none"
    );
    let out = m(&["update", "mirror/etcd", "--interval", "0.5s"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--interval"), "{out:?}");
    assert_eq!(show["next_run"], "2030-01-01T03:00:00Z");
    assert_eq!(show["next_run_at_next_poll"], false);
    let disabled = m(&["show", "mirror/alpine", "--json"]).json();
    assert_eq!(disabled["next_run"], Value::Null);
    assert!(
        m(&["show", "mirror/alpine"])
            .stdout
            .contains("next run:      none (disabled)")
    );

    let out = m(&[
        "update",
        "mirror/etcd",
        "--tags",
        "v3.5.*",
        "--arch",
        "all",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let updated = out.json();
    assert_eq!(updated["tags"], serde_json::json!(["v3.5.*"]));
    assert_eq!(updated["architectures"], serde_json::json!([]));
    assert_eq!(
        updated["rollback"], "all_or_nothing",
        "untouched settings stay"
    );

    let status = |args: &[&str]| {
        let out = m(args);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        out.stdout
    };
    assert!(status(&["sync-now", "mirror/etcd"]).starts_with("mirror/etcd: SYNC_NOW"));
    assert!(status(&["cancel", "mirror/etcd"]).starts_with("mirror/etcd: CANCEL"));
    let out = m(&["cancel", "mirror/etcd"]);
    assert_eq!(out.code, 1, "cancel is refused from CANCEL: {out:?}");
    assert!(status(&["disable", "mirror/etcd"]).contains("disabled"));
    assert_eq!(
        m(&["show", "mirror/etcd", "--json"]).json()["enabled"],
        false
    );
    assert!(status(&["enable", "mirror/etcd"]).contains("enabled"));
    assert!(status(&["logs", "mirror/etcd"]).contains("no log entries yet"));
    assert_eq!(
        m(&["logs", "mirror/etcd", "--json"]).json(),
        serde_json::json!([])
    );

    assert!(status(&["delete", "mirror/etcd"]).contains("deleted"));
    let out = m(&["show", "mirror/etcd"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no mirror \"mirror/etcd\""), "{out:?}");
    let listed = m(&["list", "--json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let out = regmirror(&["mirror", "list"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no state store given"), "{out:?}");

    // A state path that cannot be a database file is input to fix: exit 2, saying why.
    let missing = dir.path().join("missing/state.db");
    let out = regmirror(&[
        "mirror",
        "--state",
        &format!("sqlite:{}", missing.display()),
        "list",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("does not exist; create it first"),
        "{out:?}"
    );
}

/// Wait (up to a generous bound) until `done` holds, checking every 100 ms.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn worker_runs_a_due_mirror_from_its_config_and_stops_on_sigterm() {
    let source = Registry::start();
    let dest = Registry::builder().basic_auth_password(NASTY).start();
    let hook = regmirror_tests::webhook::WebhookReceiver::start();
    let seeded = seed(&source, "lib/app", &["v1", "v2", "other"]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("robot-password"), format!("{NASTY}\n")).unwrap();
    let config = dir.path().join("regmirror.toml");
    std::fs::write(
        &config,
        format!(
            r#"
state = "sqlite:state.db"
poll_interval = "1s"

[destination]
registry = "{dest}"
username = "{USERNAME}"
password_file = "robot-password"
tls_verify = false

[[webhook]]
url = "{hook}"

[[mirror]]
id = "mirror/app"
source = "{src}/lib/app"
tags = "v*"
verify_tls = false
interval = "1h"
start = 2020-01-01T00:00:00Z
"#,
            dest = dest.host(),
            src = source.host(),
            hook = hook.url(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("worker.log")).unwrap();
    // At the most verbose level too, no password or Authorization header reaches the log.
    let mut worker = command(&["worker", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "trace")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting the worker");

    eventually("the mirror to be synced", async || {
        tags_of(&dest, "mirror/app").await == subset(&seeded, &["v1", "v2"])
    })
    .await;
    let config_arg = config.to_str().unwrap();
    eventually("the run to be recorded", async || {
        let out = regmirror(&[
            "mirror",
            "--config",
            config_arg,
            "show",
            "mirror/app",
            "--json",
        ]);
        out.code == 0 && out.json()["status"] == "SUCCESS"
    })
    .await;
    let shown = regmirror(&[
        "mirror",
        "--config",
        config_arg,
        "show",
        "mirror/app",
        "--json",
    ])
    .json();
    assert_eq!(shown["retries_remaining"], 3);
    let listed = regmirror(&["mirror", "--config", config_arg, "list", "--json"]).json();
    assert_eq!(
        listed[0]["last_report"], shown["last_report"],
        "list --json carries each mirror's last report"
    );
    // The next run is on the hourly grid from the configured start, not right away.
    let next = shown["next_start"].as_str().unwrap();
    assert!(next.ends_with(":00:00Z"), "{shown}");
    assert!(
        shown["last_report"]
            .as_str()
            .unwrap()
            .starts_with("succeeded: 2 synced"),
        "{shown}"
    );
    let logs = regmirror(&[
        "mirror",
        "--config",
        config_arg,
        "logs",
        "mirror/app",
        "--json",
    ])
    .json();
    let kinds: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"sync_succeeded"), "{logs}");
    assert!(kinds.contains(&"tag_synced"), "{logs}");
    eventually("the webhook", async || {
        hook.received()
            .iter()
            .any(|r| r.json()["event"] == "sync_succeeded")
    })
    .await;

    let status = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = worker.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker ignored SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(dir.path().join("worker.log")).unwrap();
    assert!(exit.success(), "{exit}: {log}");
    assert!(log.contains("worker started"), "{log}");
    let shutting_down = log.find("shutting down").expect("shutting down is logged");
    let stopped = log
        .find("worker stopped")
        .expect("worker stopped is logged");
    assert!(shutting_down < stopped, "in this order: {log}");
    for secret in ["s3:cr", "pässwörd", "Basic ", "Bearer "] {
        assert!(!log.contains(secret), "{secret:?} in the worker log: {log}");
    }
}

/// SEMANTICS.md §6 through the worker and `mirror` commands: of three new mirrors a config
/// file declares, the first runs at once and the others wait for their spread slots (shown as
/// such); a mirror added while the worker runs is shown "at the next poll" and runs then.
#[tokio::test]
async fn new_mirrors_run_at_the_next_poll_and_a_crowd_is_shown_spread() {
    let source = Registry::start();
    let dest = Registry::start();
    seed(&source, "lib/app", &["v1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regmirror.toml");
    let mirror = |id: &str| {
        format!(
            "[[mirror]]\nid = \"{id}\"\nsource = \"{}/lib/app\"\ntags = \"v*\"\n\
             verify_tls = false\ninterval = \"1h\"\n",
            source.host()
        )
    };
    std::fs::write(
        &config,
        format!(
            "state = \"sqlite:state.db\"\npoll_interval = \"1s\"\nfirst_run_spread = \"1h\"\n\
             [destination]\nregistry = \"{}\"\ntls_verify = false\n{}{}{}",
            dest.host(),
            mirror("mirror/a"),
            mirror("mirror/b"),
            mirror("mirror/c"),
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let m = |args: &[&str]| {
        let mut all = vec!["mirror", "--config", config_arg];
        all.extend_from_slice(args);
        regmirror(&all)
    };
    let log_path = dir.path().join("worker.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let worker = command(&["worker", "--config", config_arg])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting the worker");
    eventually("mirror/a to sync", async || {
        let out = m(&["show", "mirror/a", "--json"]);
        out.code == 0 && out.json()["status"] == "SUCCESS"
    })
    .await;
    // The other two wait for slots 20 and 40 minutes on, and say why.
    let now = time::OffsetDateTime::now_utc();
    for id in ["mirror/b", "mirror/c"] {
        let shown = m(&["show", id, "--json"]).json();
        assert_eq!(shown["status"], "NEVER_RUN", "{shown}");
        assert_eq!(shown["next_run_at_next_poll"], false, "{shown}");
        let next = time::OffsetDateTime::parse(
            shown["next_run"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let wait = next - now;
        assert!(
            wait > time::Duration::minutes(15) && wait < time::Duration::minutes(45),
            "{id} waits {wait}"
        );
        let text = m(&["show", id]).stdout;
        assert!(
            text.contains("(first run, spread with other new mirrors)"),
            "{text}"
        );
    }
    let list = m(&["list"]).stdout;
    assert!(list.contains("spread with other new mirrors"), "{list}");

    let added = m(&[
        "add",
        "mirror/late",
        "--source",
        &format!("{}/lib/app", source.host()),
        "--tags",
        "v*",
        "--src-tls-verify=false",
        "--interval",
        "1h",
    ]);
    assert_eq!(added.code, 0, "{added:?}");
    assert!(
        added.stdout.contains("next run:      at the next poll"),
        "{added:?}"
    );
    let shown = m(&["show", "mirror/late", "--json"]).json();
    assert_eq!(shown["next_run_at_next_poll"], true, "{shown}");
    let added_at = std::time::Instant::now();
    eventually("mirror/late to sync", async || {
        m(&["show", "mirror/late", "--json"]).json()["status"] == "SUCCESS"
    })
    .await;
    assert!(
        added_at.elapsed() < std::time::Duration::from_secs(5),
        "mirror/late took {:?}: more than a few polls",
        added_at.elapsed()
    );
    let log = terminate_worker(worker, &log_path);
    assert!(
        log.contains("spreading the first runs of new mirrors due together"),
        "{log}"
    );
}

#[test]
fn mirror_commands_work_on_postgresql() {
    let pg = regmirror_tests::Postgres::shared();
    let conn = pg.create_database();
    let db = conn
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("dbname="))
        .expect("the kit names the database");
    let state = format!("postgres://postgres@127.0.0.1:{}/{db}", pg.port());
    let m = |args: &[&str]| {
        let mut all = vec!["mirror", "--state", state.as_str()];
        all.extend_from_slice(args);
        regmirror(&all)
    };
    let out = m(&[
        "add",
        "mirror/etcd",
        "--source",
        "quay.io/coreos/etcd",
        "--tags",
        "v3.*",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(m(&["sync-now", "mirror/etcd"]).stdout.contains("SYNC_NOW"));
    let listed = m(&["list", "--json"]).json();
    assert_eq!(listed[0]["id"], "mirror/etcd");
    assert_eq!(listed[0]["status"], "SYNC_NOW");

    // A password in the URL never shows, not even when the connection fails.
    let wrong = format!(
        "postgres://postgres:hunter2-pg@127.0.0.1:{}/{db}",
        regmirror_tests::registry::free_port()
    );
    let out = regmirror(&["mirror", "--state", &wrong, "list"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("opening the state store postgres://postgres:***@127.0.0.1"),
        "{out:?}"
    );
    assert!(!out.all().contains("hunter2-pg"), "{out:?}");
}

#[tokio::test]
async fn logins_from_docker_config_or_authfile_and_a_private_ca() {
    use base64::Engine as _;

    let source = Registry::builder().tls().basic_auth().start();
    let dest = Registry::start();
    seed(&source, "lib/app", &["v1"]).await;
    let src = format!("{}/lib/app", source.host());
    let dst = format!("{}/mirror/app", dest.host());
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs.d");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(source.ca_pem().unwrap(), certs.join("ca.crt")).unwrap();
    let certs = certs.to_str().unwrap();
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{USERNAME}:{}", source.password()));
    let logins = format!(
        r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
        source.host()
    );
    let docker_dir = dir.path().join("docker");
    std::fs::create_dir(&docker_dir).unwrap();
    std::fs::write(docker_dir.join("config.json"), &logins).unwrap();
    let authfile = dir.path().join("auth.json");
    std::fs::write(&authfile, &logins).unwrap();
    let trusted = ["--src-cert-dir", certs, "--dest-tls-verify=false"];

    // The docker login is used when no credentials are given ...
    let mut c = command(&sync_args(&src, &dst, "*", &trusted));
    c.env("DOCKER_CONFIG", &docker_dir);
    let out = output(c);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("synced   1   v1"), "{out:?}");

    // ... or the --authfile given, and --src-no-creds uses none.
    let mut with_authfile = trusted.to_vec();
    with_authfile.extend(["--authfile", authfile.to_str().unwrap()]);
    let out = regmirror(&sync_args(&src, &dst, "*", &with_authfile));
    assert_eq!(out.code, 0, "{out:?}");
    let mut anonymous = trusted.to_vec();
    anonymous.push("--src-no-creds");
    let out = regmirror(&sync_args(&src, &dst, "*", &anonymous));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("Unauthorized"), "{out:?}");

    // Without the CA, verification fails and the hint says what to do.
    let mut c = command(&sync_args(&src, &dst, "*", &["--dest-tls-verify=false"]));
    c.env("DOCKER_CONFIG", &docker_dir);
    let out = output(c);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("FAILED: Tls"), "{out:?}");
    assert!(out.stdout.contains("--src-cert-dir"), "{out:?}");

    let out = regmirror(&sync_args(
        &src,
        &dst,
        "*",
        &["--authfile", "/nonexistent/auth.json"],
    ));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("--authfile: /nonexistent/auth.json is not a file"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_corrupt_auth_file_is_refused_naming_the_file_and_the_problem() {
    use base64::Engine as _;

    let source = Registry::builder().basic_auth().start();
    let dest = Registry::start();
    seed(&source, "lib/app", &["v1"]).await;
    let src = format!("{}/lib/app", source.host());
    let dst = format!("{}/mirror/app", dest.host());
    let dir = tempfile::tempdir().unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let entry = |auth: &str| {
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            source.host()
        )
    };
    let quoted_host = format!("{:?}", source.host());
    for (name, text, problem) in [
        (
            "json",
            r#"{"auths": {"x": "hunter2"}}"#.to_owned(),
            "a value has the wrong type for an auth file (line 1, column 25)".to_owned(),
        ),
        (
            "base64",
            entry("hunter2!!"),
            format!(r#"the "auth" of {quoted_host} is not base64"#),
        ),
        (
            "colon",
            entry(&b64("hunter2")),
            format!(r#"the "auth" of {quoted_host} does not decode to "user:password""#),
        ),
    ] {
        let docker_dir = dir.path().join(name);
        std::fs::create_dir(&docker_dir).unwrap();
        let file = docker_dir.join("config.json");
        std::fs::write(&file, &text).unwrap();
        let expected = format!(
            "regmirror: SOURCE: auth file {} is not valid: {problem}",
            file.display()
        );

        // Found through DOCKER_CONFIG, or given with --authfile: refused before any request.
        let mut c = command(&sync_args(&src, &dst, "*", &PLAIN));
        c.env("DOCKER_CONFIG", &docker_dir);
        let from_env = output(c);
        let mut given = PLAIN.to_vec();
        given.extend(["--authfile", file.to_str().unwrap()]);
        let from_flag = regmirror(&sync_args(&src, &dst, "*", &given));
        for out in [from_env, from_flag] {
            assert_eq!(out.code, 2, "{name}: {out:?}");
            assert_eq!(out.stderr.lines().count(), 1, "{name}: {out:?}");
            assert!(out.stderr.starts_with(&expected), "{name}: {out:?}");
            assert!(out.stdout.is_empty(), "{name}: {out:?}");
            assert!(!out.all().contains("hunter2"), "{name}: {out:?}");
        }
    }
    assert!(tags_of(&dest, "mirror/app").await.is_empty());
}

#[tokio::test]
async fn large_blobs_from_a_tls_source_reach_a_registry() {
    // Over TLS distribution speaks HTTP/2, which can end a body larger than one flow-control
    // window (64 KiB) with an empty frame; that must not fail the digest check of the upload.
    let source = Registry::builder().tls().basic_auth().start();
    let dest = Registry::start();
    let index = Index::two_platforms(Flavor::Oci, 42, 256 * 1024);
    let digest = source.seeder().push_index("lib/big", "v1", &index).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(source.ca_pem().unwrap(), dir.path().join("ca.crt")).unwrap();
    let src = format!("{}/lib/big", source.host());
    let dst = format!("{}/mirror/big", dest.host());
    let creds = format!("{USERNAME}:{}", source.password());
    let out = regmirror(&sync_args(
        &src,
        &dst,
        "*",
        &[
            "--src-cert-dir",
            dir.path().to_str().unwrap(),
            "--src-creds",
            &creds,
            "--dest-tls-verify=false",
        ],
    ));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        tags_of(&dest, "mirror/big").await,
        BTreeMap::from([("v1".to_owned(), digest)])
    );
}

#[tokio::test]
async fn a_plain_http_registry_is_named_and_the_hint_gives_its_sides_flag() {
    let (source, dest) = (Registry::start(), Registry::start());
    seed(&source, "lib/app", &["v1"]).await;
    let src = format!("{}/lib/app", source.host());
    let dst = format!("{}/mirror/app", dest.host());

    let out = regmirror(&sync_args(&src, &dst, "*", &["--dest-tls-verify=false"]));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("answered in plain HTTP"), "{out:?}");
    assert!(
        out.stdout
            .contains("hint: for a registry on plain HTTP add --src-tls-verify=false"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("--dest-tls-verify"), "{out:?}");

    // The dry run fails before any report, with the same hint for the other side.
    let out = regmirror(&sync_args(
        &src,
        &dst,
        "*",
        &["--src-tls-verify=false", "--dry-run"],
    ));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("(for a registry on plain HTTP add --dest-tls-verify=false)"),
        "{out:?}"
    );
}

#[tokio::test]
async fn json_output_is_json_even_when_the_command_stops_early() {
    let source = Registry::start();
    seed(&source, "lib/app", &["v1"]).await;
    let src = format!("{}/lib/app", source.host());
    let dst = "127.0.0.1:9/mirror/app";
    for (args, code, outcome, needle) in [
        // Bad input: exit 2, the message names the flag.
        (
            sync_args(&src, dst, "v1.[2", &["--json"]),
            2,
            "invalid",
            "--tags: invalid tag pattern",
        ),
        // A usage error from the argument parser.
        (
            vec!["sync", &src, "--tags", "*", "--json"],
            2,
            "invalid",
            "--to <DEST>",
        ),
        // A dry run that cannot reach the destination (port 9: nothing listens).
        (
            sync_args(&src, dst, "*", &["--json", "--dry-run", PLAIN[0], PLAIN[1]]),
            1,
            "failed",
            "127.0.0.1:9",
        ),
    ] {
        let out = regmirror(&args);
        assert_eq!(out.code, code, "{out:?}");
        let json = out.json();
        assert_eq!(json["outcome"], outcome, "{out:?}");
        assert_eq!(json["exit_status"], code, "{out:?}");
        let error = json["error"].as_str().unwrap();
        assert!(error.contains(needle), "{out:?}");
        // People still read the error on stderr.
        assert!(out.stderr.contains(needle), "{out:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_registries_on_both_sides() {
    use regmirror_tests::registry::{PASSWORD, READER_PASSWORD, READER_USERNAME};

    // Bearer tokens from the kit's issuer (in this process, so the binary runs off the runtime's
    // threads): the source lets a reader pull, the destination only the robot push.
    let source = Registry::builder().token_auth(false).start();
    let dest = Registry::builder().token_auth(false).start();
    let seeded = seed(&source, "lib/app", &["v1", "v2"]).await;
    let src = format!("{}/lib/app", source.host());
    let dst = format!("{}/mirror/app", dest.host());
    let reader = format!("{READER_USERNAME}:{READER_PASSWORD}");
    let robot = format!("{USERNAME}:{PASSWORD}");
    let run = |extra: Vec<String>| {
        let mut args: Vec<String> = sync_args(&src, &dst, "*", &PLAIN)
            .into_iter()
            .map(str::to_owned)
            .collect();
        args.extend(extra);
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            regmirror(&args)
        })
    };

    let out = run(vec![
        "--src-creds".into(),
        reader.clone(),
        "--dest-creds".into(),
        robot.clone(),
    ])
    .await
    .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(tags_of(&dest, "mirror/app").await, seeded);

    // The reader may not push: the destination refuses the new tag, and only that one.
    seed(&source, "lib/app", &["v3"]).await;
    let out = run(vec![
        "--src-creds".into(),
        reader.clone(),
        "--dest-creds".into(),
        reader.clone(),
    ])
    .await
    .unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("failed   1   v3"), "{out:?}");
    assert!(
        out.stdout
            .contains("hint: check --dest-creds (or the docker login"),
        "{out:?}"
    );
    assert!(!out.all().contains(READER_PASSWORD), "{out:?}");
    assert_eq!(
        tags_of(&dest, "mirror/app").await,
        seeded,
        "nothing changed"
    );
}

#[test]
fn mirror_commands_read_only_the_state_store_from_a_worker_config() {
    // The robot's password lives where the worker runs; managing mirrors elsewhere with the
    // same file must not need it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regmirror.toml");
    std::fs::write(
        &config,
        "state = \"sqlite:state.db\"\n\n[destination]\nregistry = \"127.0.0.1:9\"\n\
         username = \"robot\"\npassword_env = \"REGMIRROR_QA_UNSET_PASSWORD\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let out = regmirror(&["mirror", "--config", config, "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(dir.path().join("state.db").exists(), "{out:?}");
    // The worker does need it, and says which key.
    let out = regmirror(&["worker", "--config", config]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "destination: password_env: the environment variable REGMIRROR_QA_UNSET_PASSWORD"
        ),
        "{out:?}"
    );
    // A typo is still an error for both.
    std::fs::write(
        dir.path().join("regmirror.toml"),
        "stat = \"sqlite:x.db\"\n",
    )
    .unwrap();
    let out = regmirror(&["mirror", "--config", config, "list"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("line 1: unknown field `stat`"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_stops_the_sync_cleanly_with_nothing_half_published() {
    use regmirror_tests::proxy::{Fault, Proxy};

    let (source, dest) = (Registry::start(), Registry::start());
    let seeded = seed(&source, "lib/app", &["v1", "v2"]).await;
    // Every blob read stalls for a while, so the run is surely mid-copy when the signal comes.
    // (A read that hangs for good is only interrupted by a second signal: the run finishes
    // the work in flight.)
    let proxy = Proxy::start(&source);
    let stall = Fault::StallBody {
        after: 100,
        pause: std::time::Duration::from_secs(2),
    };
    proxy.inject("GET", "/blobs/", stall, 1000);
    let src = format!("{}/lib/app", proxy.host());
    let dst = format!("{}/mirror/app", dest.host());
    for signal in ["-TERM", "-INT"] {
        proxy.reset_counts();
        let std_command = command(&sync_args(&src, &dst, "*", &PLAIN));
        let child = tokio::process::Command::from(std_command)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        eventually("a blob read reaches the source", async || {
            proxy.count("GET", "/blobs/") > 0
        })
        .await;
        let pid = child.id().unwrap().to_string();
        let kill = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(kill.success());
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
                .await
                .expect("regmirror stops soon after the signal")
                .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{signal}: {stdout}{stderr}");
        assert!(stdout.contains("cancelled"), "{signal}: {stdout}{stderr}");
        assert!(
            stderr.contains("stopping after the work in flight"),
            "{signal}: {stderr}"
        );
        // Whatever was published is the source's image, digest unchanged.
        for (tag, digest) in tags_of(&dest, "mirror/app").await {
            assert_eq!(seeded[&tag], digest, "{signal}: {tag}");
        }
    }
}

#[tokio::test]
async fn a_platform_filter_into_distribution_needs_a_rewritten_index_and_says_so() {
    let (source, dest) = (Registry::start(), Registry::start());
    let seeded = seed(&source, "lib/app", &["v1"]).await;
    let src = format!("{}/lib/app", source.host());
    let dst = format!("{}/mirror/app", dest.host());
    let mut args = PLAIN.to_vec();
    args.extend(["--arch", "arm64"]);

    // distribution 2.8 refuses the source's index with a platform missing: the hint gives the
    // flag, not the library's option name.
    let out = regmirror(&sync_args(&src, &dst, "*", &args));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("hint: this registry refuses an index")
            && out.stdout.contains("add --platform-index rewrite"),
        "{out:?}"
    );
    let mut json = args.clone();
    json.push("--json");
    let r = regmirror(&sync_args(&src, &dst, "*", &json)).json();
    let f = &r["tags_failed"][0];
    assert_eq!(
        (&f["detail"], &f["side"], &f["phase"]),
        (
            &"sparse_index".into(),
            &"destination".into(),
            &"stage".into()
        ),
        "{r}"
    );
    assert!(tags_of(&dest, "mirror/app").await.is_empty());

    args.extend(["--platform-index", "rewrite"]);
    let out = regmirror(&sync_args(&src, &dst, "*", &args));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("rewritten v1"), "{out:?}");
    let mirrored = tags_of(&dest, "mirror/app").await;
    assert_ne!(
        mirrored["v1"], seeded["v1"],
        "a new index of the arm64 image"
    );
}

#[test]
fn tags_takes_repeated_patterns_like_sync() {
    let out = regmirror(&[
        "tags",
        "--patterns",
        "v1.*,!*-rc*",
        "--patterns",
        r"regex:^v\d{1,2}$",
        "v1.0",
        "v1.1-rc1",
        "v12",
        "v123",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "v1.0\nv12\n");
}

/// Run `args`, send SIGINT once the proxy saw the tag listing (which hangs), and return what
/// the run printed; it must stop well before the stall timeout.
async fn interrupt_during_listing(
    proxy: &regmirror_tests::proxy::Proxy,
    args: &[&str],
) -> std::process::Output {
    proxy.reset_counts();
    let child = tokio::process::Command::from(command(args))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("the listing reaches the source", async || {
        proxy.count("GET", "/tags/list") > 0
    })
    .await;
    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("one Ctrl-C stops the run, well before the stall timeout")
        .unwrap()
}

/// A source whose tag listing never answers, behind the kit's proxy.
fn source_that_hangs_listing(source: &Registry) -> regmirror_tests::proxy::Proxy {
    use regmirror_tests::proxy::{Fault, Proxy};
    let proxy = Proxy::start(source);
    proxy.inject("GET", "/tags/list", Fault::Hang, 1000);
    proxy
}

/// A sync that waits on its source's tag listing for good: `lib/app` (tag v1) behind
/// [`source_that_hangs_listing`], to `mirror/app` of an empty destination.
struct HangingSync {
    proxy: regmirror_tests::proxy::Proxy,
    dest: Registry,
    src: String,
    dst: String,
    /// What the proxy forwards to.
    _source: Registry,
}

impl HangingSync {
    async fn start() -> HangingSync {
        let (source, dest) = (Registry::start(), Registry::start());
        seed(&source, "lib/app", &["v1"]).await;
        let proxy = source_that_hangs_listing(&source);
        HangingSync {
            src: format!("{}/lib/app", proxy.host()),
            dst: format!("{}/mirror/app", dest.host()),
            proxy,
            dest,
            _source: source,
        }
    }

    /// The `regmirror` arguments of the sync, all tags, over plain HTTP.
    fn args(&self) -> Vec<&str> {
        sync_args(&self.src, &self.dst, "*", &PLAIN)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_raises_its_soft_limit_of_open_files_to_the_hard_one() {
    use rlimit::Resource;
    use std::os::unix::process::CommandExt as _;
    // The run waits on the listing while its limits are read.
    let sync = HangingSync::start().await;
    let (_, hard) = Resource::NOFILE.get().unwrap();
    let soft = hard.min(256);
    assert!(soft < hard, "the test needs a hard limit above {soft}");
    let mut started = command(&sync.args());
    // Started as many systems start processes: a soft limit (often 1024) below the hard one.
    // SAFETY: setrlimit is async-signal-safe, all a child may call before exec.
    unsafe {
        started.pre_exec(move || Resource::NOFILE.set(soft, hard));
    }
    let child = tokio::process::Command::from(started)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("the listing reaches the source", async || {
        sync.proxy.count("GET", "/tags/list") > 0
    })
    .await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id().unwrap())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    // "Max open files SOFT HARD files"
    assert_eq!(open_files[3], hard.to_string(), "{limits}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_sync_whose_source_never_answers_the_listing() {
    // The source accepts the connection and never answers: without a prompt cancel, the run
    // would wait out the stall timeout and its retries (minutes).
    let sync = HangingSync::start().await;
    for dry_run in [false, true] {
        let mut args = sync.args();
        if dry_run {
            args.push("--dry-run");
        }
        let out = interrupt_during_listing(&sync.proxy, &args).await;
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains("cancelled"), "{all}");
    }
    assert!(tags_of(&sync.dest, "mirror/app").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_says_cancelled_in_its_json_also_in_a_dry_run() {
    let sync = HangingSync::start().await;
    for dry_run in [false, true] {
        let mut args = sync.args();
        args.push("--json");
        if dry_run {
            args.push("--dry-run");
        }
        let out = interrupt_during_listing(&sync.proxy, &args).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("dry run {dry_run}: stdout is not JSON ({e}): {out:?}"));
        assert_eq!(json["outcome"], "cancelled", "dry run {dry_run}: {json}");
        assert_eq!(out.status.code(), Some(1), "dry run {dry_run}: {json}");
    }
    assert!(tags_of(&sync.dest, "mirror/app").await.is_empty());
}

#[tokio::test]
async fn proxies_from_the_environment_are_not_used_for_loopback_registries() {
    // A machine set up for the outside world (`*_proxy`, no `no_proxy`), as skopeo and docker
    // treat it: registries on this machine are reached directly.
    let (source, dest) = (Registry::start(), Registry::start());
    let seeded = seed(&source, "lib/app", &["v1"]).await;
    let src = format!("localhost:{}/lib/app", source.port());
    let dst = format!("{}/mirror/app", dest.host());
    let mut c = command(&sync_args(&src, &dst, "*", &PLAIN));
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
    ] {
        // Port 9 (discard): nothing listens, so a request sent there fails.
        c.env(var, "http://127.0.0.1:9");
    }
    c.env_remove("NO_PROXY").env_remove("no_proxy");
    let out = output(c);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(tags_of(&dest, "mirror/app").await, seeded);
}

#[test]
fn a_tls_flag_written_with_a_space_gets_a_tip() {
    let out = regmirror(&[
        "sync",
        "a.example/x",
        "--to",
        "b.example/y",
        "--tags",
        "*",
        "--src-tls-verify",
        "false",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("write --src-tls-verify=false, with an equals sign"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_layout_written_with_arch_goes_on_with_the_same_arch() {
    // The air-gapped round trip: registry -> oci: with a platform filter -> registry.
    let (source, dest) = (Registry::start(), Registry::start());
    seed(&source, "lib/app", &["v1"]).await;
    let src = format!("{}/lib/app", source.host());
    let dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}", dir.path().join("carry").display());
    let dst = format!("{}/mirror/app", dest.host());

    let out = regmirror(&sync_args(
        &src,
        &layout,
        "*",
        &["--src-tls-verify=false", "--arch", "arm64"],
    ));
    assert_eq!(out.code, 0, "{out:?}");

    // Without --arch the index's amd64 image is missing from the layout: the hint says why.
    let out = regmirror(&sync_args(&layout, &dst, "*", &["--dest-tls-verify=false"]));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("hint: the layout lacks some platforms"),
        "{out:?}"
    );
    let json = ["--dest-tls-verify=false", "--json"];
    let r = regmirror(&sync_args(&layout, &dst, "*", &json)).json();
    let f = &r["tags_failed"][0];
    assert_eq!(f["kind"], "NotFound", "{r}");
    assert_eq!(f["detail"], "sparse_source", "{r}");
    assert_eq!(f["side"], "source", "{r}");
    // A layout has no host.
    assert_eq!(f["host"], Value::Null, "{r}");

    let out = regmirror(&sync_args(
        &layout,
        &dst,
        "*",
        &[
            "--dest-tls-verify=false",
            "--arch",
            "arm64",
            "--platform-index",
            "rewrite",
        ],
    ));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("rewritten v1"), "{out:?}");
    assert_eq!(
        tags_of(&dest, "mirror/app")
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["v1"]
    );
}

#[tokio::test]
async fn worker_logs_a_refused_certificate_once_in_its_own_words() {
    // A mirror whose source has a CA the machine does not trust: the failure event names the
    // mirror and the problem; no dependency adds an ERROR line of its own.
    let source = Registry::builder().tls().start();
    let dest = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regmirror.toml");
    std::fs::write(
        &config,
        format!(
            "state = \"sqlite:state.db\"\npoll_interval = \"1s\"\n\n[destination]\n\
             registry = \"{}\"\ntls_verify = false\n\n[[mirror]]\nid = \"mirror/tls\"\n\
             source = \"{}/lib/app\"\ntags = \"*\"\nstart = 2020-01-01T00:00:00Z\n",
            dest.host(),
            source.host()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("worker.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut worker = command(&["worker", "--config", config.to_str().unwrap()])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting the worker");
    eventually("the failed run to be logged", async || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("sync_failed"))
    })
    .await;
    let pid = worker.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(worker.wait().unwrap().success());
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(logged.contains("UnknownIssuer"), "{logged}");
    assert!(!logged.contains("ERROR"), "{logged}");
}

#[test]
fn output_into_a_closed_pipe_stops_quietly() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;

    // `regmirror ... | head -1`: the reader goes away after one line.
    let many: Vec<String> = (0..50_000).map(|i| format!("t{i}")).collect();
    let mut args = vec!["tags", "--patterns", "*"];
    args.extend(many.iter().map(String::as_str));
    let mut child = command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped here, closing the pipe.
    let out = child.wait_with_output().unwrap();
    assert_eq!(first, "t0\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Ended by SIGPIPE (13 on Linux), as `cat` or `ls` would be.
    assert_eq!(out.status.signal(), Some(13), "{stderr}");
}

/// Stop a worker with SIGTERM and return its log, asserting it exited cleanly.
fn terminate_worker(mut worker: std::process::Child, log_path: &std::path::Path) -> String {
    let pid = worker.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = worker.wait().unwrap();
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(exit.success(), "{exit}: {log}");
    log
}

#[tokio::test]
async fn worker_mirrors_trust_their_own_source_ca() {
    // A source with a private CA: one mirror trusts it through cert_dir, one through ca_file,
    // one added with `mirror add --src-cert-dir`; the destination needs none of it.
    let source = Registry::builder().tls().start();
    let dest = Registry::start();
    let seeded = seed(&source, "lib/app", &["v1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs.d");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(source.ca_pem().unwrap(), certs.join("ca.crt")).unwrap();
    std::fs::copy(source.ca_pem().unwrap(), dir.path().join("source-ca.pem")).unwrap();
    let config = dir.path().join("regmirror.toml");
    let mirror = |id: &str, trust: &str| {
        format!(
            "[[mirror]]\nid = \"{id}\"\nsource = \"{}/lib/app\"\ntags = \"*\"\n\
             start = 2020-01-01T00:00:00Z\n{trust}\n",
            source.host()
        )
    };
    std::fs::write(
        &config,
        format!(
            "state = \"sqlite:state.db\"\npoll_interval = \"1s\"\n\n[destination]\n\
             registry = \"{}\"\ntls_verify = false\n\n{}\n{}",
            dest.host(),
            mirror("mirror/by-dir", "cert_dir = \"certs.d\""),
            mirror("mirror/by-file", "ca_file = \"source-ca.pem\""),
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let m = |args: &[&str]| {
        let mut all = vec!["mirror", "--config", config_arg];
        all.extend(args);
        regmirror(&all)
    };
    let src = format!("{}/lib/app", source.host());
    let certs_arg = certs.to_str().unwrap();
    let out = m(&[
        "add",
        "mirror/by-flag",
        "--source",
        &src,
        "--tags",
        "*",
        "--start",
        "2020-01-01T00:00:00Z",
        "--src-cert-dir",
        "/nonexistent/certs.d",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--src-cert-dir"), "{out:?}");
    let out = m(&[
        "add",
        "mirror/by-flag",
        "--source",
        &src,
        "--tags",
        "*",
        "--start",
        "2020-01-01T00:00:00Z",
        "--src-cert-dir",
        certs_arg,
        "--json",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.json()["source_ca_certs"],
        serde_json::json!([certs_arg])
    );

    let log_path = dir.path().join("worker.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let worker = command(&["worker", "--config", config_arg])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting the worker");
    for id in ["mirror/by-dir", "mirror/by-file", "mirror/by-flag"] {
        eventually(&format!("{id} to be synced"), async || {
            let out = m(&["show", id, "--json"]);
            out.code == 0 && !matches!(out.json()["status"].as_str(), Some("NEVER_RUN" | "SYNCING"))
        })
        .await;
        let shown = m(&["show", id, "--json"]).json();
        assert_eq!(shown["status"], "SUCCESS", "{shown}");
        assert_eq!(tags_of(&dest, id).await, seeded);
    }
    let shown = m(&["show", "mirror/by-file"]);
    assert!(shown.stdout.contains("source-ca.pem"), "{shown:?}");
    terminate_worker(worker, &log_path);

    // Removing the CA from a mirror ("") makes its source untrusted again.
    let out = m(&["update", "mirror/by-flag", "--src-cert-dir", "", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["source_ca_certs"], serde_json::json!([]));
}

#[tokio::test]
async fn a_destination_that_refuses_deletes_fails_pruning_per_tag_and_keeps_those_tags() {
    // Distribution's default (`storage.delete.enabled: false`), and many production registries.
    let (source, dest) = (
        Registry::start(),
        Registry::builder().deletes_disabled().start(),
    );
    let seeded = seed(&source, "lib/app", &["v1", "v2"]).await;
    let old = seed(&dest, "mirror/app", &["old", "older"]).await;
    let src = format!("{}/lib/app", source.host());
    let dst = format!("{}/mirror/app", dest.host());

    let out = regmirror(&sync_args(&src, &dst, "v*", &PLAIN));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("synced   2   v1, v2"), "{out:?}");
    assert!(out.stdout.contains("failed   2   old, older"), "{out:?}");
    assert!(
        out.stdout
            .contains("FAILED: 2 unselected tags could not be deleted: old, older; partial"),
        "{out:?}"
    );
    assert_eq!(
        out.stdout.matches("partial").count(),
        1,
        "said once: {out:?}"
    );
    assert!(
        out.stdout
            .contains("hint: the destination refuses to delete tags; --no-prune")
    );
    // The selected tags were published and the ones it could not delete are untouched.
    let mut expected = seeded.clone();
    expected.extend(old.clone());
    assert_eq!(tags_of(&dest, "mirror/app").await, expected);

    let json_args = [PLAIN[0], PLAIN[1], "--json"];
    let out = regmirror(&sync_args(&src, &dst, "v*", &json_args));
    assert_eq!(out.code, 1, "{out:?}");
    let r = out.json();
    assert_eq!(r["outcome"], "failed", "{r}");
    assert_eq!(r["tags_current"], serde_json::json!(["v1", "v2"]), "{r}");
    let failed: Vec<&str> = r["tags_failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["tag"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["old", "older"], "{r}");
    // Each failed tag says what failed where, as data.
    for f in r["tags_failed"].as_array().unwrap() {
        assert_eq!(f["kind"], "Unsupported", "{f}");
        assert_eq!(f["side"], "destination", "{f}");
        assert_eq!(f["phase"], "prune", "{f}");
        assert_eq!(f["host"], dest.host(), "{f}");
        assert!(
            f["reason"].as_str().unwrap().starts_with("Unsupported: "),
            "{f}"
        );
        assert!(
            f["message"].as_str().unwrap().starts_with("pruning: "),
            "{f}"
        );
    }
    assert_eq!(r["failure"]["kind"], "Unsupported", "{r}");
    assert_eq!(r["failure"]["phase"], "prune", "{r}");
    // The hint the text summary gives, for scripts too.
    assert!(r["hint"].as_str().unwrap().contains("--no-prune"), "{r}");
    assert_eq!(tags_of(&dest, "mirror/app").await, expected);

    // all-or-nothing prunes first, so the refused delete stops the run before any tag moves.
    seed(&source, "lib/app", &["v3"]).await;
    let aon = [PLAIN[0], PLAIN[1], "--rollback", "all-or-nothing"];
    let out = regmirror(&sync_args(&src, &dst, "v*", &aon));
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(tags_of(&dest, "mirror/app").await, expected, "{out:?}");

    // As the hint says, --no-prune makes the same sync succeed.
    let keep = [PLAIN[0], PLAIN[1], "--no-prune"];
    let out = regmirror(&sync_args(&src, &dst, "v*", &keep));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("synced   1   v3"), "{out:?}");
}

#[test]
fn a_wrong_postgresql_password_is_named_without_the_password() {
    let pg = regmirror_tests::Postgres::shared();
    let right = pg.password_user_url("right-pw");
    let wrong = right.replace(":right-pw@", ":hunter2-pg@");
    assert_ne!(right, wrong);
    let out = regmirror(&["mirror", "--state", &right, "list"]);
    assert_eq!(out.code, 0, "{out:?}");

    // The server's reason, not the client's "db error"; never the password, even in debug logs.
    let mut c = command(&["mirror", "--state", &wrong, "list"]);
    c.env("RUST_LOG", "debug");
    let out = output(c);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "password authentication failed for user \"{}\"",
            regmirror_tests::postgres::PASSWORD_USER
        )),
        "{out:?}"
    );
    assert!(!out.all().contains("hunter2-pg"), "{out:?}");

    // A database that does not exist is named as such.
    let missing = right.rsplit_once('/').unwrap().0.to_owned() + "/no_such_db";
    let out = regmirror(&["mirror", "--state", &missing, "list"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("database \"no_such_db\" does not exist"),
        "{out:?}"
    );
    assert!(!out.all().contains("right-pw"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_command_on_a_mirror_a_worker_is_running() {
    // The source never answers the listing, so the worker's run stays SYNCING until stopped.
    let (source, dest) = (Registry::start(), Registry::start());
    seed(&source, "lib/app", &["v1"]).await;
    let proxy = source_that_hangs_listing(&source);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regmirror.toml");
    std::fs::write(
        &config,
        format!(
            "state = \"sqlite:state.db\"\npoll_interval = \"1s\"\nlease = \"3s\"\n\
             shutdown_deadline = \"3s\"\n\n[destination]\nregistry = \"{}\"\n\
             tls_verify = false\n\n[[mirror]]\nid = \"mirror/app\"\nsource = \"{}/lib/app\"\n\
             tags = \"*\"\ntls_verify = false\nstart = 2020-01-01T00:00:00Z\n\
             username = \"reader\"\npassword = \"hunter2-src\"\n",
            dest.host(),
            proxy.host()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let m = |args: &[&str]| {
        let mut all = vec!["mirror", "--config", config_arg];
        all.extend(args);
        regmirror(&all)
    };
    let shown = || m(&["show", "mirror/app", "--json"]).json();
    let log_path = dir.path().join("worker.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut c = command(&["worker", "--config", config_arg]);
    c.env("RUST_LOG", "debug");
    let worker = c
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting the worker");
    let mut outputs = Vec::new();
    eventually("the run to start", async || {
        proxy.count("GET", "/tags/list") > 0
    })
    .await;
    let running = shown();
    assert_eq!(running["status"], "SYNCING", "{running}");
    assert!(running["lease_owner"].is_string(), "{running}");
    // Not the lease's expiry as if it were the next run.
    let text = m(&["show", "mirror/app"]).stdout;
    assert!(text.contains("next run:      running now"), "{text}");
    let table = m(&["list"]).stdout;
    assert!(table.contains("running now"), "{table}");

    // sync-now is refused while SYNCING, with what to do instead.
    let out = m(&["sync-now", "mirror/app"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("cannot sync now while SYNCING"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("regmirror mirror cancel mirror/app"),
        "{out:?}"
    );
    outputs.push(out);
    // An edit is taken (for the next run) and does not disturb this one.
    let out = m(&["update", "mirror/app", "--tags", "v*", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["tags"], serde_json::json!(["v*"]));
    assert_eq!(out.json()["status"], "SYNCING");
    outputs.push(out);
    // A running mirror is not deleted under its worker.
    let out = m(&["delete", "mirror/app"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("is being synced by worker"), "{out:?}");
    assert!(
        out.stderr.contains("regmirror mirror cancel mirror/app"),
        "{out:?}"
    );
    outputs.push(out);

    // Cancel: the run stops (a lease renewal, a third of the lease, carries the cancel).
    let out = m(&["cancel", "mirror/app"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("CANCEL"), "{out:?}");
    outputs.push(out);
    eventually("the cancelled run to stop", async || {
        shown()["lease_owner"].is_null()
    })
    .await;
    let stopped = shown();
    assert_eq!(stopped["status"], "CANCEL", "{stopped}");
    assert_eq!(stopped["retries_remaining"], 0, "{stopped}");
    let out = m(&["cancel", "mirror/app"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("cannot cancel while CANCEL"), "{out:?}");
    assert!(
        out.stderr.contains("regmirror mirror disable mirror/app"),
        "{out:?}"
    );
    outputs.push(out);

    // Usage log: newest first, paged with --before.
    let logs = m(&["logs", "mirror/app", "--json"]).json();
    let kinds: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["sync_cancelled", "sync_started"], "{logs}");
    let newest = m(&["logs", "mirror/app", "--limit", "1", "--json"]).json();
    assert_eq!(newest.as_array().unwrap().len(), 1);
    let seq = newest[0]["seq"].as_u64().unwrap().to_string();
    let older = m(&["logs", "mirror/app", "--before", &seq, "--json"]).json();
    assert_eq!(older[0]["kind"], "sync_started", "{older}");
    assert_eq!(older.as_array().unwrap().len(), 1);
    // The table says how to page back; --limit 0 is refused.
    let page = m(&["logs", "mirror/app", "--limit", "1"]).stdout;
    assert!(
        page.contains(&format!("(older entries: --before {seq})")),
        "{page}"
    );
    assert_eq!(m(&["logs", "mirror/app", "--limit", "0"]).code, 2);

    // Disabled, sync-now still runs it; SIGTERM then stops the worker within its deadline and
    // leaves the mirror due again, not SYNCING.
    assert_eq!(m(&["disable", "mirror/app"]).code, 0);
    let out = m(&["sync-now", "mirror/app"]);
    assert_eq!(out.code, 0, "{out:?}");
    proxy.reset_counts();
    eventually("the sync-now run to start", async || {
        proxy.count("GET", "/tags/list") > 0
    })
    .await;
    let started = std::time::Instant::now();
    let log = terminate_worker(worker, &log_path);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "SIGTERM took {:?} with a 3 s deadline",
        started.elapsed()
    );
    let after = shown();
    assert_eq!(after["status"], "SYNC_NOW", "{after}");
    assert!(after["lease_owner"].is_null(), "{after}");
    assert_eq!(
        after["retries_remaining"], 1,
        "a shutdown costs no retry: {after}"
    );

    let out = m(&["delete", "mirror/app"]);
    assert_eq!(out.code, 0, "{out:?}");
    for out in outputs.iter().chain([&m(&["list"]), &out]) {
        assert!(!out.all().contains("hunter2-src"), "{out:?}");
    }
    assert!(!log.contains("hunter2-src"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_names_its_side_in_one_line_without_the_password() {
    use base64::Engine as _;

    // Basic auth and bearer tokens (whose refusal comes from the token service, another host),
    // each as the source and as the destination, as text and as JSON, with debug logs on.
    const WRONG: &str = "wrong-Pw-7Qx-never-printed";
    let basic = Registry::builder().basic_auth().start();
    let token = Registry::builder().token_auth(false).start();
    let plain = Registry::start();
    for registry in [&basic, &token, &plain] {
        seed(registry, "lib/app", &["v1"]).await;
    }
    let creds = format!("{USERNAME}:{WRONG}");
    let encoded = base64::engine::general_purpose::STANDARD.encode(&creds);
    for registry in [&basic, &token] {
        let remote = format!("{}/lib/app", registry.host());
        let local = format!("{}/lib/app", plain.host());
        for (side, other, src, dst) in [
            ("src", "dest", &remote, &local),
            ("dest", "src", &local, &remote),
        ] {
            for json in [false, true] {
                let mut args: Vec<String> = sync_args(src, dst, "*", &PLAIN)
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                args.extend([format!("--{side}-creds"), creds.clone()]);
                if json {
                    args.push("--json".into());
                }
                // The token issuer answers from this process: run the binary off its threads.
                let out = tokio::task::spawn_blocking(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let mut c = command(&args);
                    c.env("RUST_LOG", "debug");
                    output(c)
                })
                .await
                .unwrap();
                let all = out.all();
                assert_eq!(out.code, 1, "{out:?}");
                assert!(!all.contains(WRONG) && !all.contains(&encoded), "{out:?}");
                let hint = format!("check --{side}-creds (or the docker login");
                if json {
                    let r = out.json();
                    assert_eq!(r["outcome"], "failed", "{r}");
                    assert!(r["error"].as_str().unwrap().starts_with("Unauthorized: "));
                    assert!(r["hint"].as_str().unwrap().contains(&hint), "{r}");
                    let failure = &r["failure"];
                    assert_eq!(failure["kind"], "Unauthorized", "{r}");
                    let named = if side == "src" {
                        "source"
                    } else {
                        "destination"
                    };
                    assert_eq!(failure["side"], named, "{r}");
                    assert_eq!(failure["phase"], "list", "{r}");
                    assert_eq!(failure["host"], registry.host(), "{r}");
                } else {
                    let failed: Vec<&str> = out
                        .stdout
                        .lines()
                        .filter(|l| l.starts_with("FAILED: "))
                        .collect();
                    assert_eq!(failed.len(), 1, "{out:?}");
                    // Not the bare "authentication required" a missing login gets too.
                    let refused = if std::ptr::eq(registry, &basic) {
                        format!("the registry refused the password of user \"{USERNAME}\"")
                    } else {
                        format!("the token service of {} refused access", registry.host())
                    };
                    assert!(failed[0].contains(&refused), "{out:?}");
                    assert!(out.stdout.contains(&hint), "{side}: {out:?}");
                    assert!(
                        !out.stdout.contains(&format!("--{other}-creds")),
                        "{side}: {out:?}"
                    );
                }
            }
        }
    }
    assert!(tags_of(&basic, "lib/app").await.contains_key("v1"));
}

#[tokio::test]
async fn one_registry_on_both_sides_gets_the_hint_of_the_side_whose_login_failed() {
    // The same host on both sides: only the failure's side, not the host its message names,
    // can tell which login was refused.
    let registry = Registry::builder().basic_auth().start();
    seed(&registry, "lib/app", &["v1"]).await;
    let good = format!("{USERNAME}:{PASSWORD}");
    let bad = format!("{USERNAME}:wrong-Pw-4Kd");
    let src = format!("{}/lib/app", registry.host());
    let dst = format!("{}/mirror/app", registry.host());
    for (side, other, named) in [("src", "dest", "source"), ("dest", "src", "destination")] {
        let (bad_flag, good_flag) = (format!("--{side}-creds"), format!("--{other}-creds"));
        for json in [false, true] {
            let mut args = sync_args(&src, &dst, "*", &PLAIN);
            args.extend([
                bad_flag.as_str(),
                bad.as_str(),
                good_flag.as_str(),
                good.as_str(),
            ]);
            if json {
                args.push("--json");
            }
            let out = regmirror(&args);
            assert_eq!(out.code, 1, "{out:?}");
            let hint = format!("check --{side}-creds (or the docker login");
            let text = if json {
                let r = out.json();
                assert_eq!(r["failure"]["kind"], "Unauthorized", "{r}");
                assert_eq!(r["failure"]["side"], named, "{r}");
                r["hint"].as_str().unwrap().to_owned()
            } else {
                out.stdout.clone()
            };
            assert!(text.contains(&hint), "{side}: {out:?}");
            assert!(!text.contains(&good_flag), "{side}: {out:?}");
        }
    }
}

#[tokio::test]
async fn a_registry_not_listening_gets_a_hint_without_the_flag_already_given() {
    let dest = Registry::start();
    let port = regmirror_tests::registry::free_port();
    let src = format!("127.0.0.1:{port}/lib/app");
    let dst = format!("{}/mirror/app", dest.host());

    let out = regmirror(&sync_args(&src, &dst, "*", &PLAIN));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("Connection refused"), "{out:?}");
    assert!(
        out.stdout
            .ends_with("\nhint: check that the registry is running and reachable\n"),
        "--src-tls-verify=false is given already: {out:?}"
    );
    // Without it, plain HTTP is worth a try.
    let out = regmirror(&sync_args(&src, &dst, "*", &["--dest-tls-verify=false"]));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .contains("a plain-HTTP registry needs --src-tls-verify=false"),
        "{out:?}"
    );
    let out = regmirror(&sync_args(&src, &dst, "*", &[PLAIN[0], PLAIN[1], "--json"]));
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.json()["outcome"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_the_worker_at_once_and_releases_its_runs() {
    // A run that never ends on its own and a long shutdown deadline: the first SIGTERM waits
    // for the run, the second stops it now, releasing the mirror (due again, no retry used).
    let (source, dest) = (Registry::start(), Registry::start());
    let proxy = source_that_hangs_listing(&source);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regmirror.toml");
    std::fs::write(
        &config,
        format!(
            "state = \"sqlite:state.db\"\npoll_interval = \"1s\"\nshutdown_deadline = \"5m\"\n\n\
             [destination]\nregistry = \"{}\"\ntls_verify = false\n\n[[mirror]]\n\
             id = \"mirror/app\"\nsource = \"{}/lib/app\"\ntags = \"*\"\ntls_verify = false\n\
             start = 2020-01-01T00:00:00Z\n",
            dest.host(),
            proxy.host()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let log_path = dir.path().join("worker.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut worker = command(&["worker", "--config", config_arg])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting the worker");
    eventually("the run to start", async || {
        proxy.count("GET", "/tags/list") > 0
    })
    .await;
    let pid = worker.id().to_string();
    let term = || {
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    term();
    eventually("the first signal to be logged", async || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("shutting down"))
    })
    .await;
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the first signal waits for the run"
    );
    term();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = worker.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second signal did not stop the worker"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(exit.success(), "{exit}: {log}");
    assert!(log.contains("stopping now"), "{log}");
    let shown = regmirror(&[
        "mirror",
        "--config",
        config_arg,
        "show",
        "mirror/app",
        "--json",
    ])
    .json();
    assert_eq!(shown["status"], "SYNC_NOW", "{shown}");
    assert!(shown["lease_owner"].is_null(), "{shown}");
    assert_eq!(shown["retries_remaining"], 3, "{shown}");
}

#[tokio::test]
async fn a_registry_that_requires_a_client_certificate_gets_the_one_in_the_cert_dir() {
    // docker's certs.d/HOST layout: ca.crt, client.cert, client.key.
    let (source, back) = (Registry::start(), Registry::start());
    let mtls = Registry::builder().client_certs().start();
    let seeded = seed(&source, "lib/app", &["v1", "v2"]).await;
    let certs = mtls.client_cert_dir().unwrap().to_str().unwrap().to_owned();
    let src = format!("{}/lib/app", source.host());
    let via = format!("{}/mirror/app", mtls.host());
    let dst = format!("{}/copy/app", back.host());

    // The CA alone is not enough: the registry closes the connection (rustls's alert does not
    // reach the request's error, so the message cannot say why). The command must fail, not
    // die: the HTTP client writes with writev, which raises SIGPIPE on a connection the peer
    // closed, and the CLI once reset SIGPIPE to its default action (for `| head`). Whether a
    // write meets the closed connection is a race, so a few tries.
    let ca_only = tempfile::tempdir().unwrap();
    std::fs::copy(mtls.ca_pem().unwrap(), ca_only.path().join("ca.crt")).unwrap();
    let ca_dir = ca_only.path().to_str().unwrap();
    for _ in 0..5 {
        let out = regmirror(&sync_args(
            &src,
            &via,
            "*",
            &["--src-tls-verify=false", "--dest-cert-dir", ca_dir],
        ));
        assert_eq!(out.code, 1, "{out:?}");
    }

    let out = regmirror(&sync_args(
        &src,
        &via,
        "*",
        &["--src-tls-verify=false", "--dest-cert-dir", &certs],
    ));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("synced   2   v1, v2"), "{out:?}");
    let out = regmirror(&sync_args(
        &via,
        &dst,
        "*",
        &["--src-cert-dir", &certs, "--dest-tls-verify=false"],
    ));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(tags_of(&back, "copy/app").await, seeded);

    // A certificate file given for the directory: exit status 2, saying what to give instead.
    let ca_file = mtls.client_cert_dir().unwrap().join("ca.crt");
    let out = regmirror(&sync_args(
        &src,
        &via,
        "*",
        &[
            "--src-tls-verify=false",
            "--dest-cert-dir",
            ca_file.to_str().unwrap(),
        ],
    ));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("ca.crt is a file; give the directory that holds it"),
        "{out:?}"
    );

    // A key that is missing is named before anything runs.
    let no_key = tempfile::tempdir().unwrap();
    std::fs::copy(
        mtls.client_cert_dir().unwrap().join("client.cert"),
        no_key.path().join("client.cert"),
    )
    .unwrap();
    let out = regmirror(&sync_args(
        &src,
        &via,
        "*",
        &[
            "--src-tls-verify=false",
            "--dest-cert-dir",
            no_key.path().to_str().unwrap(),
        ],
    ));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("has no key beside it"), "{out:?}");
}

#[test]
fn a_malformed_authfile_is_invalid_input_named_without_its_content() {
    // Read only when a registry asks for credentials, it failed the run mid-way (exit 1).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.json");
    std::fs::write(&file, r#"{"auths": {"127.0.0.1:1": {"auth": "c2VjcmV0"}"#).unwrap();
    let path = file.to_str().unwrap();
    for flag in ["--authfile", "--src-authfile", "--dest-authfile"] {
        let out = regmirror(&sync_args(
            "127.0.0.1:1/a/b",
            "127.0.0.1:2/c/d",
            "*",
            &[flag, path, "--json"],
        ));
        assert_eq!(out.code, 2, "{out:?}");
        let error = out.json()["error"].as_str().unwrap().to_owned();
        assert!(
            error.starts_with(&format!("{flag}: {path} is not valid JSON")),
            "{error}"
        );
        assert!(!out.all().contains("c2VjcmV0"), "{out:?}");
    }
    std::fs::write(&file, "[]").unwrap();
    let out = regmirror(&sync_args(
        "127.0.0.1:1/a/b",
        "127.0.0.1:2/c/d",
        "*",
        &["--authfile", path],
    ));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("is not a JSON object"), "{out:?}");
}

#[test]
fn credentials_without_a_colon_say_there_is_no_prompt_and_echo_nothing() {
    // skopeo prompts for the password of `--creds USER`; regmirror runs unattended.
    for (flag, value) in [
        ("--dest-creds", USERNAME),
        ("--src-creds", "hunter2-typed-alone"),
    ] {
        for json in [false, true] {
            let mut extra = vec![flag, value];
            if json {
                extra.push("--json");
            }
            let out = regmirror(&sync_args(
                "127.0.0.1:1/a/b",
                "127.0.0.1:2/c/d",
                "*",
                &extra,
            ));
            assert_eq!(out.code, 2, "{out:?}");
            assert!(!out.all().contains("hunter2"), "{out:?}");
            assert!(
                out.stderr.contains(&format!(
                    "{flag}: expected USER:PASS, but there is no colon"
                )),
                "{out:?}"
            );
            let hint = "regmirror does not prompt for a password";
            if json {
                let r = out.json();
                assert_eq!(r["outcome"], "invalid", "{r}");
                assert!(r["hint"].as_str().unwrap().starts_with(hint), "{r}");
            } else {
                assert!(out.stderr.contains(hint), "{out:?}");
            }
        }
    }
}

#[tokio::test]
async fn show_tells_a_lost_run_from_a_running_one() {
    use regmirror::state::SqliteStateStore;
    use regmirror::{MirrorConfig, StateStore};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let store = SqliteStateStore::open(&db).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    let lease = std::time::Duration::from_secs(60);
    for id in ["mirror/live", "mirror/lost"] {
        let mut c = MirrorConfig::new(id, "quay.io/coreos/etcd".parse().unwrap(), &["v*"]);
        c.sync_start_date = Some(now - lease * 10);
        store
            .create_mirror(&c.validated().unwrap(), now)
            .await
            .unwrap();
    }
    // The dead worker claimed "lost" long ago; the live one holds "live" now.
    store
        .claim("mirror/lost", "dead-worker", now - lease * 5, lease)
        .await
        .unwrap();
    store
        .claim("mirror/live", "live-worker", now, lease)
        .await
        .unwrap();
    let state = format!("sqlite:{}", db.display());
    let show = |id: &str| regmirror(&["mirror", "--state", &state, "show", id]).stdout;
    let live = show("mirror/live");
    assert!(
        live.contains("running on:    live-worker (lease until"),
        "{live}"
    );
    assert!(live.contains("next run:      running now"), "{live}");
    let lost = show("mirror/lost");
    assert!(
        lost.contains("lost run:      dead-worker stopped without finishing"),
        "{lost}"
    );
    assert!(lost.contains("next run:      at the next poll"), "{lost}");
    assert!(
        lost.contains("the next worker poll takes it over"),
        "{lost}"
    );
    // Cancelled before its worker died: nothing takes it over until sync-now.
    store.cancel("mirror/lost").await.unwrap();
    let cancelled = show("mirror/lost");
    assert!(
        cancelled.contains("dead-worker stopped without finishing"),
        "{cancelled}"
    );
    assert!(!cancelled.contains("takes it over"), "{cancelled}");
    assert!(
        cancelled.contains("next run:      none (cancelled; use sync-now)"),
        "{cancelled}"
    );
}

#[tokio::test]
async fn odd_tag_names_and_nested_repositories_keep_byte_identical_manifests() {
    let (source, dest) = (Registry::start(), Registry::start());
    let long = "t".repeat(128);
    let tags = ["a_b", "x.y-z", "_lead", "1.0", long.as_str()];
    let seeded = seed(&source, "org/team/project/app", &tags).await;
    let src = format!("{}/org/team/project/app", source.host());
    let dst = format!("{}/mirror/org/team/app", dest.host());

    // --tags repeated, with a glob and a literal.
    let out = regmirror(&[
        "sync", &src, "--to", &dst, "--tags", "*_*,x.*", "--tags", "1.0", "--tags", "t*", PLAIN[0],
        PLAIN[1],
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(tags_of(&dest, "mirror/org/team/app").await, seeded);
    for tag in tags {
        assert_eq!(
            dest.seeder().manifest("mirror/org/team/app", tag).await,
            source.seeder().manifest("org/team/project/app", tag).await,
            "{tag}: the destination serves the source's manifest bytes"
        );
    }

    // Names distribution would refuse are input errors, before any registry is asked.
    for (bad, at) in [
        (format!("{}/Org/App", source.host()), "SOURCE"),
        (format!("{}/org/app-", source.host()), "SOURCE"),
    ] {
        let out = regmirror(&sync_args(&bad, &dst, "*", &PLAIN));
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr.starts_with(&format!("regmirror: {at}: ")),
            "{out:?}"
        );
    }
    let upper = format!("{}/Mirror/App", dest.host());
    let out = regmirror(&sync_args(&src, &upper, "*", &PLAIN));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--to: "), "{out:?}");
}

#[tokio::test]
async fn a_postgresql_worker_at_debug_level_logs_no_stored_password() {
    // The PostgreSQL client logs statement parameters at debug level; the stored mirror
    // configurations are parameters, and they hold source passwords.
    let pg = regmirror_tests::Postgres::shared();
    let state = pg.password_user_url("pg-pw");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regmirror.toml");
    std::fs::write(
        &config,
        format!(
            "state = \"{state}\"\npoll_interval = \"1s\"\n\n[destination]\n\
             registry = \"127.0.0.1:9\"\ntls_verify = false\n\n[[mirror]]\nid = \"mirror/app\"\n\
             source = \"127.0.0.1:9/lib/app\"\ntags = \"*\"\nstart = 2020-01-01T00:00:00Z\n\
             username = \"reader\"\npassword = \"hunter2-stored\"\n"
        ),
    )
    .unwrap();
    let log_path = dir.path().join("worker.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let worker = command(&["worker", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "debug,tokio_postgres=trace")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting the worker");
    // The mirror is claimed, run (and fails: nothing listens there), released: every kind of
    // statement with a configuration in it has been executed.
    eventually("the run to fail", async || {
        let out = regmirror(&["mirror", "--state", &state, "show", "mirror/app", "--json"]);
        out.code == 0 && out.json()["status"] == "FAIL"
    })
    .await;
    let log = terminate_worker(worker, &log_path);
    assert!(
        log.contains("tokio_postgres"),
        "debug logging was on: {log}"
    );
    assert!(!log.contains("hunter2-stored"), "{log}");
    assert!(!log.contains("pg-pw"), "{log}");
}

/// Five `regmirror worker` processes started at the same moment with one config file declaring
/// 20 mirrors: every one comes up (none exits on "already exists"), each mirror exists once, and
/// every worker stops cleanly on SIGTERM.
fn five_workers_started_at_once_all_come_up(state: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "state = \"{state}\"\npoll_interval = \"1s\"\nshutdown_deadline = \"5s\"\n\n\
         [destination]\nregistry = \"oci:layouts\"\n"
    );
    for i in 0..20 {
        // Disabled: nothing runs, only the declaration is under test.
        text.push_str(&format!(
            "\n[[mirror]]\nid = \"fleet/m{i:02}\"\nsource = \"127.0.0.1:1/src/app\"\n\
             tags = \"v*\"\nenabled = false\n"
        ));
    }
    let config = dir.path().join("regmirror.toml");
    std::fs::write(&config, text).unwrap();
    let config_arg = config.to_str().unwrap();
    let workers: Vec<_> = (0..5)
        .map(|i| {
            let log_path = dir.path().join(format!("worker{i}.log"));
            let log = std::fs::File::create(&log_path).unwrap();
            let child = command(&["worker", "--config", config_arg])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("starting a worker");
            (child, log_path)
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut workers: Vec<_> = workers
        .into_iter()
        .map(|(mut child, log_path)| {
            loop {
                let log = std::fs::read_to_string(&log_path).unwrap();
                if let Some(exit) = child.try_wait().unwrap() {
                    panic!("a worker exited with {exit} at start: {log}");
                }
                if log.contains("worker started") {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "no start: {log}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            (child, log_path)
        })
        .collect();
    // Still running a poll later.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for (child, log_path) in &mut workers {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{}",
            std::fs::read_to_string(log_path).unwrap()
        );
    }
    let listed = regmirror(&["mirror", "--config", config_arg, "list", "--json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 20, "{listed}");
    let created: usize = workers
        .into_iter()
        .map(|(child, log_path)| {
            terminate_worker(child, &log_path)
                .matches("created from the config file")
                .count()
        })
        .sum();
    assert_eq!(created, 20, "each mirror created by exactly one worker");
}

#[test]
fn five_workers_started_at_once_on_sqlite_all_come_up() {
    let dir = tempfile::tempdir().unwrap();
    five_workers_started_at_once_all_come_up(&format!(
        "sqlite:{}",
        dir.path().join("state.db").display()
    ));
}

#[test]
fn five_workers_started_at_once_on_postgresql_all_come_up() {
    let pg = regmirror_tests::Postgres::shared();
    let conn = pg.create_database();
    let db = conn
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("dbname="))
        .expect("the kit names the database");
    five_workers_started_at_once_all_come_up(&format!(
        "postgres://postgres@127.0.0.1:{}/{db}",
        pg.port()
    ));
}

#[tokio::test]
async fn the_ssrf_guard_is_switched_on_by_a_sync_flag_and_by_the_worker_config() {
    use regmirror_tests::hostile::{HostileRegistry, Mode};

    let source = HostileRegistry::start(Mode::Honest);
    source.put_image("lib/app", "v1", &regmirror_tests::Image::simple(1, 1, 100));
    let dir = tempfile::tempdir().unwrap();
    let from = format!("{}/lib/app", source.host());
    let to = format!("oci:{}", dir.path().join("out").display());
    let sync = |extra: &[&str]| {
        let mut args = sync_args(&from, &to, "*", &["--src-tls-verify=false"]);
        args.extend_from_slice(extra);
        regmirror(&args)
    };

    let out = sync(&["--ssrf-guard"]);
    assert_eq!(out.code, 1, "{out:?}");
    let all = out.all();
    assert!(
        all.contains("the SSRF guard refused 127.0.0.1: 127.0.0.1 is 127.0.0.1 (loopback)"),
        "{all}"
    );
    assert!(
        all.contains("--ssrf-allow"),
        "the hint says how to allow it: {all}"
    );
    assert_eq!(source.requests(), [], "a refused source was contacted");
    let out = sync(&["--ssrf-guard", "--ssrf-allow", "127.0.0.0/8"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = sync(&["--ssrf-allow", "127.0.0.1"]);
    assert_eq!(out.code, 2, "--ssrf-allow without --ssrf-guard: {out:?}");

    // The worker's file turns it on for every mirror's source.
    let config = dir.path().join("regmirror.toml");
    std::fs::write(
        &config,
        format!(
            "state = \"sqlite:state.db\"\npoll_interval = \"1s\"\nssrf_guard = true\n\n\
             [destination]\nregistry = \"oci:{}\"\n\n[[mirror]]\nid = \"mirror/app\"\n\
             source = \"{from}\"\ntags = \"*\"\ntls_verify = false\nstart = 2020-01-01T00:00:00Z\n",
            dir.path().join("layouts").display()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("worker.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let requests_before = source.requests().len();
    let worker = command(&["worker", "--config", config.to_str().unwrap()])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting the worker");
    eventually("the refused run to be logged", async || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("sync_failed"))
    })
    .await;
    let logged = terminate_worker(worker, &log_path);
    assert!(logged.contains("SSRF guard refused 127.0.0.1"), "{logged}");
    assert_eq!(source.requests().len(), requests_before);
}

#[test]
fn mirror_add_and_update_check_the_source_against_the_configs_ssrf_guard() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regmirror.toml");
    let write = |allow: &str| {
        std::fs::write(
            &config,
            format!(
                "state = \"sqlite:state.db\"\nssrf_guard = true\nssrf_allow = [{allow}]\n\n\
                 [destination]\nregistry = \"oci:layouts\"\n"
            ),
        )
        .unwrap();
    };
    write("");
    let config = config.to_str().unwrap();
    let add = |source: &str| {
        regmirror(&[
            "mirror", "--config", config, "add", "m/a", "--source", source, "--tags", "*",
        ])
    };
    let out = add("127.0.0.1:5000/lib/app");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "--source: the SSRF guard refused 127.0.0.1: 127.0.0.1 is 127.0.0.1 (loopback)"
        ),
        "{out:?}"
    );
    assert!(out.stderr.contains("ssrf_allow"), "{out:?}");
    assert!(!dir.path().join("state.db").exists(), "nothing was stored");
    let out = add("localhost:5000/lib/app");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("localhost resolves to"), "{out:?}");

    // A name that resolves nowhere here is left to the workers, which check as they connect.
    let out = add("registry.invalid/lib/app");
    assert_eq!(out.code, 0, "{out:?}");
    let out = regmirror(&[
        "mirror",
        "--config",
        config,
        "update",
        "m/a",
        "--source",
        "10.1.2.3/lib/app",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("10.1.2.3 (private)"), "{out:?}");
    write("\"10.0.0.0/8\"");
    let out = regmirror(&[
        "mirror",
        "--config",
        config,
        "update",
        "m/a",
        "--source",
        "10.1.2.3/lib/app",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    // With --state the store's workers are unknown: nothing to check against.
    let state = format!("sqlite:{}", dir.path().join("other.db").display());
    let out = regmirror(&[
        "mirror",
        "--state",
        &state,
        "add",
        "m/b",
        "--source",
        "127.0.0.1:5000/lib/app",
        "--tags",
        "*",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
}

#[tokio::test]
async fn signatures_travel_with_their_image_unless_referrers_is_none() {
    let (source, dest) = (Registry::start(), Registry::start());
    let seeded = seed(&source, "lib/app", &["v1"]).await;
    let signature = regmirror_tests::Artifact::cosign_signature(1);
    let sig_tag = format!("{}.sig", regmirror_tests::referrers_tag(&seeded["v1"]));
    source
        .seeder()
        .push_artifact("lib/app", &sig_tag, &signature)
        .await;
    let src = format!("{}/lib/app", source.host());
    let dst = format!("{}/mirror/app", dest.host());

    let mut args = sync_args(&src, &dst, "v1", &PLAIN);
    args.extend(["--referrers", "none", "--json"]);
    let out = regmirror(&args);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["referrers_copied"], 0, "{out:?}");
    assert_eq!(tags_of(&dest, "mirror/app").await.len(), 1);

    let out = regmirror(&sync_args(&src, &dst, "v1", &PLAIN));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("1 referrer (signature, SBOM, attestation)"),
        "{out:?}"
    );
    assert_eq!(
        tags_of(&dest, "mirror/app").await.get(&sig_tag),
        Some(&signature.manifest.digest)
    );

    let mut args = sync_args(&src, &dst, "v1", &PLAIN);
    args.extend(["--referrers", "sboms"]);
    let out = regmirror(&args);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--referrers"), "{out:?}");
}
