"""Billing refuses a billing key that did not sign the store's bill log (another deployment's)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.billing.policy import BillingError
from meterseal.billing.service import BillingService
from tests.billing.conftest import Month
from tests.conftest import NOW


def _bill_first_customer(service: BillingService, month: Month) -> None:
    customer, meters = sorted(month.bills.customers().items())[0]
    service.bill_customer(customer, meters, month.period, month.tariff)


def test_an_empty_log_takes_any_key(month: Month) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    BillingService(month.bills, other, clock=lambda: NOW.timestamp())  # nothing to compare with


def test_the_key_that_signed_the_log_goes_on(month: Month) -> None:
    _bill_first_customer(month.service(), month)
    customer, meters = sorted(month.bills.customers().items())[1]
    month.service().bill_customer(customer, meters, month.period, month.tariff)
    assert len(month.bills.log_leaves()) == 2


def test_another_deployment_s_key_is_refused_before_anything_is_signed(month: Month) -> None:
    _bill_first_customer(month.service(), month)
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(BillingError, match="signed with another billing key"):
        BillingService(month.bills, other, clock=lambda: NOW.timestamp())
    assert len(month.bills.log_leaves()) == 1
