"""The dynamic measurement process (paper section 3.4) as one transition table (sans-IO).

A modification behaviour A of process p goes: extract T (fail: malicious) → detection f_d
(A not in T: malicious) → measure newHV → verification f_v (newHV != HV: malicious) → trust.
That is f_j (Definition 5): trust iff f_v and f_d, malicious if either fails. A periodic
measurement (our addition, see docs/integrity.md) has no behaviour to detect and goes straight
from extraction to measurement. `judge` drives the table with injected extraction and
measurement, and returns the metric-log record the security audit module keeps.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from meterseal.crypto import cose
from meterseal.integrity.behaviour import Behaviour
from meterseal.integrity.errors import DsigError, IntegrityError
from meterseal.integrity.section import IntegritySection
from meterseal.integrity.trace import Key
from meterseal.runtime.transitions import Driver, TransitionTable


class Step(enum.Enum):
    """Where a judgement is."""

    WATCHING = "watching"
    EXTRACTING = "extracting"
    DETECTING = "detecting"
    MEASURING = "measuring"
    TRUSTED = "trusted"
    MALICIOUS = "malicious"


class Event(enum.Enum):
    """What the monitor learns at each step."""

    BEHAVIOUR = "behaviour"  # a modification behaviour, the launch, or a periodic tick
    EXTRACTED = "extracted"
    EXTRACTION_FAILED = "extraction_failed"
    DSIG_FAILED = "dsig_failed"
    IN_TRACE = "in_trace"  # f_d true
    NOT_IN_TRACE = "not_in_trace"  # f_d false
    NO_BEHAVIOUR = "no_behaviour"  # a periodic measurement: nothing to detect
    HV_EQUAL = "hv_equal"  # f_v true
    HV_DIFFERENT = "hv_different"  # f_v false
    MEASUREMENT_FAILED = "measurement_failed"


# `judge` drives every event from what its own extraction and measurement returned, so a
# refused one is a bug in the monitor (`Driver.US`), never the judged process's doing.
TRANSITIONS: TransitionTable[Step, Event] = TransitionTable(
    "judgement",
    {
        (Step.WATCHING, Event.BEHAVIOUR): Step.EXTRACTING,
        (Step.EXTRACTING, Event.EXTRACTED): Step.DETECTING,
        (Step.EXTRACTING, Event.EXTRACTION_FAILED): Step.MALICIOUS,
        (Step.EXTRACTING, Event.DSIG_FAILED): Step.MALICIOUS,
        (Step.DETECTING, Event.IN_TRACE): Step.MEASURING,
        (Step.DETECTING, Event.NO_BEHAVIOUR): Step.MEASURING,
        (Step.DETECTING, Event.NOT_IN_TRACE): Step.MALICIOUS,
        (Step.MEASURING, Event.HV_EQUAL): Step.TRUSTED,
        (Step.MEASURING, Event.HV_DIFFERENT): Step.MALICIOUS,
        (Step.MEASURING, Event.MEASUREMENT_FAILED): Step.MALICIOUS,
    },
)
# Why a judgement ended where the event took it (each ending event has one move).
REASONS: dict[Event, str] = {
    Event.EXTRACTION_FAILED: "trace extraction failed",
    Event.DSIG_FAILED: "DSig does not verify",
    Event.NOT_IN_TRACE: "behaviour not in the trace (f_d)",
    Event.HV_EQUAL: "f_d and f_v hold",
    Event.HV_DIFFERENT: "newHV differs from HV (f_v)",
    Event.MEASUREMENT_FAILED: "the process cannot be measured",
}


class Verdict(enum.StrEnum):
    """f_j's answer."""

    TRUSTED = "trusted"
    MALICIOUS = "malicious"


