"""Bad input at the router and on links: each refused with its reason, the router stays up."""

from __future__ import annotations

import os

import cbor2
import pytest

from meterseal.dissemination.errors import DisseminationError, Reason
from meterseal.dissemination.frames import Link
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.member import Publisher
from tests.dissemination.conftest import AT, CUSTOMERS, World, reading, seeded

HIGH, LOW = PrivacyLevel.HIGH, PrivacyLevel.LOW


def test_a_batch_with_bad_items_routes_the_good_ones(world: World) -> None:
    headend = world.publisher()
    world.join("agg", Role.AGGREGATOR, (HIGH, ""))
    good = reading(headend, CUSTOMERS[0], 0, 1)
    header = good[0]
    batch = [
        good,
        "not a publication",
        [header],
        [b"\xff", good[1]],
        [cbor2.dumps([1, 3]), good[1]],
        [header, b"short"],
        reading(headend, CUSTOMERS[1], 0, 2),
    ]
    routed = world.network.publish("headend", batch)
    assert routed.refused == [(i, Reason.MALFORMED_PUBLICATION) for i in range(1, 6)]
    assert len(world.network.take("agg")) == 2
    assert world.router.counters["refused_malformed_publication"] == 5


def test_a_publisher_must_be_admitted_for_the_level_and_named_in_the_header(world: World) -> None:
    headend = world.publisher()
    app = world.join("app", Role.APP, (HIGH, ""))
    world.join("agg", Role.AGGREGATOR, (HIGH, ""))
    item = reading(headend, CUSTOMERS[0], 0, 1)
    assert world.network.publish("app", [item]).refused == [(0, Reason.UNAUTHORIZED_PUBLISHER)]
    app_as_publisher = Publisher("app", app.keys, rng=seeded(3))
    world.network.grant_consent(CUSTOMERS[0], "app", now=0)
    forged = reading(app_as_publisher, CUSTOMERS[0], 0, 1)  # an app cannot publish HIGH
    assert world.network.publish("app", [forged]).refused == [(0, Reason.UNAUTHORIZED_PUBLISHER)]
    assert world.network.take("agg") == []


def test_raw_readings_never_travel_below_high(world: World) -> None:
    agg_member = world.join("agg", Role.AGGREGATOR, (HIGH, ""))
    world.join("public", Role.PUBLIC_APP, (LOW, ""))
    aggregator = Publisher("agg", agg_member.keys, rng=seeded(4))
    leak = aggregator.seal(LOW, "reading", {"wh": 5}, at=AT, region="R01", customer=CUSTOMERS[0])
    routed = world.network.publish("agg", [leak])
    assert routed.refused == [(0, Reason.LEVEL_TOO_LOW_FOR_TYPE)]
    assert world.network.take("public") == []


def test_subscribing_an_unknown_member_or_above_its_role_is_refused(world: World) -> None:
    from meterseal.dissemination.subscription import Subscription

    with pytest.raises(DisseminationError) as refused:
        world.router.subscribe("ghost", HIGH, Subscription())
    assert refused.value.reason is Reason.UNKNOWN_SUBSCRIBER
    world.join("public", Role.PUBLIC_APP, (LOW, ""))
    with pytest.raises(DisseminationError) as refused:
        world.router.subscribe("public", HIGH, Subscription())
    assert refused.value.reason is Reason.ROLE_NOT_ALLOWED


def test_frames_refuse_replays_other_subjects_and_garbage() -> None:
    key = os.urandom(32)
    sender, receiver = Link(key), Link(key)
    frame = sender.seal("ms.pub.a", [b"h", b"s"], os.urandom)
    assert receiver.open("ms.pub.a", frame) == [b"h", b"s"]
    with pytest.raises(DisseminationError) as refused:
        receiver.open("ms.pub.a", frame)
    assert refused.value.reason is Reason.REPLAYED_FRAME
    second = sender.seal("ms.pub.a", [], os.urandom)
    with pytest.raises(DisseminationError) as refused:
        receiver.open("ms.pub.b", second)  # moved to another member's subject
    assert refused.value.reason is Reason.MALFORMED_FRAME
    for garbage in (
        b"",
        b"\xff",
        cbor2.dumps([1, b"n", b"c"]),
        cbor2.dumps([0, b"n" * 12, b""]),
        "x",
    ):
        with pytest.raises(DisseminationError) as refused:
            receiver.open("ms.pub.a", garbage)
        assert refused.value.reason is Reason.MALFORMED_FRAME
    assert receiver.open("ms.pub.a", sender.seal("ms.pub.a", [], os.urandom)) == []
