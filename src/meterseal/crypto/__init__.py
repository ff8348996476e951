"""Sans-IO crypto core: the reading codec, COSE envelopes, suites, keys and certificates."""

from meterseal.crypto.packet import MAX_PACKET_BYTES, OpenedPacket, open, open_batch, seal
from meterseal.crypto.suites import DEFAULT_SUITE, ED25519, P256, PAPER, PQ, SUITES, CipherSuite

__all__ = [
    "DEFAULT_SUITE",
    "ED25519",
    "MAX_PACKET_BYTES",
    "P256",
    "PAPER",
    "PQ",
    "SUITES",
    "CipherSuite",
    "OpenedPacket",
    "open",
    "open_batch",
    "seal",
]
