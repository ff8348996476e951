"""Quotes: the simulated backend binds measurement, nonce and key; configfs-tsm refuses clearly."""

from __future__ import annotations

import os
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.trust.attestation import (
    NO_HARDWARE,
    TSM_CHECKS,
    ConfigfsTsmAttester,
    ConfigfsTsmVerifier,
    Quote,
    SimulatedAttester,
    SimulatedVerifier,
    init_simulated_platform,
    parse_quote,
    report_data,
)
from meterseal.trust.errors import AttestationError
from meterseal.trust.measurement import Measurement

NONCE = bytes(range(32))
KEY = bytes(range(32, 64))
MEASUREMENT = Measurement(bytes(range(64, 96)))


@pytest.fixture(scope="module")
def platform_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("platform")
    assert init_simulated_platform(directory)
    assert not init_simulated_platform(directory)  # kept, not replaced
    return directory


@pytest.fixture(scope="module")
def quote(platform_keys: Path) -> bytes:
    return SimulatedAttester.from_deployment(platform_keys).quote(MEASUREMENT, NONCE, KEY)


def test_a_simulated_quote_verifies_to_what_it_binds(platform_keys: Path, quote: bytes) -> None:
    attested = SimulatedVerifier.from_deployment(platform_keys).verify(quote)
    assert (attested.measurement, attested.nonce, attested.public_key) == (MEASUREMENT, NONCE, KEY)
    assert attested.backend == "simulated"
    assert attested.assurance == NO_HARDWARE == "simulated: no hardware guarantee"


def test_simulated_objects_say_they_give_no_hardware_guarantee(platform_keys: Path) -> None:
    assert NO_HARDWARE in repr(SimulatedAttester.from_deployment(platform_keys))
    assert NO_HARDWARE in repr(SimulatedVerifier.from_deployment(platform_keys))


def test_the_report_data_is_sha512_of_nonce_measurement_and_key(quote: bytes) -> None:
    import hashlib

    parsed = parse_quote(quote)
    assert parsed.report_data == hashlib.sha512(NONCE + MEASUREMENT.digest + KEY).digest()
    with pytest.raises(AttestationError, match="32-byte nonce"):
        report_data(b"short", MEASUREMENT, KEY)


def test_another_platform_is_refused(tmp_path: Path, quote: bytes) -> None:
    init_simulated_platform(tmp_path)
    with pytest.raises(AttestationError, match="another platform") as refused:
        SimulatedVerifier.from_deployment(tmp_path).verify(quote)
    assert refused.value.check == "platform"


def test_a_quote_claiming_another_measurement_is_refused(platform_keys: Path, quote: bytes) -> None:
    parsed = parse_quote(quote)
    forged = Quote(
        parsed.backend, Measurement(b"\x00" * 32), parsed.nonce, parsed.public_key, parsed.evidence
    )
    with pytest.raises(AttestationError, match="does not bind") as refused:
        SimulatedVerifier.from_deployment(platform_keys).verify(forged.encode())
    assert refused.value.check == "binding"


@settings(max_examples=150, deadline=None)
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_changed_byte_makes_the_quote_fail(
    platform_keys: Path, quote: bytes, position: int, flip: int
) -> None:
    index = position % len(quote)
    mutated = bytearray(quote)
    mutated[index] ^= flip
    with pytest.raises(AttestationError):
        SimulatedVerifier.from_deployment(platform_keys).verify(bytes(mutated))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        cbor2.dumps([1, 2]),
        cbor2.dumps({"backend": "simulated"}),
        cbor2.dumps({"backend": 1, "measurement": b"", "nonce": b"", "key": b"", "evidence": b""}),
        cbor2.dumps(
            {"backend": "x", "measurement": b"1", "nonce": b"2", "key": b"3", "evidence": b""}
        ),
        b"\x00" * 70_000,
    ],
)
def test_malformed_quotes_are_refused_as_format(data: bytes) -> None:
    with pytest.raises(AttestationError) as refused:
        parse_quote(data)
    assert refused.value.check == "format"


def test_configfs_tsm_refuses_where_it_is_absent(tmp_path: Path) -> None:
    attester = ConfigfsTsmAttester(tmp_path / "no" / "tsm" / "report")
    with pytest.raises(AttestationError, match="configfs-tsm is not available") as refused:
        attester.quote(MEASUREMENT, NONCE, KEY)
    assert "no hardware guarantee" in str(refused.value)
    assert refused.value.check == "platform"
    if not os.path.isdir("/sys/kernel/config/tsm/report"):
        with pytest.raises(AttestationError, match="not available"):
            ConfigfsTsmAttester().quote(MEASUREMENT, NONCE, KEY)


def test_configfs_tsm_quotes_are_never_accepted_and_the_refusal_lists_the_checks() -> None:
    evidence = cbor2.dumps({"provider": "tdx_guest", "outblob": b"\x04" * 64, "auxblob": b""})
    quote = Quote("configfs-tsm", MEASUREMENT, NONCE, KEY, evidence).encode()
    with pytest.raises(AttestationError, match="provider tdx_guest") as refused:
        ConfigfsTsmVerifier().verify(quote)
    assert refused.value.check == "unsupported"
    for check in TSM_CHECKS:
        assert check in str(refused.value)
