"""`demo --serve`'s in-process router: its members are admitted, and consent given or withdrawn
through the portal's operator channel changes what the router delivers to demo-app."""

from __future__ import annotations

import asyncio
import os
import time

import cbor2

from meterseal.demo_router import DEMO_APP, demo_router
from meterseal.dissemination.node import operator_command

KEY = b"k" * 32
METER = b"\x07" * 16
OTHER = b"\x08" * 16


def _ask(router: object, command: dict[str, object], key: bytes = KEY) -> dict[str, object]:
    signed = operator_command(key, command, now=time.time(), nonce=os.urandom(16))
    answer: dict[str, object] = cbor2.loads(asyncio.run(router.channel(signed)))  # type: ignore[attr-defined]
    return answer


def test_consent_decides_what_demo_app_receives() -> None:
    router = demo_router(KEY)
    members = _ask(router, {"op": "consents"})["members"]
    assert members == {
        "headend": ["publisher", "admitted"],
        "aggregator": ["aggregator", "admitted"],
        "utility": ["utility", "admitted"],
        DEMO_APP: ["app", "admitted"],
    }

    def receivers(pseudonym: bytes, start: int) -> set[str]:
        """Who received a reading of `pseudonym`; each of them can open it (holds its key)."""
        item = router.reading(pseudonym, start, 5, "R01")
        routed = router.publish([item])
        for member in routed.deliveries:
            assert router.clients[member].can_open(item), member
        return set(routed.deliveries)

    assert receivers(METER, 0) == {"aggregator"}
    assert _ask(router, {"op": "grant", "customer": METER, "app": DEMO_APP})["ok"]
    assert receivers(METER, 900) == {"aggregator", DEMO_APP}
    assert receivers(OTHER, 900) == {"aggregator"}  # another customer's: no consent
    assert _ask(router, {"op": "revoke", "customer": METER, "app": DEMO_APP})["ok"]
    assert receivers(METER, 1800) == {"aggregator"}  # its key rotated, handed out in-process
    assert router.network.refused_handouts == []
    assert not router.clients[DEMO_APP].can_open(router.reading(METER, 3600, 5, "R01"))
    # A command not signed with the operator key changes nothing.
    forged = _ask(router, {"op": "grant", "customer": METER, "app": DEMO_APP}, b"x" * 32)
    assert forged["ok"] is False
    assert receivers(METER, 2700) == {"aggregator"}
