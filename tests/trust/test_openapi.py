"""The CAS answers what its OpenAPI description says, anonymous and as an administrator."""

from __future__ import annotations

import pytest

from tests.trust.conftest import World
from tests.trust.test_api import administered

pytest.importorskip("schemathesis")
from tests.openapi_check import conforms


@pytest.mark.parametrize("signed_in", [False, True])
def test_the_cas_api(world: World, signed_in: bool) -> None:
    app, admin = administered(world)
    assert conforms(app, admin if signed_in else None) == []
