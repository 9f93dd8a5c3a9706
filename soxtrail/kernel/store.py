"""The evidence store: one interface, a local folder or an S3 prefix."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import unquote, urlsplit

from soxtrail.kernel.errors import ConfigError, StoreError

CHUNK = 1 << 20
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what a newly written (copied) object gets


_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")

# Objects written with `lock=True` (the bundle's anchor, manifest and signature) on a bucket
# with Object Lock: COMPLIANCE mode, whatever SOXTRAIL_S3_OBJECT_LOCK says, for
# SOXTRAIL_S3_RETENTION_DAYS, else the bucket's default retention period, else
# DEFAULT_LOCK_DAYS (docs/operations.md, "The anchor under Object Lock").
LOCK_MODE = "COMPLIANCE"
DEFAULT_LOCK_DAYS = 2557  # seven years (SOX record retention), two leap days included

# get_object_lock_configuration's answers for a bucket without Object Lock (AWS and moto;
# S3-compatible stores without the feature)
_NO_OBJECT_LOCK = frozenset({"ObjectLockConfigurationNotFoundError",
                             "NoSuchObjectLockConfiguration", "NotImplemented",
                             "MethodNotAllowed", "501", "405"})


def safe_name(text: str) -> str:
    """A store-key-safe file name for `text`."""
    name = _UNSAFE.sub("_", text).strip("._") or "object"
    return name[:180]


def check_key(key: str) -> str:
    """Refuse keys that could escape the store (absolute, `..`, backslashes, empty parts)."""
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(part in ("..", ".", "") for part in parts)
    ):
        raise StoreError(f"refusing unsafe store key {key!r}")
    return key


class HashingClock:
    """CPU seconds spent in SHA-256 while spooling, summed over threads (for the snapshot
    phase's figures: what hashing costs the snapshot)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds = 0.0

    def add(self, seconds: float) -> None:
        with self._lock:
            self._seconds += seconds

    @property
    def seconds(self) -> float:
        with self._lock:
            return self._seconds


HASHING = HashingClock()


def spool(chunks: Iterable[bytes], directory: Path) -> tuple[Path, str, int]:
    """Write chunks to a temp file in `directory`, hashing as they pass.

    Returns the file's path, SHA-256 and size. The hashing's CPU time (this thread's) is
    added to HASHING.
    """
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    hashing = 0.0
    clock = time.thread_time
    fd, name = tempfile.mkstemp(dir=directory, prefix="spool-")
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                started = clock()
                digest.update(chunk)
                hashing += clock() - started
                size += len(chunk)
                handle.write(chunk)
    except BaseException:
        os.unlink(name)
        raise
    finally:
        HASHING.add(hashing)
    return Path(name), digest.hexdigest(), size


def sha256_file(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a file, streamed."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def sha256_stream(handle: IO[bytes]) -> str:
    """SHA-256 of a readable binary stream, read in chunks."""
    digest = hashlib.sha256()
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_object(store: Store, key: str) -> str:
    """SHA-256 of a store object, streamed."""
    handle = store.open(key)
    try:
        return sha256_stream(handle)
    finally:
        handle.close()


@dataclass(frozen=True)
class Retention:
    """An object's Object Lock as the store reports it (Store.retention)."""

    mode: str | None  # COMPLIANCE | GOVERNANCE; None: the object is not locked
    retain_until: datetime | None
    version_id: str | None = None  # the current version (the one a reader gets)
    versions: int | None = None  # versions of the key, delete markers included (None: unknown)

    def compliance_until(self, now: datetime) -> bool:
        """Locked in COMPLIANCE mode with a retain-until date after `now`."""
        return (self.mode == LOCK_MODE and self.retain_until is not None
                and self.retain_until > now)


def _add_years(moment: datetime, years: int) -> datetime:
    """The same date `years` later (29 February: 1 March, never less than the years)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, month=3, day=1)


def lock_retain_until(now: datetime, configured_days: int,
                      bucket_rule: Mapping[str, Any] | None) -> tuple[datetime, str]:
    """The retain-until date of an object written with `lock=True`, and where its period
    comes from: SOXTRAIL_S3_RETENTION_DAYS when set (> 0), else the bucket's default
    retention (its `Days` or `Years`), else DEFAULT_LOCK_DAYS."""
    if configured_days > 0:
        return (now + timedelta(days=configured_days),
                f"SOXTRAIL_S3_RETENTION_DAYS={configured_days}")
    rule = bucket_rule or {}
    days, years = int(rule.get("Days") or 0), int(rule.get("Years") or 0)
    if days > 0:
        return now + timedelta(days=days), f"the bucket's default retention, {days} days"
    if years > 0:
        return _add_years(now, years), f"the bucket's default retention, {years} years"
    return (now + timedelta(days=DEFAULT_LOCK_DAYS),
            f"the default retention, {DEFAULT_LOCK_DAYS} days (seven years)")


def _overwrite_refused(location: str) -> StoreError:
    return StoreError(f"refusing to overwrite store object {location} with different bytes "
                      "(a store key is written once)")


class Store(Protocol):
    """What every evidence store backend offers.

    Writes are put-if-absent: writing the bytes a key already holds is a no-op (a resumed
    or repeated phase writes the same objects again), different bytes are a StoreError
    naming the key. `lock=True` asks for a write nobody can undo: on a store with Object
    Lock the object is locked in COMPLIANCE mode (lock_retain_until); a store without it
    writes the object as any other. `retention` tells which it was: None on a store
    without Object Lock.
    """

    uri: str

    def put_file(self, key: str, path: Path, *, move: bool = False,
                 lock: bool = False) -> None: ...
    def put_bytes(self, key: str, data: bytes, *, lock: bool = False) -> None: ...
    def retention(self, key: str) -> Retention | None: ...
    def open(self, key: str) -> IO[bytes]: ...
    def fetch(self, key: str, dest: Path) -> Path: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def location(self, key: str) -> str: ...


class LocalStore:
    """A folder on disk (the default, `.soxtrail/store`)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.uri = str(self.root)
        self._folders: dict[str, Path] = {}  # a key's folder, resolved (symlinks followed)

    def _path(self, key: str) -> Path:
        """The file of `key`, refused when a symlink would take it outside the store.

        check_key already refuses `..`, absolute keys and empty parts; what is left is a
        symlink on the way. Each folder is resolved once (a run writes thousands of
        objects into a few hundred folders), the object itself on every call.
        """
        folder, _, leaf = check_key(key).rpartition("/")
        parent = self._folders.get(folder)
        if parent is None:
            parent = (self.root / folder).resolve() if folder else self.root
            if parent != self.root and self.root not in parent.parents:
                raise StoreError(f"refusing store key outside the store: {key!r}")
            self._folders[folder] = parent
        path = parent / leaf
        if path.is_symlink():
            path = path.resolve()
            if self.root not in path.parents:
                raise StoreError(f"refusing store key outside the store: {key!r}")
        return path

    def _same(self, key: str, target: Path, digest: str) -> bool:
        """Whether the existing object `target` holds the bytes of SHA-256 `digest`; an
        existing object with other bytes is an error."""
        if not target.is_file():
            return False
        if sha256_file(target)[0] != digest:
            raise _overwrite_refused(self.location(key))
        return True

    def _publish(self, key: str, tmp: Path, target: Path) -> None:
        """Give the complete file `tmp` the name `target` unless it exists (a hard link:
        atomic, and never replaces an object; a reader never sees a partial object)."""
        try:
            os.link(tmp, target)
        except FileExistsError:
            # written meanwhile by another writer: the same bytes or an error
            self._same(key, target, sha256_file(tmp)[0])
        except OSError:  # a file system without hard links: checked above, then renamed
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, key: str, path: Path, *, move: bool = False,
                 lock: bool = False) -> None:
        """Put-if-absent; `lock` changes nothing (a folder has no Object Lock)."""
        target = self._path(key)
        if target.exists() and self._same(key, target, sha256_file(path)[0]):
            if move:
                path.unlink()
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".partial")
        if move:  # a rename on the same file system: the bytes are not copied again
            shutil.move(str(path), tmp)
            os.chmod(tmp, FILE_MODE)  # a spool file is 0600 (mkstemp); a copy would not be
        else:
            shutil.copyfile(path, tmp)
        self._publish(key, tmp, target)

    def put_bytes(self, key: str, data: bytes, *, lock: bool = False) -> None:
        """Put-if-absent; `lock` changes nothing (a folder has no Object Lock)."""
        target = self._path(key)
        if target.exists() and self._same(key, target, hashlib.sha256(data).hexdigest()):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".partial")
        tmp.write_bytes(data)
        self._publish(key, tmp, target)

    def open(self, key: str) -> IO[bytes]:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise StoreError(f"object not found in store: {self.location(key)}") from exc

    def fetch(self, key: str, dest: Path) -> Path:
        """Local objects need no copy: return the object's own path."""
        path = self._path(key)
        if not path.exists():
            raise StoreError(f"object not found in store: {self.location(key)}")
        return path

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def retention(self, key: str) -> Retention | None:
        """None: a folder has no Object Lock (whoever can write it can replace any file)."""
        return None

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.exists():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.endswith(".partial"):
                yield path.relative_to(self.root).as_posix()

    def location(self, key: str) -> str:
        return str(self.root / key)


