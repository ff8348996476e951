"""Real services for tests: skip when one is unreachable, fail instead when CI requires them."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

REQUIRE_ENV = "MS_REQUIRE_SERVICES"


def services_required() -> bool:
    """Whether MS_REQUIRE_SERVICES=1 turns an unreachable service into a failure."""
    return os.environ.get(REQUIRE_ENV) == "1"


def require_service(name: str, url: str, probe: Callable[[], object]) -> None:
    """Run `probe`; if it raises, skip the test (or fail it when services are required).

    `url` is only shown in the reason, so pass it without a password.
    """
    try:
        probe()
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        message = f"{name} not reachable at {url}: {first_line}"
        if services_required():
            pytest.fail(f"{message} ({REQUIRE_ENV}=1)")
        pytest.skip(message)
