"""What an audit finds: the kinds of discrepancy and one finding naming a packet or a field."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class FindingKind(enum.StrEnum):
    """What kind of discrepancy an audit found."""

    MISSING = "missing"  # a valid reading not on the bill, or a billed packet gone from the store
    EXTRA = "extra"  # billed, but not a valid reading of this customer in this period
    ALTERED = "altered"  # stored bytes or columns differ from what was signed or billed
    REORDERED = "reordered"  # the bill's order is not (timestamp, meter, counter)
    FOREIGN = "foreign"  # signed by another meter than the row claims
    FORGED = "forged"  # the meter signature does not verify (or no such meter)
    REPLAYED = "replayed"  # a reading signed for another time or counter, stored again
    FIELD = "field"  # a bill field differs from the auditor's recomputation
    SIGNATURE = "signature"  # the billing service's signature does not hold
    TARIFF = "tariff"  # the tariff named on the bill is unknown or changed since signing


@dataclass(frozen=True, slots=True)
class Finding:
    """One discrepancy, naming the packet (meter, counter) or the bill field concerned."""

    kind: FindingKind
    detail: str
    meter_id: str | None = None
    counter: int | None = None
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (None fields dropped)."""
        out: dict[str, Any] = {"kind": self.kind.value, "detail": self.detail}
        for name in ("meter_id", "counter", "field"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def field_finding(
    name: str, billed: object, audited: object, meter_id: str | None = None
) -> Finding:
    """A bill field whose value differs from the auditor's recomputation."""
    detail = f"bill says {_short(billed)}, audit finds {_short(audited)}"
    return Finding(FindingKind.FIELD, detail, meter_id=meter_id, field=name)


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "…"


def rejected_reasons(findings: Iterable[Finding]) -> Counter[str]:
    """How many findings of each kind (for the CLI summary)."""
    return Counter(f.kind.value for f in findings)
