"""The billing service: query a customer's month, compute, check, sign and record the bill.

The adapter around the sans-IO core (`compute`, `bill`, `billlog`): one `bill_customer` is
the SGX billing paper's aggregation, from the query's start until the bill is computed,
checked, signed and recorded, and it reports how long each phase took.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from meterseal.billing.bill import (
    Bill,
    BillSignatureError,
    parse_signed_bill,
    sign_bill,
    verify_signed_bill,
)
from meterseal.billing.billlog import BILL_LOG_HEAD, bill_leaf
from meterseal.billing.completeness import EstimationRule, LinearEstimate, Period
from meterseal.billing.compute import (
    BillPacket,
    BillRequest,
    ComputedBill,
    check_bill,
    compute_bill,
)
from meterseal.billing.corrections import correction_ids, credit_for, rebill_of
from meterseal.billing.ledger import in_force_overlapping, ledger
from meterseal.billing.policy import BillingError, BillRefused, EstimationPolicy, screen
from meterseal.billing.ports import BillExists, BillLedger, StoredBill
from meterseal.billing.scope import Windows, check_windows, in_scope
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
        allow_unsigned: bool = False,
    ) -> None:
        self.bills = bills
        self.policy = policy or EstimationPolicy()
        self.allow_unsigned = allow_unsigned  # count UNSIGNED imports (the bill says how much)
        self.key = key
        self.kid = kid_of(public_bytes(key.public_key()))
        self.estimation = estimation or LinearEstimate()
        self.clock = clock
        self.log = MerkleTree(bills.log_leaves())
        _check_log_key(bills, key)

    def bill_customer(
        self,
        customer_id: str,
        meter_ids: Iterable[str],
        period: Period,
        tariff: Tariff,
        windows: Windows | None = None,
        *,
        in_force: Mapping[str, Sequence[str]] | None = None,
    ) -> BilledCustomer:
        """Bill one customer for `period` under `tariff`; BillRefused if it may not be signed.

        Refused: a bill kept already (bills are never rewritten), a bill in force overlapping
        the period, no readings in the period, an estimated share above the policy's limit
        unless the policy allows it. `windows`: meters the customer had for part of the
        period only, with those dates. `in_force`: as `compute`.
        """
        seconds: dict[str, float] = {}
        computed = self.compute(
            customer_id, meter_ids, period, tariff, seconds, windows, look=False,
            in_force=in_force,
        )  # fmt: skip
        return self.sign_and_record(computed, seconds)

    def compute(
        self,
        customer_id: str,
        meter_ids: Iterable[str],
        period: Period,
        tariff: Tariff,
        seconds: dict[str, float] | None = None,
        windows: Windows | None = None,
        *,
        look: bool = True,
        in_force: Mapping[str, Sequence[str]] | None = None,
    ) -> ComputedBill:
        """The bill as `bill_customer` would sign it (query, compute, screen, check), unsigned.

        `--dry-run` stops here; BillRefused as `bill_customer`. `seconds` gets each phase's time.
        `look`: refuse a bill kept already before computing it; without, recording refuses it
        (a lookup costs ~0.75 ms on SQLite, ~10% of a day's bill: skipped when signing).
        `in_force`: the run's `in_force_bills` (one query for the whole run); None: this
        customer's are queried.
        """
        laps = _Laps(seconds if seconds is not None else {})
        bill_id = bill_id_for(customer_id, period)
        meters = tuple(sorted(meter_ids))
        if not meters:
            raise BillRefused(customer_id, "no meters", "no-meters")
        if look and self.bills.bill(bill_id) is not None:
            raise BillRefused(
                customer_id,
                f"bill {bill_id} exists already; bills are never rewritten "
                f"(correct it with `meterseal rebill {bill_id} --reason …`)",
                "exists",
            )
        if in_force is None:
            in_force = self.in_force_bills(period, [customer_id])
        self._refuse_overlap(customer_id, bill_id, in_force.get(customer_id, ()))
        rows = self.bills.packets(meters, period.start, period.end)
        windows = dict(windows or {})
        rows = self._scoped(rows, meters, period, windows, self.allow_unsigned)
        laps("query")  # with the lookup, if any
        request = BillRequest(
            bill_id, customer_id, meters, period, tariff, self.estimation, int(self.clock()),
            tuple((m, *w) for m, w in sorted(windows.items())), self.allow_unsigned,
        )  # fmt: skip
        computed = compute_bill(request, rows)  # puts them in bill order
        computed = computed._replace(bill=screen(computed.bill, self.policy))
        laps("compute")
        check_bill(computed.bill, computed.packets)
        laps("check")
        return computed

    def in_force_bills(
        self, period: Period, customer_ids: Sequence[str] | None = None
    ) -> dict[str, list[str]]:
        """The ids of the bills in force overlapping `period`, by customer (None: every one).

        One query for a billing run; `compute` then checks each customer in memory.
        """
        kept = self.bills.bills_overlapping(period.start, period.end, customer_ids)
        return in_force_overlapping(((i, parse_signed_bill(s)[0]) for i, s in kept), period)

    @staticmethod
    def _refuse_overlap(customer_id: str, bill_id: str, in_force: Sequence[str]) -> None:
        """BillRefused if a bill of the customer's in force overlaps the period being billed."""
        if not in_force:
            return
        if bill_id in in_force:  # this very bill
            raise BillRefused(
                customer_id,
                f"bill {bill_id} exists already; bills are never rewritten "
                f"(correct it with `meterseal rebill {bill_id} --reason …`)",
                "exists",
            )
        named = ", ".join(in_force)
        raise BillRefused(
            customer_id,
            f"the period overlaps bill {named}, in force: a period is never billed twice "
            f"(correct that bill with `meterseal rebill {in_force[0]} --reason …`)",
            "overlaps",
        )

    def sign_and_record(
        self, computed: ComputedBill, seconds: dict[str, float] | None = None
    ) -> BilledCustomer:
        """Sign a computed (and checked) bill and append it to the bill log."""
        seconds = seconds if seconds is not None else {}
        laps = _Laps(seconds)
        bill = computed.bill
        signed = sign_bill(bill, self.key, self.kid)
        laps("sign")
        (index,) = self._record([(bill, signed, computed.manifest_cbor())])
        laps("record")
        return BilledCustomer(bill, signed, index, seconds)

    def _scoped(
        self,
        rows: list[BillPacket],
        meters: tuple[str, ...],
        period: Period,
        windows: Windows,
        allow_unsigned: bool,
    ) -> list[BillPacket]:
        """The rows a bill counts (`scope.in_scope`); as they are when neither option is used."""
        if not (allow_unsigned or windows):
            return rows
        check_windows(period, windows)
        if allow_unsigned:
            rows = rows + self.bills.unsigned_packets(meters, period.start, period.end)
        return in_scope(rows, period, windows, allow_unsigned=allow_unsigned)

    def correct(
        self,
        bill_id: str,
        meter_ids: Iterable[str],
        tariff: Tariff,
        reason: str,
        *,
        dry_run: bool = False,
        windows: Windows | None = None,
    ) -> Correction:
        """Cancel a bill in force with a credit and replace it with a rebill from today's data.

        Both are appended to the log in one transaction (never one without the other); the
        rebill is screened like a bill (BillRefused: no readings, too much estimated).
        `dry_run`: computed and checked, neither signed nor written.
        """
        stored = self.bills.bill(bill_id)
        if stored is None:
            raise BillingError(f"no bill {bill_id!r} (meterseal bills list shows the ids)")
        if not reason.strip():
            raise BillingError("a correction needs a --reason (it is signed into both entries)")
        original = verify_signed_bill(stored.signed_bill, self.key.public_key())
        customer, period = original.customer_id, original.period
        kept = self.bills.signed_bills(customer, period.start, period.end)
        entries = ledger((i, parse_signed_bill(signed)[0]) for i, signed in kept)
        entry = next(e for e in entries if e.bill.bill_id == bill_id)
        if not entry.in_force:
            live = ", ".join(e.bill.bill_id for e in entries if e.in_force) or "none"
            raise BillRefused(
                customer,
                f"{bill_id} is not in force ({entry.standing}); in force: {live}",
                "not-in-force",
            )
        n = 1 + sum(e.bill.kind == "credit" for e in entries)
        credit_id, rebill_id = correction_ids(bill_id_for(customer, period), n)
        now = int(self.clock())
        meters = tuple(sorted(meter_ids))
        rows = self.bills.packets(meters, period.start, period.end)
        # A rebill counts what its bill could: UNSIGNED imports if it did, today's dates.
        allow, windows = original.unsigned_wh is not None, dict(windows or {})
        rows = self._scoped(rows, meters, period, windows, allow)
        request = BillRequest(
            rebill_id, customer, meters, period, tariff, self.estimation, now,
            tuple((m, *w) for m, w in sorted(windows.items())), allow,
        )  # fmt: skip
        computed = compute_bill(request, rows)
        fresh = screen(computed.bill, self.policy)
        rebill = rebill_of(fresh, original, stored.signed_bill, reason)
        computed = computed._replace(bill=rebill)
        check_bill(rebill, computed.packets)
        credit = credit_for(original, stored.signed_bill, credit_id, now, reason)
        if dry_run:
            return Correction(credit, rebill, None)
        signed_credit = sign_bill(credit, self.key, self.kid)
        signed_rebill = sign_bill(rebill, self.key, self.kid)
        indices = self._record(
            [
                (credit, signed_credit, stored.manifest),  # the evidence of the bill it cancels
                (rebill, signed_rebill, computed.manifest_cbor()),
            ]
        )
        return Correction(credit, rebill, (indices[0], indices[1]))

    def _record(self, entries: Sequence[tuple[Bill, bytes, bytes]]) -> list[int]:
        """Append (bill, signed bill, manifest) entries to the log, all or none; their indices."""
        rows = [
            (
                StoredBill(
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
                ),
                bill_leaf(signed),
            )
            for bill, signed, manifest in entries
        ]
        issued_at = entries[-1][0].issued_at

        def sign_head(size: int, root: bytes) -> bytes:
            return BILL_LOG_HEAD.sign(TreeHead(size, root, issued_at), self.key, self.kid)

        try:
            return self.bills.record_bills(rows, self.log, sign_head)
        except BaseException as exc:
            self.log = MerkleTree(self.bills.log_leaves())  # the append may not have landed
            if isinstance(exc, BillExists):
                raise BillRefused(
                    entries[0][0].customer_id,
                    f"{exc}; bills are never rewritten (correct one with `meterseal rebill "
                    f"{entries[0][0].bill_id} --reason …`)",
                    "exists",
                ) from None
            raise


@dataclass(frozen=True)
class Correction:
    """A credit cancelling a bill and the rebill replacing it, with their log indices.

    `log_indices` is None for a dry run (neither signed nor written).
    """

    credit: Bill
    rebill: Bill
    log_indices: tuple[int, int] | None


def _check_log_key(bills: BillLedger, key: SigningKey) -> None:
    """Refuse a key that did not sign the log's newest head: it is another deployment's.

    A deployment directory (-d, deployment.dir) pointing at another deployment's keys would
    otherwise sign bills into this store's log that only the audit, later, calls forged.
    """
    head = bills.log_head()
    if head is None:
        return
    try:
        BILL_LOG_HEAD.verified(head.signed, key.public_key())
    except BillSignatureError:
        raise BillingError(
            "this store's bill log is signed with another billing key: the deployment "
            "directory's keys (-d, deployment.dir) are not the ones this store's bills were "
            "signed with"
        ) from None


class _Laps:
    """Records the seconds since the previous lap under each phase's name."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self.mark = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = now - self.mark
        self.mark = now
