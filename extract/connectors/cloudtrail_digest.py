"""CloudTrail digest files: parse them, validate the chain as `aws cloudtrail validate-logs` does.

With log file validation on, CloudTrail writes one digest an hour per region
(`AWSLogs/<account>/CloudTrail-Digest/<region>/YYYY/MM/DD/…json.gz`). Each lists the log
files delivered in its hour with the SHA-256 of their uncompressed content, and links to
the previous digest (its object, the SHA-256 of its uncompressed content, its signature).
The digest's own signature is S3 object metadata (`signature`, hex; `signature-algorithm`):
RSA PKCS#1 v1.5 over SHA-256 of `digestEndTime + "\\n" + digestS3Bucket + "/" +
digestS3Object + "\\n" + hex(sha256(uncompressed digest)) + "\\n" + previousDigestSignature`
(the text `null` in the first digest of a chain), checked with the trail's public key of
that fingerprint (`cloudtrail:ListPublicKeys`: PKCS#1 DER).

`validate(...)` turns the digests and the captured log files into the source's
Completeness statement (basis `digest_chain`; `no_total` with UNVERIFIED when there are
no digests). Findings: DIGEST_MISMATCH (a log file whose content is not the one its digest
lists, a captured log file no digest lists, a digest moved, unreadable, altered — its
successor's hash of it differs — or whose signature does not verify), MISSING_LOG_FILE (a
listed log file not captured), MISSING_DIGEST (a stretch of the quarter no digest covers,
or a digest the chain names that is absent), UNVERIFIED (not an exception: no digests for a
region, or signatures that could not be checked, and why). Pure and deterministic: the
same digests and files give the same statement.
"""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from soxtrail.kernel.errors import SourceError
from soxtrail.kernel.sources import Completeness, Finding

REQUIRED_KEYS = ("digestPublicKeyFingerprint", "digestS3Bucket", "digestS3Object",
                 "previousDigestSignature", "digestEndTime", "digestStartTime")
# at most this many names in one finding's detail (the facts hold the counts)
NAMED = 5
_DAY = re.compile(r"/(\d{4})/(\d\d)/(\d\d)/[^/]*$")
_DELIVERED = re.compile(r"_(\d{8}T\d{4,6}Z)")


@dataclass(frozen=True)
class Digest:
    """One digest file as captured: its uncompressed content and its signature metadata."""

    name: str  # the file name (last segment of its key or path)
    location: str  # where it was read (path or s3:// URI)
    account: str  # the account and region folders it was found in
    region: str
    content: bytes  # uncompressed
    signature: str | None = None  # hex, from S3 metadata or the copy's sidecar
    signature_algorithm: str | None = None
    doc: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None  # why it is not a usable digest

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def backfill(self) -> bool:
        return self.name.endswith("_backfill.json.gz")

    @property
    def start(self) -> datetime:
        return parse_time(self.doc["digestStartTime"])

    @property
    def end(self) -> datetime:
        return parse_time(self.doc["digestEndTime"])

    @property
    def trail(self) -> tuple[str, str]:
        """(account, region) of the chain this digest belongs to."""
        return self.account, self.region


@dataclass(frozen=True)
class LogFile:
    """One captured CloudTrail log file: the SHA-256 of its uncompressed content."""

    name: str
    account: str
    region: str
    day: date  # its folder's day
    sha256: str | None  # None: unreadable

    @property
    def delivered(self) -> datetime | None:
        """The delivery time in its name (`…_20240701T0815Z_…`), None if it has none."""
        match = _DELIVERED.search(self.name)
        if not match:
            return None
        stamp = match.group(1)
        fmt = "%Y%m%dT%H%M%SZ" if len(stamp) == 16 else "%Y%m%dT%H%MZ"
        return datetime.strptime(stamp, fmt).replace(tzinfo=UTC)


def parse_time(text: Any) -> datetime:
    """A digest time (`2024-07-01T01:00:00Z`) as an aware UTC datetime."""
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)


