"""The sampling method of `soxtrail sample`: a reproducible draw of a control's population
items for the auditor's manual re-performance, simple enough to redraw without soxtrail.

Method `sha256-rank/1` (docs/auditor-guide.md, "Drawing a sample for re-performance"):

* population: the control's mart rows of the run, identified by `item_key` (unique);
* population hash: SHA-256 (hex) of the UTF-8 item keys sorted by code point (the byte
  order of UTF-8, SQL `collate "C"`) and joined by a single `\\n` (no trailing newline);
* rank hash of an item: SHA-256 (hex) of the UTF-8 text `f"{seed}|{item_key}"` (the seed
  as plain decimal digits); the sample is the N items with the smallest rank hashes (hex
  text ascending, ties, which SHA-256 makes impossible in practice, by item key);
* a size at least the population takes every item (`all_items`);
* stratified (`--stratify result`): the items are grouped by the column's value (the
  strata, ordered by code point); each non-empty stratum gets one item, and the other
  N - k (k strata) are shared in proportion to each stratum's remaining items (n_i - 1 of
  N_pop - k) by the largest-remainder rule: each gets the whole part of its quota, the
  items left over go one each to the largest fractional parts (ties: stratum name
  ascending). Each stratum's share is drawn by rank hash within the stratum. A size below
  the number of strata is refused (the tester chooses a larger one).

The drawn items are listed in rank-hash order (the order an auditor's redraw gives).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from soxtrail.kernel.errors import ConfigError

METHOD = "sha256-rank/1"
# the mart columns a sample may be stratified by
STRATIFY_COLUMNS = ("result",)
MAX_SEED = 2**63 - 1  # stored as bigint

# Common audit practice guidance for manual-control sample sizes by how often the control
# operates (the tester chooses; a population smaller than the range is tested in full).
SIZE_GUIDANCE: tuple[tuple[str, str, str], ...] = (
    ("annual", "1", "1"),
    ("quarterly", "4", "2"),
    ("monthly", "12", "2-5"),
    ("weekly", "52", "5-15"),
    ("daily", "about 250", "20-40"),
    ("many times a day (recurring)", "over 250", "25-60"),
)


@dataclass(frozen=True)
class Drawn:
    """One drawn item: its place in the sample (1-based), key, rank hash and stratum."""

    rank: int
    item_key: str
    rank_hash: str
    stratum: str | None


@dataclass(frozen=True)
class Sample:
    """A drawn sample and what it was drawn from."""

    seed: int
    size_requested: int
    stratify: str | None
    population_count: int
    population_hash: str
    all_items: bool
    strata: dict[str, dict[str, int]] | None  # stratum -> {"population": n, "drawn": m}
    items: tuple[Drawn, ...]
    method: str = METHOD

    @property
    def size_drawn(self) -> int:
        """How many items were drawn."""
        return len(self.items)

    @property
    def item_keys(self) -> list[str]:
        """The drawn item keys in rank order."""
        return [d.item_key for d in self.items]


def rank_hash(seed: int, item_key: str) -> str:
    """SHA-256 (hex) of `f"{seed}|{item_key}"` in UTF-8."""
    return hashlib.sha256(f"{seed}|{item_key}".encode()).hexdigest()


def population_hash(item_keys: Iterable[str]) -> str:
    """SHA-256 (hex) of the item keys sorted by code point and joined by `\\n`."""
    return hashlib.sha256("\n".join(sorted(item_keys)).encode()).hexdigest()


def check_seed(seed: int) -> int:
    """The seed, if it is a whole number from 0 to 2**63 - 1."""
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed {seed}: expected a whole number from 0 to {MAX_SEED}")
    return seed


def allocate(counts: Mapping[str, int], size: int) -> dict[str, int]:
    """How many items each stratum gets (the module docstring's rule); `counts` are the
    non-empty strata's populations."""
    strata = sorted(s for s, n in counts.items() if n > 0)
    total = sum(counts[s] for s in strata)
    if size >= total:
        return {s: counts[s] for s in strata}
    if size < len(strata):
        raise ConfigError(f"--size {size}: a stratified sample takes at least one item of each "
                          f"of the {len(strata)} strata ({', '.join(strata)}); give "
                          f"--size {len(strata)} or more")
    rest, spare = size - len(strata), total - len(strata)
    share = {s: 1 + rest * (counts[s] - 1) // spare for s in strata}
    remainder = {s: rest * (counts[s] - 1) % spare for s in strata}
    left = size - sum(share.values())
    for stratum in sorted(strata, key=lambda s: (-remainder[s], s))[:left]:
        share[stratum] += 1
    return share


def _ranked(keys: Iterable[str], seed: int) -> list[tuple[str, str]]:
    return sorted((rank_hash(seed, k), k) for k in keys)


def draw(population: Iterable[tuple[str, str | None]], *, seed: int, size: int,
         stratify: str | None = None) -> Sample:
    """Draw `size` items of `population` ((item_key, stratum value) pairs; the value is
    ignored unless `stratify` names the column it came from)."""
    check_seed(seed)
    if size < 1:
        raise ConfigError(f"--size {size}: expected at least 1")
    if stratify is not None and stratify not in STRATIFY_COLUMNS:
        raise ConfigError(f"--stratify {stratify!r}: expected one of "
                          f"{', '.join(STRATIFY_COLUMNS)}")
    strata_of: dict[str, str] = {}
    for key, value in population:
        if key in strata_of:
            raise ConfigError(f"item_key {key!r} occurs twice in the population: a sample "
                              "needs unique item keys")
        strata_of[key] = "" if value is None else str(value)
    if not strata_of:
        raise ConfigError("the population is empty: there is nothing to sample")
    count = len(strata_of)
    if stratify is None:
        chosen = _ranked(strata_of, seed)[:size]
        strata = None
    else:
        members: dict[str, list[str]] = {}
        for key, value in strata_of.items():
            members.setdefault(value, []).append(key)
        shares = allocate({s: len(m) for s, m in members.items()}, size)
        chosen = sorted(pair for s, n in shares.items() for pair in _ranked(members[s], seed)[:n])
        strata = {s: {"population": len(members[s]), "drawn": shares[s]} for s in sorted(members)}
    items = tuple(Drawn(rank=i, item_key=key, rank_hash=digest,
                        stratum=strata_of[key] if stratify else None)
                  for i, (digest, key) in enumerate(chosen, start=1))
    return Sample(seed=seed, size_requested=size, stratify=stratify, population_count=count,
                  population_hash=population_hash(strata_of), all_items=size >= count,
                  strata=strata, items=items)
