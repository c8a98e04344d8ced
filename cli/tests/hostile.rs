//! The `regmirror` binary against a hostile source registry (the kit's [`HostileRegistry`]):
//! every phase ends at `--timeout`, and what the registry says reaches no output unescaped.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use regmirror_tests::hostile::{HostileRegistry, Mode};

mod common;
use common::command as regmirror;

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_dry_run_against_a_registry_that_never_answers_ends_at_the_timeout() {
    let hostile = HostileRegistry::start(Mode::Hang);
    let source = format!("{}/src/app", hostile.host());
    let dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}", dir.path().join("out").display());
    let started = Instant::now();
    // A dry run and a sync at once: both must stop at --timeout (the stall timeout is 60 s,
    // each request is retried).
    let children: Vec<_> = [&["--dry-run"][..], &[][..]]
        .iter()
        .map(|extra| {
            let mut args = vec![
                "sync",
                &source,
                "--to",
                &layout,
                "--tags",
                "*",
                "--src-tls-verify=false",
                "--timeout",
                "3s",
            ];
            args.extend_from_slice(extra);
            regmirror(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", text(&output));
        assert!(text(&output).contains("timeout of 3s"), "{}", text(&output));
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

/// Every path under `dir` with its permission bits.
fn modes_under(dir: &std::path::Path) -> Vec<(String, u32, bool)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            let shown = path.strip_prefix(dir).unwrap().display().to_string();
            out.push((shown, meta.permissions().mode() & 0o7777, meta.is_dir()));
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

#[test]
fn a_layout_written_under_umask_022_is_readable_by_another_user() {
    use regmirror_tests::{Flavor, Image, Index};
    use std::os::unix::fs::PermissionsExt as _;

    let hostile = HostileRegistry::start(Mode::Honest);
    let image = Image::simple(1, 2, 1000);
    let index = Index::two_platforms(Flavor::Oci, 2, 500);
    hostile.put_image("src/app", "v1", &image);
    hostile.put_index("src/app", "multi", &index);
    let dir = tempfile::tempdir().unwrap();
    // The test's own directory is private; the layout inside it is what is checked.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let layout = dir.path().join("layout");
    let output = Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_regmirror"))
        .args(["sync", &format!("{}/src/app", hostile.host())])
        .args(["--to", &format!("oci:{}", layout.display())])
        .args(["--tags", "*", "--src-tls-verify=false"])
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));

    let modes = modes_under(&layout);
    assert!(
        modes.iter().any(|(path, _, _)| path == "index.json"),
        "{modes:?}"
    );
    for (path, mode, is_dir) in &modes {
        let wanted = if *is_dir { 0o755 } else { 0o644 };
        assert_eq!(*mode, wanted, "{path} is {mode:o}");
    }
    for (tag, manifest) in [("v1", &image.manifest), ("multi", &index.manifest)] {
        let read = Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "skopeo",
            ])
            .args([
                "inspect",
                "--raw",
                &format!("oci:{}:{tag}", layout.display()),
            ])
            .env("HOME", "/nonexistent")
            .output()
            .unwrap_or_else(|e| {
                panic!("running setpriv and skopeo ({e}); install skopeo with apt-get")
            });
        assert!(read.status.success(), "{tag}: {}", text(&read));
        assert_eq!(read.stdout, manifest.bytes, "{tag}");
    }
}

/// The secrets a hostile registry echoes: the password, the base64 `user:password` login of a
/// Basic `Authorization`, and the bearer token its own token service issued.
fn secrets() -> [String; 3] {
    [
        regmirror_tests::PASSWORD.to_owned(),
        regmirror_tests::hostile::base64_login(),
        regmirror_tests::hostile::HOSTILE_TOKEN.to_owned(),
    ]
}

/// Fail if `text`, what `channel` put out, holds any secret.
fn assert_no_secret(channel: &str, text: &str) {
    for secret in secrets() {
        assert!(
            !text.contains(&secret),
            "{channel} holds the secret {secret:?}:\n{text}"
        );
    }
}

/// A registry echoing every secret a request carries, with `status`, on paths holding `on`.
fn echoing(token: bool, status: u16, on: &str) -> HostileRegistry {
    let builder = HostileRegistry::builder(Mode::EchoSecrets {
        status,
        on: on.to_owned(),
    });
    let builder = if token {
        builder.token_auth()
    } else {
        builder.basic_auth()
    };
    let hostile = builder.start();
    hostile.put_image("src/app", "v1", &regmirror_tests::Image::simple(3, 1, 100));
    hostile
}