def iso(moment: datetime) -> str:
    """A moment as `YYYY-MM-DDTHH:MM:SSZ` (UTC), as digests write it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def inflate(data: bytes) -> bytes:
    """The uncompressed content of a `.json.gz` object (plain bytes pass as they are)."""
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


class ContentHasher:
    """SHA-256 of a log file's uncompressed content, taken from its bytes as they stream to
    the store (`tee`), gzip or not, multi-member gzip included: no second read of the
    object (which, in an S3 store, is not on disk after capture). `hexdigest()` is None
    when the gzip stream is broken, as content_sha256's."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._inflate: Any = None
        self._started = False
        self._head = b""
        self._gzipped = False
        self._broken = False

    def tee(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Yield `chunks` unchanged, hashing their content on the way."""
        for chunk in chunks:
            self._feed(chunk)
            yield chunk

    def _feed(self, chunk: bytes) -> None:
        if self._broken or not chunk:
            return
        if not self._started:  # the gzip magic may arrive split across chunks
            self._head += chunk
            if len(self._head) < 2:
                return
            chunk, self._head = self._head, b""
            self._started, self._gzipped = True, chunk[:2] == b"\x1f\x8b"
        if not self._gzipped:
            self._sha.update(chunk)
            return
        data = chunk
        try:
            while data:
                if self._inflate is None:
                    self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._sha.update(self._inflate.decompress(data))
                if not self._inflate.eof:
                    return
                data, self._inflate = self._inflate.unused_data, None
        except zlib.error:
            self._broken = True

    def hexdigest(self) -> str | None:
        """The content hash, or None for a broken or truncated gzip stream."""
        if self._broken or (self._inflate is not None and not self._inflate.eof):
            return None
        if not self._started:  # fewer than two bytes in all: not gzip
            return hashlib.sha256(self._head).hexdigest()
        return self._sha.hexdigest()


def content_sha256(path: Path) -> str | None:
    """SHA-256 of a log file's uncompressed content (what a digest lists), None if unreadable."""
    sha = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gzipped else path.open("rb")) as handle:
            while block := handle.read(1 << 20):
                sha.update(block)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    return sha.hexdigest()


