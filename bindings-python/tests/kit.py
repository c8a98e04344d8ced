"""Real servers for the stored-mirror tests, as the Rust kit (tests/src) starts them: a CNCF
distribution registry (`docker-registry serve`) and a throwaway PostgreSQL cluster, each on a
loopback port with its own temp dir, stopped by the fixture that started it. Nothing is mocked."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAKE_LAYOUT = REPO / "scripts" / "make-test-layout.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check, what: str, log: Path | None = None, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    text = log.read_text(errors="replace") if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up within {limit}s\n{text}")


def cli() -> str:
    """The `regmirror` CLI that `cargo test` built (scripts/test.sh runs the Rust suite first)."""
    path = REPO / "target" / "x86_64-unknown-linux-gnu" / "debug" / "regmirror"
    assert path.is_file(), f"{path} is missing: build it first (cargo build -p regmirror-cli)"
    return str(path)


class Registry:
    """`docker-registry serve` on 127.0.0.1 over plain HTTP, deletes enabled."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="regmirror-py-registry-"))
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'storage'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n  secret: regmirror-py-{self.port}\n"
        )
        self.log = self.dir / "registry.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        wait_for(self.ready, f"the registry on {self.host}", self.log)

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited:\n{self.log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def tags(self, repository: str) -> list[str]:
        import json

        try:
            with urllib.request.urlopen(f"http://{self.host}/v2/{repository}/tags/list", timeout=10) as answer:
                return sorted(json.load(answer).get("tags") or [])
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise

    def seed(self, repository: str, tags: list[str], work: Path) -> None:
        """Push generated images (scripts/make-test-layout.sh) with regmirror's one-shot copy."""
        import regmirror

        layout = work / f"seed-{repository.replace('/', '-')}"
        subprocess.run(["bash", str(MAKE_LAYOUT), str(layout), *tags], check=True)
        report = regmirror.Mirror(f"oci:{layout}", f"{self.host}/{repository}", tags, dest_tls_verify=False).sync()
        assert report.success, report.to_dict()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres_bin() -> Path:
    base = Path("/usr/lib/postgresql")
    versions = sorted(
        (int(d.name), d / "bin") for d in base.iterdir() if d.name.isdigit() and (d / "bin" / "initdb").exists()
    )
    assert versions, "PostgreSQL is not installed (apt-get install postgresql)"
    return versions[-1][1]


class Postgres:
    """A cluster from `initdb` (trust auth, 127.0.0.1 only), run as the `postgres` OS user when
    we are root. `url(db)` creates database `db` and names it."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="regmirror-py-postgres-"))
        as_root = os.getuid() == 0
        user = pwd.getpwnam("postgres") if as_root else None
        if user:
            os.chown(self.dir, user.pw_uid, user.pw_gid)

        def demote() -> None:
            if user:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        self.demote = demote
        data = self.dir / "data"
        subprocess.run(
            [str(self.bin / "initdb"), "--auth=trust", "--username=postgres", "--no-sync", "-D", str(data)],
            check=True,
            capture_output=True,
            preexec_fn=demote,
        )
        self.port = free_port()
        self.log = self.dir / "postgres.log"
        log = open(self.log, "wb")
        if user:
            os.chown(self.log, user.pw_uid, user.pw_gid)
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "shared_buffers=16MB"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=demote,
        )
        log.close()
        wait_for(self.ready, "PostgreSQL", self.log)
        self.databases = 0

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"postgres exited:\n{self.log.read_text(errors='replace')}")
        return (
            subprocess.run(
                [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
            ).returncode
            == 0
        )

    def url(self) -> str:
        self.databases += 1
        name = f"regmirror_py_{self.databases}"
        subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q",
             "-c", f"CREATE DATABASE {name}", "postgres"],
            check=True,
            capture_output=True,
        )
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
