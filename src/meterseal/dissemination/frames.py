"""Frames: a batch of publications on a wire, sealed with the member's link key.

A frame is the CBOR array `[seq, nonce, ciphertext]`: AES-256-GCM under the link key that
the publisher handed the member and the router, over the packed flat batch of publications
(`wire.pack`: header, sealed, header, sealed, …), with the subject and seq as associated
data. So a transport (NATS) sees neither headers nor payloads, cannot move a frame to
another member's subject, and a replayed frame (seq not above the last one taken on that
link) is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meterseal.dissemination.errors import DisseminationError, Reason
from meterseal.dissemination.wire import pack, unpack

MAX_FRAME: Final = 8 * 1024 * 1024
MAX_BATCH: Final = 20_000  # publications, so twice as many elements
NONCE: Final = 12

Rng = Callable[[int], bytes]


def _aad(subject: str, seq: int) -> bytes:
    return subject.encode() + b"\x00" + seq.to_bytes(8, "big")


def _malformed(detail: str) -> DisseminationError:
    return DisseminationError(Reason.MALFORMED_FRAME, detail)


@dataclass
class Link:
    """One direction of a member's link with the router: its key and sequence numbers."""

    key: bytes
    sent: int = 0
    received: int = 0

    def __post_init__(self) -> None:
        self._aead = AESGCM(self.key)

    def seal(self, subject: str, elements: Sequence[bytes], rng: Rng) -> bytes:
        """The frame carrying a flat batch (header, sealed, …) on `subject`."""
        self.sent += 1
        nonce = rng(NONCE)
        body = self._aead.encrypt(nonce, pack(elements), _aad(subject, self.sent))
        frame: bytes = cbor2.dumps([self.sent, nonce, body])
        return frame

    def open(self, subject: str, frame: object) -> list[bytes]:
        """The flat batch in a frame; DisseminationError (malformed or replayed) else."""
        if type(frame) is not bytes or len(frame) > MAX_FRAME:
            raise _malformed(f"a frame is bytes of <= {MAX_FRAME}")
        try:
            seq, nonce, body = cbor2.loads(frame)
        except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as exc:
            raise _malformed("not a [seq, nonce, ciphertext] array") from exc
        if type(seq) is not int or not 0 < seq < 2**63 or type(nonce) is not bytes:
            raise _malformed("bad seq or nonce")
        if type(body) is not bytes or len(nonce) != NONCE:
            raise _malformed("bad nonce or ciphertext")
        if seq <= self.received:
            raise DisseminationError(Reason.REPLAYED_FRAME, f"seq {seq} <= {self.received}")
        try:
            plaintext = self._aead.decrypt(nonce, body, _aad(subject, seq))
        except InvalidTag as exc:
            raise _malformed("does not authenticate on this link and subject") from exc
        elements = unpack(plaintext, 2 * MAX_BATCH)
        if elements is None:
            raise _malformed(f"not a packed batch of <= {MAX_BATCH} publications")
        self.received = seq
        return elements
