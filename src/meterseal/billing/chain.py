"""The bill's hash chain: the SGX billing paper's traceability string over the packets in order.

h0 = SHA-256(bill context); h_i = SHA-256(h_{i-1} || SHA-256(packet_i)). The head commits to
every packet and to their order; the running heads let an auditor find the first divergence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

_sha256 = hashlib.sha256


def chain_start(context: bytes) -> bytes:
    """h0: the hash of the bill context (customer, period, meters, tariff)."""
    return _sha256(context).digest()


def chain_step(previous: bytes, packet: bytes) -> bytes:
    """h_i from h_{i-1} and packet i."""
    return _sha256(previous + _sha256(packet).digest()).digest()


def chain_head(context: bytes, packets: Iterable[bytes]) -> bytes:
    """The last link of the chain over `packets`, in order."""
    head = _sha256(context).digest()
    for data in packets:
        head = _sha256(head + _sha256(data).digest()).digest()
    return head


def chain_links(context: bytes, packets: Iterable[bytes]) -> list[bytes]:
    """Every link h_1 … h_n (h0 left out), for locating where two chains part."""
    head = _sha256(context).digest()
    links = []
    for data in packets:
        head = _sha256(head + _sha256(data).digest()).digest()
        links.append(head)
    return links
