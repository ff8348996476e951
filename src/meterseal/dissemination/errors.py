"""Dissemination errors: each refusal names one reason, for the caller's logs and counters."""

from __future__ import annotations

import enum

from meterseal.errors import MetersealError


class Reason(enum.StrEnum):
    """Why the router, the authority or a subscriber refused something."""

    MALFORMED_PUBLICATION = "malformed_publication"
    MALFORMED_FRAME = "malformed_frame"
    REPLAYED_FRAME = "replayed_frame"
    UNKNOWN_LINK = "unknown_link"
    UNAUTHORIZED_PUBLISHER = "unauthorized_publisher"
    LEVEL_TOO_LOW_FOR_TYPE = "level_too_low_for_type"
    MALFORMED_SUBSCRIPTION = "malformed_subscription"
    SUBSCRIPTION_OUTSIDE_LEVEL = "subscription_outside_level"
    UNKNOWN_SUBSCRIBER = "unknown_subscriber"
    NO_KEY = "no_key"
    DECRYPT_FAILED = "decrypt_failed"
    MALFORMED_REQUEST = "malformed_request"
    UNKNOWN_CHALLENGE = "unknown_challenge"
    EXPIRED_CHALLENGE = "expired_challenge"
    TOO_MANY_CHALLENGES = "too_many_challenges"
    ATTESTATION_FAILED = "attestation_failed"
    MEASUREMENT_NOT_ALLOWED = "measurement_not_allowed"
    KEY_NOT_BOUND = "key_not_bound"
    ROLE_NOT_ALLOWED = "role_not_allowed"
    INVALID_TRANSITION = "invalid_transition"
    MALFORMED_HANDOUT = "malformed_handout"
    HANDOUT_NOT_FOR_US = "handout_not_for_us"
    REPLAYED_HANDOUT = "replayed_handout"
    BAD_OPERATOR_COMMAND = "bad_operator_command"


class DisseminationError(MetersealError):
    """A publication, subscription, admission or key handout was refused for `reason`."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail

    def diagnostics(self) -> str:
        """The reason and, where known, what was wrong."""
        return f"refused ({self.reason.value}){': ' + self.detail if self.detail else ''}"


class MalformedPublication(DisseminationError):
    """A publication's bytes do not follow the header schema."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.MALFORMED_PUBLICATION, detail)


class MalformedSubscription(DisseminationError):
    """A subscription's text or CBOR form does not parse."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.MALFORMED_SUBSCRIPTION, detail)


class AdmissionRefused(DisseminationError):
    """The publisher refused to admit a subscriber (attestation, policy or protocol)."""


class HandoutRejected(DisseminationError):
    """A subscriber refused a key handout (not for it, replayed, stale or tampered)."""


class CannotDecrypt(DisseminationError):
    """A subscriber holds no key for a publication, or its payload does not authenticate."""
