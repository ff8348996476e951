"""The router node never raises on what clients send: every input gets a reply."""

from __future__ import annotations

import os
import time

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.dissemination.frames import Link
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.node import RouterNode, operator_command
from tests.dissemination.conftest import CUSTOMERS, NOW, make_world, reading

WORLD = make_world(seed=5)
NODE = RouterNode(WORLD.authority, WORLD.router, b"k" * 32, os.urandom, namespace="fuzz")
HEADEND = WORLD.publisher()
WORLD.join("agg", Role.AGGREGATOR, (PrivacyLevel.HIGH, ""))
LINK = Link(WORLD.router.links["headend"])

cbor_items = st.recursive(
    st.none() | st.booleans() | st.integers() | st.binary(max_size=40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)


def _answer(data: bytes) -> dict[str, object]:
    value = cbor2.loads(data)
    assert isinstance(value, dict)
    assert isinstance(value["ok"], bool)
    return value


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | cbor_items.map(cbor2.dumps))
def test_any_bytes_on_any_subject_get_a_reply(data: bytes) -> None:
    assert not _answer(NODE.on_challenge(data, now=NOW))["ok"] or data.isascii()
    assert not _answer(NODE.on_admit(data, now=NOW))["ok"]
    assert not _answer(NODE.on_publications("headend", data)[0])["ok"]
    assert not _answer(NODE.on_operator(data, now=NOW)[0])["ok"]


elements = st.binary(max_size=80) | cbor_items.map(cbor2.dumps)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(elements, elements | st.binary(min_size=28, max_size=60)), max_size=6))
def test_any_batch_in_a_valid_frame_is_routed_item_by_item(
    items: list[tuple[bytes, bytes]],
) -> None:
    good = reading(HEADEND, CUSTOMERS[0], 0, 1)
    flat = [element for item in items for element in item]
    frame = LINK.seal(NODE.subject("pub", "headend"), [*flat, *good], os.urandom)
    answer, outgoing = NODE.on_publications("headend", frame)
    value = _answer(answer)
    assert value["ok"]
    refused = value["refused"]
    assert isinstance(refused, list)
    assert [i for i, _ in refused] == list(range(len(items)))
    assert [subject for subject, _ in outgoing] == ["fuzz.sub.agg"]


def test_operator_commands_are_checked_and_run() -> None:
    key = b"k" * 32
    status = operator_command(key, {"op": "status"}, now=time.time(), nonce=os.urandom(8))
    answer = _answer(NODE.on_operator(status, now=time.time())[0])
    assert answer["ok"]
    for command in ({"op": "rotate", "level": 9}, {"op": "grant", "customer": ""},
                    {"op": "nothing"}, {"op": "remove", "member": "ghost"}, {"x": 1}):  # fmt: skip
        signed = operator_command(key, command, now=time.time(), nonce=os.urandom(8))
        assert not _answer(NODE.on_operator(signed, now=time.time())[0])["ok"], command
    stale = operator_command(key, {"op": "status"}, now=time.time() - 120, nonce=b"s")
    assert _answer(NODE.on_operator(stale, now=time.time())[0])["reason"] == "bad_operator_command"
    forged = operator_command(b"x" * 32, {"op": "status"}, now=time.time(), nonce=b"f")
    assert not _answer(NODE.on_operator(forged, now=time.time())[0])["ok"]


def test_a_member_that_leaves_is_removed_and_may_be_admitted_again() -> None:
    world = make_world(seed=9)
    node = RouterNode(world.authority, world.router, b"k" * 32, os.urandom, namespace="bye")
    world.publisher("job")
    world.join("agg2", Role.AGGREGATOR, (PrivacyLevel.HIGH, ""))
    link, subject = Link(world.router.links["job"]), node.subject("leave", "job")
    forged = Link(b"\x00" * 32).seal(subject, [], os.urandom)
    assert not _answer(node.on_leave("job", forged, now=NOW)[0])["ok"]
    moved = link.seal(node.subject("leave", "agg2"), [], os.urandom)  # another's subject
    assert not _answer(node.on_leave("agg2", moved, now=NOW)[0])["ok"]
    answer, outgoing = node.on_leave("job", link.seal(subject, [], os.urandom), now=NOW)
    assert _answer(answer)["rekeyed"] == ["agg2"]  # the HIGH master it held rotated away
    assert [s for s, _ in outgoing] == ["bye.keys.agg2"]
    assert "job" not in world.router.members()
    assert _answer(node.on_leave("job", link.seal(subject, [], os.urandom), now=NOW)[0])[
        "reason"
    ] == "unknown_link"  # fmt: skip
    world.publisher("job")  # the next run of the job is admitted under the same name
    assert "job" in world.router.members()
