"""Privacy levels (FIPS 199 as the dissemination paper adapts it), roles and who may read what.

HIGH is raw per-meter data: attested aggregators, and apps a customer consented to (that
customer's data only). MODERATE is per-customer aggregates: the attested utility. LOW is
regional aggregates above a minimum group size: anyone, no attestation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class PrivacyLevel(enum.IntEnum):
    """Impact of disclosure; a publication's payload is encrypted under its level's key."""

    LOW = 1
    MODERATE = 2
    HIGH = 3

    @classmethod
    def named(cls, name: str) -> PrivacyLevel:
        """The level called `name` ('high', 'moderate', 'low'); KeyError otherwise."""
        return cls[name.upper()]


class Role(enum.StrEnum):
    """What a member of the dissemination network is to the data's owner."""

    PUBLIC_APP = "public_app"  # anyone: low data only, never attested
    APP = "app"  # a third-party app: high data of the customers that consented to it
    UTILITY = "utility"  # moderate (per-customer) data
    AGGREGATOR = "aggregator"  # reads all high data, publishes moderate and low
    PUBLISHER = "publisher"  # the head-end's trusted stage publishing high data


@dataclass(frozen=True)
class Grant:
    """What a role may do at one level, and whether it must prove its code first."""

    read: bool
    publish: bool
    attested: bool
    all_customers: bool  # False for APP: per customer, only with that customer's consent


_NONE = Grant(read=False, publish=False, attested=True, all_customers=False)

# One table, fail-closed: any (role, level) not listed grants nothing.
GRANTS: dict[tuple[Role, PrivacyLevel], Grant] = {
    (Role.PUBLIC_APP, PrivacyLevel.LOW): Grant(True, False, False, True),
    (Role.APP, PrivacyLevel.LOW): Grant(True, False, False, True),
    (Role.APP, PrivacyLevel.HIGH): Grant(True, False, True, False),
    (Role.UTILITY, PrivacyLevel.LOW): Grant(True, False, False, True),
    (Role.UTILITY, PrivacyLevel.MODERATE): Grant(True, False, True, True),
    (Role.AGGREGATOR, PrivacyLevel.HIGH): Grant(True, False, True, True),
    (Role.AGGREGATOR, PrivacyLevel.MODERATE): Grant(False, True, True, True),
    (Role.AGGREGATOR, PrivacyLevel.LOW): Grant(False, True, True, True),
    (Role.PUBLISHER, PrivacyLevel.HIGH): Grant(False, True, True, True),
}


def grant(role: Role, level: PrivacyLevel) -> Grant:
    """What `role` may do at `level` (nothing unless the table says so)."""
    return GRANTS.get((role, level), _NONE)


# The least level a publication type may travel at: raw readings never go out as LOW.
TYPE_FLOOR: dict[str, PrivacyLevel] = {
    "reading": PrivacyLevel.HIGH,
    "customer_load": PrivacyLevel.MODERATE,
    "regional_load": PrivacyLevel.LOW,
}


def type_allowed(kind: str, level: PrivacyLevel) -> bool:
    """Whether a publication of type `kind` may travel at `level` (unknown types: HIGH only)."""
    return level >= TYPE_FLOOR.get(kind, PrivacyLevel.HIGH)
