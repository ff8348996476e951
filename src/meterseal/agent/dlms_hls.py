"""HLS-GMAC and ciphered APDUs on the emulated DLMS meter's side (sans-IO), security suite 0.

With the meter's global unicast encryption key (EK) and authentication key (AK), the
association runs as DLMS UA 1000-2 (Green Book) describes HLS mechanism 5: the client's AARQ
carries its system title, its challenge (CtoS) and its InitiateRequest ciphered (AES-128-GCM,
IV = system title || invocation counter, AAD = security control || AK, 12-octet tag); the
meter answers with its own system title, its challenge (StoC) and its InitiateResponse
ciphered; the client proves itself with SC || IC || GMAC(SC || AK || StoC) in an action on
the association object (0.0.40.0.0.255, method 1, reply_to_HLS_authentication), and the
meter answers SC || IC || GMAC(SC || AK || CtoS). Every later APDU travels as
general-glo-ciphering. The arithmetic is the `dlms-cosem` library's (`security.encrypt`,
`decrypt`, `gmac`); this module keeps the meter's side of the state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from dlms_cosem import security
from dlms_cosem.dlms_data import encode_variable_integer
from dlms_cosem.protocol import xdlms

SUITE = 0
CIPHERED = security.SecurityControlField(SUITE, encrypted=True, authenticated=True)
AUTHENTICATED = security.SecurityControlField(SUITE, encrypted=False, authenticated=True)


class CipherRefused(ValueError):
    """A ciphered APDU or an HLS reply that does not check with the meter's keys."""


@dataclass
class GmacSession:
    """The meter's side of one ciphered association."""

    encryption_key: bytes
    authentication_key: bytes
    system_title: bytes  # the meter's, 8 octets
    client_title: bytes = b""
    client_challenge: bytes = b""
    challenge: bytes = field(default_factory=lambda: os.urandom(16))  # StoC
    counter: int = 0  # the meter's invocation counter: every APDU it ciphers raises it
    client_counter: int = -1  # the highest the client used: a lower or equal one is replayed
    proven: bool = False  # whether the client's HLS reply checked

    def _cipher(self, plain: bytes) -> tuple[int, bytes]:
        self.counter += 1
        text = security.encrypt(
            CIPHERED, self.system_title, self.counter, self.encryption_key, plain,
            self.authentication_key,
        )  # fmt: skip
        return self.counter, bytes(text)

    def _decipher(self, control: Any, title: bytes, counter: int, text: bytes) -> bytes:
        if counter <= self.client_counter:
            raise CipherRefused("a replayed invocation counter")
        try:
            plain = security.decrypt(
                control, title, counter, self.encryption_key, text, self.authentication_key
            )
        except Exception as exc:  # the library's DecryptionError or a malformed field
            raise CipherRefused(f"does not decipher: {exc}") from None
        self.client_counter = counter
        return bytes(plain)

    def open_request(self, aarq: Any) -> bytes:
        """The client's InitiateRequest from its ciphered AARQ (noting its title, challenge)."""
        content = aarq.user_information.content if aarq.user_information else None
        if not isinstance(content, xdlms.GlobalCipherInitiateRequest) or not aarq.system_title:
            raise CipherRefused("the AARQ is not ciphered")
        self.client_title = bytes(aarq.system_title)
        self.client_challenge = bytes(aarq.authentication_value or b"")
        return self._decipher(
            content.security_control, self.client_title, content.invocation_counter,
            content.ciphered_text,
        )  # fmt: skip

    def initiate_response(self, plain: bytes) -> Any:
        """The meter's InitiateResponse, ciphered for the AARE."""
        counter, text = self._cipher(plain)
        return xdlms.GlobalCipherInitiateResponse(CIPHERED, counter, text)

    def unprotect(self, apdu: bytes) -> bytes:
        """The plain APDU inside a general-glo-ciphering APDU from the client."""
        ggc = xdlms.GeneralGlobalCipher.from_bytes(apdu)
        title = bytes(ggc.system_title or self.client_title)
        return self._decipher(
            ggc.security_control, title, ggc.invocation_counter, ggc.ciphered_text
        )

    def protect(self, plain: bytes) -> bytes:
        """`plain` as a general-glo-ciphering APDU from the meter."""
        counter, text = self._cipher(plain)
        # By hand: the library's GeneralGlobalCipher.to_bytes (25.1.0) writes the content's
        # length in one octet, wrong beyond 127 octets (A-XDR lengths grow: 0x81 n, 0x82 n n).
        content = bytes(CIPHERED.to_bytes()) + counter.to_bytes(4, "big") + text
        return (
            bytes([xdlms.GeneralGlobalCipher.TAG, len(self.system_title)])
            + self.system_title
            + bytes(encode_variable_integer(len(content)))
            + content
        )

    def check_reply(self, reply: bytes) -> bytes:
        """The meter's answer to the client's HLS reply; CipherRefused unless the reply checks."""
        if len(reply) != 1 + 4 + 12:
            raise CipherRefused("an HLS reply is SC, IC and a 12-octet GMAC")
        control = security.SecurityControlField.from_bytes(reply[:1])
        counter = int.from_bytes(reply[1:5], "big")
        expected = security.gmac(
            control, self.client_title, counter, self.encryption_key, self.authentication_key,
            self.challenge,
        )  # fmt: skip
        if bytes(expected) != reply[5:]:
            raise CipherRefused("the client's HLS reply does not check")
        self.proven = True
        self.counter += 1
        answer = security.gmac(
            AUTHENTICATED, self.system_title, self.counter, self.encryption_key,
            self.authentication_key, self.client_challenge,
        )  # fmt: skip
        return bytes(AUTHENTICATED.to_bytes()) + self.counter.to_bytes(4, "big") + bytes(answer)
