"""Which stored readings a bill counts: the meter's dates with the customer, signed before unsigned.

The billing service and the auditor both run `in_scope` over the rows they read, so both
count the same readings: a meter's readings only inside the window it was the customer's
(move-in to move-out), and UNSIGNED imports only on a bill allowed to use them, and then only
for a slot no meter-signed reading of that meter fills (one per slot, the earliest).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from meterseal.billing.completeness import Period
from meterseal.billing.compute import BillPacket
from meterseal.billing.unsigned import is_unsigned
from meterseal.errors import MetersealError

Windows = Mapping[str, tuple[int, int]]  # meter -> [start, end) inside the period


class WindowError(MetersealError):
    """A meter's dates with a customer cannot be billed as given."""


def check_windows(period: Period, windows: Windows) -> None:
    """Refuse windows off the period's slots or outside it (WindowError)."""
    for meter_id, (start, end) in windows.items():
        if not period.start <= start < end <= period.end:
            raise WindowError(f"meter {meter_id}: its dates {start}-{end} are not in the period")
        if (start - period.start) % period.interval or (end - period.start) % period.interval:
            raise WindowError(
                f"meter {meter_id}: move-in and move-out must fall on a {period.interval} s "
                "boundary of the period"
            )


def in_scope(
    packets: Iterable[BillPacket],
    period: Period,
    windows: Windows,
    *,
    allow_unsigned: bool,
) -> list[BillPacket]:
    """The packets a bill counts (see the module docstring), in the order given."""
    kept: list[BillPacket] = []
    unsigned: list[BillPacket] = []
    for p in packets:
        window = windows.get(p.meter_id)
        if window is not None and not window[0] <= p.timestamp < window[1]:
            continue
        if is_unsigned(p.signed_original):
            if allow_unsigned:
                unsigned.append(p)
            continue
        kept.append(p)
    if not unsigned:
        return kept
    filled = {(p.meter_id, period.slot_of(p.timestamp)) for p in kept}
    for p in sorted(unsigned, key=lambda p: p.timestamp):
        slot = (p.meter_id, period.slot_of(p.timestamp))
        if slot not in filled:
            filled.add(slot)
            kept.append(p)
    return kept


def unsigned_energy(packets: Sequence[BillPacket]) -> int:
    """Wh of the unsigned packets among `packets` (after `in_scope`, one per slot)."""
    return sum(p.energy_wh for p in packets if is_unsigned(p.signed_original))
