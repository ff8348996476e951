"""From a customer to their pseudonyms; consent refuses customers and pseudonyms nobody has."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.crypto.at_rest import write_secret_file
from meterseal.deployment import ANONYMIZATION_KEY
from meterseal.dissemination.customers import (
    customer_pseudonyms,
    parse_pseudonym,
    pseudonym_owners,
    stored_counts,
)
from meterseal.errors import ConfigurationError
from meterseal.storage import Store
from meterseal.storage.schema import measurements, meters
from tests.command_line import invoke

KEY = b"k" * 32
WHEN = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


def _deployment(tmp_path: Path) -> tuple[Path, str]:
    """A deployment's anonymization key and a store: CUST-A has two meters, CUST-B one."""
    directory = tmp_path / "deployment"
    directory.mkdir()
    write_secret_file(directory / ANONYMIZATION_KEY, KEY, None)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    owners = {"MTR-1": "CUST-A", "MTR-2": "CUST-A", "MTR-3": "CUST-B"}
    pseudonym = Anonymizer(KEY).pseudonym
    with Store.open(url) as db, db.transaction() as connection:
        connection.execute(
            meters.insert(),
            [{"meter_id": m, "suite": "p256", "certificate": b"der", "customer_id": c,
              "region_id": "R01", "registered_at": WHEN, "revoked_at": None}
             for m, c in owners.items()],
        )  # fmt: skip
        connection.execute(
            measurements.insert(),
            [{"region_id": "R01", "pseudonym": pseudonym(m), "timestamp": 900 * q,
              "interval": 900, "energy_wh": 5, "phasor": None}
             for m in ("MTR-1", "MTR-3") for q in range(3)],
        )  # fmt: skip
    return directory, url


def test_a_customer_has_one_pseudonym_per_meter(tmp_path: Path) -> None:
    _, url = _deployment(tmp_path)
    anonymizer = Anonymizer(KEY)
    with Store.open_read_only(url) as db:
        rows = customer_pseudonyms(db, anonymizer, "CUST-A")
        assert [(r.meter_id, r.pseudonym) for r in rows] == [
            ("MTR-1", anonymizer.pseudonym("MTR-1")), ("MTR-2", anonymizer.pseudonym("MTR-2"))
        ]  # fmt: skip
        assert customer_pseudonyms(db, anonymizer, "NOBODY") == []
        counts = stored_counts(db, [r.pseudonym for r in rows])
        assert list(counts.values()) == [3, 0]
        owners = pseudonym_owners(db, anonymizer)
        assert owners[anonymizer.pseudonym("MTR-3")].customer_id == "CUST-B"


def test_a_pseudonym_is_32_hex_digits() -> None:
    assert parse_pseudonym("ab" * 16) == b"\xab" * 16
    for wrong in ("0a0b", "zz" * 16, "ab" * 17):
        with pytest.raises(ConfigurationError, match="not a pseudonym"):
            parse_pseudonym(wrong)


def test_router_pseudonym_prints_each_meter_and_the_next_command(tmp_path: Path) -> None:
    directory, url = _deployment(tmp_path)
    result = invoke(["router", "pseudonym", "CUST-A", "-d", str(directory), "--store", url])
    assert result.exit_code == 0, result.output
    assert f"MTR-1  pseudonym {Anonymizer(KEY).pseudonym('MTR-1').hex()}  3 readings" in (
        result.output
    )
    assert "MTR-2" in result.output
    assert "consent grant --customer CUST-A --app APP" in result.output
    unknown = invoke(["router", "pseudonym", "NOBODY", "-d", str(directory), "--store", url])
    assert unknown.exit_code == 2
    assert "unknown customer 'NOBODY'" in unknown.output


@pytest.mark.parametrize(
    ("who", "reason"),
    [
        (["--pseudonym", "0a0b"], "not a pseudonym"),
        (["--pseudonym", "cd" * 16], "unknown pseudonym"),
        (["--customer", "NOBODY"], "unknown customer"),
        ([], "name the customer"),
    ],
)
def test_consent_grant_refuses_whom_no_data_belongs_to(
    tmp_path: Path, who: list[str], reason: str
) -> None:
    # Refused before any router is asked: no NATS here, and none is needed to say so.
    directory, url = _deployment(tmp_path)
    result = invoke(
        ["router", "consent", "grant", "--app", "someapp", *who, "-d", str(directory),
         "--store", url, "--keys", str(tmp_path / "router"), "--nats", "nats://127.0.0.1:1"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert reason in result.output
