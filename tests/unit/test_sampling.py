"""The sampling method (soxtrail/kernel/sampling.py), checked against the documented method
recomputed here with hashlib: rank by SHA-256 of `seed|item_key`, take the first N."""

from __future__ import annotations

import hashlib

import pytest

from soxtrail.kernel import sampling
from soxtrail.kernel.errors import ConfigError

KEYS = [f"pg-{c:02d}|user{u}|admin|2024-07-{d:02d}T10:00:00Z"
        for c in range(1, 4) for u in range(5) for d in (1, 15)]  # 30 items


def _population(keys: list[str] = KEYS) -> list[tuple[str, str | None]]:
    return [(k, "EXCEPTION" if i % 3 == 0 else "PASS") for i, k in enumerate(keys)]


def _documented(keys: list[str], seed: int, size: int) -> list[str]:
    """The method as docs/auditor-guide.md gives it, written independently."""
    def rank(key: str) -> str:
        return hashlib.sha256(f"{seed}|{key}".encode()).hexdigest()
    return sorted(keys, key=lambda k: (rank(k), k))[:size]


def test_the_draw_is_the_documented_method() -> None:
    drawn = sampling.draw(_population(), seed=42, size=7)
    assert drawn.item_keys == _documented(KEYS, 42, 7)
    assert [d.rank for d in drawn.items] == list(range(1, 8))
    assert all(d.rank_hash == hashlib.sha256(f"42|{d.item_key}".encode()).hexdigest()
               for d in drawn.items)


def test_the_population_hash_is_the_sorted_keys_joined_by_newlines() -> None:
    expected = hashlib.sha256("\n".join(sorted(KEYS)).encode("utf-8")).hexdigest()
    drawn = sampling.draw(reversed(_population()), seed=1, size=3)
    assert drawn.population_hash == expected
    assert drawn.population_count == len(KEYS)


def test_the_same_seed_draws_the_same_items_whatever_the_order() -> None:
    first = sampling.draw(_population(), seed=42, size=10)
    again = sampling.draw(list(reversed(_population())), seed=42, size=10)
    assert first == again


def test_a_different_seed_draws_different_items() -> None:
    assert (sampling.draw(_population(), seed=42, size=10).item_keys
            != sampling.draw(_population(), seed=43, size=10).item_keys)


def test_a_size_at_least_the_population_takes_every_item() -> None:
    drawn = sampling.draw(_population(), seed=5, size=100)
    assert drawn.all_items and drawn.size_drawn == len(KEYS)
    assert drawn.item_keys == _documented(KEYS, 5, len(KEYS))
    assert not sampling.draw(_population(), seed=5, size=len(KEYS) - 1).all_items


def test_stratified_sizes_follow_the_largest_remainder_rule() -> None:
    # 17 EXCEPTION and 9 PASS, size 10: one each, then 8 shared by 16:8 of 24 -> 5.33, 2.67:
    # 5 and 2, the one left over to PASS (the larger remainder)
    assert sampling.allocate({"EXCEPTION": 17, "PASS": 9}, 10) == {"EXCEPTION": 6, "PASS": 4}
    # a tiny stratum still gets one item
    assert sampling.allocate({"EXCEPTION": 1, "PASS": 99}, 5) == {"EXCEPTION": 1, "PASS": 4}
    # ties on the remainder go to the stratum name first
    assert sampling.allocate({"A": 4, "B": 4}, 5) == {"A": 3, "B": 2}
    assert sampling.allocate({"A": 3, "B": 2}, 9) == {"A": 3, "B": 2}
    for size in range(3, 60):
        shares = sampling.allocate({"A": 30, "B": 12, "C": 1}, size)
        assert sum(shares.values()) == min(size, 43)
        assert all(1 <= shares[s] <= n for s, n in {"A": 30, "B": 12, "C": 1}.items())


def test_a_stratified_draw_ranks_within_each_stratum() -> None:
    population = _population()
    drawn = sampling.draw(population, seed=9, size=8, stratify="result")
    assert drawn.strata == {"EXCEPTION": {"population": 10, "drawn": 3},
                            "PASS": {"population": 20, "drawn": 5}}
    for stratum, counts in (drawn.strata or {}).items():
        members = [k for k, v in population if v == stratum]
        assert sorted(d.item_key for d in drawn.items if d.stratum == stratum) == sorted(
            _documented(members, 9, counts["drawn"]))
    hashes = [d.rank_hash for d in drawn.items]
    assert hashes == sorted(hashes)  # listed in rank order across strata


def test_a_stratified_size_below_the_strata_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one item of each of the 2 strata"):
        sampling.draw(_population(), seed=1, size=1, stratify="result")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"seed": -1, "size": 3}, "--seed -1"),
    ({"seed": 2**63, "size": 3}, "--seed"),
    ({"seed": 1, "size": 0}, "--size 0"),
    ({"seed": 1, "size": 3, "stratify": "cluster"}, "--stratify 'cluster'"),
])
def test_bad_requests_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        sampling.draw(_population(), **kwargs)  # type: ignore[arg-type]


def test_duplicate_item_keys_and_an_empty_population_are_refused() -> None:
    with pytest.raises(ConfigError, match="occurs twice"):
        sampling.draw([("a", None), ("a", None)], seed=1, size=1)
    with pytest.raises(ConfigError, match="population is empty"):
        sampling.draw([], seed=1, size=1)
