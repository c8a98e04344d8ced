//! What the CLI test files share.

use std::process::Command;

/// A command for the built binary, isolated from the machine's docker logins and proxies.
pub fn command(args: &[&str]) -> Command {
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
        .env_remove("REGMIRROR_STATE")
        .env_remove("XDG_RUNTIME_DIR");
    c
}
