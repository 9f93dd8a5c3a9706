"""The server the suite creates its databases on, or a throwaway one when nothing answers.

SOXTRAIL_TEST_ADMIN_URL names a server. Unset, the suite uses 127.0.0.1:5432 (the CI
service) when it answers; when it does not, the session plans a throwaway cluster on a free
port: one per pytest session whatever the number of xdist workers, started by the first test
that needs PostgreSQL (under a file lock, so workers share it) and stopped by the process
that planned it (the xdist controller) when the session ends.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support.debian import PG_BIN, Cluster, free_port

ADMIN_ENV = "SOXTRAIL_TEST_ADMIN_URL"
# test-only: where the suite looks when SOXTRAIL_TEST_ADMIN_URL is unset (a test points it
# at a closed port to exercise the fallback)
DEFAULT_ENV = "SOXTRAIL_TEST_DEFAULT_URL"
# set by the session that planned a throwaway server: its folder (workers inherit it)
THROWAWAY_ENV = "SOXTRAIL_TEST_THROWAWAY_DIR"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

# durability is worth nothing on a server deleted at the end of the session
THROWAWAY_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "timezone": "'Etc/UTC'",
    "log_timezone": "'Etc/UTC'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}

# which build and why: Debian's when installed (`make test` installs it as root): CI's major
# version, and the suite runs Debian's pg_dump 15, which refuses a newer server
FLAVOURS = {
    "debian": "PostgreSQL 15 from the Debian packages (CI's version; the suite's pg_dump is 15)",
    "pgserver": "PostgreSQL from the embedded pgserver (no Debian PostgreSQL 15 installed)",
}


def default_url() -> str:
    """Where the suite looks for its server when SOXTRAIL_TEST_ADMIN_URL is unset."""
    return os.environ.get(DEFAULT_ENV, DEFAULT_URL)


def unreachable(url: str) -> str | None:
    """Why nothing answers at `url` (a short reason), or None when a connection works."""
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        return first.rsplit(": ", 1)[-1].strip() or first
    return None


def pgserver_bin() -> Path:
    """The PostgreSQL binaries the embedded pgserver ships."""
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def _os_user(flavour: str) -> str:
    """The OS user the server runs as when we are root (PostgreSQL refuses root)."""
    if flavour == "debian" or os.geteuid() != 0:
        return "postgres"
    from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

    ensure_prefix_permissions(pgserver_bin())  # what pgserver does for its own server
    try:
        pwd.getpwnam("postgres")
        return "postgres"
    except KeyError:
        ensure_user_exists("pgserver")
        return "pgserver"


@dataclass(frozen=True)
class Throwaway:
    """A planned throwaway server: its folder, build and port (state in `root/server.json`)."""

    root: Path
    flavour: str
    port: int

    @property
    def url(self) -> str:
        """The maintenance database's URL over TCP (tests build role URLs from host and port)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def description(self) -> str:
        """Which server this is and why that one."""
        return FLAVOURS[self.flavour]

    def cluster(self) -> Cluster:
        """The cluster behind it (initdb'd and started by `ensure_running`)."""
        bin_dir = PG_BIN if self.flavour == "debian" else pgserver_bin()
        return Cluster(self.root, settings=dict(THROWAWAY_SETTINGS), port=self.port,
                       bin_dir=bin_dir, os_user=_os_user(self.flavour))

    @classmethod
    def plan(cls, flavour: str | None = None) -> Throwaway:
        """A new folder and a free port; nothing started yet."""
        if flavour is None:
            flavour = "debian" if (PG_BIN / "initdb").exists() else "pgserver"
        # not under pytest's basetemp: pytest-of-<user> is 0700, the server's user is not us
        root = Path(tempfile.mkdtemp(prefix="soxtrail-testpg-"))
        os.chmod(root, 0o755)
        server = cls(root=root, flavour=flavour, port=free_port())
        (root / "server.json").write_text(json.dumps(
            {"flavour": server.flavour, "port": server.port}), encoding="utf-8")
        return server

    @classmethod
    def load(cls, root: Path) -> Throwaway:
        """The server planned in `root` (by the controller, for a worker)."""
        state = json.loads((root / "server.json").read_text(encoding="utf-8"))
        return cls(root=root, flavour=str(state["flavour"]), port=int(state["port"]))

    def ensure_running(self) -> None:
        """Start the server unless it answers; one process at a time starts it."""
        with open(self.root / "start.lock", "a+", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if unreachable(self.url) is None:
                return
            self.cluster().start()

    def stop(self) -> None:
        """Stop the server (if it ever started) and delete its folder."""
        if (self.root / "data" / "postmaster.pid").exists():
            self.cluster().stop()
        shutil.rmtree(self.root, ignore_errors=True)


_running: set[Path] = set()


def ensure_throwaway() -> None:
    """In a session running on a throwaway server, make sure it runs (cheap after the first)."""
    root = os.environ.get(THROWAWAY_ENV)
    if not root or Path(root) in _running:
        return
    Throwaway.load(Path(root)).ensure_running()
    _running.add(Path(root))
