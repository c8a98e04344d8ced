//! What a package installs beside the `regmirror` binary, from the binary itself: its version,
//! shell completion scripts that the shells load, and manual pages that man renders.

use std::process::{Command, Output};

fn regmirror(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(args)
        .output()
        .expect("running the regmirror binary");
    assert!(
        out.status.success(),
        "regmirror {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(regmirror(args).stdout).expect("UTF-8 output")
}

#[test]
fn version_is_the_workspace_version() {
    assert_eq!(
        stdout(&["--version"]),
        format!("regmirror {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bash_completion_loads_and_completes_subcommands_and_options() {
    let script = stdout(&["completions", "bash"]);
    // Load it into a real bash and ask it, as bash-completion does on <Tab>.
    let probe = r#"
        source /dev/stdin
        complete -p regmirror
        COMP_WORDS=(regmirror mi); COMP_CWORD=1; _regmirror regmirror mi regmirror
        echo "subcommands: ${COMPREPLY[*]}"
        COMP_WORDS=(regmirror sync --dry); COMP_CWORD=2; _regmirror regmirror --dry sync
        echo "options: ${COMPREPLY[*]}"
    "#;
    let mut bash = Command::new("bash")
        .args(["--norc", "-c", probe])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("bash");
    use std::io::Write as _;
    bash.stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("writing the script");
    let out = bash.wait_with_output().expect("bash ran");
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("-F _regmirror") && out.contains(" regmirror\n"),
        "{out}"
    );
    assert!(out.contains("subcommands: mirror"), "{out}");
    assert!(out.contains("options: --dry-run"), "{out}");
}

#[test]
fn zsh_and_fish_completions_name_the_commands_and_options() {
    let zsh = stdout(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef regmirror"), "{zsh}");
    let fish = stdout(&["completions", "fish"]);
    assert!(fish.contains("complete -c regmirror"), "{fish}");
    for text in [zsh, fish] {
        for word in ["sync", "worker", "dest-tls-verify", "sync-now"] {
            assert!(text.contains(word), "{word} missing");
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error_naming_the_choices() {
    let out = Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["completions", "tcsh"])
        .output()
        .expect("running the regmirror binary");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
}

#[test]
fn man_prints_the_page_and_writes_one_per_command() {
    let page = stdout(&["man"]);
    assert!(
        page.contains(&format!(
            ".TH regmirror 1  \"regmirror {}\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{page}"
    );
    assert!(page.contains("regmirror\\-sync(1)"), "{page}");

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_str().expect("UTF-8 path");
    regmirror(&["man", "--dir", path]);
    for name in ["regmirror.1", "regmirror-sync.1", "regmirror-mirror-add.1"] {
        assert!(dir.path().join(name).is_file(), "{name} not written");
    }
    // man renders what was written, options and all.
    let rendered = Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(dir.path().join("regmirror-sync.1"))
        .env("MANWIDTH", "100")
        .output()
        .expect("man");
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(rendered.status.success(), "{text}");
    assert!(text.contains("--dry-run"), "{text}");
}

#[test]
fn man_into_a_missing_directory_fails_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["man", "--dir", "/nonexistent/regmirror-man"])
        .output()
        .expect("running the regmirror binary");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "regmirror: cannot write the manual pages into /nonexistent/regmirror-man:"
        ),
        "{err}"
    );
}
