"""A revoked meter stays revoked: registering its id again, with the same key or another, is
refused by the store itself (nothing of the batch registered), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from meterseal.storage import Store
from meterseal.storage.store import MeterRevoked
from tests.conftest import NOW
from tests.storage.conftest import Authority

LATER = NOW + dt.timedelta(days=1)


def test_a_revoked_meter_is_not_registered_again(db_url: str, authority: Authority) -> None:
    meter, other = authority.record("M-100"), authority.record("M-101")
    with Store.open(db_url) as store:
        store.register_meters([meter], now=NOW)
        store.revoke_meter("M-100", NOW)
        for again in (meter, authority.record("M-100")):  # the same key, then another
            with pytest.raises(MeterRevoked, match=r"revoked meter stays revoked.*M-100 \(revoked"):
                store.register_meters([other, again], now=LATER)
        rows = {r.meter_id: r for r in store.meter_rows()}
        assert rows["M-100"].revoked_at == NOW
        assert rows["M-100"].certificate == meter.certificate.public_bytes(Encoding.DER)
        assert "M-101" not in rows  # the batch is refused whole
        # A meter not revoked is still re-registered (a batch re-run, or a new key on purpose).
        store.register_meters([other], now=NOW)
        store.register_meters([authority.record("M-101")], now=LATER)
        assert {r.meter_id: r.revoked_at for r in store.meter_rows()} == {
            "M-100": NOW,
            "M-101": None,
        }
