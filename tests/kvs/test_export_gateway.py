"""The export's object map through a gateway client: absent is None, other errors surface."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from meterseal.errors import MetersealError
from meterseal.kvs.export_gateway import GatewayObjects


class Refused(MetersealError):
    """What the gateway client raises, with the HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class FakeGateway:
    """A gateway client over a dict, recording the policy of each put."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.policies: list[str | None] = []
        self.down = False

    def put(self, bucket: str, key: str, source: bytes, policy: str | None = None) -> Any:
        self.objects[(bucket, key)] = source
        self.policies.append(policy)
        return {"version": 1}

    def read(self, bucket: str, key: str) -> bytes:
        if self.down:
            raise Refused("the gateway answered 503", 503)
        if (bucket, key) not in self.objects:
            raise Refused("the gateway answered 404: no such object", 404)
        return self.objects[(bucket, key)]

    def list_all(self, bucket: str, prefix: str = "") -> Iterator[dict[str, Any]]:
        for b, key in sorted(self.objects):
            if b == bucket and key.startswith(prefix):
                yield {"key": key, "size": len(self.objects[(b, key)])}


def test_objects_round_trip_through_the_client() -> None:
    gateway = FakeGateway()
    objects = GatewayObjects(gateway, policy="hybrid:6+2")
    objects.put("originals/B/2026-10", b"b")
    objects.put("originals/A/2026-10", b"a")
    objects.put("originals-index/2026-10", b"i")
    assert objects.names("originals/") == ["originals/A/2026-10", "originals/B/2026-10"]
    assert objects.get("originals/A/2026-10") == b"a"
    assert objects.get("originals/C/2026-10") is None
    assert gateway.policies == ["hybrid:6+2"] * 3
    assert {b for b, _ in gateway.objects} == {"originals"}


def test_a_gateway_failure_is_not_an_absent_object() -> None:
    gateway = FakeGateway()
    gateway.down = True
    with pytest.raises(Refused, match="503"):
        GatewayObjects(gateway).get("originals/A/2026-10")
