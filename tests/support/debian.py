"""Debian packages for integration tests: install what is missing, run throwaway PG clusters."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _installed(name: str) -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name],
                            capture_output=True, text=True, check=False)
    return result.returncode == 0 and "install ok installed" in result.stdout


def ensure_packages(*names: str) -> None:
    """Install the Debian packages that are missing (as root), or skip the test if we can't.

    Skips ONLY when packages are missing and we are not root; an install that fails as root
    fails the test.
    """
    missing = [name for name in names if not _installed(name)]
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(f"Debian package(s) {', '.join(missing)} missing and not root to install")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(command, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"apt-get install {' '.join(missing)} failed:\n{result.stderr}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_postgres(argv: Sequence[str], user: str = "postgres") -> list[str]:
    """Prefix a command so that it runs as the `postgres` OS user (or `user`) when we are root."""
    return ["runuser", "-u", user, "--", *argv] if os.geteuid() == 0 else list(argv)


def chown_postgres(path: Path, user: str = "postgres") -> None:
    """Give a file or folder to the postgres OS user (or `user`) when we are root."""
    if os.geteuid() == 0:
        shutil.chown(path, user, user)


@contextmanager
def postgres_scratch(prefix: str) -> Iterator[Path]:
    """A fresh folder under the system temp dir that the postgres user owns; removed after.

    Not under pytest's tmp_path: pytest keeps `pytest-of-<user>` at mode 0700 (and resets it
    whenever another pytest session starts), so the postgres user could not reach it.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"soxtrail-{prefix}-"))
    os.chmod(folder, 0o755)
    chown_postgres(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Cluster:
    """A throwaway PostgreSQL 15 cluster run as `postgres` (root: a postgres_scratch folder).

    `bin_dir` and `os_user` run another build (the embedded pgserver's) the same way.
    """

    root: Path
    settings: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    bin_dir: Path = PG_BIN
    os_user: str = "postgres"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_dir(self) -> Path:
        return self.data / "log"

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        """A keyword DSN over the unix socket."""
        return f"host={self.socket_dir} port={self.port} dbname={dbname} user={user}"

    def run(self, argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run a command as postgres; raise with its output when it fails."""
        result = subprocess.run(as_postgres(argv, self.os_user), capture_output=True, text=True,
                                check=False, timeout=120,
                                **kwargs)  # type: ignore[call-overload]
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr}")
        return result  # type: ignore[no-any-return]

    def start(self) -> Cluster:
        """initdb, write settings, start and wait."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        chown_postgres(self.root, self.os_user)
        chown_postgres(self.socket_dir, self.os_user)
        self.run([str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        lines = [f"port = {self.port}", f"unix_socket_directories = '{self.socket_dir}'",
                 "listen_addresses = ''"]
        lines += [f"{key} = {value}" for key, value in self.settings.items()]
        conf = self.data / "postgresql.conf"
        self.run(["sh", "-c", f"cat >> {conf}"], input="\n".join(lines) + "\n")
        self.run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.root / "server.log"), "-w", "-t", "60", "start"])
        return self

    def stop(self) -> None:
        """Stop fast (no error if it is not running)."""
        subprocess.run(as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m",
                                    "fast", "-w", "stop"], self.os_user),
                       capture_output=True, check=False, timeout=60)

    def wait_for(self, predicate: object, timeout: float = 15.0) -> None:
        """Poll `predicate()` until true (log files are written asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return
            time.sleep(0.1)
        raise TimeoutError("condition not reached in time")