def metadata_signature(metadata: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(signature, algorithm) from S3 user metadata or a sidecar: `{"signature": …,
    "signature-algorithm": …}`, or a whole `aws s3api head-object` output (`Metadata`)."""
    if not isinstance(metadata, Mapping):
        return None, None
    if isinstance(metadata.get("Metadata"), Mapping):
        metadata = metadata["Metadata"]
    lowered = {str(k).lower().removeprefix("x-amz-meta-"): v for k, v in metadata.items()}
    signature = lowered.get("signature")
    algorithm = lowered.get("signature-algorithm")
    return (str(signature) if signature else None), (str(algorithm) if algorithm else None)


def make_digest(name: str, location: str, account: str, region: str, content: bytes,
                signature: str | None = None, signature_algorithm: str | None = None) -> Digest:
    """A Digest from its uncompressed content; `problem` says why it is unusable, if it is."""
    head = (name, location, account, region, content, signature, signature_algorithm)
    try:
        doc = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return Digest(*head, problem=f"not JSON ({exc})")
    if not isinstance(doc, dict):
        return Digest(*head, problem="not a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in doc]
    if missing:
        return Digest(*head, doc, problem=f"not a CloudTrail digest (no {', '.join(missing)})")
    try:
        parse_time(doc["digestStartTime"])
        parse_time(doc["digestEndTime"])
    except ValueError as exc:
        return Digest(*head, doc, problem=f"bad digest time ({exc})")
    if not isinstance(doc.get("logFiles", []), list):
        return Digest(*head, doc, problem="logFiles is not a list")
    return Digest(*head, doc)


# ------------------------------------------------------------------------- public keys


def public_keys_from_listing(listing: Mapping[str, Any], where: str) -> dict[str, bytes]:
    """Fingerprint → DER public key from a ListPublicKeys response: boto3's (`Value` bytes)
    or the saved output of `aws cloudtrail list-public-keys` (`Value` base64 text)."""
    keys: dict[str, bytes] = {}
    items = listing.get("PublicKeyList")
    if not isinstance(items, list):
        raise SourceError(f"{where}: expected a ListPublicKeys response "
                          '({"PublicKeyList": [{"Value": …, "Fingerprint": …}]})')
    for item in items:
        if not isinstance(item, Mapping) or "Fingerprint" not in item or "Value" not in item:
            raise SourceError(f"{where}: a public key without Fingerprint and Value")
        value = item["Value"]
        try:
            der = bytes(value) if isinstance(value, bytes | bytearray) else base64.b64decode(
                str(value), validate=True)
        except binascii.Error as exc:
            raise SourceError(f"{where}: key {item['Fingerprint']}: Value is not base64: "
                              f"{exc}") from exc
        keys[str(item["Fingerprint"])] = der
    return keys


def read_public_keys(path: Path) -> dict[str, bytes]:
    """The key file named by `public_keys`: the JSON output of
    `aws cloudtrail list-public-keys --start-time … --end-time …`."""
    try:
        listing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(f"public keys {path}: cannot read: {exc}") from exc
    if not isinstance(listing, dict):
        raise SourceError(f"public keys {path}: expected a JSON object")
    return public_keys_from_listing(listing, f"public keys {path}")


def string_to_sign(digest: Digest) -> bytes:
    """What CloudTrail signs for a digest (the AWS CLI's validate-logs builds the same)."""
    doc = digest.doc
    previous = doc.get("previousDigestSignature")
    previous = "null" if previous is None else previous  # as the Java implementation
    return (f"{doc['digestEndTime']}\n{doc['digestS3Bucket']}/{doc['digestS3Object']}\n"
            f"{digest.sha256}\n{previous}").encode()


@functools.lru_cache(maxsize=64)
def _rsa_key(der: bytes) -> Any:
    """The RSA public key of a DER (PKCS#1 or SPKI) encoding, None if it is not one; parsed
    once per key, not once per digest (a trail signs thousands of digests with a few keys)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        key = load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


def signature_valid(digest: Digest, der: bytes) -> bool:
    """Whether the digest's signature verifies with the DER (PKCS#1 or SPKI) RSA key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    key = _rsa_key(bytes(der))
    if key is None:
        return False
    try:
        signature = bytes.fromhex(str(digest.signature))
    except ValueError:
        return False
    try:
        key.verify(signature, string_to_sign(digest), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


# ------------------------------------------------------------------------- validation


@dataclass
class _Tally:
    findings: list[Finding] = field(default_factory=list)
    covered: list[tuple[datetime, datetime]] = field(default_factory=list)
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)
    verified: int = 0
    unsigned: list[str] = field(default_factory=list)
    no_key: list[str] = field(default_factory=list)
    fingerprints: set[str] = field(default_factory=set)
    listed: int = 0
    checked: int = 0


def _names(names: list[str]) -> str:
    shown = ", ".join(sorted(names)[:NAMED])
    more = len(names) - NAMED
    return shown + (f" and {more} more" if more > 0 else "")


def _basename(key: Any) -> str:
    return str(key or "").rsplit("/", 1)[-1]


def _key_day(key: str) -> date | None:
    match = _DAY.search(key)
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def _check_digest(digest: Digest, keys: Mapping[str, bytes] | None, key_source: str,
                  tally: _Tally) -> bool:
    """Location and signature of one digest; False when it is not usable at all."""
    if digest.problem:
        tally.findings.append(Finding("DIGEST_MISMATCH",
                                      f"digest {digest.name} is unreadable: {digest.problem}"))
        return False
    if _basename(digest.doc["digestS3Object"]) != digest.name:
        tally.findings.append(Finding(
            "DIGEST_MISMATCH", f"digest {digest.name} has been moved from its original "
            f"location {digest.doc['digestS3Bucket']}/{digest.doc['digestS3Object']}"))
    fingerprint = str(digest.doc["digestPublicKeyFingerprint"])
    if not digest.signature:
        tally.unsigned.append(digest.name)
    elif keys is None:
        tally.no_key.append(digest.name)
    elif fingerprint not in keys:
        tally.findings.append(Finding(
            "DIGEST_MISMATCH", f"digest {digest.name} is signed with key {fingerprint}, "
            f"which is not among the trail's public keys ({key_source})"))
    elif not signature_valid(digest, keys[fingerprint]):
        tally.findings.append(Finding(
            "DIGEST_MISMATCH", f"digest {digest.name}: its signature does not verify with "
            f"public key {fingerprint} (the digest or its signature was altered)"))
    else:
        tally.verified += 1
        tally.fingerprints.add(fingerprint)
    return True


def _chain(trail: str, chain: list[Digest], period: tuple[datetime, datetime],
           tally: _Tally) -> None:
    """Links between consecutive digests of one region, and the stretches none covers."""
    start, end = period
    if chain[0].start > start:
        tally.gaps.append((start, chain[0].start))
        tally.findings.append(Finding(
            "MISSING_DIGEST", f"{trail}: no digest covers {iso(start)} to "
            f"{iso(chain[0].start)} (the first digest found is {chain[0].name})"))
    run_start = chain[0].start
    for prev, cur in pairwise(chain):
        named = _basename(cur.doc.get("previousDigestS3Object"))
        gap = cur.start > prev.end
        if gap or (named and named != prev.name):
            tally.gaps.append((prev.end, max(cur.start, prev.end)))
            tally.covered.append((run_start, prev.end))
            run_start = cur.start
            missing = f"names previous digest {named}, which is absent" if named and \
                named != prev.name else "starts a new chain"
            tally.findings.append(Finding(
                "MISSING_DIGEST", f"{trail}: digest {cur.name} {missing}; no digest covers "
                f"{iso(prev.end)} to {iso(cur.start)}" if gap else
                f"{trail}: digest {cur.name} {missing} (the one before it is {prev.name})"))
            continue
        if not named:
            continue
        if cur.doc.get("previousDigestHashValue") != prev.sha256:
            tally.findings.append(Finding(
                "DIGEST_MISMATCH", f"digest {prev.name} is not the one its successor "
                f"{cur.name} was chained to: SHA-256 {prev.sha256[:16]}…, recorded "
                f"{str(cur.doc.get('previousDigestHashValue'))[:16]}…"))
        if prev.signature and cur.doc.get("previousDigestSignature") != prev.signature:
            tally.findings.append(Finding(
                "DIGEST_MISMATCH", f"digest {prev.name}: its signature is not the one its "
                f"successor {cur.name} was chained to"))
    tally.covered.append((run_start, chain[-1].end))
    if chain[-1].end < end:
        tally.gaps.append((chain[-1].end, end))
        tally.findings.append(Finding(
            "MISSING_DIGEST", f"{trail}: no digest covers {iso(chain[-1].end)} to {iso(end)} "
            f"(the last digest found is {chain[-1].name})"))


def _log_files(trail: str, digests: list[Digest], logs: list[LogFile],
               log_days: set[date] | None, tally: _Tally) -> None:
    """Each listed log file of the captured days against the capture, and the reverse."""
    captured = {log.name: log for log in logs}
    listed: dict[str, tuple[str, str, date | None]] = {}  # name → (hash, digest, day)
    for digest in digests:
        for entry in digest.doc.get("logFiles") or []:
            if isinstance(entry, Mapping):
                key = str(entry.get("s3Object") or "")
                listed.setdefault(_basename(key), (str(entry.get("hashValue")), digest.name,
                                                   _key_day(key)))
    missing: list[tuple[str, str]] = []
    for name, (hash_value, digest_name, day) in sorted(listed.items()):
        if log_days is not None and day is not None and day not in log_days:
            continue  # a file of a day outside the capture
        tally.listed += 1
        log = captured.get(name)
        if log is None:
            missing.append((name, digest_name))
            continue
        tally.checked += 1
        if log.sha256 is None:
            tally.findings.append(Finding("DIGEST_MISMATCH",
                                          f"log file {name} is unreadable (digest {digest_name} "
                                          "lists it)"))
        elif log.sha256 != hash_value:
            tally.findings.append(Finding(
                "DIGEST_MISMATCH", f"log file {name} is not the file digest {digest_name} "
                f"lists: SHA-256 of its content {log.sha256[:16]}…, listed "
                f"{hash_value[:16]}…"))
    for name, digest_name in missing:
        tally.findings.append(Finding(
            "MISSING_LOG_FILE", f"log file {name}, listed in digest {digest_name}, is not in "
            "the trail"))
    unlisted = [log for log in logs if log.name not in listed]
    in_gap = [log for log in unlisted if log.delivered is not None and any(
        low <= log.delivered < high for low, high in tally.gaps)]
    if in_gap:
        tally.findings.append(Finding(
            "MISSING_DIGEST", f"{trail}: {len(in_gap)} captured log file(s) delivered where "
            f"no digest covers the trail cannot be checked: {_names([x.name for x in in_gap])}"))
    others = [log.name for log in unlisted if log not in in_gap]
    if others:
        tally.findings.append(Finding(
            "DIGEST_MISMATCH", f"{trail}: {len(others)} log file(s) are listed in no digest: "
            f"{_names(others)}"))


def _merge(periods: Iterable[tuple[datetime, datetime]]) -> list[tuple[str, str]]:
    merged: list[list[datetime]] = []
    for low, high in sorted(periods):
        if merged and low <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return [(iso(low), iso(high)) for low, high in merged]


def validate(digests: Iterable[Digest], logs: Iterable[LogFile], *,
             period: tuple[datetime, datetime], log_days: set[date] | None = None,
             keys: Mapping[str, bytes] | None = None, key_source: str = "") -> Completeness:
    """The completeness statement of a trail's capture.

    `period`: the [start, end) the digest chain must cover (the quarter, UTC); `log_days`:
    the day folders whose log files were captured (files a digest lists on other days are
    not expected); `keys`: fingerprint → DER public key (None: signatures not checked),
    `key_source` saying where they came from.
    """
    digests = sorted(digests, key=lambda d: d.name)
    logs = sorted(logs, key=lambda log: log.name)
    if not digests:
        statement = Completeness(basis="no_total", captured=len(logs), findings=[Finding(
            "UNVERIFIED", f"no CloudTrail-Digest files found beside the {len(logs)} log "
            "file(s): log file validation is off for the trail, or the digests were not "
            "copied with it, so neither a missing nor an altered log file can be detected",
            exception=False)])
        statement.facts = {"digests": 0, "log_files_captured": len(logs)}
        return statement
    tally = _Tally()
    trails: dict[tuple[str, str], list[Digest]] = {}
    for digest in digests:
        usable = trails.setdefault(digest.trail, [])  # a region with digests, even unusable
        if _check_digest(digest, keys, key_source, tally):
            usable.append(digest)
    by_trail: dict[tuple[str, str], list[LogFile]] = {}
    for log in logs:
        by_trail.setdefault((log.account, log.region), []).append(log)
    for trail in sorted(set(trails) | set(by_trail)):
        label = f"{trail[0]}/{trail[1]}"
        if trail not in trails:
            tally.findings.append(Finding(
                "UNVERIFIED", f"{label}: no digest files for this region: its "
                f"{len(by_trail[trail])} log file(s) are not verified", exception=False))
            continue
        chain_all = trails[trail]
        chain = sorted((d for d in chain_all if not d.backfill), key=lambda d: (d.end, d.name))
        if chain:
            _chain(label, chain, period, tally)
        else:
            tally.gaps.append(period)
            tally.findings.append(Finding(
                "MISSING_DIGEST", f"{label}: no usable digest covers {iso(period[0])} to "
                f"{iso(period[1])}"))
        _log_files(label, chain_all, by_trail.get(trail, []), log_days, tally)
    if tally.unsigned:
        tally.findings.append(Finding(
            "UNVERIFIED", f"the signatures of {len(tally.unsigned)} digest(s) were not "
            "checked: their copy carries no signature metadata (copy it with the digest: "
            "docs/configuration.md, aws_cloudtrail); their hash chain was checked",
            exception=False))
    if tally.no_key:
        tally.findings.append(Finding(
            "UNVERIFIED", f"the signatures of {len(tally.no_key)} digest(s) were not checked: "
            "no public keys (set public_keys, or read the trail from S3); their hash chain "
            "was checked", exception=False))
    findings = sorted(tally.findings, key=lambda f: (f.code, f.detail))
    return Completeness(
        basis="digest_chain", claimed=tally.listed, captured=len(logs), findings=findings,
        covered=_merge(tally.covered),
        facts={"digests": len(digests),
               "backfill_digests": sum(d.backfill for d in digests),
               "log_files_captured": len(logs), "log_files_listed": tally.listed,
               "log_files_checked": tally.checked,
               "signatures_verified": tally.verified,
               "signatures_unchecked": len(tally.unsigned) + len(tally.no_key),
               "public_key_fingerprints": sorted(tally.fingerprints),
               "public_keys": key_source or None,
               "trails": sorted(f"{a}/{r}" for a, r in trails),
               "period": {"from": iso(period[0]), "to": iso(period[1])}})