@dataclass(frozen=True, slots=True)
class Measurement:
    """One metric-log record: what was judged, f_d, f_v, f_j and why."""

    at_ms: int
    pid: int
    trigger: str  # launch, behaviour or periodic
    behaviour: Behaviour | None
    f_d: bool | None  # None: not reached (or nothing to detect)
    f_v: bool | None
    verdict: Verdict
    reason: str
    hv: bytes | None
    new_hv: bytes | None

    def to_cbor(self) -> bytes:
        """Canonical CBOR for the audit log."""
        b = self.behaviour
        return cose.dumps(
            {
                "at_ms": self.at_ms,
                "pid": self.pid,
                "trigger": self.trigger,
                "subject": b.subject if b else None,
                "function": b.function if b else None,
                "action": b.action.value if b else None,
                "object": b.obj if b else None,
                "f_d": self.f_d,
                "f_v": self.f_v,
                "verdict": self.verdict.value,
                "reason": self.reason,
                "hv": self.hv,
                "new_hv": self.new_hv,
            }
        )


def entry_fields(data: bytes) -> dict[str, Any]:
    """An audit-log entry decoded for display (strict CBOR)."""
    item = cose.loads_strict(data)
    if not isinstance(item, cose.MAP_TYPES):
        raise cose.CoseFormatError("an audit entry is a map")
    return dict(item)


class Judgement:
    """One run through the table; `step` says where it is, `reason` why it ended there."""

    def __init__(self) -> None:
        self.step = Step.WATCHING
        self.reason = ""
        self.f_d: bool | None = None
        self.f_v: bool | None = None

    def feed(self, event: Event, detail: str = "") -> Step:
        """Take one event; LocalProtocolError if the table has no such move (a monitor bug)."""
        self.step = TRANSITIONS.step(self.step, event, by=Driver.US)
        reason = REASONS.get(event, "")
        if event in (Event.IN_TRACE, Event.NOT_IN_TRACE):
            self.f_d = event is Event.IN_TRACE
        if event in (Event.HV_EQUAL, Event.HV_DIFFERENT):
            self.f_v = event is Event.HV_EQUAL
        if reason:
            self.reason = f"{reason}: {detail}" if detail else reason
        return self.step

    @property
    def verdict(self) -> Verdict | None:
        """f_j once the judgement ended, else None."""
        if self.step is Step.TRUSTED:
            return Verdict.TRUSTED
        return Verdict.MALICIOUS if self.step is Step.MALICIOUS else None


def judge(
    behaviour: Behaviour | None,
    before: Iterable[Key],
    extract: Callable[[], IntegritySection],
    measure: Callable[[], tuple[bytes, bytes]],
    *,
    pid: int,
    trigger: str,
    now_ms: int,
) -> Measurement:
    """Run the dynamic measurement process for `behaviour` (None: a periodic measurement).

    `measure` returns (newHV of the process, HV of its file alone), so a mismatch names
    which of the two changed.
    """
    j = Judgement()
    j.feed(Event.BEHAVIOUR)
    section: IntegritySection | None = None
    new_hv: bytes | None = None
    try:
        section = extract()
    except DsigError as exc:
        j.feed(Event.DSIG_FAILED, str(exc))
    except IntegrityError as exc:  # ExtractionError, or the program file is unreadable
        j.feed(Event.EXTRACTION_FAILED, str(exc))
    else:
        j.feed(Event.EXTRACTED)
        if behaviour is None:
            j.feed(Event.NO_BEHAVIOUR)
        elif section.trace.detect(behaviour, before):
            j.feed(Event.IN_TRACE)
        else:
            j.feed(Event.NOT_IN_TRACE, behaviour.describe())
    if j.step is Step.MEASURING:
        assert section is not None
        try:
            new_hv, file_hv = measure()
        except IntegrityError as exc:
            j.feed(Event.MEASUREMENT_FAILED, str(exc))
        else:
            if new_hv == section.hv:
                j.feed(Event.HV_EQUAL)
            elif file_hv != section.hv:
                j.feed(Event.HV_DIFFERENT, "the program file differs from the one embedded")
            else:
                j.feed(
                    Event.HV_DIFFERENT, "code in memory differs from the file (changed after load)"
                )
    verdict = j.verdict
    assert verdict is not None
    return Measurement(
        now_ms,
        pid,
        trigger,
        behaviour,
        j.f_d,
        j.f_v,
        verdict,
        j.reason,
        section.hv if section else None,
        new_hv,
    )
