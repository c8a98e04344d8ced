"""A registry that echoes the credentials it is sent in its error bodies: the password and its
base64 login reach neither the report nor an exception (the engine scrubs them); an invalid
``max_tags`` is refused up front."""

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from regmirror import DEFAULT_MAX_TAGS, InvalidConfigError, Mirror

USER, PASSWORD = "robot", "pw-Py77-not-in-reports"
LOGIN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


class Echo(BaseHTTPRequestHandler):
    """Basic auth; every authorized request is refused with the credentials it carried."""

    def do_GET(self) -> None:
        sent = self.headers.get("Authorization")
        if sent is None:
            self.answer(401, {"errors": [{"code": "UNAUTHORIZED"}]}, challenge=True)
        elif self.path == "/v2/":
            self.answer(200, {})
        else:
            login = base64.b64decode(sent.removeprefix("Basic ")).decode()
            message = f"you sent {sent} ({login})"
            self.answer(403, {"errors": [{"code": "DENIED", "message": message}]})

    def answer(self, status: int, body: object, challenge: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if challenge:
            self.send_header("WWW-Authenticate", 'Basic realm="echo"')
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_echoed_credentials_never_reach_the_report(echo: str, tmp_path: Path) -> None:
    mirror = Mirror(
        f"{echo}/src/app",
        f"oci:{tmp_path / 'out'}",
        "*",
        source_credentials=(USER, PASSWORD),
        source_tls_verify=False,
    )
    report = mirror.sync()
    assert not report.success
    assert report.error is not None
    assert "DENIED: you sent Basic <redacted>" in report.error, report.error
    for secret in (PASSWORD, LOGIN):
        assert secret not in repr(report)
        assert secret not in str(report.error)


def test_max_tags_is_checked_up_front(tmp_path: Path) -> None:
    assert DEFAULT_MAX_TAGS == 1_000_000
    with pytest.raises(InvalidConfigError, match="max_tags"):
        Mirror("127.0.0.1:5000/src/app", f"oci:{tmp_path}", "*", max_tags=0)
