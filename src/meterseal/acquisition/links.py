"""The meter's side of a transport: send packets, get one `Ack` per packet, in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from meterseal.acquisition.ingest import Ack


class MeterLink(Protocol):
    """How a meter reaches the head-end over one transport (TCP, MQTT or HTTP)."""

    async def exchange(self, meter_id: str, packets: Sequence[bytes], timeout: float) -> list[Ack]:
        """Send `packets` of meter `meter_id`; their acks in order, or raise OSError/TimeoutError.

        A packet without an ACCEPTED or REJECTED ack was not durably received: resend it.
        """
        ...
