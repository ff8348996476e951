"""The section codec (HV, T, DSig) and the judgement table (sans-IO)."""

from __future__ import annotations

import pytest

from meterseal.integrity.behaviour import Action, Behaviour
from meterseal.integrity.errors import DsigError, ExtractionError, IntegrityError
from meterseal.integrity.judgement import (
    REASONS,
    TRANSITIONS,
    Event,
    Judgement,
    Measurement,
    Step,
    Verdict,
    judge,
)
from meterseal.integrity.platform_key import SOFTWARE_KEY_LABEL, PlatformKey
from meterseal.integrity.section import (
    IntegritySection,
    capacity_for,
    encode,
    extract,
    extract_verified,
)
from meterseal.integrity.trace import TraceRecorder
from meterseal.runtime.transitions import LocalProtocolError

HV = bytes(range(32))
A = Behaviour("${exe}", "main", Action.CONNECT, "inet:${arg3}")


@pytest.fixture(scope="module")
def key() -> PlatformKey:
    return PlatformKey.generate()


@pytest.fixture(scope="module")
def section() -> IntegritySection:
    recorder = TraceRecorder("meter")
    recorder.record(1, A)
    recorder.end_run()
    return IntegritySection(HV, recorder.model(), SOFTWARE_KEY_LABEL)


def test_the_section_round_trips_at_its_reserved_size(
    key: PlatformKey, section: IntegritySection
) -> None:
    capacity = capacity_for(section.trace, key)
    content = encode(section, key, capacity)
    assert len(content) == capacity
    assert extract_verified(content, key) == section
    assert extract(content).signer == "software key (no TPM)"


def test_every_flipped_byte_is_refused(key: PlatformKey, section: IntegritySection) -> None:
    content = encode(section, key, capacity_for(section.trace, key))
    for i in range(len(content)):
        changed = content[:i] + bytes([content[i] ^ 0x01]) + content[i + 1 :]
        with pytest.raises((DsigError, ExtractionError)):
            extract_verified(changed, key)


def test_another_key_fails_dsig_and_garbage_fails_extraction(
    key: PlatformKey, section: IntegritySection
) -> None:
    content = encode(section, key, None)
    with pytest.raises(DsigError):
        extract_verified(content, PlatformKey.generate())
    for garbage in (b"", b"MSINTEG1", b"x" * 64, content + b"\x01"):
        with pytest.raises(ExtractionError):
            extract_verified(garbage, key)


def _run(behaviour: Behaviour | None, extract_result: object, measured: object) -> Measurement:
    def extract_() -> IntegritySection:
        if isinstance(extract_result, Exception):
            raise extract_result
        assert isinstance(extract_result, IntegritySection)
        return extract_result

    def measure() -> tuple[bytes, bytes]:
        if isinstance(measured, Exception):
            raise measured
        assert isinstance(measured, tuple)
        return measured

    return judge(behaviour, [], extract_, measure, pid=1, trigger="behaviour", now_ms=0)


def test_f_j_is_trust_iff_f_d_and_f_v(section: IntegritySection) -> None:
    other = bytes(32)
    trusted = _run(A, section, (HV, HV))
    assert trusted.verdict is Verdict.TRUSTED
    assert trusted.f_d
    assert trusted.f_v
    cases = [
        (Behaviour("${exe}", "main", Action.EXEC, "/bin/sh"), section, (HV, HV), "f_d"),
        (A, section, (other, HV), "code in memory"),
        (A, section, (other, other), "program file differs"),
        (A, ExtractionError("no section"), (HV, HV), "extraction failed"),
        (A, DsigError("bad"), (HV, HV), "DSig"),
        (A, section, IntegrityError("gone"), "cannot be measured"),
    ]
    for behaviour, extracted, measured, reason in cases:
        m = _run(behaviour, extracted, measured)
        assert m.verdict is Verdict.MALICIOUS, (reason, m)
        assert reason in m.reason, (reason, m)
    periodic = _run(None, section, (HV, HV))
    assert periodic.verdict is Verdict.TRUSTED
    assert periodic.f_d is None


def test_the_table_ends_every_path_in_a_verdict() -> None:
    ends = {Step.TRUSTED, Step.MALICIOUS}
    assert set(TRANSITIONS.values()) - ends <= TRANSITIONS.sources()
    assert not TRANSITIONS.sources() & ends
    assert {event for (_, event), to in TRANSITIONS.items() if to in ends} == set(REASONS)
    j = Judgement()
    with pytest.raises(LocalProtocolError, match="judgement cannot hv_equal when watching"):
        j.feed(Event.HV_EQUAL)
