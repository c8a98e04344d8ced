//! A throwaway PostgreSQL cluster on a loopback port: `initdb` into a temp dir, `postgres` with
//! trust auth listening on 127.0.0.1 only (but for [`PASSWORD_USER`], who must give a password),
//! stopped (fast shutdown) and removed on drop.
//!
//! PostgreSQL refuses to run as root, so under root the cluster runs as the `postgres` OS user
//! (the Debian package creates it). Tests share one cluster while any of them holds it
//! ([`Postgres::shared`]) and each gets its own database ([`Postgres::create_database`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::registry::free_port;

const INSTALL: &str =
    "PostgreSQL is not installed; install it with `apt-get install -y postgresql`";

/// The one role that logs in with a password ([`Postgres::password_user_url`]), so tests can
/// see what a wrong one does; every other role is trusted.
pub const PASSWORD_USER: &str = "regmirror_password_user";

/// A running PostgreSQL cluster.
#[derive(Debug)]
pub struct Postgres {
    child: Child,
    port: u16,
    bin: PathBuf,
    dir: TempDir,
    databases: AtomicU32,
}

/// The directory holding `initdb`, `postgres` and `psql`: the newest installed major version.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap_or_else(|_| panic!("{INSTALL}"))
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("{INSTALL}"))
}

/// Run the server as `postgres` when we are root (uid, gid), as ourselves otherwise.
fn run_as() -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> u32 {
        let out = Command::new("id")
            .args(args)
            .output()
            .expect("running `id`");
        assert!(
            out.status.success(),
            "`id {}` failed: is the `postgres` OS user missing? {INSTALL}",
            args.join(" ")
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("`id` prints a number")
    };
    (id(&["-u"]) == 0).then(|| (id(&["-u", "postgres"]), id(&["-g", "postgres"])))
}

fn command(program: &Path, user: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

impl Postgres {
    /// Start a new cluster. Panics with the install command when PostgreSQL is missing, and
    /// with the server log when it does not come up.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let user = run_as();
        let mut dir = tempfile::Builder::new()
            .prefix("regmirror-postgres-")
            .tempdir()
            .expect("creating a temp dir");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("handing the temp dir to the postgres user");
        }
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"), user)
            .args([
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
                "--encoding=UTF8",
            ])
            .arg("-D")
            .arg(&data)
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // pg_hba.conf takes the first matching line: this one before initdb's trust lines.
        let hba = data.join("pg_hba.conf");
        let trusted = std::fs::read_to_string(&hba).expect("reading pg_hba.conf");
        std::fs::write(
            &hba,
            format!("host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n{trusted}"),
        )
        .expect("writing pg_hba.conf");
        let mut last_failure = String::new();
        // A free port can be taken by someone else between our probe and the server's bind.
        for _ in 0..5 {
            let port = free_port();
            let log_path = dir.path().join(format!("postgres-{port}.log"));
            let log = std::fs::File::create(&log_path).expect("creating the server log");
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(&log_path, Some(uid), Some(gid))
                    .expect("handing the log to the postgres user");
            }
            let child = command(&bin.join("postgres"), user)
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "max_connections=300",
                    "-c",
                    "shared_buffers=16MB",
                    "-c",
                    "fsync=off",
                ])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting postgres: {e}. {INSTALL}"));
            let mut pg = Postgres {
                child,
                port,
                bin: bin.clone(),
                dir,
                databases: AtomicU32::new(0),
            };
            match pg.wait_ready(&log_path) {
                Ok(()) => return pg,
                Err(failure) => {
                    last_failure = failure;
                    pg.stop();
                    // Take the temp dir back for the next attempt without removing it.
                    dir = std::mem::replace(
                        &mut pg.dir,
                        tempfile::tempdir().expect("creating a temp dir"),
                    );
                }
            }
        }
        panic!("the test PostgreSQL did not start: {last_failure}");
    }

    /// The cluster every test in this process shares while at least one holds it; started on
    /// first use and stopped when the last holder drops it.
    pub fn shared() -> Arc<Postgres> {
        static SHARED: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pg) = shared.upgrade() {
            return pg;
        }
        let pg = Arc::new(Postgres::start());
        *shared = Arc::downgrade(&pg);
        pg
    }

    fn wait_ready(&mut self, log_path: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let log = || std::fs::read_to_string(log_path).unwrap_or_default();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("postgres exited with {status}:\n{}", log()));
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postgres did not accept connections on port {} within 30 s:\n{}",
                    self.port,
                    log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string for database `db` as the `postgres` superuser (trust auth).
    pub fn url(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// A `postgres://` URL for a new, empty database as [`PASSWORD_USER`] (a superuser),
    /// whose password is set to `password`.
    pub fn password_user_url(&self, password: &str) -> String {
        let conn = self.create_database();
        let db = conn
            .rsplit_once("dbname=")
            .map(|(_, db)| db.to_owned())
            .expect("create_database names the database");
        let quoted = password.replace('\'', "''");
        self.psql(&format!(
            "DO $$ BEGIN CREATE ROLE {PASSWORD_USER} LOGIN SUPERUSER; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             ALTER ROLE {PASSWORD_USER} PASSWORD '{quoted}'"
        ));
        let mut url = url::Url::parse(&format!(
            "postgres://{PASSWORD_USER}@127.0.0.1:{}/{db}",
            self.port
        ))
        .expect("a valid URL");
        url.set_password(Some(password))
            .expect("a URL with a host takes a password");
        url.to_string()
    }

    /// Create a new, empty database and return its connection string.
    pub fn create_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("regmirror_test_{n}");
        self.psql(&format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Run `sql` as the superuser in database `postgres`; panics with psql's error.
    fn psql(&self, sql: &str) {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(sql)
            .arg("postgres")
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql -c {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Fast shutdown (SIGINT: roll back open transactions, disconnect, stop), then wait.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
