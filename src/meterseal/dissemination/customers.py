"""From a customer to the pseudonyms their data travels under, and back, for consent.

A HIGH publication names its customer by the head-end's pseudonym of the *meter*
(`acquisition.anonymize`: HMAC-SHA-256 of the meter id under the deployment's anonymization
key), never by a customer or meter id. So a customer's consent is consent for each of their
meters' pseudonyms, and finding them takes the anonymization key and the store's meters
(registered, or assigned to the customer by `customers import`). Without the key, a
pseudonym can only be checked against the readings stored under it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa

from meterseal.acquisition.anonymize import PSEUDONYM_LENGTH, Anonymizer
from meterseal.crypto.at_rest import read_secret_file
from meterseal.deployment import ANONYMIZATION_KEY
from meterseal.errors import ConfigurationError
from meterseal.storage import Store
from meterseal.storage.imports import ImportStore
from meterseal.storage.schema import measurements, meter_assignments, meters

_FOREVER = (0, 2**62)  # every assignment window


class MeterPseudonym(NamedTuple):
    """One of a customer's meters and the pseudonym its readings are published under."""

    customer_id: str
    meter_id: str
    pseudonym: bytes


def deployment_anonymizer(deployment: Path, passphrase: bytes | None) -> Anonymizer:
    """The deployment's pseudonymization (its anonymization key), or a ConfigurationError."""
    path = deployment / ANONYMIZATION_KEY
    if not path.exists():
        raise ConfigurationError(
            f"no anonymization key in {deployment} (the deployment of `keys init`): "
            "a customer's pseudonyms are HMACs of their meter ids under it"
        )
    return Anonymizer(read_secret_file(path, passphrase, "anonymization key"))


def customer_pseudonyms(
    store: Store, anonymizer: Anonymizer, customer_id: str
) -> list[MeterPseudonym]:
    """The customer's meters (registered or assigned to them) and their pseudonyms."""
    windows = ImportStore(store).customer_windows(customer_id, *_FOREVER)
    return [MeterPseudonym(customer_id, m, anonymizer.pseudonym(m)) for m in sorted(windows)]


def pseudonym_owners(store: Store, anonymizer: Anonymizer) -> dict[bytes, MeterPseudonym]:
    """Every meter's pseudonym with its meter and (latest) customer, for showing consent."""
    a = meter_assignments
    owners: dict[str, str] = {}
    with store.connection() as connection:
        for meter_id, customer_id in connection.execute(
            sa.select(meters.c.meter_id, meters.c.customer_id)
        ):
            owners[meter_id] = customer_id
        latest = sa.select(a.c.meter_id, a.c.customer_id).order_by(a.c.valid_from)
        for meter_id, customer_id in connection.execute(latest):
            owners[meter_id] = customer_id  # the latest assignment wins
    return {
        anonymizer.pseudonym(m): MeterPseudonym(c, m, anonymizer.pseudonym(m))
        for m, c in owners.items()
    }


def parse_pseudonym(text: str) -> bytes:
    """A pseudonym from its hex (32 digits), or a ConfigurationError saying what one is."""
    try:
        value = bytes.fromhex(text.strip())
    except ValueError:
        value = b""
    if len(value) != PSEUDONYM_LENGTH:
        raise ConfigurationError(
            f"not a pseudonym: {text[:80]!r} (a pseudonym is {2 * PSEUDONYM_LENGTH} hex digits; "
            "`meterseal router pseudonym CUSTOMER` prints a customer's)"
        )
    return value


def stored_counts(store: Store, pseudonyms: Iterable[bytes]) -> dict[bytes, int]:
    """How many readings the store holds under each pseudonym (0 for none)."""
    wanted = list(dict.fromkeys(pseudonyms))
    counts = dict.fromkeys(wanted, 0)
    if not wanted:
        return counts
    m = measurements
    query = (
        sa.select(m.c.pseudonym, sa.func.count())
        .where(m.c.pseudonym.in_(wanted))
        .group_by(m.c.pseudonym)
    )
    with store.connection() as connection:
        for pseudonym, count in connection.execute(query):
            counts[bytes(pseudonym)] = int(count)
    return counts
