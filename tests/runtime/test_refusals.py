"""A threaded call's expected errors answer their status and count; others stay errors."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from fastapi import HTTPException

from meterseal.runtime.refusals import Refusal, refusing


class Base(Exception):
    """A domain's root error."""


class Narrow(Base):
    """A subclass with a status of its own."""


REFUSALS = (
    Refusal(Narrow, 503, "unavailable"),
    Refusal(Base, 400, "refused"),
    Refusal(KeyError, 404),
)


def raising(error: Exception) -> object:
    """A call that raises `error`."""
    raise error


def test_the_calls_value_is_answered() -> None:
    counts: Counter[str] = Counter()
    assert asyncio.run(refusing(lambda: 7, REFUSALS, counts)) == 7
    assert counts == Counter()


@pytest.mark.parametrize(
    ("error", "status", "counted"),
    [
        (Narrow("down"), 503, {"unavailable": 1}),
        (Base("no"), 400, {"refused": 1}),
        (KeyError("x"), 404, {}),
    ],
)
def test_the_first_refusal_naming_the_error_answers_and_counts(
    error: Exception, status: int, counted: dict[str, int]
) -> None:
    counts: Counter[str] = Counter()
    with pytest.raises(HTTPException) as raised:
        asyncio.run(refusing(lambda: raising(error), REFUSALS, counts))
    assert raised.value.status_code == status
    assert raised.value.detail == str(error)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    assert counts == Counter(counted)


def test_an_error_no_refusal_names_is_raised_as_it_is() -> None:
    counts: Counter[str] = Counter()
    with pytest.raises(ValueError, match="bug"):
        asyncio.run(refusing(lambda: raising(ValueError("bug")), REFUSALS, counts))
    assert counts == Counter()