class S3Store:
    """`s3://bucket/prefix` through boto3 (any S3-compatible endpoint), optionally WORM."""

    def __init__(self, uri: str, *, endpoint_url: str | None = None,
                 object_lock: str | None = None, retention_days: int = 0,
                 max_attempts: int = 8) -> None:
        import boto3
        from botocore.config import Config

        rest = uri[len("s3://"):]
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise ConfigError(f"store {uri!r}: expected s3://bucket/prefix")
        self.prefix = prefix.strip("/")
        self.uri = uri.rstrip("/")
        if object_lock and object_lock not in ("COMPLIANCE", "GOVERNANCE"):
            raise ConfigError(
                f"SOXTRAIL_S3_OBJECT_LOCK={object_lock!r}: expected COMPLIANCE or GOVERNANCE"
            )
        self.object_lock = object_lock
        self.retention_days = retention_days
        self._bucket_lock: dict[str, Any] | None = None  # lock_configuration(), asked once
        self._bucket_lock_known = False
        self._bucket_lock_guard = threading.Lock()
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            # throttling (503 SlowDown), 5xx and connection errors are retried with
            # back-off; what is still failing after that is a StoreError naming the object
            config=Config(retries={"max_attempts": max_attempts, "mode": "adaptive"},
                          connect_timeout=10, read_timeout=60),
        )

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _extra(self) -> dict[str, Any]:
        if not self.object_lock:
            return {}
        until = datetime.now(timezone.utc) + timedelta(days=max(self.retention_days, 1))
        return {"ObjectLockMode": self.object_lock, "ObjectLockRetainUntilDate": until}

    def lock_configuration(self) -> dict[str, Any] | None:
        """The bucket's Object Lock configuration when Object Lock is enabled on it (its
        `Rule.DefaultRetention`, if any, is the default retention), else None; asked once
        per store."""
        from botocore.exceptions import BotoCoreError, ClientError

        with self._bucket_lock_guard:
            if self._bucket_lock_known:
                return self._bucket_lock
            where = f"S3 get_object_lock_configuration of s3://{self.bucket}"
            needs = "(whether the bucket has Object Lock: s3:GetBucketObjectLockConfiguration)"
            try:
                answer = self.client.get_object_lock_configuration(Bucket=self.bucket)
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) not in _NO_OBJECT_LOCK:
                    raise StoreError(f"{where} failed: {exc} {needs}") from exc
                answer = {}
            except BotoCoreError as exc:
                raise StoreError(f"{where} failed: {exc} {needs}") from exc
            config = answer.get("ObjectLockConfiguration") or {}
            enabled = config.get("ObjectLockEnabled") == "Enabled"
            self._bucket_lock = dict(config) if enabled else None
            self._bucket_lock_known = True
            return self._bucket_lock

    def lock_retention(self) -> tuple[datetime, str]:
        """The retain-until date of an object written now with `lock=True`, and where its
        period comes from (lock_retain_until)."""
        rule = ((self.lock_configuration() or {}).get("Rule") or {}).get("DefaultRetention")
        return lock_retain_until(datetime.now(timezone.utc), self.retention_days, rule)

    def _lock_headers(self, lock: bool) -> dict[str, Any]:
        """The lock headers of a put: COMPLIANCE for `lock` on a bucket with Object Lock,
        else the store-wide mode (SOXTRAIL_S3_OBJECT_LOCK), if any."""
        if lock and self.lock_configuration() is not None:
            until, _ = self.lock_retention()
            return {"ObjectLockMode": LOCK_MODE, "ObjectLockRetainUntilDate": until}
        return self._extra()

    def _call(self, what: str, key: str, func: Any, **kwargs: Any) -> Any:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return func(**kwargs)
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            # Boto3Error: upload_file/download_file (s3transfer) wrap the ClientError in
            # S3UploadFailedError / S3TransferFailedError
            raise StoreError(f"S3 {what} of {self.location(key)} failed: {exc}") from exc

    def _head(self, key: str) -> dict[str, Any] | None:
        """head_object of `key` (its current version); None when the key does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.head_object(  # type: ignore[no-any-return]
                Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StoreError(f"S3 head of {self.location(key)} failed: {exc}") from exc
        except BotoCoreError as exc:  # connection errors, still failing after the retries
            raise StoreError(f"S3 head of {self.location(key)} failed: {exc}") from exc

    def _same(self, key: str, digest: str) -> bool:
        """Whether `key` exists holding the bytes of SHA-256 `digest` (other bytes: an
        error)."""
        if self._head(key) is None:
            return False
        with self.open(key) as existing:
            if sha256_stream(existing) != digest:
                raise _overwrite_refused(self.location(key))
        return True

    def _keep_locked(self, key: str, until: datetime) -> None:
        """An existing object asked for with `lock=True` (a resumed bundle) that is not in
        COMPLIANCE mode gets it now, on its current version."""
        head = self._head(key) or {}
        if head.get("ObjectLockMode") == LOCK_MODE:
            return
        version = {"VersionId": head["VersionId"]} if head.get("VersionId") else {}
        self._call("put_object_retention", key, self.client.put_object_retention,
                   Bucket=self.bucket, Key=self._key(key), **version,
                   Retention={"Mode": LOCK_MODE, "RetainUntilDate": until})

    def _put_object(self, key: str, body: Any, digest: str, lock: dict[str, Any]) -> None:
        """put_object only if the key is absent (`If-None-Match: *`, which also makes a
        retried put that had in fact succeeded harmless), with the lock headers `lock`;
        an existing key must hold the same bytes."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body,
                                   ChecksumAlgorithm="SHA256", IfNoneMatch="*", **lock)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict") \
                    and self._same(key, digest):
                if lock.get("ObjectLockMode") == LOCK_MODE:
                    self._keep_locked(key, lock["ObjectLockRetainUntilDate"])
                return
            raise StoreError(f"S3 put of {self.location(key)} failed: {exc}") from exc
        except BotoCoreError as exc:  # connection errors, still failing after the retries
            raise StoreError(f"S3 put of {self.location(key)} failed: {exc}") from exc

    def put_file(self, key: str, path: Path, *, move: bool = False,
                 lock: bool = False) -> None:
        digest = sha256_file(path)[0]
        headers = self._lock_headers(lock)
        if headers:
            # Object Lock needs a content checksum; put_object sends one.
            with path.open("rb") as body:
                self._put_object(key, body, digest, headers)
        elif not self._same(key, digest):
            # upload_file (multipart for big objects) cannot send If-None-Match: the key
            # was checked just above (runs of a quarter hold its lock, keys name the run)
            self._call("upload", key, self.client.upload_file, Filename=str(path),
                       Bucket=self.bucket, Key=self._key(key))
        if move:
            path.unlink()

    def put_bytes(self, key: str, data: bytes, *, lock: bool = False) -> None:
        self._put_object(key, data, hashlib.sha256(data).hexdigest(), self._lock_headers(lock))

    def open(self, key: str) -> IO[bytes]:
        response = self._call("get", key, self.client.get_object, Bucket=self.bucket,
                              Key=self._key(key))
        return response["Body"]  # type: ignore[no-any-return]

    def fetch(self, key: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._call("download", key, self.client.download_file, Bucket=self.bucket,
                   Key=self._key(key), Filename=str(dest))
        return dest

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError:
            return False

    def retention(self, key: str) -> Retention | None:
        """The current version's Object Lock (from HEAD, which leaves it out for a reader
        without s3:GetObjectRetention) and how many versions the key has (None: listing
        versions is not allowed); None when the bucket has no Object Lock."""
        if self.lock_configuration() is None:
            return None
        head = self._head(key)
        if head is None:
            raise StoreError(f"object not found in store: {self.location(key)}")
        return Retention(mode=head.get("ObjectLockMode"),
                         retain_until=head.get("ObjectLockRetainUntilDate"),
                         version_id=head.get("VersionId"), versions=self._versions(key))

    def _versions(self, key: str) -> int | None:
        """Versions of `key` in the bucket, delete markers included (None: not allowed)."""
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(key)
        count = 0
        try:
            for page in self.client.get_paginator("list_object_versions").paginate(
                    Bucket=self.bucket, Prefix=full):
                count += sum(1 for item in [*page.get("Versions", []),
                                            *page.get("DeleteMarkers", [])]
                             if item.get("Key") == full)
        except (BotoCoreError, ClientError):
            return None
        return count

    def list(self, prefix: str) -> Iterator[str]:
        full = self._key(prefix.rstrip("/")) + "/" if prefix.strip("/") else (
            f"{self.prefix}/" if self.prefix else "")
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for item in page.get("Contents", []):
                yield item["Key"][strip:]

    def location(self, key: str) -> str:
        """`s3://bucket/prefix/key`; the store's own prefix for "" or "." (its root)."""
        if key in ("", "."):
            return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"s3://{self.bucket}/{self._key(key)}"


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def local_path(uri: str) -> Path | None:
    """The folder of a local store location: a path or `file:///path` (None: `s3://`).

    Any other `scheme://` is a ConfigError rather than a folder named after it.
    """
    scheme = _SCHEME.match(uri)
    if scheme is None:
        return Path(uri)
    name = scheme.group(1).lower()
    if name == "s3":
        return None
    if name == "file":
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"store {uri!r}: expected file:///absolute/path")
        return Path(unquote(parts.path))
    raise ConfigError(f"store {uri!r}: unknown scheme {name!r} "
                      "(expected a path, file:///path or s3://bucket/prefix)")


def open_store(uri: str | None, default_root: Path) -> Store:
    """The store named by `uri` (or SOXTRAIL_STORE), else the local default folder."""
    uri = uri or os.environ.get("SOXTRAIL_STORE") or str(default_root)
    folder = local_path(uri)
    if folder is not None:
        return LocalStore(folder)
    retention = os.environ.get("SOXTRAIL_S3_RETENTION_DAYS", "0") or "0"
    try:
        days = int(retention)
    except ValueError as exc:
        raise ConfigError(
            f"SOXTRAIL_S3_RETENTION_DAYS={retention!r}: expected a number") from exc
    attempts = os.environ.get("SOXTRAIL_S3_MAX_ATTEMPTS", "8") or "8"
    if not attempts.isdigit() or int(attempts) < 1:
        raise ConfigError(f"SOXTRAIL_S3_MAX_ATTEMPTS={attempts!r}: expected a number >= 1")
    return S3Store(uri, endpoint_url=os.environ.get("SOXTRAIL_S3_ENDPOINT_URL") or None,
                   object_lock=os.environ.get("SOXTRAIL_S3_OBJECT_LOCK") or None,
                   retention_days=days, max_attempts=int(attempts))
