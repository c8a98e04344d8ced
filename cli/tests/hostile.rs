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
