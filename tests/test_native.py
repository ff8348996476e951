"""Optional extensions load when present, and step aside when absent or switched off."""

from __future__ import annotations

import pytest

from meterseal.native import optional_extension


def test_a_present_module_loads_unless_its_switch_says_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MS_TEST_SWITCH", raising=False)
    assert optional_extension("json", "MS_TEST_SWITCH") is not None
    monkeypatch.setenv("MS_TEST_SWITCH", "1")
    assert optional_extension("json", "MS_TEST_SWITCH") is None
    monkeypatch.setenv("MS_TEST_SWITCH", "0")
    assert optional_extension("json", "MS_TEST_SWITCH") is not None


def test_a_module_that_is_not_built_gives_none() -> None:
    assert optional_extension("meterseal.billing._not_built", "MS_TEST_SWITCH") is None