#[test]
fn secrets_a_registry_echoes_reach_no_output_of_a_sync_or_dry_run() {
    let login = format!(
        "{}:{}",
        regmirror_tests::USERNAME,
        regmirror_tests::PASSWORD
    );
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    let mut registries = Vec::new();
    for token in [false, true] {
        for status in [401, 403, 500] {
            // Echoed while listing (the run fails) and while reading a manifest (the tag fails).
            for on in ["/tags/list", "/manifests/"] {
                let hostile = echoing(token, status, on);
                let source = format!("{}/src/app", hostile.host());
                let layout = format!("oci:{}", dir.path().join(runs.len().to_string()).display());
                for extra in [
                    &["--json"][..],
                    &[][..],
                    &["--dry-run"][..],
                    &["--dry-run", "--json"][..],
                ] {
                    let mut args = vec!["sync", &source, "--to", &layout, "--tags", "*"];
                    args.extend(["--src-tls-verify=false", "--src-creds", &login]);
                    args.extend_from_slice(extra);
                    let child = regmirror(&args)
                        .env("RUST_LOG", "trace")
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap();
                    runs.push((format!("{args:?} (token {token}, {status} on {on})"), child));
                }
                registries.push(hostile);
            }
        }
    }
    for (what, child) in runs {
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{what}: {}", text(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_no_secret(&format!("stdout of {what}"), &stdout);
        assert_no_secret(&format!("stderr (trace log) of {what}"), &stderr);
        // The registry's message still shows (on stdout, or stderr for a dry run that could
        // not list), with the secrets cut out.
        let shown = text(&output);
        assert!(shown.contains("DENIED: you sent"), "{what}: {shown}");
        assert!(shown.contains("<redacted>"), "{what}: {shown}");
    }
    // Every registry was asked with the secrets it then echoed.
    for hostile in &registries {
        assert!(hostile.requests().iter().any(|s| s.authorization.is_some()));
    }
}

