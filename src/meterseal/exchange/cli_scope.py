"""What `bill` and `rebill` need of imports: each meter's dates with a customer, unsigned counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterseal.errors import ConfigurationError

if TYPE_CHECKING:
    from meterseal.billing.completeness import Period
    from meterseal.billing.policy import BillRefused
    from meterseal.storage import Store
    from meterseal.storage.imports import Window


def meter_windows(meters: dict[str, list[Window]], period: Period) -> dict[str, tuple[int, int]]:
    """Meters the customer had for part of the period (one span each, else ConfigurationError)."""
    out = {}
    for meter_id, spans in meters.items():
        if len(spans) > 1:
            raise ConfigurationError(
                f"meter {meter_id} changes hands more than once for one customer in this period"
            )
        if (spans[0].start, spans[0].end) != (period.start, period.end):
            out[meter_id] = (spans[0].start, spans[0].end)
    return out


def unsigned_of(
    db: Store,
    refused: list[BillRefused],
    customers: dict[str, dict[str, list[Window]]],
    period: Period,
) -> int:
    """How many UNSIGNED imports the refused customers' meters hold in their windows."""
    from meterseal.storage.imports import ImportStore

    imports = ImportStore(db)
    return sum(
        imports.reading_counts(meter_id, w.start, w.end)[1]
        for no in refused
        for meter_id, spans in customers.get(no.customer_id, {}).items()
        for w in spans
    )
