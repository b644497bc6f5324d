"""Real backend servers for the test run, as local processes in temporary folders on
free loopback ports: OpenStack Swift with its S3 API (s3api + tempauth), behind which
the S3 blob store is tested. Each server is stopped by its pid at the end.

Swift is started from its Debian packages (swift, swift-proxy, swift-account,
swift-container, swift-object, memcached): a single replica, one device per ring as a
plain folder (`mount_check = false`), one process per server (`workers = 0`), no
swift-init (its servers call setsid, so the test run keeps every pid itself)."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SWIFT_PACKAGES = "swift swift-proxy swift-account swift-container swift-object memcached"
INSTALL_SWIFT = f"apt-get install -y --no-install-recommends {SWIFT_PACKAGES}"
_BINARIES = (
    "swift-ring-builder",
    "swift-account-server",
    "swift-container-server",
    "swift-object-server",
    "swift-proxy-server",
    "memcached",
)
# The tempauth user `test:tester` (key `testing`) is also its S3 access key and secret.
S3_ACCESS_KEY = "test:tester"
S3_SECRET_KEY = "testing"
START_TIMEOUT = 60.0

# Backend suites that could not run: name -> why, and the command that fixes it;
# printed in one line at the end of the run (tests/conftest.py pytest_terminal_summary).
SKIPPED_BACKENDS: dict[str, str] = {}


def missing_swift_binaries() -> list[str]:
    """The Swift/memcached programs this machine lacks."""
    return [b for b in _BINARIES if shutil.which(b) is None]


def free_port() -> int:
    """A TCP port nobody listens on now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Swift:
    """A running single-replica Swift with s3api; `endpoint` is its S3 URL."""

    root: Path
    endpoint: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _token: tuple[str, str] | None = None

    def blob_env(self, bucket: str) -> dict[str, str]:
        """The settings that point gazou's blob store at `bucket` on this Swift."""
        return {
            "BLOB_URL": f"s3://{bucket}?endpoint={self.endpoint}&region=us-east-1",
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        }

    def _auth(self) -> tuple[str, str]:
        # tempauth tokens live a day: one per run saves a round trip per bucket.
        if self._token is None:
            auth = urllib.request.Request(
                f"{self.endpoint}/auth/v1.0",
                headers={"X-Auth-User": S3_ACCESS_KEY, "X-Auth-Key": S3_SECRET_KEY},
            )
            with urllib.request.urlopen(auth, timeout=10) as answer:
                self._token = (answer.headers["X-Storage-Url"], answer.headers["X-Auth-Token"])
        return self._token

    def create_bucket(self, name: str) -> None:
        """Create the bucket `name` (a Swift container of the test account)."""
        storage_url, token = self._auth()
        create = urllib.request.Request(
            f"{storage_url}/{name}", method="PUT", headers={"X-Auth-Token": token}
        )
        with urllib.request.urlopen(create, timeout=10) as answer:
            if answer.status not in (201, 202):
                raise RuntimeError(f"creating bucket {name}: HTTP {answer.status}")

    def logs(self) -> str:
        """The tail of every server's output (for a failed start)."""
        parts = []
        for log in sorted(self.root.glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop every process this run started, by pid (TERM, then KILL)."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes.clear()


def _write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


def _server_conf(swift: Swift, kind: str, port: int, extra: str = "") -> Path:
    etc = swift.root / "etc"
    return _write(
        etc / f"{kind}-server.conf",
        f"""
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
user = {getpass.getuser()}
swift_dir = {etc}
devices = {swift.root / "srv"}
mount_check = false
log_name = {kind}
log_level = WARNING

[pipeline:main]
pipeline = {kind}-server

[app:{kind}-server]
use = egg:swift#{kind}
{extra}

[{kind}-replicator]
[{kind}-auditor]
[{kind}-updater]
""",
    )


# s3api before its auth (tempauth), slo for multipart uploads, as Swift's sample has it.
_PROXY_PIPELINE = (
    "catch_errors gatekeeper healthcheck proxy-logging cache listing_formats "
    "s3api tempauth copy slo dlo proxy-logging proxy-server"
)


def _proxy_conf(swift: Swift, port: int, memcached_port: int) -> Path:
    etc = swift.root / "etc"
    return _write(
        etc / "proxy-server.conf",
        f"""
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
user = {getpass.getuser()}
swift_dir = {etc}
log_name = proxy
log_level = WARNING

[pipeline:main]
pipeline = {_PROXY_PIPELINE}

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = {S3_SECRET_KEY} .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcached_port}

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
""",
    )


def _build_rings(etc: Path, ports: dict[str, int]) -> None:
    for kind, port in ports.items():
        builder = str(etc / f"{kind}.builder")
        # 2^6 partitions, 1 replica, parts may move after 1 hour: one device each.
        for args in (
            ["create", "6", "1", "1"],
            ["add", f"r1z1-127.0.0.1:{port}/d1", "100"],
            ["rebalance"],
        ):
            done = subprocess.run(
                ["swift-ring-builder", builder, *args], capture_output=True, timeout=60
            )
            # rebalance exits 1 for warnings (e.g. fewer devices than replicas would like).
            if done.returncode not in (0, 1):
                raise RuntimeError(f"swift-ring-builder {args}: {done.stdout!r} {done.stderr!r}")


def _spawn(swift: Swift, name: str, argv: list[str]) -> None:
    with open(swift.root / f"{name}.log", "wb") as log:  # the child keeps its own copy
        swift.processes.append(
            subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _made_probe(swift: Swift) -> bool:
    try:
        swift.create_bucket("gazou-probe")
    except (urllib.error.URLError, OSError, RuntimeError):
        return False
    return True


@contextlib.contextmanager
def running_swift(root: Path) -> Iterator[Swift]:
    """Start a Swift (proxy with s3api, account, container, object) and memcached under
    `root`; yields once the proxy answers; stops every process on exit."""
    swift = Swift(root=root)
    etc, srv = root / "etc", root / "srv"
    (srv / "d1").mkdir(parents=True)
    etc.mkdir()
    _write(
        etc / "swift.conf",
        """
[swift-hash]
swift_hash_path_suffix = gazou-tests
swift_hash_path_prefix = gazou-tests

[storage-policy:0]
name = Policy-0
default = yes
""",
    )
    ports = {kind: free_port() for kind in ("account", "container", "object")}
    proxy_port, memcached_port = free_port(), free_port()
    _build_rings(etc, ports)
    confs = {kind: _server_conf(swift, kind, port) for kind, port in ports.items()}
    proxy = _proxy_conf(swift, proxy_port, memcached_port)
    try:
        _spawn(
            swift,
            "memcached",
            ["memcached", "-l", "127.0.0.1", "-p", str(memcached_port), "-U", "0", "-m", "16"]
            + (["-u", "root"] if os.geteuid() == 0 else []),
        )
        for kind, conf in confs.items():
            _spawn(swift, kind, [f"swift-{kind}-server", str(conf)])
        _spawn(swift, "proxy", ["swift-proxy-server", str(proxy)])
        swift.endpoint = f"http://127.0.0.1:{proxy_port}"
        deadline = time.monotonic() + START_TIMEOUT
        # Up once the proxy answers and a bucket can be made (account, container and
        # object servers all listening).
        while not (_answers(f"{swift.endpoint}/healthcheck") and _made_probe(swift)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in swift.processes):
                raise RuntimeError(f"Swift did not start:\n{swift.logs()}")
            time.sleep(0.2)
        yield swift
    finally:
        swift.stop()
