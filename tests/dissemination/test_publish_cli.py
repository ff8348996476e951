"""`router publish`'s options: periods as dates, a missing platform named with its fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from meterseal.dissemination.cli import _moment
from tests.command_line import invoke


def test_a_period_is_a_date_a_date_and_time_or_unix_seconds() -> None:
    assert _moment("", "--since") == 0
    assert _moment("1790000000", "--since") == 1_790_000_000
    assert _moment("2026-10-01", "--since") == 1_790_812_800  # UTC midnight
    assert _moment("2026-10-01T01:00", "--since") == 1_790_816_400
    assert _moment("2026-10-01T01:00+01:00", "--since") == 1_790_812_800
    with pytest.raises(typer.BadParameter, match="a date"):
        _moment("yesterday", "--since")


def test_publish_without_a_platform_names_the_command_that_makes_one(tmp_path: Path) -> None:
    assert invoke(["router", "init", str(tmp_path / "router")]).exit_code == 0
    result = invoke(
        ["router", "publish", "--authority", str(tmp_path / "router" / "authority.pub"),
         "--platform", str(tmp_path / "nowhere"), "--store", f"sqlite:///{tmp_path / 's.db'}"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"meterseal cas init -d {tmp_path / 'nowhere'}" in result.output
