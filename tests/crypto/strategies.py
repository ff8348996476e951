"""Hypothesis strategies for readings."""

from __future__ import annotations

from hypothesis import strategies as st

from meterseal.model import PhaseMeasurement, PhasorReport, Reading

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
phases = st.builds(PhaseMeasurement, finite, finite, finite, finite, finite)
phasors = st.builds(
    PhasorReport,
    phases=st.lists(phases, min_size=1, max_size=3).map(tuple),
    power_factor=st.floats(-1.0, 1.0),
    thd=finite,
    frequency=finite,
    demand=finite,
)


def readings(meter_id: str) -> st.SearchStrategy[Reading]:
    """Valid readings of one meter, with or without a phasor report."""
    return st.builds(
        Reading,
        meter_id=st.just(meter_id),
        counter=st.integers(0, 2**63 - 1),
        timestamp=st.integers(0, 2**40),
        interval=st.integers(1, 86_400),
        energy_wh=st.integers(0, 2**53),
        phasor=st.none() | phasors,
    )
