"""The billing service: query a customer's month, compute, check, sign and record the bill.

The adapter around the sans-IO core (`compute`, `bill`, `billlog`): one `bill_customer` is
the SGX billing paper's aggregation, from the query's start until the bill is computed,
checked, signed and recorded, and it reports how long each phase took.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from meterseal.billing.bill import Bill, sign_bill
from meterseal.billing.billlog import BILL_LOG_HEAD, bill_leaf
from meterseal.billing.completeness import EstimationRule, LinearEstimate, Period
from meterseal.billing.compute import BillRequest, ComputedBill, check_bill, compute_bill
from meterseal.billing.policy import BillingError, BillRefused, EstimationPolicy, screen
from meterseal.billing.ports import BillExists, BillLedger, StoredBill
from meterseal.billing.tariff import Tariff
from meterseal.crypto.keys import kid_of, public_bytes
from meterseal.crypto.signing import SigningKey
from meterseal.transparency.heads import TreeHead
from meterseal.transparency.merkle import MerkleTree

__all__ = ["BillRefused", "BilledCustomer", "BillingError", "BillingService", "bill_id_for"]

PHASES = ("query", "compute", "check", "sign", "record")


@dataclass(frozen=True)
class BilledCustomer:
    """One produced bill, its signed bytes, its log index and the seconds of each phase."""

    bill: Bill
    signed: bytes
    log_index: int
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        """From the query's start until the bill is recorded."""
        return sum(self.seconds.values())


def bill_id_for(customer_id: str, period: Period) -> str:
    """The one bill of a customer for a period: CUSTOMER/START-END (Unix seconds)."""
    return f"{customer_id}/{period.start}-{period.end}"


class BillingService:
    """Produces signed bills from the store under one billing key."""

    def __init__(
        self,
        bills: BillLedger,
        key: SigningKey,
        *,
        estimation: EstimationRule | None = None,
        policy: EstimationPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bills = bills
        self.policy = policy or EstimationPolicy()
        self.key = key
        self.kid = kid_of(public_bytes(key.public_key()))
        self.estimation = estimation or LinearEstimate()
        self.clock = clock
        self.log = MerkleTree(bills.log_leaves())

    def bill_customer(
        self, customer_id: str, meter_ids: Iterable[str], period: Period, tariff: Tariff
    ) -> BilledCustomer:
        """Bill one customer for `period` under `tariff`; BillRefused if it may not be signed.

        Refused: a bill kept already (bills are never rewritten), no readings in the period,
        an estimated share above the policy's limit unless the policy allows it.
        """
        seconds: dict[str, float] = {}
        computed = self.compute(customer_id, meter_ids, period, tariff, seconds)
        return self.sign_and_record(computed, seconds)

    def compute(
        self,
        customer_id: str,
        meter_ids: Iterable[str],
        period: Period,
        tariff: Tariff,
        seconds: dict[str, float] | None = None,
    ) -> ComputedBill:
        """The bill as `bill_customer` would sign it (query, compute, screen, check), unsigned.

        `--dry-run` stops here; BillRefused as `bill_customer`. `seconds` gets each phase's time.
        """
        bill_id = bill_id_for(customer_id, period)
        meters = tuple(sorted(meter_ids))
        if not meters:
            raise BillRefused(customer_id, "no meters")
        if self.bills.bill(bill_id) is not None:
            raise BillRefused(
                customer_id,
                f"bill {bill_id} exists already; bills are never rewritten "
                f"(correct it with `meterseal rebill {bill_id} --reason …`)",
            )
        laps = _Laps(seconds if seconds is not None else {})
        rows = self.bills.packets(meters, period.start, period.end)
        laps("query")
        request = BillRequest(
            bill_id, customer_id, meters, period, tariff, self.estimation, int(self.clock())
        )
        computed = compute_bill(request, rows)  # puts them in bill order
        computed = computed._replace(bill=screen(computed.bill, self.policy))
        laps("compute")
        check_bill(computed.bill, computed.packets)
        laps("check")
        return computed

    def sign_and_record(
        self, computed: ComputedBill, seconds: dict[str, float] | None = None
    ) -> BilledCustomer:
        """Sign a computed (and checked) bill and append it to the bill log."""
        seconds = seconds if seconds is not None else {}
        laps = _Laps(seconds)
        bill = computed.bill
        signed = sign_bill(bill, self.key, self.kid)
        laps("sign")
        index = self._record(bill, signed, computed.manifest_cbor())
        laps("record")
        return BilledCustomer(bill, signed, index, seconds)

    def _record(self, bill: Bill, signed: bytes, manifest: bytes) -> int:
        row = StoredBill(
            bill.bill_id,
            bill.customer_id,
            bill.period.start,
            bill.period.end,
            bill.issued_at,
            bill.charges.currency,
            str(bill.charges.total),
            signed,
            manifest,
            -1,
        )

        def sign_head(size: int, root: bytes) -> bytes:
            return BILL_LOG_HEAD.sign(TreeHead(size, root, bill.issued_at), self.key, self.kid)

        try:
            return self.bills.record_bill(row, bill_leaf(signed), self.log, sign_head)
        except BaseException as exc:
            self.log = MerkleTree(self.bills.log_leaves())  # the append may not have landed
            if isinstance(exc, BillExists):
                raise BillRefused(
                    bill.customer_id,
                    f"bill {bill.bill_id} exists already; bills are never rewritten",
                ) from None
            raise


class _Laps:
    """Records the seconds since the previous lap under each phase's name."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self.mark = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = now - self.mark
        self.mark = now
