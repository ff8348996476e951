"""Keyed pseudonyms."""

from __future__ import annotations

import pytest

from meterseal.acquisition.anonymize import Anonymizer


def test_pseudonyms_are_stable_distinct_and_keyed() -> None:
    a, b = Anonymizer(b"k" * 32), Anonymizer(b"q" * 32)
    assert a.pseudonym("MTR-1") == a.pseudonym("MTR-1")
    assert a.pseudonym("MTR-1") != a.pseudonym("MTR-2")
    assert a.pseudonym("MTR-1") != b.pseudonym("MTR-1")
    assert len(a.pseudonym("MTR-1")) == 16
    assert b"MTR-1" not in a.pseudonym("MTR-1")


def test_key_is_long_and_never_printed() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Anonymizer(b"short")
    assert "k" * 32 not in repr(Anonymizer(b"k" * 32))
