"""S3 throttling (503 SlowDown), 5xx and dropped connections: retried; a store that stays down
fails cleanly. Real HTTP: boto3 → tests.support.faults.S3FaultProxy → moto server."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml

from soxtrail.kernel.database import Database
from soxtrail.kernel.errors import StoreError
from soxtrail.kernel.store import S3Store
from tests.reliability.checks import count, integrity_problems, only_run_id, run_row
from tests.reliability.conftest import QUARTER, SCOPE
from tests.support.cli import soxtrail
from tests.support.faults import FAULTY_CLI, S3FaultProxy
from tests.support.s3 import free_port


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str) -> str:
    name = f"rel-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture()
def proxy(s3_endpoint: str) -> Iterator[S3FaultProxy]:
    with S3FaultProxy(s3_endpoint) as running:
        yield running


@pytest.fixture(scope="module")
def small_config(rel_demo: Path) -> Path:
    """The demo without its 496 CloudTrail files: every object crosses the proxy twice."""
    config = yaml.safe_load((rel_demo / "soxtrail.yml").read_text())
    config["sources"] = [s for s in config["sources"] if s["connector"] != "aws_cloudtrail"]
    path = rel_demo / "soxtrail-s3.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_throttling_and_errors_on_put_and_get_are_retried(proxy: S3FaultProxy, bucket: str,
                                                          tmp_path: Path) -> None:
    store = S3Store(f"s3://{bucket}/direct", endpoint_url=proxy.url)
    source = tmp_path / "object.bin"
    source.write_bytes(b"evidence\n" * 1000)
    proxy.inject("slowdown", 2, method="PUT")
    proxy.inject("500", 1, method="PUT")  # after the two above
    proxy.inject("slowdown", 1, method="GET")
    proxy.inject("reset", 1, method="GET")
    store.put_file("q/run/raw/a.bin", source)
    store.put_bytes("q/run/raw/b.txt", b"hello")
    fetched = store.fetch("q/run/raw/a.bin", tmp_path / "fetched.bin")
    assert fetched.read_bytes() == source.read_bytes()
    with store.open("q/run/raw/b.txt") as handle:
        assert handle.read() == b"hello"
    assert sorted(store.list("q/run")) == ["q/run/raw/a.bin", "q/run/raw/b.txt"]
    statuses = proxy.statuses()
    assert statuses.count(503) == 3 and statuses.count(500) == 1 and 0 in statuses
    assert all(f.fired == f.times for f in proxy.faults)


def test_a_store_that_stays_down_is_a_store_error_naming_the_object(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    store = S3Store(f"s3://{bucket}/down", endpoint_url=proxy.url, max_attempts=2)
    source = tmp_path / "object.bin"
    source.write_bytes(b"x")
    proxy.down()
    started = time.monotonic()
    for call in (lambda: store.put_file("q/r/a.bin", source),  # s3transfer's own error type
                 lambda: store.fetch("q/r/a.bin", tmp_path / "a.bin")):
        with pytest.raises(StoreError) as caught:
            call()
        assert f"s3://{bucket}/down/q/r/" in str(caught.value)
    assert time.monotonic() - started < 60
    assert len(proxy.statuses()) >= 4  # 2 calls x 2 attempts: it did retry


def test_a_run_on_a_throttling_store_snapshots_and_loads_everything(
        proxy: S3FaultProxy, bucket: str, small_config: Path, rel_db: Database,
        tmp_path: Path) -> None:
    proxy.inject("slowdown", 3, method="PUT", after=10)
    proxy.inject("reset", 1, method="PUT", after=5)
    proxy.inject("500", 2, method="GET", after=5)
    proxy.inject("slowdown", 2, method="GET", after=20)
    home = tmp_path / "home"
    result = soxtrail("run", "--quarter", QUARTER, "--config", str(small_config),
                      "--clusters", SCOPE, "--quiet", home=home, database_url=rel_db.dsn,
                      env={"SOXTRAIL_STORE": f"s3://{bucket}/throttled",
                           "SOXTRAIL_S3_ENDPOINT_URL": proxy.url,
                           # this test is about the store: stop before dbt
                           "SOXTRAIL_TEST_KILL_AT": "reconcile:start"},
                      launcher=FAULTY_CLI)
    assert result.code == -signal.SIGKILL, result.stderr
    run_id = only_run_id(home)
    assert run_row(rel_db, run_id)["phase_reached"] == "load"
    assert integrity_problems(rel_db, run_id) == []
    assert count(rel_db, "select count(*) from soxtrail.sox_evidence where run_id = %s",
                 run_id) > 20
    assert all(f.fired == f.times for f in proxy.faults), proxy.faults


def test_a_run_on_a_store_that_stays_down_fails_cleanly(
        bucket: str, small_config: Path, rel_db: Database, tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = soxtrail("run", "--quarter", QUARTER, "--config", str(small_config),
                      "--clusters", SCOPE, "--quiet", home=home, database_url=rel_db.dsn,
                      env={"SOXTRAIL_STORE": f"s3://{bucket}/down",
                           # nobody listens there: connection refused on every attempt
                           "SOXTRAIL_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
                           "SOXTRAIL_S3_MAX_ATTEMPTS": "2"})
    assert result.code == 3, result.stderr
    assert "evidence store failed" in result.stderr
    assert f"s3://{bucket}/down/{QUARTER}/" in result.stderr
    assert "Could not connect" in result.stderr
    assert "Traceback" not in result.stderr
    run_id = only_run_id(home)
    assert run_row(rel_db, run_id)["status"] == "failed"
    assert count(rel_db, "select count(*) from soxtrail.sox_evidence where run_id = %s",
                 run_id) == 0
