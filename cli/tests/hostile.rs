//! The `regmirror` binary against a hostile source registry (the kit's [`HostileRegistry`]):
//! every phase ends at `--timeout`, and what the registry says reaches no output unescaped.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use regmirror_tests::hostile::{HostileRegistry, Mode};

/// The built binary, isolated from the machine's docker logins and proxies.
fn regmirror(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_regmirror"));
    c.args(args)
        .env("DOCKER_CONFIG", "/nonexistent/regmirror-test-docker-config")
        .env(
            "REGISTRY_AUTH_FILE",
            "/nonexistent/regmirror-test-auth.json",
        )
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env_remove("REGMIRROR_SRC_CREDS")
        .env_remove("REGMIRROR_DEST_CREDS")
        .env_remove("REGMIRROR_STATE");
    c
}

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
