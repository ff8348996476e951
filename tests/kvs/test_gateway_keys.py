"""The gateway's API keys: scopes allow exactly what they name, the table round-trips."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.errors import ConfigurationError
from meterseal.kvs.gateway_keys import (
    KeyTable,
    KvsKeyError,
    Right,
    Scope,
    check_bucket,
    parse_rights,
    split_key,
)

RW = frozenset((Right.READ, Right.WRITE))
names = st.text(alphabet="abc/._-", max_size=12)
buckets = st.sampled_from(["meters", "bills", "x.y-z"])
rights = st.frozensets(st.sampled_from(list(Right)), min_size=1)


@given(bucket=buckets, prefix=names, granted=rights, right=st.sampled_from(list(Right)),
       other=buckets, key=names)  # fmt: skip
def test_a_scope_allows_its_bucket_prefix_and_rights_only(
    bucket: str, prefix: str, granted: frozenset[Right], right: Right, other: str, key: str
) -> None:
    scope = Scope(bucket, prefix, granted)
    expected = right in granted and other == bucket and key.startswith(prefix)
    assert scope.allows(right, other, key) is expected


@given(prefix=names, asked=names)
def test_a_listing_is_narrowed_to_the_scope_or_refused(prefix: str, asked: str) -> None:
    scope = Scope("meters", prefix, frozenset((Right.READ,)))
    narrowed = scope.listing_prefix("meters", asked)
    if narrowed is None:
        assert not asked.startswith(prefix)
        assert not prefix.startswith(asked)
    else:
        assert narrowed.startswith(prefix)
        assert narrowed.startswith(asked)
    assert scope.listing_prefix("bills", asked) is None
    assert (
        Scope("meters", prefix, frozenset((Right.WRITE,))).listing_prefix("meters", asked) is None
    )


def test_every_bucket_scope_covers_any_bucket() -> None:
    scope = Scope("*", "", frozenset((Right.ADMIN,)))
    assert scope.covers("meters")
    assert scope.covers("bills")
    assert not scope.allows(Right.READ, "meters", "a")


@given(scopes=st.lists(st.tuples(buckets, names, rights, st.booleans()), min_size=1, max_size=5))
def test_the_table_round_trips_and_verifies_only_its_active_keys(
    scopes: list[tuple[str, str, frozenset[Right], bool]],
) -> None:
    table, made = KeyTable(), []
    for index, (bucket, prefix, granted, revoke) in enumerate(scopes):
        table, new = table.add(Scope(bucket, prefix, granted), f"k{index}", 1.0 + index, os.urandom)
        if revoke:
            table = table.revoke(new.key.key_id, 100.0)
        made.append((new, revoke))
    loaded = KeyTable.from_bytes(table.to_bytes())
    assert loaded == table
    for new, revoked in made:
        found = loaded.verify(new.secret)
        assert (found is None) is revoked
        if found is not None:
            assert found.scope == new.key.scope
        wrong = new.secret[:-1] + ("0" if new.secret[-1] != "0" else "1")
        assert loaded.verify(wrong) is None
        assert new.secret[len("kvk_") :][:16] == new.key.key_id


@given(text=st.text(max_size=100))
def test_anything_not_shaped_like_a_key_proves_nothing(text: str) -> None:
    table, _ = KeyTable().add(Scope("meters", "", RW), "", 1.0, os.urandom)
    if split_key(text) is None:
        assert table.verify(text) is None


def test_an_unreadable_table_is_refused() -> None:
    with pytest.raises(KvsKeyError, match="unreadable"):
        KeyTable.from_bytes(b"\xa1\x61x\x01")


def test_rights_and_buckets_are_checked() -> None:
    assert parse_rights("rw") == RW
    assert parse_rights("read, admin") == {Right.READ, Right.ADMIN}
    with pytest.raises(ConfigurationError, match="unknown right"):
        parse_rights("delete")
    with pytest.raises(KvsKeyError):
        check_bucket("_kvs")  # the gateway's own bucket is never a client's
    with pytest.raises(KvsKeyError):
        Scope("meters", "", frozenset())