#[tokio::test]
async fn secrets_a_registry_echoes_reach_no_usage_log_webhook_status_or_worker_log() {
    let basic = echoing(false, 401, "/manifests/");
    let token = echoing(true, 500, "/manifests/");
    let hook = regmirror_tests::webhook::WebhookReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regmirror.toml");
    let mirror = |id: &str, source: &HostileRegistry| {
        format!(
            "[[mirror]]\nid = \"{id}\"\nsource = \"{}/src/app\"\ntags = \"*\"\nverify_tls = false\n\
             username = \"{}\"\npassword = \"{}\"\nstart = 2020-01-01T00:00:00Z\n\n",
            source.host(),
            regmirror_tests::USERNAME,
            regmirror_tests::PASSWORD,
        )
    };
    let layouts = dir.path().join("layouts");
    std::fs::write(
        &config,
        format!(
            "state = \"sqlite:state.db\"\npoll_interval = \"1s\"\n\n[destination]\n\
             registry = \"oci:{}\"\n\n[[webhook]]\nurl = \"{}\"\n\n{}{}",
            layouts.display(),
            hook.url(),
            mirror("mirror/basic", &basic),
            mirror("mirror/token", &token),
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let log_path = dir.path().join("worker.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut worker = regmirror(&["worker", "--config", config])
        .env("RUST_LOG", "trace")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // Started and failed, for each mirror.
    let received = hook.wait_for(4, Duration::from_secs(60)).await;
    let failed: Vec<_> = received
        .iter()
        .filter(|r| r.json()["event"] == "sync_failed")
        .collect();
    assert_eq!(failed.len(), 2, "{received:?}");
    assert!(
        Command::new("kill")
            .args(["-TERM", &worker.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(worker.wait().unwrap().success());

    for request in &received {
        assert_no_secret("a webhook payload", &String::from_utf8_lossy(&request.body));
    }
    assert_no_secret(
        "the worker's trace log",
        &std::fs::read_to_string(&log_path).unwrap(),
    );
    for id in ["mirror/basic", "mirror/token"] {
        for command in [
            &["logs", id][..],
            &["logs", id, "--json"][..],
            &["show", id][..],
            &["show", id, "--json"][..],
        ] {
            let mut args = vec!["mirror", "--config", config];
            args.extend_from_slice(command);
            let output = regmirror(&args).output().unwrap();
            assert!(output.status.success(), "{args:?}: {}", text(&output));
            assert_no_secret(&format!("{args:?}"), &text(&output));
            // The failed tag's entry keeps the registry's words, scrubbed.
            if command[0] == "logs" {
                assert!(
                    text(&output).contains("<redacted>"),
                    "{args:?}: {}",
                    text(&output)
                );
            }
        }
    }
}

#[test]
fn control_characters_from_a_registry_are_escaped_in_text_and_exact_in_json() {
    // Tags that would clear the screen, rewrite the line, ring, cut a C string, or forge a
    // summary line; and an error body full of escapes.
    let tags = [
        "v1\u{1b}[2J",
        "v2\rsynced   everything",
        "v3\u{7}",
        "v4\u{0}",
        "v5\nFAILED: nothing, all is well",
        "v6\u{202e}",
    ];
    let hostile = HostileRegistry::start(Mode::Honest);
    let image = regmirror_tests::Image::simple(4, 1, 100);
    hostile.put_image("src/app", "good", &image);
    for tag in tags {
        hostile.put_tag("src/app", tag, &image.manifest.digest);
    }
    let noisy = HostileRegistry::start(Mode::ErrorText {
        status: 500,
        text: "\u{1b}]0;owned\u{7}\u{1b}[31mred\r\u{0}".to_owned(),
        on: "/manifests/".to_owned(),
    });
    noisy.put_image("src/app", "v1", &image);
    let dir = tempfile::tempdir().unwrap();
    let sync = |registry: &HostileRegistry, extra: &[&str]| {
        let source = format!("{}/src/app", registry.host());
        let layout = format!(
            "oci:{}",
            dir.path().join(registry.host().replace(':', "-")).display()
        );
        let mut args = vec!["sync", &source, "--to", &layout, "--tags", "*"];
        args.push("--src-tls-verify=false");
        args.extend_from_slice(extra);
        regmirror(&args).env("RUST_LOG", "trace").output().unwrap()
    };
    // Logs on stderr (at trace level) are checked as well.
    for registry in [&hostile, &noisy] {
        for extra in [&[][..], &["--dry-run"][..]] {
            let output = sync(registry, extra);
            let shown = text(&output);
            assert_eq!(output.status.code(), Some(1), "{shown}");
            let raw = shown
                .chars()
                .find(|c| (c.is_control() && *c != '\n') || *c == '\u{202e}');
            assert_eq!(raw, None, "{extra:?}: {shown:?}");
            // One line per failed tag: none forged.
            for forged in ["synced   everything", "FAILED: nothing"] {
                assert!(
                    !shown.lines().any(|l| l.trim_start().starts_with(forged)),
                    "{shown}"
                );
            }
        }
    }
    let output = sync(&hostile, &["--json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut failed: Vec<&str> = report["tags_failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["tag"].as_str().unwrap())
        .collect();
    failed.sort_unstable();
    let mut expected = tags.to_vec();
    expected.sort_unstable();
    assert_eq!(failed, expected);
    let output = sync(&noisy, &["--json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let reason = report["tags_failed"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("\u{1b}]0;owned\u{7}\u{1b}[31mred"),
        "{reason:?}"
    );
}

#[test]
fn an_endless_tag_list_stops_at_the_default_limit_in_bounded_memory() {
    let hostile = HostileRegistry::start(Mode::EndlessTags {
        page_size: 10_000,
        tag_len: 24,
    });
    let source = format!("{}/src/app", hostile.host());
    let dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}", dir.path().join("out").display());
    let log = dir.path().join("output");
    let file = std::fs::File::create(&log).unwrap();
    let started = Instant::now();
    #[allow(clippy::zombie_processes)] // Reaped by wait4 below, which reports its memory too.
    let child = regmirror(&["sync", &source, "--to", &layout, "--tags", "*"])
        .args(["--src-tls-verify=false", "--dry-run"])
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the two locals.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t);
    let shown = std::fs::read_to_string(&log).unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1,
        "{shown}"
    );
    assert!(
        shown.contains("more than 1000000 tags (the max_tags limit)"),
        "{shown}"
    );
    let peak_mib = usage.ru_maxrss / 1024;
    eprintln!(
        "endless tag list: stopped at 1 000 000 tags after {} pages in {:?}, peak RSS {peak_mib} MiB",
        hostile.count("GET", "/tags/list"),
        started.elapsed()
    );
    assert!(peak_mib < 256, "peak RSS {peak_mib} MiB");
}
